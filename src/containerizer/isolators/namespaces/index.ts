// The pod namespaces isolator: creates the sandbox's network, UTS and IPC
// namespaces (each skipped in its host mode; UTS follows network) and pins
// them as <state>/ns/capsa-<id>-{net,uts,ipc}. The hostname, loopback and
// namespaced sysctls are set inside them at creation (native pinNamespaces).
// No process holds them: the bind mounts do. Provides `namespaces` and
// `netns` (what the CNI isolator will need).
//
// A pod with a user namespace (userns_options POD) gets it pinned as
// capsa-<id>-user, made with the pod's mappings by `capsa-pause userns`,
// which also creates the net/UTS/IPC namespaces inside it (so it owns them:
// its root may mount sysfs and mqueue, set its sysctls); pinNamespaces then
// joins those to set the hostname, lo and sysctls. A thread of the daemon
// cannot do it all: a multithreaded process cannot enter a new user namespace.
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { FailedPreconditionError, InternalError, InvalidArgumentError, asCapsaError } from '../../../errors';
import type { Logger } from '../../../log';
import { native } from '../../../native';
import type { IsolatorCheckpoint } from '../../checkpoint';
import type { CheckpointFn, Isolator, RecoverResult, Usage } from '../../isolator';
import type { PinnedNamespaces, SandboxContext } from '../../sandbox-spec';
import { parseNetDev } from './netdev';
import { PINNED_NS, isPinned, nsFileName, unpin } from './nsfs';
import { findPauseBinary } from './pid-holder';
import { sysctlPath } from './sysctl';
import { usernsSupport } from './userns-probe';

export interface NamespacesState {
  /** Present for a pod in a user namespace (added to version 1: older checkpoints lack it). */
  user?: string;
  net?: string;
  uts?: string;
  ipc?: string;
}

export const NAMESPACES_ISOLATOR_VERSION = 1;

/** What the kernel's answer to a sysctl write means for the request. */
const SYSCTL_ERRNO: Record<string, string> = {
  ENOENT: 'no such sysctl in the pod',
  ENOTDIR: 'no such sysctl in the pod',
  EISDIR: 'names a sysctl directory, not a sysctl',
  ELOOP: 'no such sysctl in the pod',
  EINVAL: 'the kernel refused the value',
  ERANGE: 'the value is out of range',
  EACCES: 'cannot be written',
  EPERM: 'cannot be written',
  EROFS: 'cannot be written',
};

/**
 * A failed write of one of the pod's sysctls (a name the kernel does not
 * have, a value it refuses) is the request's fault: InvalidArgument naming
 * config.linux.sysctls[key], not an internal error.
 */
function sysctlOf(sysctls: Record<string, string>, err: unknown): InvalidArgumentError | undefined {
  const e = err as { path?: string; code?: string };
  if (typeof e.path !== 'string' || !e.path.startsWith('/proc/sys/')) return undefined;
  const rel = e.path.slice('/proc/sys/'.length);
  const key = Object.keys(sysctls).find((k) => sysctlPath(k) === rel);
  if (key === undefined) return undefined;
  const why = (e.code && SYSCTL_ERRNO[e.code]) ?? (err as Error).message;
  const value = sysctls[key].slice(0, 80);
  return new InvalidArgumentError(
    `config.linux.sysctls[${key.slice(0, 80)}]`,
    `${why} ("${value}": ${e.code ?? 'error'})`,
  );
}

export class NamespacesIsolator implements Isolator<SandboxContext, NamespacesState> {
  readonly name = 'namespaces';
  readonly version = NAMESPACES_ISOLATOR_VERSION;
  readonly needs = [];
  readonly provides = ['namespaces', 'netns'];

  constructor(
    private readonly nsDir: string,
    private readonly log: Logger,
  ) {}

  /** The pins this sandbox should have, from its spec alone. */
  private planned(ctx: SandboxContext): NamespacesState {
    const file = (t: 'user' | 'net' | 'uts' | 'ipc'): string => path.join(this.nsDir, nsFileName(ctx.id, t));
    const s: NamespacesState = {};
    if (ctx.spec.namespaces.userns) s.user = file('user');
    if (ctx.spec.namespaces.network === 'pod') {
      s.net = file('net');
      s.uts = file('uts');
    }
    if (ctx.spec.namespaces.ipc === 'pod') s.ipc = file('ipc');
    return s;
  }

  async prepare(ctx: SandboxContext, checkpoint: CheckpointFn<NamespacesState>): Promise<NamespacesState> {
    const state = this.planned(ctx);
    const userns = ctx.spec.namespaces.userns;
    if (userns) {
      // Before anything is made: without idmapped mounts the pod's files
      // would have the wrong owners, and running it with host ids instead is
      // not what it asked for.
      const support = await usernsSupport(ctx.root);
      if (!support.ok) {
        throw new FailedPreconditionError(`user namespaces are not available on this host: ${support.reason}`, {
          sandboxId: ctx.id,
          stage: 'user namespace',
        });
      }
    }
    await checkpoint(state);
    if (!state.net && !state.uts && !state.ipc && !state.user) return state;
    await fs.mkdir(this.nsDir, { recursive: true, mode: 0o711 });
    // Leftovers of an earlier crashed attempt with this id would make the create fail.
    for (const f of [state.user, state.net, state.uts, state.ipc]) if (f) await unpin(f);
    if (userns && state.user) await this.makeUserns(ctx, state, userns);
    try {
      native().pinNamespaces({
        join: state.user !== undefined,
        owner: userns && {
          uid: userns.uids.find((m) => m.containerID === 0)!.hostID,
          gid: userns.gids.find((m) => m.containerID === 0)!.hostID,
        },
        net: state.net,
        uts: state.uts,
        ipc: state.ipc,
        hostname: state.uts ? ctx.spec.hostname : undefined,
        loopback: state.net !== undefined,
        sysctls: Object.entries(ctx.spec.sysctls).map(([k, v]) => [sysctlPath(k), v] as [string, string]),
      });
    } catch (err) {
      const bad = sysctlOf(ctx.spec.sysctls, err);
      if (bad) throw bad;
      throw new InternalError(`pin namespaces: ${(err as Error).message}`, {
        sandboxId: ctx.id,
        path: (err as { path?: string }).path,
      });
    }
    setContext(ctx, state);
    return state;
  }

  /** capsa-pause userns: the user namespace with the pod's mappings, and the pod's others inside it, pinned. */
  private async makeUserns(
    ctx: SandboxContext,
    state: NamespacesState,
    userns: NonNullable<SandboxContext['spec']['namespaces']['userns']>,
  ): Promise<void> {
    const args = ['userns', '--user', state.user!];
    if (state.net) args.push('--net', state.net);
    if (state.uts) args.push('--uts', state.uts);
    if (state.ipc) args.push('--ipc', state.ipc);
    for (const m of userns.uids) args.push('--uid-map', `${m.containerID}:${m.hostID}:${m.size}`);
    for (const m of userns.gids) args.push('--gid-map', `${m.containerID}:${m.hostID}:${m.size}`);
    try {
      await promisify(execFile)(findPauseBinary(), args, { timeout: 10000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new InternalError(`user namespace: ${(e.stderr ?? '').trim() || e.message}`, {
        sandboxId: ctx.id,
        stage: 'user namespace',
      });
    }
  }

  /** Interface counters of the pod's network namespace (none for host-network pods: the node has them). */
  async usage(_ctx: SandboxContext, state: NamespacesState): Promise<Usage> {
    if (!state.net) return {};
    const interfaces = parseNetDev(native().readNetDev(state.net)).filter((i) => i.name !== 'lo');
    return { network: { interfaces } };
  }

  async cleanup(ctx: SandboxContext, state: NamespacesState | undefined): Promise<void> {
    // Every name this sandbox could have used, whatever the checkpoint says.
    const all = [state?.net, state?.uts, state?.ipc, state?.user, ...Object.values(this.planned(ctx))];
    for (const f of new Set(all.filter((x): x is string => x !== undefined))) await unpin(f);
    ctx.namespaces.net = ctx.namespaces.uts = ctx.namespaces.ipc = ctx.namespaces.user = undefined;
  }

  async recover(ctx: SandboxContext, saved: IsolatorCheckpoint | undefined): Promise<RecoverResult<NamespacesState>> {
    const state = saved?.version === 1 ? (saved.state as NamespacesState) : this.planned(ctx);
    for (const [type, file] of Object.entries(state) as [string, string | undefined][]) {
      if (file && !(await isPinned(file))) {
        return { status: 'lost', reason: `pinned ${type} namespace ${file} is gone`, state };
      }
    }
    setContext(ctx, state);
    return { status: 'alive', state };
  }

  /** Pins in our ns dir whose sandbox has no checkpoint (the pid ones included). */
  async sweep(known: ReadonlySet<string>): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.nsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const removed: string[] = [];
    for (const n of names) {
      const m = PINNED_NS.exec(n);
      if (!m || known.has(m[1])) continue;
      const file = path.join(this.nsDir, n);
      try {
        await unpin(file);
        removed.push(file);
        this.log.info({ file }, 'removed orphaned namespace pin');
      } catch (err) {
        this.log.warn({ file, err: asCapsaError(err).message }, 'cannot remove orphaned namespace pin');
      }
    }
    return removed;
  }
}

function setContext(ctx: SandboxContext, s: NamespacesState): void {
  const ns: PinnedNamespaces = ctx.namespaces;
  ns.user = s.user;
  ns.net = s.net;
  ns.uts = s.uts;
  ns.ipc = s.ipc;
}
