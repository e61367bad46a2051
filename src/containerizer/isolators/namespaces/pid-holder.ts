// The shared PID namespace of a pod (namespace_options.pid == POD): a tiny
// init, native/pinns/capsa-pause, is pid 1 of the namespace and lives in its
// own leaf cgroup <pod>/capsa-<id>-init; the namespace is pinned as
// <state>/ns/capsa-<id>-pid so containers can setns() into it. Only pods
// that ask for it get a process; all others have none.
import { spawn } from 'child_process';
import * as path from 'path';
import { InternalError } from '../../../errors';
import type { Logger } from '../../../log';
import { findHelperBinary } from '../../../util/helper-binary';
import { processStartTime, processesNamed } from '../../../util/procfs';
import { withTimeout } from '../../../util/timeout';
import type { IsolatorCheckpoint } from '../../checkpoint';
import type { CheckpointFn, Isolator, RecoverResult } from '../../isolator';
import type { SandboxContext } from '../../sandbox-spec';
import type { CgroupManager } from '../cgroups/manager';
import { CgroupDriverName, podCgroup, pidHolderCgroupPath } from '../cgroups/paths';
import { isPinned, nsFileName, unpin } from './nsfs';

export interface PidHolderState {
  enabled: boolean;
  pin?: string;
  cgroupPath?: string;
  pid?: number;
  /** /proc/<pid>/stat start time (clock ticks since boot): guards against pid reuse. */
  startTime?: number;
}

export const PID_HOLDER_ISOLATOR_VERSION = 1;

/** Where capsa-pause is: $CAPSA_PAUSE, next to the sources (native/pinns) or installed. */
export function findPauseBinary(): string {
  return findHelperBinary({
    name: 'capsa-pause',
    env: 'CAPSA_PAUSE',
    buildDir: 'native/pinns',
    make: 'make -C native/pinns',
  });
}

export class PidHolderIsolator implements Isolator<SandboxContext, PidHolderState> {
  readonly name = 'pid-holder';
  readonly version = PID_HOLDER_ISOLATOR_VERSION;
  readonly needs = ['namespaces', 'cgroup'];
  readonly provides = ['pidns'];

  constructor(
    private readonly opts: {
      nsDir: string;
      manager: CgroupManager;
      driver: CgroupDriverName;
      root: string;
      log: Logger;
      startTimeoutMs?: number;
    },
  ) {}

  private planned(ctx: SandboxContext): PidHolderState {
    if (ctx.spec.namespaces.pid !== 'pod') return { enabled: false };
    const pod = podCgroup(this.opts.driver, ctx.spec.cgroupParent, ctx.id, this.opts.root);
    return {
      enabled: true,
      pin: path.join(this.opts.nsDir, nsFileName(ctx.id, 'pid')),
      cgroupPath: pidHolderCgroupPath(this.opts.driver, pod.path, ctx.id),
    };
  }

  async prepare(
    ctx: SandboxContext,
    checkpoint: CheckpointFn<PidHolderState>,
    signal: AbortSignal,
  ): Promise<PidHolderState> {
    const state = this.planned(ctx);
    await checkpoint(state);
    if (!state.enabled) return state;
    const pin = state.pin!;
    const cgroupPath = state.cgroupPath!;
    await unpin(pin);
    const leaf = await this.opts.manager.create(cgroupPath, undefined, { delegate: false });
    const args = ['--pin', pin];
    if (ctx.namespaces.net) args.push('--net', ctx.namespaces.net);
    if (ctx.namespaces.uts) args.push('--uts', ctx.namespaces.uts);
    if (ctx.namespaces.ipc) args.push('--ipc', ctx.namespaces.ipc);
    for (const f of leaf.procs) args.push('--cgroup-procs', f);
    const pid = await runPause(findPauseBinary(), args, this.opts.startTimeoutMs ?? 10000, signal);
    await this.opts.manager.settled(cgroupPath);
    const startTime = await processStartTime(pid);
    if (startTime === undefined)
      throw new InternalError(`capsa-pause init ${pid} died right after start`, { sandboxId: ctx.id });
    const done: PidHolderState = { ...state, pid, startTime };
    await checkpoint(done);
    setContext(ctx, done);
    return done;
  }

  async cleanup(ctx: SandboxContext, state: PidHolderState | undefined): Promise<void> {
    const s = state?.enabled ? state : this.planned(ctx);
    if (s.pid !== undefined && s.startTime !== undefined && (await processStartTime(s.pid)) === s.startTime) {
      try {
        process.kill(s.pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    // Whatever is still in the leaf (a holder we lost track of) goes with it.
    if (s.cgroupPath) await this.opts.manager.destroy(s.cgroupPath, 10000);
    if (s.pin) await unpin(s.pin);
    else await unpin(path.join(this.opts.nsDir, nsFileName(ctx.id, 'pid')));
    ctx.namespaces.pid = undefined;
    ctx.pidHolder = undefined;
  }

  async recover(ctx: SandboxContext, saved: IsolatorCheckpoint | undefined): Promise<RecoverResult<PidHolderState>> {
    const state = saved?.version === 1 ? (saved.state as PidHolderState) : this.planned(ctx);
    if (!state.enabled) return { status: 'alive', state };
    if (state.pid === undefined || (await processStartTime(state.pid)) !== state.startTime) {
      return { status: 'lost', reason: `pid namespace init ${state.pid ?? '?'} is gone`, state };
    }
    if (!state.pin || !(await isPinned(state.pin))) {
      return { status: 'lost', reason: `pinned pid namespace ${state.pin ?? '?'} is gone`, state };
    }
    setContext(ctx, state);
    return { status: 'alive', state };
  }

  /** capsa-pause processes pinned under our ns dir whose sandbox has no checkpoint. */
  async sweep(known: ReadonlySet<string>): Promise<string[]> {
    const killed: string[] = [];
    const prefix = path.join(this.opts.nsDir, 'capsa-');
    for (const { pid, argv } of await processesNamed('capsa-pause')) {
      const pin = argv[argv.indexOf('--pin') + 1] ?? '';
      const m = /^capsa-([0-9a-f]{64})-pid$/.exec(path.basename(pin));
      if (!pin.startsWith(prefix) || !m || known.has(m[1])) continue;
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(`pid ${pid}`);
        this.opts.log.info({ pid, pin }, 'killed orphaned pid namespace holder');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    return killed;
  }
}

function setContext(ctx: SandboxContext, s: PidHolderState): void {
  ctx.namespaces.pid = s.pin;
  if (s.pid !== undefined && s.startTime !== undefined && s.cgroupPath) {
    ctx.pidHolder = { pid: s.pid, startTime: s.startTime, cgroupPath: s.cgroupPath };
  }
}

/** Runs capsa-pause; resolves to the init's pid it prints. */
async function runPause(bin: string, args: string[], timeoutMs: number, signal: AbortSignal): Promise<number> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (e) => reject(new InternalError(`spawn ${bin}: ${e.message}`, { path: bin })));
    child.once('close', (code) => resolve(code));
  });
  let code: number | null;
  try {
    code = await withTimeout('capsa-pause', timeoutMs, () => exited, { stage: 'pid namespace' }, signal);
  } catch (e) {
    // Killed before it released the init: the init sees EOF and exits too.
    child.kill('SIGKILL');
    throw e;
  }
  const m = /"pid":(\d+)/.exec(out);
  if (code !== 0 || !m) {
    throw new InternalError(`capsa-pause failed (exit ${code}): ${err.trim() || out.trim()}`, {
      stage: 'pid namespace',
    });
  }
  return Number(m[1]);
}
