// A containerizer lifecycle event as the CRI ContainerEventResponse kubelet's
// evented PLEG reads: the event, its pod's status and the statuses of the
// pod's containers at that moment, newest first (a deleted container is no
// longer among them; its pod may be gone too, then the pod status is absent).
import type { ContainerEvent, ContainerEventKind } from '../containerizer';
import type { Container } from '../containerizer';
import type { Sandbox } from '../containerizer';
import { ContainerEventResponse, ContainerEventType } from '../gen/runtime/v1/api';
import { podContainerStatuses } from './container-mapping';
import { toPodSandboxStatus } from './sandbox-mapping';

const TYPES: Record<ContainerEventKind, ContainerEventType> = {
  created: ContainerEventType.CONTAINER_CREATED_EVENT,
  started: ContainerEventType.CONTAINER_STARTED_EVENT,
  stopped: ContainerEventType.CONTAINER_STOPPED_EVENT,
  deleted: ContainerEventType.CONTAINER_DELETED_EVENT,
};

export function toContainerEventResponse(
  e: ContainerEvent,
  sandbox: Sandbox | undefined,
  podContainers: readonly Container[],
): ContainerEventResponse {
  return {
    containerId: e.containerId,
    containerEventType: TYPES[e.kind],
    createdAt: e.at,
    podSandboxStatus: sandbox ? toPodSandboxStatus(sandbox) : undefined,
    containersStatuses: podContainerStatuses(podContainers),
  };
}
