// The Launcher role (Mesos launcher.hpp): starts a container's init in its
// namespaces and cgroups, signals it, tells what became of it and destroys
// what is left, given nothing but the container's run directory. The
// containerizer never forks: capsa-monitor (monitor-launcher.ts) does.
//
// Every answer is derived from files in the run directory, so a restarted
// daemon learns exactly what the one before it knew (`status` is also the
// recovery entry point).
import type { LaunchSpec } from './spec';

import type { ProcessIdentity } from '../../util/procfs';

export interface Created {
  monitor: ProcessIdentity;
  /** The init, blocked just before execve. */
  init: ProcessIdentity;
}

export interface Started {
  init: ProcessIdentity;
  /** Unix ns, the monitor's clock when execve succeeded. */
  startedAt: bigint;
}

/** The init's end, as the monitor recorded it (exit.json). */
export interface ExitRecord {
  pid: number;
  exitCode: number;
  /** The killing signal, 0 when it exited. */
  signal: number;
  oomKilled: boolean;
  /** Unix ns; undefined when the init never exec'd (killed while waiting for start). */
  startedAt?: bigint;
  finishedAt: bigint;
}

export type LaunchStatus =
  /** The init waits for `start` (CRI CREATED). */
  | { state: 'created'; monitor: ProcessIdentity; init?: ProcessIdentity }
  | { state: 'running'; monitor: ProcessIdentity; init?: ProcessIdentity; startedAt?: bigint }
  | { state: 'exited'; exit: ExitRecord }
  /** The start failed; `reason` is the monitor's one line (e.g. "exec: no such file or directory: /bin/nope"). */
  | { state: 'start-failed'; reason: string; at: bigint }
  /** No live monitor and no record of an end (the run dir was wiped, or the monitor was killed). */
  | { state: 'lost'; reason: string; init?: ProcessIdentity };

export interface ExecRequest {
  /** The container's launch spec: the command runs with its user, cwd, env, capabilities and seccomp filter. */
  spec: LaunchSpec;
  args: string[];
  /** The container init (its namespaces are joined). */
  init: ProcessIdentity;
  /** The container's cgroup.procs files. */
  cgroupProcs: string[];
  /** 0: none. */
  timeoutMs: number;
  /** Per stream. */
  outputLimit: number;
}

export interface ExecResult {
  exitCode: number;
  timedOut: boolean;
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface Launcher {
  /**
   * Writes the spec into `runDir` (which must exist) and starts the init up
   * to just before execve, placed in its cgroups. Fails with the monitor's
   * reason; whatever it started is gone by then (or destroy() removes it).
   */
  create(runDir: string, spec: LaunchSpec, signal: AbortSignal): Promise<Created>;
  /** Releases a created init; fails with the monitor's reason when execve fails. */
  start(runDir: string, timeoutMs: number, signal: AbortSignal): Promise<Started>;
  /** Sends `sig` to the init through its monitor (or directly, pid and start time checked). False: nobody to signal. */
  signal(runDir: string, sig: number): Promise<boolean>;
  /** Asks the monitor to reopen the log file and waits until `logPath` exists again. */
  reopenLog(runDir: string, logPath: string, signal: AbortSignal): Promise<void>;
  /** Runs a command in the container (ExecSync). */
  exec(runDir: string, req: ExecRequest, signal: AbortSignal): Promise<ExecResult>;
  /** What became of the container, from the run dir alone (also the recovery entry point). */
  status(runDir: string): Promise<LaunchStatus>;
  /**
   * Calls `onChange` when something appears in the run dir (an exit, a start
   * error). Cheap: one inotify watch per directory. Returns the unsubscribe.
   */
  watch(runDir: string, onChange: () => void): () => void;
  /**
   * Kills the monitor when it outlived its init (the caller kills the
   * container's processes through its cgroup first) and removes the run dir.
   */
  destroy(runDir: string, signal: AbortSignal): Promise<void>;
  /**
   * Recovery: removes what the launcher keeps outside run dirs (an OCI
   * runtime's state) for containers neither known nor with a run dir under
   * `runRoot`; returns what it removed.
   */
  sweep?(runRoot: string, known: ReadonlySet<string>): Promise<string[]>;
}
