// A real systemd as PID 1 of its own namespaces (hack/sysd/sysd-ns.sh), for
// the systemd cgroup driver's tests on hosts whose PID 1 is not systemd.
import { execFile } from 'child_process';
import { existsSync } from 'fs';
import * as path from 'path';

export const SYSD_NS = path.resolve(__dirname, '..', '..', '..', 'hack', 'sysd', 'sysd-ns.sh');

/** What the environment needs on the host: systemd, root. */
export function sysdAvailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync('/lib/systemd/systemd')) return 'no /lib/systemd/systemd (apt-get install systemd)';
  if (!existsSync('/usr/bin/dbus-daemon')) return 'no dbus-daemon (apt-get install dbus)';
  return undefined;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile('bash', [SYSD_NS, ...args], { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
    });
  });
}

export class SysdEnv {
  private constructor(
    readonly name: string,
    readonly pid1: number,
  ) {}

  /** Starts systemd (with a dbus-daemon system bus), `share` dirs visible inside at the same paths. */
  static async start(name: string, share: string[], timeoutMs = 60_000): Promise<SysdEnv> {
    const r = await run(['start', name], { ...process.env, SYSD_SHARE: share.join(' '), SYSD_DBUS: '1' }, timeoutMs);
    if (r.code !== 0) throw new Error(`sysd-ns start ${name} failed (${r.code}): ${r.stderr}`);
    return new SysdEnv(name, Number(r.stdout.trim()));
  }

  /** Runs a command inside (root cgroups of the namespace). */
  exec(cmd: string[], timeoutMs = 30_000): Promise<RunResult> {
    return run(['exec', this.name, ...cmd], process.env, timeoutMs);
  }

  /** Like exec, but a non-zero exit is an error. */
  async sh(script: string, timeoutMs = 30_000): Promise<string> {
    const r = await this.exec(['sh', '-c', script], timeoutMs);
    if (r.code !== 0) throw new Error(`inside ${this.name}: ${script}: exit ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** A path of the namespace's file system, from the host. */
  hostPath(p: string): string {
    return `/proc/${this.pid1}/root${p}`;
  }

  async stop(): Promise<void> {
    const r = await run(['stop', this.name], process.env, 60_000);
    if (r.code !== 0) throw new Error(`sysd-ns stop ${this.name} failed: ${r.stderr}`);
  }
}
