// The pod cgroup isolator: creates <cgroup_parent>/capsa-<sandbox id> in
// every hierarchy with the pod's resources, destroys it (every process in
// the subtree killed, then rmdir leaf-first), re-adopts it on recovery and
// sweeps capsa- cgroups nobody checkpointed. Provides `cgroup`.
// systemd driver: the pod is a slice, a transient unit (kubelet's
// cgroup_parent, made only if missing, or capsa's own <parent>-pod<id>.slice
// with the pod's limits as properties); see systemd/manager.ts.
import type { IsolatorCheckpoint } from '../../checkpoint';
import type { CheckpointFn, Isolator, RecoverResult, Usage, UsageScope } from '../../isolator';
import type { SandboxContext } from '../../sandbox-spec';
import type { Logger } from '../../../log';
import { CgroupManager } from './manager';
import { CgroupDriverName, OWNED_CGROUP, defaultCgroupParent, expandSlice, podCgroup } from './paths';
import { SystemdCgroupManager } from './systemd/manager';
import { CgroupResources } from './values';

export interface PodCgroupState {
  driver: CgroupDriverName;
  path: string;
  parent: string;
  owned: boolean;
}

export const CGROUPS_ISOLATOR_VERSION = 1;

/** Marks a cgroup_parent slice that capsa made because it was missing (systemd driver). */
export const PARENT_SLICE_DESCRIPTION = 'capsa: a pod cgroup_parent';

export interface CgroupsIsolatorOptions {
  manager: CgroupManager;
  driver: CgroupDriverName;
  root: string;
  log: Logger;
  /** Deadline for killing and removing a pod's cgroups. */
  destroyTimeoutMs?: number;
}

export class CgroupsIsolator implements Isolator<SandboxContext, PodCgroupState, CgroupResources> {
  readonly name = 'cgroups';
  readonly version = CGROUPS_ISOLATOR_VERSION;
  readonly needs = [];
  readonly provides = ['cgroup'];
  /** Parents seen in checkpoints: swept for orphans along with the default one. */
  private readonly parents = new Set<string>();

  constructor(private readonly opts: CgroupsIsolatorOptions) {
    this.parents.add(podCgroup(opts.driver, '', '0'.repeat(64), opts.root).parent);
  }

  private stateFor(ctx: SandboxContext): PodCgroupState {
    const pc = podCgroup(this.opts.driver, ctx.spec.cgroupParent, ctx.id, this.opts.root);
    return { driver: pc.driver, path: pc.path, parent: pc.parent, owned: pc.owned };
  }

  async prepare(ctx: SandboxContext, checkpoint: CheckpointFn<PodCgroupState>): Promise<PodCgroupState> {
    const state = this.stateFor(ctx);
    // Disk before host: the checkpoint names the cgroup before it exists.
    await checkpoint(state);
    this.parents.add(state.parent);
    const m = this.opts.manager;
    if (m instanceof SystemdCgroupManager) {
      // capsa's own pod slice carries the pod's limits; kubelet's (cgroup_parent) is made only if missing.
      const how = await m.ensureSlice(
        state.path,
        state.owned ? ctx.spec.resources : undefined,
        state.owned ? `capsa pod ${ctx.id}` : PARENT_SLICE_DESCRIPTION,
      );
      if (how === 'existed' && state.owned && ctx.spec.resources) await m.apply(state.path, ctx.spec.resources);
      ctx.cgroup = m.handle(state.path);
      return state;
    }
    if (state.owned) {
      ctx.cgroup = await this.opts.manager.create(state.path, ctx.spec.resources, { delegate: true });
    } else {
      // kubelet's slice: made by kubelet; create it only if it is missing, never set its limits.
      if (!(await this.opts.manager.exists(state.path)))
        await this.opts.manager.create(state.path, undefined, { delegate: true });
      ctx.cgroup = this.opts.manager.handle(state.path);
    }
    return state;
  }

  async update(_ctx: SandboxContext, state: PodCgroupState, resources: CgroupResources): Promise<void> {
    if (state.owned) await this.opts.manager.apply(state.path, resources);
  }

  async usage(_ctx: SandboxContext, state: PodCgroupState, _signal: AbortSignal, scope?: UsageScope): Promise<Usage> {
    const s = await this.opts.manager.stats(state.path, scope ?? 'all');
    return {
      cpu: s.cpu.usageNs === undefined ? undefined : { usageCoreNanoSeconds: s.cpu.usageNs },
      memory:
        s.memory.usageBytes === undefined
          ? undefined
          : { usageBytes: s.memory.usageBytes, workingSetBytes: s.memory.workingSetBytes ?? 0n },
      process: s.processes === undefined ? undefined : { count: s.processes },
      cgroup: s,
    };
  }

  async cleanup(ctx: SandboxContext, state: PodCgroupState | undefined, signal: AbortSignal): Promise<void> {
    const s = state ?? this.stateFor(ctx);
    const m = this.opts.manager;
    if (!s.owned) {
      // kubelet's slice stays; one capsa made for a cgroup_parent goes once no pod uses it.
      if (m instanceof SystemdCgroupManager && (await m.description(s.path)) === PARENT_SLICE_DESCRIPTION) {
        await m.removeIfEmpty(s.path);
      }
      return;
    }
    await this.opts.manager.destroy(s.path, this.opts.destroyTimeoutMs ?? 20000, signal);
    await this.removeEmptyDefaultParent(s.parent);
  }

  /** The daemon's default parent is ours: drop it (and /capsa) once empty. Kubelet's parents are not. */
  private async removeEmptyDefaultParent(parent: string): Promise<void> {
    if (parent !== defaultCgroupParent(this.opts.driver, this.opts.root)) return;
    let p = this.opts.driver === 'systemd' ? expandSlice(parent) : parent;
    while (p !== '/' && p !== '') {
      if (!(await this.opts.manager.removeIfEmpty(p))) return;
      p = p.slice(0, p.lastIndexOf('/')) || '/';
    }
  }

  async recover(ctx: SandboxContext, saved: IsolatorCheckpoint | undefined): Promise<RecoverResult<PodCgroupState>> {
    const state = saved?.version === 1 ? (saved.state as PodCgroupState) : this.stateFor(ctx);
    this.parents.add(state.parent);
    if (!(await this.opts.manager.exists(state.path))) {
      return { status: 'lost', reason: `cgroup ${state.path} is gone`, state };
    }
    ctx.cgroup = this.opts.manager.handle(state.path);
    return { status: 'alive', state };
  }

  /** capsa-<id> cgroups under our parents whose sandbox has no checkpoint. */
  async sweep(known: ReadonlySet<string>, signal: AbortSignal): Promise<string[]> {
    const systemd = this.opts.driver === 'systemd';
    const removed: string[] = [];
    for (const parent of this.parents) {
      // systemd: only capsa's own pod slices (<default parent stem>-pod<id>.slice); kubelet's are kubelet's.
      const dir = systemd ? (parent.endsWith('.slice') ? expandSlice(parent) : undefined) : parent;
      if (dir === undefined) continue;
      for (const name of await this.opts.manager.children(dir)) {
        let id: string | undefined;
        if (systemd) id = /-pod([0-9a-f]{64})\.slice$/.exec(name)?.[1];
        else {
          const m = OWNED_CGROUP.exec(name);
          id = m && !m[2] && !m[3] ? m[1] : undefined;
        }
        if (!id || known.has(id)) continue;
        const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
        this.opts.log.info({ cgroup: p }, 'destroying orphaned pod cgroup');
        await this.opts.manager.destroy(p, this.opts.destroyTimeoutMs ?? 20000, signal);
        removed.push(p);
      }
    }
    return removed;
  }
}
