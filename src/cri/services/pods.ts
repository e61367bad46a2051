// RuntimeService handlers for pod sandboxes: RunPodSandbox, StopPodSandbox,
// RemovePodSandbox, PodSandboxStatus, ListPodSandbox (and its streaming
// twin), UpdatePodSandboxResources. Status and List are answered from
// memory. Validation and CRI shapes live in src/cri/sandbox-mapping.ts.
import type { Containers } from '../../containerizer';
import type { Sandboxes } from '../../containerizer';
import { podContainerStatuses } from '../container-mapping';
import {
  criResources,
  matchesFilter,
  requestFingerprint,
  sandboxSpecFromRequest,
  toPodSandbox,
  toPodSandboxStatus,
  verboseInfo,
} from '../sandbox-mapping';
import { readKubeletSubIds } from '../userns';
import { InvalidArgumentError } from '../../errors';
import {
  ListPodSandboxRequest,
  ListPodSandboxResponse,
  NamespaceMode,
  PodSandboxStatusRequest,
  PodSandboxStatusResponse,
  RemovePodSandboxRequest,
  RemovePodSandboxResponse,
  RunPodSandboxRequest,
  RunPodSandboxResponse,
  StopPodSandboxRequest,
  StopPodSandboxResponse,
  StreamPodSandboxesRequest,
  StreamPodSandboxesResponse,
  UpdatePodSandboxResourcesRequest,
  UpdatePodSandboxResourcesResponse,
  type RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import type { CallContext, ServiceHandlers } from './handler';

export interface PodServiceDeps {
  sandboxes: Sandboxes;
  /** For the statuses of a pod's containers in PodSandboxStatus. */
  containers: Containers;
  cgroupDriver: 'cgroupfs' | 'systemd';
  /** The configured runtime_handlers (besides the default one). */
  runtimeHandlers: readonly string[];
}

/** Sandboxes per StreamPodSandboxes message. */
const STREAM_CHUNK = 100;

function requireId(id: string): string {
  if (id === '') throw new InvalidArgumentError('pod_sandbox_id', 'is required');
  return id;
}

export function podHandlers(deps: PodServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const { sandboxes } = deps;
  const mapping = {
    cgroupDriver: deps.cgroupDriver,
    cgroupVersion: sandboxes.cgroups.layout.version,
    runtimeHandlers: deps.runtimeHandlers,
  };

  const runPodSandbox = async (req: RunPodSandboxRequest, ctx: CallContext): Promise<RunPodSandboxResponse> => {
    // Read per request (small files, edited by hand): only pods with a user namespace need them.
    const userns = req.config?.linux?.securityContext?.namespaceOptions?.usernsOptions;
    const subIds = userns?.mode === NamespaceMode.POD ? await readKubeletSubIds() : undefined;
    const spec = sandboxSpecFromRequest(req, { ...mapping, subIds });
    const id = await sandboxes.run(spec, requestFingerprint(req), ctx.signal);
    return { podSandboxId: id };
  };

  const stopPodSandbox = async (req: StopPodSandboxRequest, ctx: CallContext): Promise<StopPodSandboxResponse> => {
    await sandboxes.stop(requireId(req.podSandboxId), ctx.signal);
    return {};
  };

  const removePodSandbox = async (
    req: RemovePodSandboxRequest,
    ctx: CallContext,
  ): Promise<RemovePodSandboxResponse> => {
    await sandboxes.remove(requireId(req.podSandboxId), ctx.signal);
    return {};
  };

  const podSandboxStatus = async (req: PodSandboxStatusRequest): Promise<PodSandboxStatusResponse> => {
    const sb = sandboxes.get(requireId(req.podSandboxId));
    // The pod's container statuses ride along, newest first. The timestamp
    // stays 0 on purpose: with it set, kubelet 1.37 under EventedPLEG takes
    // its pod status from this answer but never fills the *active* (current
    // sandbox) container statuses from it, so it thinks no init container
    // ever ran and restarts completed ones forever. At 0 it asks
    // ContainerStatus per container, as without the gate (kubelet suite with
    // EventedPLEG=true; kuberuntime_manager.go GetPodStatus).
    return {
      status: toPodSandboxStatus(sb),
      info: req.verbose ? verboseInfo(sb) : {},
      containersStatuses: podContainerStatuses(deps.containers.list().filter((c) => c.record.sandboxId === sb.id)),
      timestamp: 0n,
    };
  };

  const listed = (f: ListPodSandboxRequest['filter']): ReturnType<typeof toPodSandbox>[] =>
    sandboxes
      .list()
      .filter((sb) => matchesFilter(sb, f))
      .map(toPodSandbox);

  const listPodSandbox = async (req: ListPodSandboxRequest): Promise<ListPodSandboxResponse> => ({
    items: listed(req.filter),
  });

  const streamPodSandboxes = async (
    req: StreamPodSandboxesRequest,
    send: (m: StreamPodSandboxesResponse) => void,
  ): Promise<void> => {
    const all = listed(req.filter);
    for (let i = 0; i < all.length; i += STREAM_CHUNK) send({ podSandboxes: all.slice(i, i + STREAM_CHUNK) });
  };

  const updatePodSandboxResources = async (
    req: UpdatePodSandboxResourcesRequest,
    ctx: CallContext,
  ): Promise<UpdatePodSandboxResourcesResponse> => {
    const resources = criResources(req.resources, 'resources', mapping.cgroupVersion) ?? {};
    await sandboxes.update(requireId(req.podSandboxId), resources, ctx.signal);
    return {};
  };

  return {
    runPodSandbox: runPodSandbox,
    stopPodSandbox: stopPodSandbox,
    removePodSandbox: removePodSandbox,
    podSandboxStatus: podSandboxStatus,
    listPodSandbox: listPodSandbox,
    streamPodSandboxes: streamPodSandboxes,
    updatePodSandboxResources: updatePodSandboxResources,
  };
}
