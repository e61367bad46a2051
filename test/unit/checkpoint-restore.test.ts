// Restore's pure pieces (src/containerizer/criu/restore.ts): criu restore's
// arguments as a table, the pending archives by token (taken once, removed
// when not taken), and the writable layer put onto a rootfs with real tar
// (files, then the deletions; none outside the rootfs).
import { execFileSync } from 'child_process';
import { existsSync, mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ARCHIVE } from '../../src/containerizer/criu/archive';
import {
  PendingRestores,
  RESTORE_ENV,
  WAITER,
  applyLayer,
  criuRestoreArgs,
  restoreProcessSpec,
  restoreTokenOf,
} from '../../src/containerizer/criu/restore';
import type { LaunchSpec } from '../../src/containerizer/launcher/spec';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-checkpoint-restore-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

test('criu restore: images, root, pidfile; netns as fd 3, IPC/UTS joined, stdio and mounts by their dump names; the waiter', () => {
  const args = criuRestoreArgs({
    criu: '/opt/criu',
    runDir: '/run/c/1',
    rootfs: '/run/c/1/rootfs',
    netns: '/run/ns/net',
    joinNs: [{ type: 'ipc', path: '/run/ns/ipc' }],
    stdio: ['/dev/null', 'pipe:[11]', 'pipe:[12]'],
    stdioFiles: [{ fd: 0, key: 'file[18:5]' }],
    externalMounts: new Map([
      ['/etc/hosts', '/var/lib/capsa/sb/hosts'],
      ['/data', '/vol/x'],
    ]),
  });
  // /bin/sh opens the netns as fd 3 and execs criu with the rest.
  expect(args.slice(0, 5)).toEqual(['/bin/sh', '-c', 'exec "$@" 3<"$0"', '/run/ns/net', '/opt/criu']);
  const after = (flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
  expect(after('--images-dir')).toEqual(['/run/c/1/restore/checkpoint']);
  expect(after('--root')).toEqual(['/run/c/1/rootfs']);
  expect(after('--pidfile')).toEqual(['/run/c/1/restored.pid']);
  expect(after('--manage-cgroups=ignore')).toHaveLength(1);
  expect(after('--inherit-fd')).toEqual([
    'fd[3]:extRootNetNS',
    'fd[1]:pipe:[11]',
    'fd[2]:pipe:[12]',
    'fd[0]:file[18:5]',
  ]);
  expect(after('--join-ns')).toEqual(['ipc:/run/ns/ipc']);
  expect(after('--ext-mount-map')).toEqual(['/data:/vol/x', '/etc/hosts:/var/lib/capsa/sb/hosts']);
  expect(args.slice(args.indexOf('--exec-cmd'))).toEqual(['--exec-cmd', '--', ...WAITER]);
  // Host network: fd 3 is /dev/null and nothing claims it.
  const host = criuRestoreArgs({
    criu: 'criu',
    runDir: '/r',
    rootfs: '/r/rootfs',
    joinNs: [],
    stdio: [],
    stdioFiles: [],
    externalMounts: new Map(),
  });
  expect(host[3]).toBe('/dev/null');
  expect(host).not.toContain('--inherit-fd');
});

test('the waiter exits as its child did: the code, or 128 + the signal', () => {
  const status = (child: string): number => {
    try {
      execFileSync('/bin/sh', ['-c', `${child} & exec "$@"`, 'sh', ...WAITER]);
      return 0;
    } catch (err) {
      return (err as { status: number }).status;
    }
  };
  expect(status('sh -c "exit 7"')).toBe(7);
  expect(status('sh -c "kill -9 \\$\\$"')).toBe(137);
});

test('PendingRestores: a token is taken once; release removes an archive nobody took', async () => {
  const p = new PendingRestores();
  const a = path.join(tmp, 'a');
  const b = path.join(tmp, 'b');
  await fs.mkdir(a);
  await fs.mkdir(b);
  const ta = p.add(a);
  const tb = p.add(b);
  expect(ta).toMatch(/^[0-9a-f]{32}$/);
  expect(ta).not.toBe(tb);
  expect(p.take(ta)).toBe(a);
  expect(p.take(ta)).toBeUndefined();
  await p.release(ta); // taken: its dir is the taker's
  expect(existsSync(a)).toBe(true);
  await p.release(tb);
  expect(existsSync(b)).toBe(false);
  const spec = { process: { env: ['PATH=/bin', `${RESTORE_ENV}=${tb}`] } } as unknown as LaunchSpec;
  expect(restoreTokenOf(spec)).toBe(tb);
  expect(restoreTokenOf({ process: { env: ['PATH=/bin'] } } as unknown as LaunchSpec)).toBeUndefined();
});

test('applyLayer: the diff tar onto the rootfs, then deleted.files (never outside it)', async () => {
  const archive = path.join(tmp, 'archive');
  const upper = path.join(tmp, 'upper');
  const rootfs = path.join(tmp, 'rootfs');
  await fs.mkdir(path.join(upper, 'tmp'), { recursive: true });
  await fs.writeFile(path.join(upper, 'tmp', 'count'), '42\n');
  await fs.mkdir(archive);
  execFileSync('tar', ['-C', upper, '-cf', path.join(archive, ARCHIVE.rootfsDiff), 'tmp', 'tmp/count']);
  await fs.mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await fs.writeFile(path.join(rootfs, 'etc', 'motd'), 'hi');
  await fs.writeFile(path.join(tmp, 'outside'), 'keep');
  await fs.writeFile(path.join(archive, ARCHIVE.deletedFiles), JSON.stringify(['etc/motd', '../outside']));
  await applyLayer(archive, rootfs, AbortSignal.timeout(10_000));
  expect(await fs.readFile(path.join(rootfs, 'tmp', 'count'), 'utf8')).toBe('42\n');
  expect(existsSync(path.join(rootfs, 'etc', 'motd'))).toBe(false);
  expect(await fs.readFile(path.join(tmp, 'outside'), 'utf8')).toBe('keep');
});

test("the held criu restore: a host process in the container's cgroups, never another runtime's", () => {
  const spec = {
    ociVersion: '1.1.0',
    process: { terminal: false, oomScoreAdj: 5, env: [] },
    linux: { cgroupsPath: '/capsa/x' },
    capsa: {
      containerId: 'x',
      logPath: '/var/log/pods/x.log',
      cgroupProcs: ['/sys/fs/cgroup/memory/capsa/x/cgroup.procs'],
      runtimeHandler: 'runc',
      hostProcess: false,
      killOnExit: true,
    },
  } as unknown as LaunchSpec;
  const held = restoreProcessSpec(spec, ['/bin/sh', '-c', 'true'], '/run/c/x');
  expect(held.process.args).toEqual(['/bin/sh', '-c', 'true']);
  expect(held.process.cwd).toBe('/run/c/x');
  expect(held.linux.namespaces).toEqual([]);
  expect(held.root.path).toBe('/');
  expect(held.capsa).toMatchObject({
    containerId: 'x',
    logPath: '/var/log/pods/x.log',
    cgroupProcs: ['/sys/fs/cgroup/memory/capsa/x/cgroup.procs'],
    hostProcess: true,
    killOnExit: false,
  });
  expect(held.capsa.runtimeHandler).toBeUndefined();
});
