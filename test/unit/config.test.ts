import { mkdtempSync, promises as fs, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ConfigError, loadConfig } from '../../src/config/load';
import { renderConfig } from '../../src/config/render';
import { defaultConfig } from '../../src/config/schema';

describe('config loading', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-config-'));
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));
  let n = 0;
  const file = (text: string): string => {
    const f = path.join(dir, `c${n++}.toml`);
    writeFileSync(f, text);
    return f;
  };

  test('a missing default file means built-in defaults; an explicit missing file is an error', () => {
    const explicit = path.join(dir, 'nope.toml');
    expect(() => loadConfig({ configPath: explicit })).toThrow(ConfigError);
  });

  test('file values override defaults and flags override the file', () => {
    const f = file(
      [
        'root = "/srv/capsa"',
        'log_level = "debug"',
        'cni_bin_dirs = ["/a", "/b"]',
        'pull_stall_timeout = 5',
        '[registries."registry.k8s.io"]',
        'mirrors = ["http://127.0.0.1:5000"]',
        '[registries."127.0.0.1:5000"]',
        'insecure = true',
      ].join('\n'),
    );
    const { config, file: used } = loadConfig({
      configPath: f,
      overrides: { log_level: 'warn', cni_bin_dirs: '/x,/y' },
    });
    expect(used).toBe(f);
    expect(config.root).toBe('/srv/capsa');
    expect(config.log_level).toBe('warn');
    expect(config.cni_bin_dirs).toEqual(['/x', '/y']);
    expect(config.pull_stall_timeout).toBe(5);
    expect(config.state).toBe('/run/capsa');
    expect(config.registries).toEqual({
      'registry.k8s.io': { mirrors: ['http://127.0.0.1:5000'], insecure: false },
      '127.0.0.1:5000': { mirrors: [], insecure: true },
    });
  });

  test.each([
    ['unknown = 1', 'unknown', 'unknown key'],
    ['socket = 5', 'socket', 'absolute path'],
    ['pull_stall_timeout = -1', 'pull_stall_timeout', 'seconds'],
    ['metrics_address = "nope"', 'metrics_address', 'host:port'],
    ['cni_bin_dirs = "/a"', 'cni_bin_dirs', 'list of strings'],
    ['registries = 3', 'registries', 'table'],
    ['[registries."bad host!"]\ninsecure = true', 'registries."bad host!"', 'host'],
    ['[registries."a.io"]\ninsecure = "yes"', 'registries."a.io".insecure', 'true or false'],
    ['[registries."a.io"]\nca_file = "rel.pem"', 'registries."a.io".ca_file', 'absolute path'],
    ['sync_layers = "no"', 'sync_layers', 'true or false'],
  ])('%s is refused naming %s', (text, key, detail) => {
    const f = file(text);
    let err: unknown;
    try {
      loadConfig({ configPath: f });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const ce = err as ConfigError;
    expect(ce.key).toBe(key);
    expect(ce.source).toBe(f);
    expect(ce.message).toContain(detail);
  });

  test('an empty metrics address disables metrics and is valid', () => {
    expect(loadConfig({ configPath: file('metrics_address = ""') }).config.metrics_address).toBe('');
  });

  test('sync_layers is a bool: true by default, from TOML and from a flag', () => {
    expect(defaultConfig().sync_layers).toBe(true);
    expect(loadConfig({ configPath: file('sync_layers = false') }).config.sync_layers).toBe(false);
    const f = file('sync_layers = false');
    expect(loadConfig({ configPath: f, overrides: { sync_layers: 'true' } }).config.sync_layers).toBe(true);
    expect(() => loadConfig({ configPath: f, overrides: { sync_layers: 'yes' } })).toThrow(/true or false/);
    expect(renderConfig(defaultConfig())).toContain('sync_layers = true');
  });

  test('runtime_handlers: none by default; DNS-1123 labels from TOML or a flag, each once', () => {
    expect(defaultConfig().runtime_handlers).toEqual([]);
    const ok = loadConfig({ configPath: file('runtime_handlers = ["test-handler", "runc"]') }).config;
    expect(ok.runtime_handlers).toEqual(['test-handler', 'runc']);
    expect(
      loadConfig({ configPath: file(''), overrides: { runtime_handlers: 'a,b-1' } }).config.runtime_handlers,
    ).toEqual(['a', 'b-1']);
    for (const bad of ['["Test"]', '["a_b"]', '["-a"]', `["${'a'.repeat(64)}"]`, '[""]']) {
      expect(() => loadConfig({ configPath: file(`runtime_handlers = ${bad}`) })).toThrow(
        /key "runtime_handlers": .* is not a DNS-1123 label/,
      );
    }
    expect(() => loadConfig({ configPath: file('runtime_handlers = ["a", "a"]') })).toThrow(/names a handler twice/);
    expect(() => loadConfig({ configPath: file('runtime_handlers = "a"') })).toThrow(/list of strings/);
  });

  test('[runtimes.<name>]: capsa and oci handlers, runtime_handlers folded in, each name once', () => {
    const { config } = loadConfig({
      configPath: file(
        [
          'state = "/run/x"',
          'runtime_handlers = ["test-handler"]',
          '[runtimes.runc]',
          'type = "oci"',
          'binary = "/bin/sh"',
          '[runtimes.crun]',
          'type = "oci"',
          'binary = "/bin/sh"',
          'root = "/run/crun-capsa"',
          '[runtimes.plain]',
          'type = "capsa"',
        ].join('\n'),
      ),
    });
    expect(config.runtime_handlers).toEqual(['test-handler', 'runc', 'crun', 'plain']);
    expect(config.runtimes).toEqual({
      'test-handler': { type: 'capsa' },
      runc: { type: 'oci', binary: '/bin/sh', root: '/run/x/runtimes/runc' },
      crun: { type: 'oci', binary: '/bin/sh', root: '/run/crun-capsa' },
      plain: { type: 'capsa' },
    });
    // The rendered form loads back to the same handlers.
    expect(loadConfig({ configPath: file(renderConfig(config)) }).config).toEqual(config);
    for (const [toml, key, what] of [
      ['[runtimes."../etc"]\ntype = "capsa"', 'runtimes."../etc"', 'has a path in it'],
      ['[runtimes."a/b"]\ntype = "capsa"', 'runtimes."a/b"', 'has a path in it'],
      ['[runtimes.A]\ntype = "capsa"', 'runtimes."A"', 'DNS-1123'],
      ['[runtimes.x]\ntype = "kata"', 'runtimes."x".type', '"capsa" or "oci"'],
      ['[runtimes.x]\ntype = "oci"', 'runtimes."x".binary', 'absolute path'],
      ['[runtimes.x]\ntype = "oci"\nbinary = "/nonexistent/runc"', 'runtimes."x".binary', 'not an executable'],
      ['[runtimes.x]\ntype = "oci"\nbinary = "/bin/sh"\nroot = "rel"', 'runtimes."x".root', 'absolute path'],
      ['[runtimes.x]\ntype = "capsa"\nbinary = "/bin/sh"', 'runtimes."x".binary', 'unknown key'],
      ['runtime_handlers = ["x"]\n[runtimes.x]\ntype = "capsa"', 'runtime_handlers', 'name it once'],
      ['runtimes = 1', 'runtimes', 'table'],
    ]) {
      expect(() => loadConfig({ configPath: file(toml) })).toThrow(`key "${key}": `);
      expect(() => loadConfig({ configPath: file(toml) })).toThrow(what);
    }
  });

  test('rendered defaults load back to the same config', () => {
    const defaults = defaultConfig();
    const { config } = loadConfig({ configPath: file(renderConfig(defaults)) });
    expect(config).toEqual(defaults);
  });

  test('rendered config with registries round-trips', () => {
    const c = defaultConfig();
    c.registries = { 'r.io': { mirrors: ['https://m.example:5000'], insecure: true, ca_file: '/etc/ca.pem' } };
    expect(loadConfig({ configPath: file(renderConfig(c)) }).config).toEqual(c);
  });
});
