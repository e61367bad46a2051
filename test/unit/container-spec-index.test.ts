import { mkdirSync, mkdtempSync, promises as fs, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../../src/errors';
import {
  ContainerConfig,
  MountPropagation,
  NamespaceMode,
  PodSandboxConfig,
  type DeepPartial,
} from '../../src/gen/runtime/v1/api';
import {
  buildContainerSpec,
  containerLogPath,
  DEFAULT_CAPABILITIES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_PATH,
  type BuildContainerSpecInput,
  type HostDevice,
} from '../../src/cri/container-spec';
import { fieldOfAsync as fieldOf } from '../helpers/invalid';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-spec-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));
const rootfs = path.join(tmp, 'rootfs');
mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/sh\n');
writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nwww:x:33:\nweb:x:500:www\n');

const ID = 'a'.repeat(64);
const sandboxConfig = (over: DeepPartial<PodSandboxConfig> = {}): PodSandboxConfig =>
  PodSandboxConfig.fromPartial({
    metadata: { name: 'pod', namespace: 'default', uid: 'u1', attempt: 0 },
    hostname: 'my-pod',
    logDirectory: '/var/log/pods/default_pod_u1',
    linux: { cgroupParent: '/kubepods/besteffort/podu1', securityContext: {} },
    ...over,
  });
const config = (over: DeepPartial<ContainerConfig> = {}): ContainerConfig =>
  ContainerConfig.fromPartial({
    metadata: { name: 'web', attempt: 0 },
    image: { image: 'sha256:1234' },
    logPath: 'web/0.log',
    linux: {
      resources: { oomScoreAdj: 1000n },
      securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } },
    },
    ...over,
  });
const devs: Record<string, HostDevice> = {
  '/dev/fuse': { path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0 },
};
const input = (over: Partial<BuildContainerSpecInput> = {}): BuildContainerSpecInput => ({
  config: config(),
  sandboxConfig: sandboxConfig(),
  imageConfig: {
    config: {
      Entrypoint: ['/docker-entrypoint.sh'],
      Cmd: ['nginx', '-g', 'daemon off;'],
      Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'NGINX_VERSION=1.25'],
      WorkingDir: '/srv',
      User: 'www',
      Volumes: { '/var/cache/nginx': {} },
      StopSignal: 'SIGQUIT',
    },
  },
  sandbox: {
    nsPaths: { net: '/run/capsa/ns/net-p1', ipc: '/run/capsa/ns/ipc-p1', uts: '/run/capsa/ns/uts-p1' },
    pidNsPath: '/proc/77/ns/pid',
    shmPath: '/run/capsa/shm/capsa-p1-shm',
    hostsPath: '/var/lib/capsa/sandboxes/p1/hosts',
    resolvPath: '/var/lib/capsa/sandboxes/p1/resolv.conf',
    hostnamePath: '/var/lib/capsa/sandboxes/p1/hostname',
    hostNetwork: false,
    hostIpc: false,
    hostPid: false,
    cgroupParent: '/kubepods/besteffort/podu1',
  },
  rootfsPath: rootfs,
  containerId: ID,
  volumesRoot: `/var/lib/capsa/containers/${ID}/volumes`,
  daemonOomScoreAdj: -999,
  daemonNofile: { soft: 1048576, hard: 1048576 },
  nodeHostname: 'node-1',
  io: {
    pathExists: (p) => Promise.resolve(p.startsWith('/var/lib/kubelet/')),
    statDevice: (p) => Promise.resolve(devs[p]),
    targetPidNsPath: (id) => (id === 'other' ? '/proc/99/ns/pid' : undefined),
  },
  ...over,
});

describe('buildContainerSpec', () => {
  test('a typical container: the monitor spec shape, JSON-clean', async () => {
    const { spec, imageVolumes, user, warnings } = await buildContainerSpec(input());
    // Round-trips through JSON unchanged (no bigint, no undefined-only noise).
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
    expect(() => JSON.stringify(spec)).not.toThrow();
    expect(spec.ociVersion).toBe('1.1.0');
    expect(spec.process).toEqual({
      terminal: false,
      user: { uid: 33, gid: 33, additionalGids: [33, 500] },
      args: ['/docker-entrypoint.sh', 'nginx', '-g', 'daemon off;'],
      env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'NGINX_VERSION=1.25', 'HOSTNAME=my-pod', 'HOME=/var/www'],
      cwd: '/srv',
      capabilities: expect.objectContaining({ inheritable: [], ambient: [] }),
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }],
      noNewPrivileges: false,
      oomScoreAdj: 1000,
    });
    expect([...spec.process.capabilities.bounding].sort()).toEqual([...DEFAULT_CAPABILITIES].sort());
    expect(spec.root).toEqual({ path: rootfs, readonly: false });
    expect(spec.hostname).toBeUndefined();
    expect(spec.linux.namespaces).toEqual([
      { type: 'pid' },
      { type: 'network', path: '/run/capsa/ns/net-p1' },
      { type: 'ipc', path: '/run/capsa/ns/ipc-p1' },
      { type: 'uts', path: '/run/capsa/ns/uts-p1' },
      { type: 'mount' },
    ]);
    expect(spec.linux.maskedPaths).toEqual(DEFAULT_MASKED_PATHS);
    expect(spec.linux.cgroupsPath).toBe(`/kubepods/besteffort/podu1/capsa-${ID}`);
    expect(spec.linux.rootfsPropagation).toBe('rslave');
    expect(spec.linux.resources.devices[0]).toEqual({ allow: false, access: 'rwm' });
    expect(spec.linux.sysctl).toBeUndefined();
    expect(spec.capsa).toEqual({
      containerId: ID,
      logPath: '/var/log/pods/default_pod_u1/web/0.log',
      stdin: false,
      stdinOnce: false,
      seccomp: { type: 'Unconfined' },
      apparmor: { type: 'RuntimeDefault' },
    });
    expect(spec.mounts.map((m) => m.destination)).toEqual([
      '/proc',
      '/dev',
      '/sys',
      '/dev/pts',
      '/dev/mqueue',
      '/dev/shm',
      '/etc/hostname',
      '/etc/hosts',
      '/etc/resolv.conf',
      '/var/cache/nginx',
    ]);
    expect(imageVolumes).toEqual([
      { containerPath: '/var/cache/nginx', hostPath: expect.stringMatching(/volumes\/[0-9a-f]{16}$/) },
    ]);
    expect(user).toMatchObject({ uid: 33, username: 'www', home: '/var/www' });
    expect(warnings).toEqual([]);
  });

  test('everything the request can set', async () => {
    const { spec } = await buildContainerSpec(
      input({
        config: config({
          command: ['/bin/sh'],
          args: ['-c', 'sleep 1'],
          workingDir: '/tmp',
          envs: [{ key: 'A', value: Buffer.from('1') }],
          tty: true,
          stdin: true,
          stdinOnce: true,
          mounts: [
            {
              containerPath: '/data',
              hostPath: '/var/lib/kubelet/pods/u1/volumes/x',
              propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL,
            },
            { containerPath: '/etc/hosts', hostPath: '/var/lib/kubelet/pods/u1/etc-hosts' },
          ],
          devices: [{ hostPath: '/dev/fuse', containerPath: '/dev/fuse', permissions: 'rw' }],
          linux: {
            resources: {
              cpuShares: 256n,
              cpuQuota: 20000n,
              cpuPeriod: 100000n,
              memoryLimitInBytes: 134217728n,
              oomScoreAdj: -997n,
            },
            securityContext: {
              runAsUser: { value: 1000n },
              runAsGroup: { value: 3000n },
              supplementalGroups: [2000n],
              readonlyRootfs: true,
              noNewPrivs: true,
              capabilities: { addCapabilities: ['NET_ADMIN'], dropCapabilities: ['ALL'] },
              namespaceOptions: { pid: NamespaceMode.POD },
              seccomp: { profileType: 0, localhostRef: '' },
            },
          },
        }),
        restrictOomScoreAdj: true,
        cgroupsPath: '/custom/cg',
        pidsLimit: 1024,
        cgroupNamespace: true,
        cgroupBinds: [{ source: '/sys/fs/cgroup/custom/cg', destination: '/sys/fs/cgroup' }],
      }),
    );
    expect(spec.process).toMatchObject({
      terminal: true,
      user: { uid: 1000, gid: 3000, additionalGids: [3000, 2000] },
      args: ['/bin/sh', '-c', 'sleep 1'],
      cwd: '/tmp',
      noNewPrivileges: true,
      oomScoreAdj: -997,
      capabilities: { bounding: ['CAP_NET_ADMIN'] },
    });
    expect(spec.process.env).toEqual([
      'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
      'NGINX_VERSION=1.25',
      'HOSTNAME=my-pod',
      'A=1',
      'HOME=/',
      'TERM=xterm',
    ]);
    expect(spec.root.readonly).toBe(true);
    expect(spec.linux.namespaces[0]).toEqual({ type: 'pid', path: '/proc/77/ns/pid' });
    expect(spec.linux.namespaces.at(-1)).toEqual({ type: 'cgroup' });
    expect(spec.linux.rootfsPropagation).toBe('rshared');
    expect(spec.linux.devices).toEqual([
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
    ]);
    expect(spec.linux.resources).toMatchObject({
      cpu: { shares: 256, quota: 20000, period: 100000 },
      memory: { limit: 134217728 },
      pids: { limit: 1024 },
    });
    expect(spec.linux.resources.devices.at(-1)).toEqual({
      allow: true,
      type: 'c',
      major: 10,
      minor: 229,
      access: 'rw',
    });
    expect(spec.linux.cgroupsPath).toBe('/custom/cg');
    expect(spec.capsa).toMatchObject({ stdin: true, stdinOnce: true, seccomp: { type: 'RuntimeDefault' } });
    const hosts = spec.mounts.filter((m) => m.destination === '/etc/hosts');
    expect(hosts).toEqual([expect.objectContaining({ source: '/var/lib/kubelet/pods/u1/etc-hosts' })]);
    expect(spec.mounts.find((m) => m.destination === '/etc/resolv.conf')?.options).toContain('ro');
    expect(spec.mounts.find((m) => m.destination === '/sys/fs/cgroup')).toMatchObject({
      type: 'bind',
      source: '/sys/fs/cgroup/custom/cg',
    });
  });

  test("restricted oom_score_adj: never below the daemon's", async () => {
    const r = await buildContainerSpec(
      input({
        restrictOomScoreAdj: true,
        daemonOomScoreAdj: -500,
        config: config({ linux: { resources: { oomScoreAdj: -999n } } }),
      }),
    );
    expect(r.spec.process.oomScoreAdj).toBe(-500);
  });

  test('host network and IPC pod, host PID container', async () => {
    const { spec } = await buildContainerSpec(
      input({
        sandbox: { ...input().sandbox, hostNetwork: true, hostIpc: true, hostPid: true, nsPaths: {} },
        config: config({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.NODE } } } }),
      }),
    );
    expect(spec.linux.namespaces).toEqual([{ type: 'mount' }]);
    expect(spec.process.env).toContain('HOSTNAME=node-1');
    expect(spec.mounts.find((m) => m.destination === '/dev/shm')?.source).toBe('/dev/shm');
  });

  test('privileged container in a privileged pod', async () => {
    const { spec } = await buildContainerSpec(
      input({
        sandboxConfig: sandboxConfig({ linux: { securityContext: { privileged: true } } }),
        config: config({
          linux: { securityContext: { privileged: true, capabilities: { dropCapabilities: ['ALL'] } } },
        }),
        capLastCap: 40,
        io: { ...input().io, listHostDevices: () => Promise.resolve(Object.values(devs)) },
      }),
    );
    expect(spec.process.capabilities.bounding).toHaveLength(41);
    expect(spec.linux.maskedPaths).toEqual([]);
    expect(spec.linux.readonlyPaths).toEqual([]);
    expect(spec.linux.resources.devices).toEqual([{ allow: true, access: 'rwm' }]);
    expect(spec.linux.devices.map((d) => d.path)).toEqual(['/dev/fuse']);
    expect(spec.mounts.find((m) => m.destination === '/sys')?.options).toContain('rw');
    expect(spec.capsa.seccomp).toEqual({ type: 'Unconfined' });
  });

  test('TARGET pid namespace', async () => {
    const { spec } = await buildContainerSpec(
      input({
        config: config({
          linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: 'other' } } },
        }),
      }),
    );
    expect(spec.linux.namespaces[0]).toEqual({ type: 'pid', path: '/proc/99/ns/pid' });
  });

  test('no log path when kubelet gives none; an explicit one wins', async () => {
    expect((await buildContainerSpec(input({ config: config({ logPath: '' }) }))).spec.capsa.logPath).toBeUndefined();
    expect((await buildContainerSpec(input({ logPath: '/x/y.log' }))).spec.capsa.logPath).toBe('/x/y.log');
  });

  test('default PATH when the image has none', async () => {
    const { spec } = await buildContainerSpec(input({ imageConfig: { config: { Cmd: ['/app'] } } }));
    expect(spec.process.env[0]).toBe(`PATH=${DEFAULT_PATH}`);
    expect(spec.process.user).toEqual({ uid: 0, gid: 0, additionalGids: [0] });
    expect(spec.process.cwd).toBe('/');
  });

  const SC = 'config.linux.security_context';
  const errors: [string, () => BuildContainerSpecInput, string][] = [
    ['no command anywhere', () => input({ imageConfig: {} }), 'config.command'],
    [
      'unknown run_as_username',
      () => input({ config: config({ linux: { securityContext: { runAsUsername: 'nobody-here' } } }) }),
      `${SC}.run_as_username`,
    ],
    ['unknown image user', () => input({ imageConfig: { config: { Cmd: ['/x'], User: 'ghost' } } }), 'config.image'],
    [
      'privileged in an unprivileged pod',
      () => input({ config: config({ linux: { securityContext: { privileged: true } } }) }),
      `${SC}.privileged`,
    ],
    [
      'relative mount path',
      () => input({ config: config({ mounts: [{ containerPath: 'data', hostPath: '/var/lib/kubelet/x' }] }) }),
      'config.mounts[0].container_path',
    ],
    [
      'missing host path',
      () => input({ config: config({ mounts: [{ containerPath: '/data', hostPath: '/nonexistent' }] }) }),
      'config.mounts[0].host_path',
    ],
    [
      'bad device',
      () => input({ config: config({ devices: [{ hostPath: '/etc/passwd' }] }) }),
      'config.devices[0].host_path',
    ],
    [
      'absurd memory',
      () => input({ config: config({ linux: { resources: { memoryLimitInBytes: -5n } } }) }),
      'config.linux.resources.memory_limit_in_bytes',
    ],
    [
      'absurd cpu shares',
      () => input({ config: config({ linux: { resources: { cpuShares: 1n << 40n } } }) }),
      'config.linux.resources.cpu_shares',
    ],
    [
      'oom score out of range',
      () => input({ config: config({ linux: { resources: { oomScoreAdj: 5000n } } }) }),
      'config.linux.resources.oom_score_adj',
    ],
    [
      'unknown capability',
      () => input({ config: config({ linux: { securityContext: { capabilities: { addCapabilities: ['BOGUS'] } } } }) }),
      `${SC}.capabilities.add_capabilities[0]`,
    ],
    ['relative working dir', () => input({ config: config({ workingDir: 'x' }) }), 'config.working_dir'],
    [
      'bad env key',
      () => input({ config: config({ envs: [{ key: 'A=B', value: Buffer.from('') }] }) }),
      'config.envs[0].key',
    ],
    [
      'log path escaping the log dir',
      () => input({ config: config({ logPath: '../../../etc/cron.d/x' }) }),
      'config.log_path',
    ],
    [
      'TARGET of an unknown container',
      () =>
        input({
          config: config({
            linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: 'nope' } } },
          }),
        }),
      `${SC}.namespace_options.target_id`,
    ],
    [
      'POD pid without a pod pid namespace',
      () =>
        input({
          sandbox: { ...input().sandbox, pidNsPath: undefined },
          config: config({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } } }),
        }),
      `${SC}.namespace_options.pid`,
    ],
  ];
  test.each(errors)('error: %s', async (_name, make, field) => {
    expect(await fieldOf(buildContainerSpec(make()))).toBe(field);
  });
});

describe('containerLogPath', () => {
  const c = (logPath: string): ContainerConfig => ContainerConfig.fromPartial({ logPath });
  const s = (logDirectory: string): PodSandboxConfig => PodSandboxConfig.fromPartial({ logDirectory });
  test.each([
    ['web/0.log', '/var/log/pods/p', '/var/log/pods/p/web/0.log'],
    ['web/0.log', '/var/log/pods/p/', '/var/log/pods/p/web/0.log'],
    ['a/../b.log', '/logs', '/logs/b.log'],
    ['', '/logs', undefined],
    ['x.log', '', undefined],
  ])('%j in %j → %j', (logPath, dir, want) => {
    expect(containerLogPath(c(logPath), s(dir))).toBe(want);
  });
  test.each([
    ['../x.log', '/logs', 'config.log_path'],
    ['.', '/logs', 'config.log_path'],
    ['x.log', 'relative/dir', 'sandbox_config.log_directory'],
    ['x\0.log', '/logs', 'config.log_path'],
  ])('error: %j in %j', (logPath, dir, field) => {
    try {
      containerLogPath(c(logPath), s(dir));
    } catch (err) {
      expect((err as InvalidArgumentError).context.field).toBe(field);
      return;
    }
    throw new Error('expected an error');
  });
});
