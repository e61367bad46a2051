// capsa-monitor against the real kernel (as root): a busybox rootfs, a
// launch spec, and the files the monitor leaves in the run dir. Every test
// ends with no capsa-test cgroup, no mount and no process left behind.
import { execFileSync, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { buildBusyboxRootfs } from '../helpers/rootfs';
import { MONITOR as monitor, alive, runMonitor, sleep, waitFor } from '../helpers/monitor-run';

const repo = path.resolve(__dirname, '../../..');
const tsRe = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

interface ExitFile {
  pid: number;
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string;
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

function pidOf(dir: string, file: string): number | undefined {
  try {
    return readJson<{ pid: number }>(path.join(dir, file)).pid;
  } catch {
    return undefined;
  }
}

let root: string;
let rootfs: string;
const runDirs: string[] = [];
const cgroups: string[] = [];
const extraPids: number[] = [];

function newRunDir(): string {
  const dir = mkdtempSync(path.join(root, 'run-'));
  runDirs.push(dir);
  return dir;
}

function newCgroup(controller: string): string {
  const dir = `/sys/fs/cgroup/${controller}/capsa-test-${randomBytes(4).toString('hex')}`;
  mkdirSync(dir);
  cgroups.push(dir);
  return dir;
}

interface SpecOptions {
  args: string[];
  cgroupProcs?: string[];
  memoryCgroup?: string;
  pidNamespace?: boolean;
  env?: string[];
  stdin?: boolean;
  stdinOnce?: boolean;
  terminal?: boolean;
  userns?: boolean;
  join?: Record<string, string>; // namespace type -> path
  extraMounts?: { destination: string; type?: string; source: string; options: string[] }[];
}

function writeSpec(dir: string, o: SpecOptions): string {
  const spec = {
    process: {
      args: o.args,
      env: o.env ?? ['PATH=/bin', 'HOME=/root'],
      cwd: '/',
      terminal: o.terminal ?? false,
      user: { uid: 0, gid: 0 },
      capabilities: {
        bounding: ['CAP_CHOWN', 'CAP_KILL', 'CAP_SETUID', 'CAP_SETGID'],
        effective: ['CAP_CHOWN', 'CAP_KILL', 'CAP_SETUID', 'CAP_SETGID'],
        permitted: ['CAP_CHOWN', 'CAP_KILL', 'CAP_SETUID', 'CAP_SETGID'],
      },
      noNewPrivileges: true,
      oomScoreAdj: -100, // refused without CAP_SYS_RESOURCE: clamped and logged
    },
    root: { path: rootfs, readonly: true },
    hostname: 'capsa-test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=1m'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'size=1m'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=1m'] },
      ...(o.extraMounts ?? []),
    ],
    linux: {
      namespaces: [
        ...(o.pidNamespace === false ? [] : [{ type: 'pid', path: o.join?.pid }]),
        { type: 'mount' },
        { type: 'uts', path: o.join?.uts },
        { type: 'ipc', path: o.join?.ipc },
        { type: 'network', path: o.join?.network },
        ...(o.userns ? [{ type: 'user' }] : []),
      ],
      ...(o.userns
        ? {
            uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
            gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
          }
        : {}),
      maskedPaths: ['/proc/kcore', '/proc/keys'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    },
    capsa: {
      logPath: path.join(dir, 'container.log'),
      cgroupProcs: o.cgroupProcs ?? [],
      memoryCgroup: o.memoryCgroup,
      stdin: o.stdin ?? false,
      stdinOnce: o.stdinOnce ?? false,
    },
  };
  writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec, null, 2));
  return dir;
}

async function exited(dir: string): Promise<ExitFile> {
  const file = path.join(dir, 'exit.json');
  await waitFor('exit.json', () => existsSync(file));
  const monitorPid = pidOf(dir, 'monitor.json');
  if (monitorPid) await waitFor('monitor exit', () => !alive(monitorPid));
  return readJson<ExitFile>(file);
}

function logRecords(file: string): { ts: string; stream: string; tag: string; text: string }[] {
  const text = readFileSync(file, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const m = /^(\S+) (stdout|stderr) ([FP]) (.*)$/s.exec(line);
      if (!m) throw new Error(`bad log line: ${JSON.stringify(line.slice(0, 80))}`);
      expect(m[1]).toMatch(tsRe);
      return { ts: m[1], stream: m[2], tag: m[3], text: m[4] };
    });
}

function procsOf(cgroup: string): number[] {
  return readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

beforeAll(() => {
  execFileSync('make', ['-s', '-C', path.join(repo, 'native/monitor')], { stdio: 'inherit' });
  root = mkdtempSync(path.join(os.tmpdir(), 'capsa-monitor-test-'));
  chmodSync(root, 0o755); // reachable by root of a user namespace (host uid 100000)
  rootfs = buildBusyboxRootfs(path.join(root, 'rootfs'));
});

afterEach(async () => {
  for (const dir of runDirs.splice(0)) {
    for (const f of ['init.json', 'monitor.json']) {
      const pid = pidOf(dir, f);
      if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
    }
    const m = pidOf(dir, 'monitor.json');
    if (m) await waitFor('monitor gone', () => !alive(m));
  }
  for (const pid of extraPids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const cg of cgroups.splice(0)) {
    await waitFor(`${cg} empty`, () => procsOf(cg).length === 0);
    rmdirSync(cg);
  }
  expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(root);
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  for (const c of ['pids', 'memory']) {
    const left = execFileSync('ls', [`/sys/fs/cgroup/${c}`], { encoding: 'utf8' })
      .split('\n')
      .filter((n) => n.startsWith('capsa-test-'));
    expect(left).toEqual([]);
  }
  expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('capsa-monitor-test');
});

describe('capsa-monitor run', () => {
  test('propagates the exit code and records times', async () => {
    const dir = writeSpec(newRunDir(), { args: ['sh', '-c', 'exit 3'] });
    const r = await runMonitor(['run', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const e = await exited(dir);
    expect(e).toMatchObject({ exitCode: 3, signal: 0, oomKilled: false });
    expect(e.startedAt).toMatch(tsRe);
    expect(e.finishedAt).toMatch(tsRe);
    expect(Number(r.stdout.trim())).toBe(e.pid);
    expect(readFileSync(path.join(dir, 'monitor.log'), 'utf8')).toContain('oom_score_adj -100 refused');
  });

  test('a SIGKILLed init exits with 137', async () => {
    const dir = writeSpec(newRunDir(), { args: ['sleep', '100'] });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    const init = pidOf(dir, 'init.json')!;
    expect(alive(init)).toBe(true);
    process.kill(init, 'SIGKILL');
    expect(await exited(dir)).toMatchObject({ exitCode: 137, signal: 9 });
  });

  test('writes the CRI log format, splitting long lines into P records', async () => {
    const script = "echo hello; echo oops >&2; head -c 40000 /dev/zero | tr '\\0' a; echo; echo; printf tail";
    const dir = writeSpec(newRunDir(), { args: ['sh', '-c', script] });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    expect((await exited(dir)).exitCode).toBe(0);
    const recs = logRecords(path.join(dir, 'container.log'));
    const out = recs.filter((r) => r.stream === 'stdout');
    expect(recs.filter((r) => r.stream === 'stderr')).toEqual([expect.objectContaining({ tag: 'F', text: 'oops' })]);
    expect(out.map((r) => [r.tag, r.text.length])).toEqual([
      ['F', 5],
      ['P', 16384],
      ['P', 16384],
      ['F', 40000 - 2 * 16384],
      ['F', 0],
      ['P', 4],
    ]);
    expect(out[0].text).toBe('hello');
    expect(out[5].text).toBe('tail');
  });

  test('reopens the log after rotation (SIGUSR1 and the ctl fifo)', async () => {
    const dir = writeSpec(newRunDir(), { args: ['sh', '-c', 'echo one; sleep 1; echo two; sleep 1; echo three'] });
    const log = path.join(dir, 'container.log');
    expect((await runMonitor(['run', dir])).code).toBe(0);
    await waitFor('first line', () => existsSync(log) && readFileSync(log, 'utf8').includes('one'));
    renameSync(log, `${log}.1`);
    process.kill(pidOf(dir, 'monitor.json')!, 'SIGUSR1');
    await waitFor('reopened log', () => existsSync(log));
    await waitFor('second line', () => readFileSync(log, 'utf8').includes('two'));
    renameSync(log, `${log}.2`);
    writeFileSync(path.join(dir, 'ctl'), 'reopen-log\n', { flag: 'a' });
    await exited(dir);
    expect(logRecords(`${log}.1`).map((r) => r.text)).toEqual(['one']);
    expect(logRecords(`${log}.2`).map((r) => r.text)).toEqual(['two']);
    expect(logRecords(log).map((r) => r.text)).toEqual(['three']);
  });

  test('a missing binary fails the start with a start-error naming it', async () => {
    const dir = writeSpec(newRunDir(), { args: ['/bin/nope'] });
    const r = await runMonitor(['run', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('exec: no such file or directory: /bin/nope');
    // One JSON line: the record the daemon maps without reading the text.
    expect(JSON.parse(readFileSync(path.join(dir, 'start-error'), 'utf8'))).toEqual({
      message: 'exec: no such file or directory: /bin/nope',
      op: 'exec',
      path: '/bin/nope',
      errno: 2,
      code: 'ENOENT',
    });
    const m = pidOf(dir, 'monitor.json')!;
    await waitFor('monitor exit', () => !alive(m));
    expect(existsSync(path.join(dir, 'exit.json'))).toBe(false);

    const dir2 = writeSpec(newRunDir(), { args: ['nope-in-path'] });
    const r2 = await runMonitor(['run', dir2]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('exec: executable file not found in $PATH: nope-in-path');
  });

  test('a bad spec is reported without starting anything', async () => {
    const dir = newRunDir();
    writeFileSync(path.join(dir, 'spec.json'), '{"process": {"args": []}, "root": {"path": "/x"}}');
    const r = await runMonitor(['run', dir]);
    expect(r.code).toBe(1);
    expect(readFileSync(path.join(dir, 'start-error'), 'utf8')).toContain('process.args');
    expect(existsSync(path.join(dir, 'monitor.json'))).toBe(false);
  });

  test('places the init in its cgroups before it execs (wait-start), then starts it', async () => {
    const pids = newCgroup('pids');
    const mem = newCgroup('memory');
    const dir = writeSpec(newRunDir(), {
      args: ['sh', '-c', 'cat /proc/self/cgroup; echo started'],
      cgroupProcs: [path.join(pids, 'cgroup.procs'), path.join(mem, 'cgroup.procs')],
      memoryCgroup: mem,
    });
    const r = await runMonitor(['run', '--wait-start', dir]);
    expect(r.code).toBe(0);
    const init = pidOf(dir, 'init.json')!;
    expect(procsOf(pids)).toEqual([init]);
    expect(procsOf(mem)).toEqual([init]);
    // Still the monitor's code, blocked just before execve.
    expect(readFileSync(`/proc/${init}/cmdline`, 'utf8')).toContain('capsa-monitor');
    expect(existsSync(path.join(dir, 'start'))).toBe(true);
    expect(existsSync(path.join(dir, 'started.json'))).toBe(false);

    const s = await runMonitor(['start', dir]);
    expect(s.stderr).toBe('');
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ pid: init });
    const e = await exited(dir);
    expect(e).toMatchObject({ exitCode: 0, oomKilled: false });
    const text = logRecords(path.join(dir, 'container.log')).map((x) => x.text);
    expect(text).toContain('started');
    expect(text.some((t) => t.endsWith(`pids:/${path.basename(pids)}`))).toBe(true);
    // A second start has nothing to release.
    expect((await runMonitor(['start', dir])).code).toBe(0);
  });

  test('wait-start: an exec failure fails the start, not the create', async () => {
    const dir = writeSpec(newRunDir(), { args: ['/bin/nope'] });
    expect((await runMonitor(['run', '--wait-start', dir])).code).toBe(0);
    const s = await runMonitor(['start', dir]);
    expect(s.code).toBe(1);
    expect(s.stderr).toContain('exec: no such file or directory: /bin/nope');
  });

  test('keeps running when the process that spawned it dies', async () => {
    const dir = writeSpec(newRunDir(), { args: ['sleep', '100'] });
    // A stand-in daemon: a shell that starts the monitor and stays around.
    const daemon = spawn('sh', ['-c', `"${monitor}" run "${dir}"; sleep 100`], { stdio: 'ignore', detached: true });
    extraPids.push(daemon.pid!);
    await waitFor('started', () => existsSync(path.join(dir, 'started.json')));
    process.kill(-daemon.pid!, 'SIGKILL');
    await waitFor('daemon gone', () => !alive(daemon.pid!));
    const m = pidOf(dir, 'monitor.json')!;
    const init = pidOf(dir, 'init.json')!;
    await sleep(200);
    expect(alive(m)).toBe(true);
    expect(alive(init)).toBe(true);
    // Detached: its own session, re-parented away from the daemon.
    const stat = readFileSync(`/proc/${m}/stat`, 'utf8').split(') ')[1].split(' ');
    expect(Number(stat[1])).not.toBe(daemon.pid);
    expect(Number(stat[3])).not.toBe(daemon.pid);
    process.kill(init, 'SIGTERM'); // pid 1 of its namespace ignores TERM without a handler
    process.kill(init, 'SIGKILL');
    expect((await exited(dir)).exitCode).toBe(137);
  });

  test('without its own pid namespace, processes left by the init are killed', async () => {
    const pids = newCgroup('pids');
    const dir = writeSpec(newRunDir(), {
      args: ['sh', '-c', 'sleep 100 & echo $! > /dev/shm/x; exit 0'],
      pidNamespace: false,
      cgroupProcs: [path.join(pids, 'cgroup.procs')],
    });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    expect((await exited(dir)).exitCode).toBe(0);
    expect(procsOf(pids)).toEqual([]);
  });

  test('serves stdin on attach.sock; stdinOnce closes it after the first client', async () => {
    const dir = writeSpec(newRunDir(), { args: ['cat'], stdin: true, stdinOnce: true });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(path.join(dir, 'attach.sock'), () => c.end('hello\nworld\n'));
      c.on('error', reject);
      c.on('close', () => resolve());
    });
    expect((await exited(dir)).exitCode).toBe(0);
    expect(logRecords(path.join(dir, 'container.log')).map((r) => r.text)).toEqual(['hello', 'world']);
  });

  test('a tty: the init has a pty of its own devpts as controlling terminal', async () => {
    const dir = writeSpec(newRunDir(), { args: ['sh', '-c', 'tty; echo hi >&2'], terminal: true });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    expect((await exited(dir)).exitCode).toBe(0);
    const recs = logRecords(path.join(dir, 'container.log'));
    expect(recs.map((r) => [r.stream, r.text])).toEqual([
      ['stdout', '/dev/pts/0\r'],
      ['stdout', 'hi\r'],
    ]);
  });

  test('records an OOM kill from the memory cgroup', async () => {
    const mem = newCgroup('memory');
    writeFileSync(path.join(mem, 'memory.limit_in_bytes'), String(16 << 20));
    const dir = writeSpec(newRunDir(), {
      args: ['sh', '-c', 'head -c 200m /dev/zero | tail -c 100m > /dev/null'],
      cgroupProcs: [path.join(mem, 'cgroup.procs')],
      memoryCgroup: mem,
    });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    expect(await exited(dir)).toMatchObject({ exitCode: 137, oomKilled: true });
  });

  test('a new user namespace: root inside is 100000 outside', async () => {
    const dir = writeSpec(newRunDir(), {
      args: ['sh', '-c', 'id -u; cat /proc/self/uid_map; ls /dev/null; sleep 100'],
      userns: true,
    });
    const r = await runMonitor(['run', dir]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const log = path.join(dir, 'container.log');
    await waitFor('output', () => existsSync(log) && readFileSync(log, 'utf8').includes('/dev/null'));
    const text = logRecords(log).map((x) => x.text.trim().replace(/\s+/g, ' '));
    expect(text).toEqual(['0', '0 100000 65536', '/dev/null']);
    const init = pidOf(dir, 'init.json')!;
    expect(readFileSync(`/proc/${init}/status`, 'utf8')).toMatch(/^Uid:\s+100000\s/m);
    process.kill(init, 'SIGKILL');
    expect((await exited(dir)).exitCode).toBe(137);
  });

  test('joins the namespaces of another container by path (pod / target pid)', async () => {
    const a = writeSpec(newRunDir(), { args: ['sleep', '100'] });
    expect((await runMonitor(['run', a])).code).toBe(0);
    const initA = pidOf(a, 'init.json')!;
    const ns = (pid: number, t: string) => readlinkSync(`/proc/${pid}/ns/${t}`);
    const b = writeSpec(newRunDir(), {
      args: ['sh', '-c', 'ps -o pid,args; sleep 100'],
      join: {
        pid: `/proc/${initA}/ns/pid`,
        network: `/proc/${initA}/ns/net`,
        uts: `/proc/${initA}/ns/uts`,
        ipc: `/proc/${initA}/ns/ipc`,
      },
    });
    expect((await runMonitor(['run', b])).code).toBe(0);
    const initB = pidOf(b, 'init.json')!;
    for (const t of ['pid', 'net', 'uts', 'ipc']) expect(ns(initB, t)).toBe(ns(initA, t));
    expect(ns(initB, 'mnt')).not.toBe(ns(initA, 'mnt'));
    const log = path.join(b, 'container.log');
    await waitFor('ps output', () => existsSync(log) && readFileSync(log, 'utf8').includes('sleep 100'));
    expect(readFileSync(log, 'utf8')).toMatch(/ 1 sleep 100/);
    process.kill(initB, 'SIGKILL');
    expect((await exited(b)).exitCode).toBe(137);
    process.kill(initA, 'SIGKILL');
    await exited(a);
  });

  test('bind mounts: read-only, and a missing source is named', async () => {
    const src = mkdtempSync(path.join(root, 'vol-'));
    writeFileSync(path.join(src, 'f'), 'data\n');
    const dir = writeSpec(newRunDir(), {
      args: ['sh', '-c', 'cat /vol/f; touch /vol/g || echo ro'],
      extraMounts: [{ destination: '/vol', type: 'bind', source: src, options: ['rbind', 'ro', 'rprivate'] }],
    });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    await exited(dir);
    const recs = logRecords(path.join(dir, 'container.log'));
    expect(recs.filter((r) => r.stream === 'stdout').map((r) => r.text)).toEqual(['data', 'ro']);
    expect(recs.filter((r) => r.stream === 'stderr').map((r) => r.text)).toEqual([
      'touch: /vol/g: Read-only file system',
    ]);
    expect(existsSync(path.join(src, 'g'))).toBe(false);

    const bad = writeSpec(newRunDir(), {
      args: ['true'],
      extraMounts: [{ destination: '/vol', source: '/nonexistent/capsa', options: ['rbind'] }],
    });
    const r = await runMonitor(['run', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('mount /vol: source: no such file or directory: /nonexistent/capsa');
    expect(JSON.parse(readFileSync(path.join(bad, 'start-error'), 'utf8'))).toEqual({
      message: 'mount /vol: source: no such file or directory: /nonexistent/capsa',
      op: 'source',
      path: '/nonexistent/capsa',
      mount: '/vol',
      errno: 2,
      code: 'ENOENT',
    });
  });

  test('a bind whose target an image symlink sends into /proc is refused; the lxcfs files may be covered', async () => {
    const src = mkdtempSync(path.join(root, 'vol-'));
    writeFileSync(path.join(src, 'uptime'), '1.00 2.00\n');
    const link = path.join(rootfs, 'into-proc');
    symlinkSync('/proc/sys/kernel', link);
    try {
      const bad = writeSpec(newRunDir(), {
        args: ['true'],
        extraMounts: [{ destination: '/into-proc', source: src, options: ['rbind'] }],
      });
      const r = await runMonitor(['run', bad]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        'mount /into-proc: the target resolves into /proc (/proc/sys/kernel); refusing to mount over procfs',
      );
    } finally {
      rmSync(link);
    }
    const ok = writeSpec(newRunDir(), {
      args: ['cat', '/proc/uptime'],
      extraMounts: [{ destination: '/proc/uptime', source: path.join(src, 'uptime'), options: ['rbind', 'ro'] }],
    });
    expect((await runMonitor(['run', ok])).code).toBe(0);
    await exited(ok);
    expect(logRecords(path.join(ok, 'container.log')).map((x) => x.text)).toEqual(['1.00 2.00']);
  });

  test('RSS of a monitor of a sleeping container', async () => {
    const dir = writeSpec(newRunDir(), { args: ['sleep', '100'] });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    const m = pidOf(dir, 'monitor.json')!;
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${m}/status`, 'utf8'))![1];
    console.log(`capsa-monitor VmRSS: ${rss} kB`);
    expect(Number(rss)).toBeLessThan(2048);
    process.kill(pidOf(dir, 'init.json')!, 'SIGKILL');
    await exited(dir);
  });
});

describe('capsa-monitor exec', () => {
  async function container(cgroupProcs: string[]): Promise<{ dir: string; init: number }> {
    const dir = writeSpec(newRunDir(), { args: ['sleep', '100'], cgroupProcs });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    return { dir, init: pidOf(dir, 'init.json')! };
  }

  function execSpec(dir: string, init: number, args: string[], capsa: Record<string, unknown>): string {
    const execDir = mkdtempSync(path.join(dir, 'exec-'));
    const file = path.join(execDir, 'spec.json');
    writeFileSync(
      file,
      JSON.stringify({
        process: { args, env: ['PATH=/bin'], cwd: '/tmp', user: { uid: 65534, gid: 65534 } },
        capsa: { pid: init, exitFile: path.join(execDir, 'exit.json'), ...capsa },
      }),
    );
    return file;
  }

  test('runs in the container, returns at the timeout even with a background child, leaves nothing', async () => {
    const pids = newCgroup('pids');
    const { dir, init } = await container([path.join(pids, 'cgroup.procs')]);
    const spec = execSpec(dir, init, ['sh', '-c', 'sleep 100 & echo hi; hostname; id -u; pwd'], {
      timeoutMs: 1000,
      cgroupProcs: [path.join(pids, 'cgroup.procs')],
    });
    const t0 = Date.now();
    const r = await runMonitor(['exec', spec], { detached: false });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(res).toMatchObject({ exitCode: 0, timedOut: false, error: null });
    expect(readJson(path.join(path.dirname(spec), 'exit.json'))).toEqual(res);
    expect(readFileSync(path.join(path.dirname(spec), 'stdout'), 'utf8')).toBe('hi\ncapsa-test\n65534\n/tmp\n');
    expect(procsOf(pids)).toEqual([init]);
  });

  test('kills a command that outlives its timeout', async () => {
    const pids = newCgroup('pids');
    const { dir, init } = await container([path.join(pids, 'cgroup.procs')]);
    const spec = execSpec(dir, init, ['sh', '-c', 'echo before; sleep 100; echo after'], {
      timeoutMs: 500,
      cgroupProcs: [path.join(pids, 'cgroup.procs')],
    });
    const r = await runMonitor(['exec', spec], { detached: false });
    expect(JSON.parse(r.stdout)).toMatchObject({ timedOut: true, exitCode: 137, signal: 9 });
    expect(readFileSync(path.join(path.dirname(spec), 'stdout'), 'utf8')).toBe('before\n');
    expect(procsOf(pids)).toEqual([init]);
  });

  test('exit code, stderr, output cap and a missing binary', async () => {
    const { dir, init } = await container([]);
    const spec = execSpec(dir, init, ['sh', '-c', 'echo bad >&2; head -c 5000 /dev/zero; exit 7'], {
      outputLimit: 1000,
    });
    const r = await runMonitor(['exec', spec], { detached: false });
    expect(JSON.parse(r.stdout)).toMatchObject({ exitCode: 7, stdoutBytes: 1000, stdoutTruncated: true });
    expect(readFileSync(path.join(path.dirname(spec), 'stderr'), 'utf8')).toBe('bad\n');

    const missing = execSpec(dir, init, ['/bin/nope'], {});
    const m = await runMonitor(['exec', missing], { detached: false });
    expect(m.code).toBe(1);
    expect(JSON.parse(m.stdout)).toMatchObject({ error: 'exec: no such file or directory: /bin/nope' });
  });
});
