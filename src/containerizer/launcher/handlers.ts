// RuntimeClass handlers over the Launcher role: the default handler "" (and
// every handler of type "capsa") is capsa-monitor's own launcher; a handler
// of type "oci" is an OciLauncher (oci/launcher.ts) over the same monitor.
// A container's run dir says which one it has (runtime.json), so a restarted
// daemon routes every call as the one before it did, even for a handler
// since removed from the config.
import { existsSync } from 'fs';
import * as path from 'path';
import type { RuntimeConfig } from '../../config/schema';
import type { Logger } from '../../log';
import type { Created, ExecRequest, ExecResult, LaunchStatus, Launcher, Started } from './launcher';
import type { MonitorLauncher } from './monitor-launcher';
import { OciLauncher, RUNTIME_RECORD, readRuntimeRecord } from './oci/launcher';
import { HandlerFeatures, OciRuntime } from './oci/runtime';
import type { LaunchSpec } from './spec';

export class HandlerLauncher implements Launcher {
  private readonly oci = new Map<string, OciLauncher>();
  /** Run dirs of OCI handlers (a cache of runtime.json). */
  private readonly byRunDir = new Map<string, OciLauncher>();

  constructor(
    private readonly monitor: MonitorLauncher,
    runtimes: Readonly<Record<string, RuntimeConfig>>,
    private readonly log: Logger,
  ) {
    for (const [name, r] of Object.entries(runtimes)) {
      if (r.type === 'oci') {
        this.oci.set(name, new OciLauncher(new OciRuntime(name, r.binary, r.root ?? ''), monitor));
      }
    }
  }

  private async of(runDir: string): Promise<Launcher> {
    const known = this.byRunDir.get(runDir);
    if (known) return known;
    if (!existsSync(path.join(runDir, RUNTIME_RECORD))) return this.monitor;
    const rec = await readRuntimeRecord(runDir);
    if (!rec) return this.monitor;
    const configured = this.oci.get(rec.handler);
    const l =
      configured && configured.runtime.binary === rec.binary && configured.runtime.root === rec.root
        ? configured
        : new OciLauncher(new OciRuntime(rec.handler, rec.binary, rec.root), this.monitor);
    this.byRunDir.set(runDir, l);
    return l;
  }

  async create(runDir: string, spec: LaunchSpec, signal: AbortSignal): Promise<Created> {
    const handler = spec.capsa.runtimeHandler ?? '';
    const l = this.oci.get(handler);
    if (!l) return this.monitor.create(runDir, spec, signal);
    this.byRunDir.set(runDir, l);
    return l.create(runDir, spec, signal);
  }

  async start(runDir: string, timeoutMs: number, signal: AbortSignal): Promise<Started> {
    return (await this.of(runDir)).start(runDir, timeoutMs, signal);
  }

  async signal(runDir: string, sig: number): Promise<boolean> {
    return (await this.of(runDir)).signal(runDir, sig);
  }

  async reopenLog(runDir: string, logPath: string, signal: AbortSignal): Promise<void> {
    return (await this.of(runDir)).reopenLog(runDir, logPath, signal);
  }

  async exec(runDir: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult> {
    return (await this.of(runDir)).exec(runDir, req, signal);
  }

  async status(runDir: string): Promise<LaunchStatus> {
    return (await this.of(runDir)).status(runDir);
  }

  watch(runDir: string, onChange: () => void): () => void {
    // Both kinds watch the same monitor files.
    return this.monitor.watch(runDir, onChange);
  }

  async destroy(runDir: string, signal: AbortSignal): Promise<void> {
    const l = await this.of(runDir);
    await l.destroy(runDir, signal);
    this.byRunDir.delete(runDir);
  }

  /**
   * Containers in an OCI handler's state dir whose run dir is gone (the
   * daemon died between a delete and the run dir's removal, or the run dir
   * was wiped): `delete --force` each. Returns what it removed.
   */
  async sweep(runRoot: string, known: ReadonlySet<string>): Promise<string[]> {
    const swept: string[] = [];
    for (const [name, l] of this.oci) {
      if (!existsSync(l.runtime.root)) continue;
      let ids: string[];
      try {
        ids = await l.runtime.list(l.globalLog);
      } catch (err) {
        this.log.warn({ handler: name, err: (err as Error).message }, 'cannot list the runtime state dir');
        continue;
      }
      for (const id of ids) {
        if (known.has(id) || existsSync(path.join(runRoot, id))) continue;
        try {
          await l.runtime.delete(id, l.globalLog, { stage: 'recover' });
          swept.push(`${name} container ${id}`);
        } catch (err) {
          this.log.warn(
            { handler: name, id, err: (err as Error).message },
            'cannot delete an orphaned runtime container',
          );
        }
      }
    }
    return swept;
  }
}

/** One probe per OCI runtime binary (a `features` call), shared by every Status. */
const probes = new Map<string, OciRuntime>();

/**
 * Status' runtime_handlers: the default "" and every configured handler, in
 * order, each with what it can do here: `own` (capsa's launcher on this
 * host) for handlers of type "capsa", the runtime's own answer for "oci".
 */
export async function runtimeHandlerList(
  config: { runtime_handlers: readonly string[]; runtimes: Readonly<Record<string, RuntimeConfig>> },
  own: HandlerFeatures,
): Promise<{ name: string; features: HandlerFeatures }[]> {
  const out: { name: string; features: HandlerFeatures }[] = [];
  for (const name of ['', ...config.runtime_handlers]) {
    const r = config.runtimes[name];
    if (r?.type !== 'oci') {
      out.push({ name, features: own });
      continue;
    }
    const root = r.root ?? '';
    const key = `${r.binary}\0${root}`;
    let rt = probes.get(key);
    if (!rt) probes.set(key, (rt = new OciRuntime(name, r.binary, root)));
    out.push({ name, features: await rt.features(`${root}.log`) });
  }
  return out;
}
