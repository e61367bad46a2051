// The launch spec of a process capsa-monitor runs on the host for a
// container (capsa.hostProcess): an OCI runtime's `run`, or a held
// `criu restore`. It has no namespaces, filesystem, credentials or
// capabilities of its own (the monitor skips all of that for it); only its
// argv, directory, terminal and the container's cgroup and OOM score come
// from the caller. Each caller then fills in its own `capsa` part.
import type { LaunchSpec } from './spec';

export function hostProcessSpec(
  spec: LaunchSpec,
  o: { args: string[]; cwd: string; terminal: boolean },
): Omit<LaunchSpec, 'capsa'> {
  const noCaps = { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] };
  return {
    ociVersion: spec.ociVersion,
    process: {
      terminal: o.terminal,
      user: { uid: 0, gid: 0, additionalGids: [] },
      args: o.args,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: o.cwd,
      capabilities: noCaps,
      rlimits: [],
      noNewPrivileges: false,
      oomScoreAdj: spec.process.oomScoreAdj,
    },
    root: { path: '/', readonly: false },
    mounts: [],
    linux: {
      namespaces: [],
      devices: [],
      resources: { devices: [] },
      // Recovery reads an orphaned run dir's spec.json for the cgroup.
      cgroupsPath: spec.linux.cgroupsPath,
      maskedPaths: [],
      readonlyPaths: [],
      rootfsPropagation: 'rprivate',
    },
  };
}
