// The `network` isolator of pod sandboxes: the containerizer's seam for CNI
// (SandboxesOptions.network), over src/network/cni. It needs the pinned netns (`netns`, from the
// namespaces isolator), provides `network`, and fills ctx.network.ips, which
// PodSandboxStatus reports and the pod files' /etc/hosts names.
//
// The attachment's own record (<root>/network/<id>.json, see network.ts) is
// what teardown and recovery work from; the chain's checkpoint of this
// isolator only says whether the sandbox was attached at all.
//
// A sandbox with host networking gets nothing. When the conf dir holds no
// network config at all, a pod sandbox keeps a loopback-only netns (the
// behaviour before CNI, with a warning; kubelet does not start such pods
// while Status says NetworkReady=false). A config that exists but is
// unusable (invalid, plugins missing) fails RunPodSandbox with the reason.
import { FailedPreconditionError } from '../../../errors';
import type { Logger } from '../../../log';
import type { CniNetwork } from '../../../network/cni/network';
import type { IsolatorCheckpoint } from '../../checkpoint';
import type { CheckpointFn, Isolator, RecoverResult } from '../../isolator';
import type { SandboxContext } from '../../sandbox-spec';

export interface NetworkIsolatorState {
  /** The sandbox was attached to a CNI network (has a record). */
  attached: boolean;
  network?: string;
  ip?: string;
  additionalIps?: string[];
}

export const NETWORK_ISOLATOR_VERSION = 1;

export class CniNetworkIsolator implements Isolator<SandboxContext, NetworkIsolatorState> {
  readonly name = 'network';
  readonly version = NETWORK_ISOLATOR_VERSION;
  readonly needs = ['netns'];
  readonly provides = ['network'];

  constructor(
    readonly cni: CniNetwork,
    private readonly log?: Logger,
  ) {}

  async prepare(
    ctx: SandboxContext,
    checkpoint: CheckpointFn<NetworkIsolatorState>,
    signal: AbortSignal,
  ): Promise<NetworkIsolatorState> {
    if (ctx.spec.namespaces.network === 'host') return { attached: false };
    const netns = ctx.namespaces.net;
    if (!netns)
      throw new FailedPreconditionError('the pod has no pinned network namespace', {
        stage: 'network',
        sandboxId: ctx.id,
      });
    const ready = await this.cni.readiness();
    if (!ready.ready && ready.file === undefined) {
      (this.log ?? ctx.log).warn(
        { stage: 'network', sandboxId: ctx.id, reason: ready.message },
        'no CNI network config: the pod gets a loopback-only network namespace',
      );
      return { attached: false };
    }
    const st = await this.cni.setUp(
      {
        id: ctx.id,
        netnsPath: netns,
        name: ctx.spec.metadata.name,
        namespace: ctx.spec.metadata.namespace,
        uid: ctx.spec.metadata.uid,
        portMappings: ctx.spec.portMappings,
        annotations: ctx.spec.annotations,
      },
      signal,
    );
    const state: NetworkIsolatorState = {
      attached: true,
      network: st.networkName,
      ip: st.ip,
      additionalIps: st.additionalIps,
    };
    ctx.network.ips = [st.ip, ...st.additionalIps];
    await checkpoint(state);
    return state;
  }

  async cleanup(ctx: SandboxContext, _state: NetworkIsolatorState | undefined, signal: AbortSignal): Promise<void> {
    // From the record alone: idempotent, and right whatever the chain's checkpoint says.
    await this.cni.tearDown(ctx.id, signal);
    ctx.network.ips = [];
  }

  async recover(
    ctx: SandboxContext,
    saved: IsolatorCheckpoint | undefined,
  ): Promise<RecoverResult<NetworkIsolatorState>> {
    const state = saved?.state as NetworkIsolatorState | undefined;
    if (ctx.spec.namespaces.network === 'host') return { status: 'alive', state: { attached: false } };
    const adopted = await this.cni.adopt(ctx.id);
    if (adopted === 'incomplete') {
      return { status: 'lost', reason: 'the CNI attachment was interrupted (ADD or DEL) while capsa was down', state };
    }
    if (adopted === undefined) {
      if (state?.attached) return { status: 'lost', reason: 'the CNI attachment record is gone', state };
      return { status: 'alive', state: state ?? { attached: false } };
    }
    ctx.network.ips = [adopted.ip, ...adopted.additionalIps];
    return {
      status: 'alive',
      state: { attached: true, network: adopted.networkName, ip: adopted.ip, additionalIps: adopted.additionalIps },
    };
  }

  /** Attachments on record whose sandbox has no checkpoint: DEL them (frees their IPs). */
  sweep(known: ReadonlySet<string>, signal: AbortSignal): Promise<string[]> {
    return this.cni.sweep(known, signal);
  }
}
