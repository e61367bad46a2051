// The OCI bundle an OCI runtime handler (runc, crun) runs a container from:
// config.json written from the same launch spec capsa's own launcher runs
// (spec.ts is already the runtime-spec subset capsa uses, plus its "capsa"
// extension, which stays out of the bundle), and the launch spec of the
// runtime process itself, which capsa-monitor runs on the host in the
// foreground (`<runtime> run`), so the monitor still reaps, logs in CRI
// format and records the exit, as Mesos' composing containerizer nests one.
import * as path from 'path';
import { hostProcessSpec } from '../host-process';
import type { LaunchSpec } from '../spec';

/** The runtime-spec version the bundle declares (runc 1.1 and crun 1.8 take 1.0.x). */
const OCI_VERSION = '1.0.2';

/** The bundle dir under a run dir; config.json's root is the rootfs capsa provisioned. */
export function bundleDir(runDir: string): string {
  return path.join(runDir, 'bundle');
}

/** What the runtime is told of the container: the launch spec without capsa's extension. */
export function ociConfigOf(spec: LaunchSpec): Record<string, unknown> {
  const p = spec.process;
  const l = spec.linux;
  const r = l.resources;
  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: p.terminal,
      user: { uid: p.user.uid, gid: p.user.gid, additionalGids: p.user.additionalGids },
      args: p.args,
      env: p.env,
      cwd: p.cwd,
      capabilities: p.capabilities,
      rlimits: p.rlimits,
      noNewPrivileges: p.noNewPrivileges,
      oomScoreAdj: p.oomScoreAdj,
    },
    root: { path: spec.root.path, readonly: spec.root.readonly },
    ...(spec.hostname !== undefined ? { hostname: spec.hostname } : {}),
    mounts: spec.mounts.map((m) => ({
      destination: m.destination,
      type: m.type,
      source: m.source,
      options: m.options,
    })),
    linux: {
      // Joined by path (the pod's net, ipc, uts; pid per the pid mode; its user
      // namespace) or made anew, exactly as capsa's launcher would.
      namespaces: l.namespaces.map((n) => (n.path !== undefined ? { type: n.type, path: n.path } : { type: n.type })),
      ...(l.uidMappings ? { uidMappings: l.uidMappings } : {}),
      ...(l.gidMappings ? { gidMappings: l.gidMappings } : {}),
      devices: l.devices,
      resources: {
        devices: r.devices,
        ...(r.memory ? { memory: r.memory } : {}),
        ...(r.cpu ? { cpu: r.cpu } : {}),
        ...(r.pids ? { pids: r.pids } : {}),
        ...(r.hugepageLimits ? { hugepageLimits: r.hugepageLimits } : {}),
        ...(r.unified ? { unified: r.unified } : {}),
      },
      // The cgroup capsa made for the container: stats, UpdateContainerResources
      // and the monitor's OOM watch read and write the same one.
      cgroupsPath: l.cgroupsPath,
      ...(l.sysctl ? { sysctl: l.sysctl } : {}),
      maskedPaths: l.maskedPaths,
      readonlyPaths: l.readonlyPaths,
      rootfsPropagation: l.rootfsPropagation,
      ...(l.seccomp ? { seccomp: l.seccomp } : {}),
    },
  };
}

/** Where a runtime handler's files go in the run dir. */
export interface RuntimeFiles {
  /** The runtime's own log (--log, JSON lines): why a create, start or exec failed. */
  log: string;
  /** Written by the runtime with the container init's host pid once it is created. */
  pidFile: string;
}

export function runtimeFiles(runDir: string): RuntimeFiles {
  return { log: path.join(runDir, 'runtime.log'), pidFile: path.join(runDir, 'runtime.pid') };
}

/** The runtime's global flags: its state dir and its log. */
export function globalArgs(root: string, log: string): string[] {
  return [`--root=${root}`, `--log=${log}`, '--log-format=json'];
}

/**
 * The launch spec of `<runtime> run` for capsa-monitor: a host process
 * (capsa.hostProcess: no namespaces, filesystem or credentials of its own),
 * started when the container starts, in the foreground, with the container's
 * stdio and terminal. It stays out of the container's cgroup (the runtime
 * places the container there itself, and removes it when run ends).
 */
export function runtimeProcessSpec(
  spec: LaunchSpec,
  o: { binary: string; root: string; runDir: string; id: string },
): LaunchSpec {
  const files = runtimeFiles(o.runDir);
  return {
    ...hostProcessSpec(spec, {
      args: [
        o.binary,
        ...globalArgs(o.root, files.log),
        'run',
        `--bundle=${bundleDir(o.runDir)}`,
        `--pid-file=${files.pidFile}`,
        o.id,
      ],
      cwd: bundleDir(o.runDir),
      terminal: spec.process.terminal,
    }),
    capsa: {
      containerId: spec.capsa.containerId,
      ...(spec.capsa.logPath !== undefined ? { logPath: spec.capsa.logPath } : {}),
      stdin: spec.capsa.stdin,
      stdinOnce: spec.capsa.stdinOnce,
      cgroupProcs: [],
      ...(spec.capsa.memoryCgroup !== undefined ? { memoryCgroup: spec.capsa.memoryCgroup } : {}),
      ...(spec.capsa.monitorCgroupProcs !== undefined ? { monitorCgroupProcs: spec.capsa.monitorCgroupProcs } : {}),
      seccomp: { type: 'Unconfined' },
      apparmor: spec.capsa.apparmor,
      hostProcess: true,
      killOnExit: false,
    },
  };
}
