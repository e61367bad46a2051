// Seccomp end to end through capsa-monitor (as root): the daemon's resolved
// profiles (RuntimeDefault from src/cri/seccomp, a Localhost file) loaded
// into a busybox container's init and into ExecSync commands.
import { execFileSync } from 'child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultSeccompProfile, parseProfile, type SeccompSpec } from '../../src/cri/seccomp';
import { DEFAULT_CAPABILITIES } from '../../src/cri/container-spec';
import { buildBusyboxRootfs } from '../helpers/rootfs';
import { alive, runMonitor, sleep, waitFor } from '../helpers/monitor-run';

const repo = path.resolve(__dirname, '../../..');
// $CAPSA_MONITOR: test that build instead (then nothing is built here).

function pidOf(dir: string, file: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

let root: string;
let rootfs: string;
const runDirs: string[] = [];

interface Opts {
  args: string[];
  seccomp?: SeccompSpec;
  caps?: readonly string[];
  noNewPrivileges?: boolean;
  uid?: number;
}

function writeSpec(o: Opts): string {
  const dir = mkdtempSync(path.join(root, 'run-'));
  runDirs.push(dir);
  const caps = [...(o.caps ?? DEFAULT_CAPABILITIES)];
  const spec = {
    process: {
      args: o.args,
      env: ['PATH=/bin'],
      cwd: '/',
      user: { uid: o.uid ?? 0, gid: o.uid ?? 0 },
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      noNewPrivileges: o.noNewPrivileges ?? true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'capsa-test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755', 'size=1m'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=1m', 'mode=1777'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }],
      ...(o.seccomp ? { seccomp: o.seccomp } : {}),
    },
    capsa: { logPath: path.join(dir, 'container.log') },
  };
  writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec));
  return dir;
}

/** Runs the container to its end: exit code and its output (stdout and stderr, in order). */
async function runToExit(o: Opts): Promise<{ exitCode: number; output: string; dir: string }> {
  const dir = writeSpec(o);
  const r = await runMonitor(['run', dir]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const exitFile = path.join(dir, 'exit.json');
  await waitFor('exit.json', () => existsSync(exitFile));
  const m = pidOf(dir, 'monitor.json');
  if (m) await waitFor('monitor exit', () => !alive(m));
  const log = path.join(dir, 'container.log');
  const output = existsSync(log)
    ? readFileSync(log, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ').slice(3).join(' '))
        .join('\n')
    : '';
  return { exitCode: (JSON.parse(readFileSync(exitFile, 'utf8')) as { exitCode: number }).exitCode, output, dir };
}

const CHMOD_BLOCKED = parseProfile(
  JSON.stringify({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['chmod', 'fchmodat', 'fchmodat2'], action: 'SCMP_ACT_ERRNO' }],
  }),
  { where: 'test', capabilities: [] },
)!;

beforeAll(() => {
  if (!process.env.CAPSA_MONITOR) {
    execFileSync('make', ['-s', '-C', path.join(repo, 'native/monitor')], { stdio: 'inherit' });
  }
  root = mkdtempSync(path.join(os.tmpdir(), 'capsa-seccomp-test-'));
  chmodSync(root, 0o755);
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
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
  expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('capsa-seccomp-test');
});

describe('RuntimeDefault', () => {
  test('filters (Seccomp: 2) and refuses unshare and mount without CAP_SYS_ADMIN', async () => {
    const r = await runToExit({
      args: [
        'sh',
        '-c',
        'grep "^Seccomp:" /proc/self/status; unshare -U true || echo unshare=$?; ' +
          'mount -t tmpfs t /tmp || echo mount=$?; hostname other || echo hostname=$?; echo done',
      ],
      seccomp: defaultSeccompProfile(DEFAULT_CAPABILITIES),
    });
    expect(r.exitCode).toBe(0);
    expect(r.output).toMatch(/Seccomp:\s+2/);
    expect(r.output).toMatch(/unshare: .*Operation not permitted/);
    expect(r.output).toContain('unshare=1');
    expect(r.output).toContain('mount=');
    expect(r.output).toContain('hostname=1');
    expect(r.output).toContain('done');
  });

  test('with CAP_SYS_ADMIN: sethostname works; without no_new_privs the filter is loaded before the caps drop', async () => {
    const caps = [...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'];
    const r = await runToExit({
      args: ['sh', '-c', 'hostname renamed && hostname; grep "^NoNewPrivs:\\|^Seccomp:" /proc/self/status'],
      seccomp: defaultSeccompProfile(caps),
      caps,
      noNewPrivileges: false,
    });
    expect(r.exitCode).toBe(0);
    expect(r.output).toContain('renamed');
    expect(r.output).toMatch(/NoNewPrivs:\s+0/);
    expect(r.output).toMatch(/Seccomp:\s+2/);
  });

  test('a non-root user without no_new_privs and without CAP_SYS_ADMIN still gets the filter', async () => {
    const r = await runToExit({
      args: ['sh', '-c', 'id -u; grep "^NoNewPrivs:\\|^Seccomp:" /proc/self/status; unshare -U true || echo refused'],
      seccomp: defaultSeccompProfile(DEFAULT_CAPABILITIES),
      noNewPrivileges: false,
      uid: 65534,
    });
    expect(r.exitCode).toBe(0);
    expect(r.output).toContain('65534');
    expect(r.output).toMatch(/NoNewPrivs:\s+0/);
    expect(r.output).toMatch(/Seccomp:\s+2/);
    expect(r.output).toContain('refused');
  });
});

describe('Localhost and unconfined', () => {
  test('a profile blocking chmod makes chmod fail with EPERM', async () => {
    const r = await runToExit({ args: ['chmod', '400', '/tmp'], seccomp: CHMOD_BLOCKED });
    expect(r.exitCode).not.toBe(0);
    expect(r.output).toContain('Operation not permitted');
  });

  test('unconfined: no filter, chmod works', async () => {
    const r = await runToExit({ args: ['sh', '-c', 'grep "^Seccomp:" /proc/self/status; chmod 400 /tmp && echo ok'] });
    expect(r.exitCode).toBe(0);
    expect(r.output).toMatch(/Seccomp:\s+0/);
    expect(r.output).toContain('ok');
  });

  test('unknown syscall names are skipped and logged; actions with errnoRet and arg conditions', async () => {
    const seccomp: SeccompSpec = {
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
      syscalls: [
        { names: ['no_such_syscall', 'mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 28 },
        // kill(pid, 0) allowed, kill with a real signal refused (arg 1 != 0).
        { names: ['kill'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 0, op: 'SCMP_CMP_NE' }] },
      ],
    };
    const r = await runToExit({
      args: [
        'sh',
        '-c',
        'mkdir /tmp/x || echo mkdir=$?; kill -0 1 && echo probe-ok; kill -TERM 1 || echo term-refused',
      ],
      seccomp,
    });
    expect(r.output).toMatch(/mkdir: .*No space left on device/);
    expect(r.output).toContain('probe-ok');
    expect(r.output).toContain('term-refused');
    expect(readFileSync(path.join(r.dir, 'monitor.log'), 'utf8')).toContain(
      'seccomp: unknown syscall no_such_syscall skipped',
    );
  });

  test('SCMP_ACT_KILL_PROCESS kills the process with SIGSYS', async () => {
    const r = await runToExit({
      args: ['chmod', '400', '/tmp'],
      seccomp: {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: [],
        syscalls: [{ names: ['chmod', 'fchmodat'], action: 'SCMP_ACT_KILL_PROCESS' }],
      },
    });
    expect(r.exitCode).toBe(128 + 31);
  });

  test('a bad profile fails the start with the spec error', async () => {
    const dir = writeSpec({
      args: ['true'],
      seccomp: { defaultAction: 'SCMP_ACT_NOPE' as 'SCMP_ACT_ALLOW', architectures: [], syscalls: [] },
    });
    const r = await runMonitor(['run', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('linux.seccomp.defaultAction: unknown action SCMP_ACT_NOPE');
  });
});

describe('ExecSync commands get the container filter', () => {
  test('exec: Seccomp 2 and chmod blocked', async () => {
    const dir = writeSpec({ args: ['sleep', '100'], seccomp: CHMOD_BLOCKED });
    expect((await runMonitor(['run', dir])).code).toBe(0);
    const init = pidOf(dir, 'init.json')!;
    const execDir = mkdtempSync(path.join(dir, 'exec-'));
    const file = path.join(execDir, 'spec.json');
    writeFileSync(
      file,
      JSON.stringify({
        process: {
          args: ['sh', '-c', 'grep "^Seccomp:" /proc/self/status; chmod 400 /tmp || echo chmod-refused'],
          env: ['PATH=/bin'],
          cwd: '/',
          user: { uid: 0, gid: 0 },
        },
        linux: { seccomp: CHMOD_BLOCKED },
        capsa: { pid: init, exitFile: path.join(execDir, 'exit.json') },
      }),
    );
    const r = await runMonitor(['exec', file], { detached: false });
    expect(JSON.parse(r.stdout)).toMatchObject({ exitCode: 0, error: null });
    expect(r.code).toBe(0);
    const out = readFileSync(path.join(execDir, 'stdout'), 'utf8');
    expect(out).toMatch(/Seccomp:\s+2/);
    expect(out).toContain('chmod-refused');
    expect(readFileSync(path.join(execDir, 'stderr'), 'utf8')).toContain('Operation not permitted');
  });
});

describe('cost', () => {
  test('the monitor keeps its RSS under 1 MiB with the default profile (the filter is built in the init)', async () => {
    const rssOf = (pid: number): number =>
      Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    const measure = async (seccomp?: SeccompSpec): Promise<number> => {
      const dir = writeSpec({ args: ['sleep', '100'], seccomp });
      expect((await runMonitor(['run', dir])).code).toBe(0);
      await sleep(100);
      return rssOf(pidOf(dir, 'monitor.json')!);
    };
    const plain = await measure();
    const filtered = await measure(defaultSeccompProfile(DEFAULT_CAPABILITIES));
    console.log(`capsa-monitor VmRSS: ${plain} kB unconfined, ${filtered} kB with RuntimeDefault`);
    expect(filtered).toBeLessThan(1024);
  });
});
