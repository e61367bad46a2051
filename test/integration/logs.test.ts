// The daemon's log lines, from a real daemon: JSON when stderr is a pipe,
// no key twice in any line, one line per CRI call at debug, one per state
// change at info, a failed call at warn with its error; text lines when
// stderr is a terminal (the daemon run under script(1)'s pty), JSON there
// when log_format says so.
import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CLI, TestDaemon, call, runp, startDaemon, waitForExit } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { duplicateKeys } from '../helpers/log-lines';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { rmCgroupTree } from '../helpers/cgroups';

type Rec = Record<string, unknown> & { level: number; msg: string };

describe('JSON lines on a pipe', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startDaemon();
  });
  afterAll(async () => {
    try {
      await d.stop();
      await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
      await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
    } finally {
      await d.cleanup();
    }
  });

  test('no key twice; a line per call at debug, a line per state change at info, failures with context', async () => {
    const uid = `logs-${process.pid}`;
    const pod = await runp(d, {
      metadata: { name: 'logpod', uid, namespace: 'logs', attempt: 0 },
      hostname: 'logpod',
      linux: {},
    });
    await call(d.runtime, 'podSandboxStatus', { podSandboxId: pod });
    await call(d.runtime, 'listPodSandbox', {});
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod });
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod });
    await call(d.runtime, 'runPodSandbox', { config: { hostname: 'x' } }).catch(() => undefined);
    expect(await d.stop()).toBe(0);

    const lines = d
      .output()
      .split('\n')
      .filter((l) => l !== '');
    // Every line is JSON (nothing else on stdout/stderr), none with a key twice.
    const recs = lines.map((l) => JSON.parse(l) as Rec);
    expect(duplicateKeys(lines)).toEqual([]);
    expect(recs.find((r) => r.msg === 'starting capsa')).toMatchObject({ level: 30, pid: d.proc.pid });

    const rpcs = recs.filter((r) => r.msg === 'rpc');
    expect(rpcs.map((r) => [r.method, r.level])).toEqual([
      ['RunPodSandbox', 20],
      ['PodSandboxStatus', 20],
      ['ListPodSandbox', 20],
      ['StopPodSandbox', 20],
      ['RemovePodSandbox', 20],
    ]);
    expect(rpcs[0]).toMatchObject({ component: 'cri', name: 'logpod', code: 'OK', ms: expect.any(Number) });
    expect(rpcs[1]).toMatchObject({ podSandboxId: pod });
    const failed = recs.filter((r) => r.msg === 'rpc failed');
    expect(failed).toEqual([
      expect.objectContaining({
        level: 40,
        method: 'RunPodSandbox',
        code: 'INVALID_ARGUMENT',
        err: expect.any(String),
      }),
    ]);

    const changes = recs.filter((r) => r.msg === 'transition' && r.sandboxId === pod);
    expect(changes.every((r) => r.level === 30)).toBe(true);
    const path = changes.map((r) => `${String(r.from)}>${String(r.to)}`);
    // Each change once, in order: made, stopped, removed.
    expect(path).toEqual([...new Set(path)]);
    expect(path.slice(0, 3)).toEqual(['NEW>PREPARING', 'PREPARING>ISOLATING', 'ISOLATING>RUNNING']);
    expect(path[path.length - 1]).toMatch(/>REMOVED$/);
  }, 60_000);
});

describe('on a terminal', () => {
  let dir: string;
  let proc: ChildProcess | undefined;
  let daemonPid: number | undefined;

  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-logs-'));
  });
  afterAll(async () => {
    if (daemonPid) process.kill(daemonPid, 'SIGKILL');
    if (proc) await waitForExit(proc);
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** `capsa serve` under script(1): its stdin, stdout and stderr are a pty. Stops it once it serves. */
  async function serveOnTty(extra: string[]): Promise<string> {
    const args = [CLI, 'serve', '--root', path.join(dir, 'root'), '--state', path.join(dir, 'state')];
    args.push('--socket', path.join(dir, 'state', 'capsa.sock'), '--metrics-address', '');
    args.push('--config', path.join(dir, 'capsa.toml'), ...extra);
    await fs.writeFile(path.join(dir, 'capsa.toml'), '');
    const cmd = [process.execPath, ...args].map((a) => `'${a}'`).join(' ');
    proc = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    const deadline = Date.now() + 15_000;
    while (!/capsa is serving/.test(out)) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`daemon did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    daemonPid = Number(/pid[=":]+(\d+)/.exec(out)?.[1]);
    process.kill(daemonPid, 'SIGTERM');
    expect(await waitForExit(proc)).toBe(0);
    daemonPid = undefined;
    proc = undefined;
    return out.replace(/\r\n/g, '\n');
  }

  test('auto: one coloured text line per event', async () => {
    const out = await serveOnTty(['--log-format', 'auto']);
    const lines = out.split('\n').filter((l) => l !== '');
    const start = lines.find((l) => /starting capsa/.test(l));
    const green = '\x1b[32mINFO \x1b[0m';
    expect(start?.split(green)).toEqual([
      expect.stringMatching(/^\d{4}-\d\d-\d\dT[\d:.]+Z $/),
      expect.stringMatching(/^ starting capsa pid=\d+ configFile=\//),
    ]);
    expect(lines.find((l) => /capsa is serving/.test(l))).toMatch(/INFO .* capsa is serving socket=\/\S+ root=/);
    expect(lines.some((l) => l.startsWith('{'))).toBe(false);
  }, 60_000);

  test('log_format = "json" on a terminal stays JSON', async () => {
    const out = await serveOnTty(['--log-format', 'json']);
    const lines = out.split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) expect(() => JSON.parse(l) as unknown).not.toThrow();
  }, 60_000);
});
