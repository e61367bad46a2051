// Renders a configuration as commented TOML: `capsa config default`
// prints the defaults this way so operators start from a complete file.
import { Config, KEYS } from './schema';

function tomlValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  throw new Error(`cannot render ${typeof v} as TOML`);
}

export function renderConfig(config: Config): string {
  const lines = ['# capsa configuration (TOML). Every key is optional; flags override the file.', ''];
  for (const k of KEYS) {
    lines.push(`# ${k.help}`);
    // Every handler, runtime_handlers' too, is rendered as its [runtimes.<name>] table below.
    const value = k.key === 'runtime_handlers' ? [] : config[k.key];
    lines.push(`${k.key} = ${tomlValue(value)}`);
    lines.push('');
  }
  lines.push('# Per-registry settings. Mirrors are tried in order, then the registry itself.');
  lines.push('# [registries."registry.k8s.io"]');
  lines.push('# mirrors = ["http://127.0.0.1:5000"]');
  lines.push('# [registries."127.0.0.1:5000"]');
  lines.push('# insecure = true');
  lines.push('');
  lines.push('# RuntimeClass handlers besides the default one (capsa\'s own launcher). type = "oci" runs');
  lines.push('# an OCI runtime under capsa-monitor; root is its state dir (default <state>/runtimes/<name>).');
  lines.push('# [runtimes.runc]');
  lines.push('# type = "oci"');
  lines.push('# binary = "/usr/sbin/runc"');
  lines.push('# [runtimes.test-handler]');
  lines.push('# type = "capsa"');
  for (const [name, r] of Object.entries(config.runtimes)) {
    lines.push(`[runtimes.${JSON.stringify(name)}]`);
    lines.push(`type = ${tomlValue(r.type)}`);
    if (r.type === 'oci') {
      lines.push(`binary = ${tomlValue(r.binary)}`);
      if (r.root) lines.push(`root = ${tomlValue(r.root)}`);
    }
  }
  for (const [host, r] of Object.entries(config.registries)) {
    lines.push(`[registries.${JSON.stringify(host)}]`);
    lines.push(`mirrors = ${tomlValue(r.mirrors)}`);
    lines.push(`insecure = ${tomlValue(r.insecure)}`);
    if (r.ca_file) lines.push(`ca_file = ${tomlValue(r.ca_file)}`);
  }
  return lines.join('\n') + '\n';
}
