// The OCI bundle of an "oci" RuntimeClass handler (launcher/oci/bundle.ts):
// config.json is the launch spec without capsa's extension, and the
// runtime's own launch spec is a host process in the foreground.
import { bundleDir, ociConfigOf, runtimeProcessSpec } from '../../src/containerizer/launcher/oci/bundle';
import type { LaunchSpec } from '../../src/containerizer/launcher/spec';

function spec(): LaunchSpec {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 1000, gid: 1000, additionalGids: [5] },
      args: ['sleep', '1000'],
      env: ['PATH=/bin'],
      cwd: '/work',
      capabilities: {
        bounding: ['CAP_KILL'],
        effective: ['CAP_KILL'],
        inheritable: [],
        permitted: ['CAP_KILL'],
        ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
      oomScoreAdj: 900,
    },
    root: { path: '/run/capsa/containers/x/rootfs', readonly: true },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] }],
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'mount' },
        { type: 'network', path: '/run/capsa/ns/capsa-p-net' },
        { type: 'ipc', path: '/run/capsa/ns/capsa-p-ipc' },
        { type: 'uts', path: '/run/capsa/ns/capsa-p-uts' },
      ],
      devices: [],
      resources: { devices: [{ allow: false, access: 'rwm' }], memory: { limit: 1 << 26 }, pids: { limit: 50 } },
      cgroupsPath: '/capsa/capsa-p/capsa-x',
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
      rootfsPropagation: 'rslave',
      seccomp: { defaultAction: 'SCMP_ACT_ERRNO', architectures: [], syscalls: [] },
    },
    capsa: {
      containerId: 'x',
      logPath: '/var/log/pods/x/0.log',
      stdin: false,
      stdinOnce: false,
      cgroupProcs: ['/sys/fs/cgroup/memory/capsa/capsa-p/capsa-x/cgroup.procs'],
      memoryCgroup: '/sys/fs/cgroup/memory/capsa/capsa-p/capsa-x',
      seccomp: { type: 'RuntimeDefault' },
      apparmor: { type: 'Unconfined' },
      runtimeHandler: 'runc',
    },
  };
}

describe('OCI bundle', () => {
  test("config.json: the launch spec as the runtime-spec has it, capsa's extension left out", () => {
    const s = spec();
    const c = ociConfigOf(s) as Record<string, Record<string, unknown>>;
    expect(Object.keys(c).sort()).toEqual(['linux', 'mounts', 'ociVersion', 'process', 'root']);
    expect(c.process).toEqual(s.process);
    expect(c.root).toEqual(s.root);
    expect(c.mounts).toEqual(s.mounts);
    expect(c.linux).toEqual({
      namespaces: s.linux.namespaces,
      devices: [],
      resources: s.linux.resources,
      cgroupsPath: '/capsa/capsa-p/capsa-x',
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
      rootfsPropagation: 'rslave',
      seccomp: s.linux.seccomp,
    });
  });

  test("the runtime process: `<runtime> run` on the bundle, on the host, with the container's stdio and log", () => {
    const s = spec();
    const r = runtimeProcessSpec(s, {
      binary: '/usr/sbin/runc',
      root: '/run/capsa/runtimes/runc',
      runDir: '/run/capsa/containers/x',
      id: 'x',
    });
    expect(r.process.args).toEqual([
      '/usr/sbin/runc',
      '--root=/run/capsa/runtimes/runc',
      '--log=/run/capsa/containers/x/runtime.log',
      '--log-format=json',
      'run',
      `--bundle=${bundleDir('/run/capsa/containers/x')}`,
      '--pid-file=/run/capsa/containers/x/runtime.pid',
      'x',
    ]);
    expect(r.process.user).toEqual({ uid: 0, gid: 0, additionalGids: [] });
    expect(r.process.cwd).toBe('/run/capsa/containers/x/bundle');
    expect(r.linux.namespaces).toEqual([]);
    expect(r.mounts).toEqual([]);
    expect(r.linux.seccomp).toBeUndefined();
    // Recovery finds the cgroup by it; the runtime, not the monitor, places the container there.
    expect(r.linux.cgroupsPath).toBe(s.linux.cgroupsPath);
    expect(r.capsa).toMatchObject({
      hostProcess: true,
      killOnExit: false,
      cgroupProcs: [],
      memoryCgroup: s.capsa.memoryCgroup,
      logPath: s.capsa.logPath,
    });
  });
});
