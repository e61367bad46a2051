// Running capsa-monitor directly from tests (no daemon), and the small
// waits those tests share.
import { spawn } from 'child_process';
import { readFileSync } from 'fs';
import * as path from 'path';

/** The monitor under test: $CAPSA_MONITOR, else the one `make -C native/monitor` built. */
export const MONITOR =
  process.env.CAPSA_MONITOR ?? path.resolve(__dirname, '..', '..', '..', 'native', 'build', 'capsa-monitor');

export interface MonitorResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `capsa-monitor ARGS` to completion (run mode returns once the monitor is ready). */
export function runMonitor(args: string[], opts: { detached?: boolean } = {}): Promise<MonitorResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(MONITOR, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached ?? true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` every 20 ms until it returns something truthy. */
export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** True while `pid` runs; a zombie still answers kill(0) but is gone for our purposes. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
