// What the runtime tells plugins about one pod, besides the netns: the
// CNI_ARGS string and the capability arguments (`runtimeConfig`) that a
// plugin receives only when its config declares the capability.
import { InvalidArgumentError } from '../../errors';
import { QuantityError, parseQuantity } from './quantity';

/** A CRI port mapping; `protocol` is the CRI enum (0 TCP, 1 UDP, 2 SCTP) or its name. */
export interface PodPortMapping {
  protocol?: number | string;
  containerPort: number;
  hostPort?: number;
  hostIp?: string;
}

/** The portmap plugin's `portMappings` entry. */
export interface CniPortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

/** The bandwidth plugin's `bandwidth` entry: rates in bit/s, bursts in bits. */
export interface CniBandwidth {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** Capability arguments by capability name, as libcni's RuntimeConf.CapabilityArgs. */
export interface CapabilityArgs {
  portMappings?: CniPortMapping[];
  bandwidth?: CniBandwidth;
  [capability: string]: unknown;
}

export const INGRESS_BANDWIDTH = 'kubernetes.io/ingress-bandwidth';
export const EGRESS_BANDWIDTH = 'kubernetes.io/egress-bandwidth';

// kubelet's bounds for the bandwidth annotations.
const MIN_BANDWIDTH = 1000n; // 1k
const MAX_BANDWIDTH = 10n ** 15n; // 1P
/** containerd and CRI-O give the bucket 4 Gbit: the rate, not the burst, is what the annotation sets. */
const DEFAULT_BURST = 0xffffffff;

const PROTOCOLS: Record<number, string> = { 0: 'tcp', 1: 'udp', 2: 'sctp' };

function protocolName(p: number | string | undefined): string {
  if (p === undefined) return 'tcp';
  if (typeof p === 'number') {
    const name = PROTOCOLS[p];
    if (!name) throw new InvalidArgumentError('port_mappings.protocol', `unknown protocol ${p}`);
    return name;
  }
  const name = p.toLowerCase();
  if (!Object.values(PROTOCOLS).includes(name)) {
    throw new InvalidArgumentError('port_mappings.protocol', `unknown protocol "${p}"`);
  }
  return name;
}

/** PortMappings with a host port, for portmap; a mapping without one publishes nothing. */
export function toCniPortMappings(mappings: readonly PodPortMapping[] | undefined): CniPortMapping[] {
  const out: CniPortMapping[] = [];
  for (const m of mappings ?? []) {
    if (!m.hostPort || m.hostPort <= 0) continue;
    if (!Number.isInteger(m.hostPort) || m.hostPort > 65535) {
      throw new InvalidArgumentError('port_mappings.host_port', `${m.hostPort} is not a port`);
    }
    if (!Number.isInteger(m.containerPort) || m.containerPort <= 0 || m.containerPort > 65535) {
      throw new InvalidArgumentError('port_mappings.container_port', `${m.containerPort} is not a port`);
    }
    const entry: CniPortMapping = {
      hostPort: m.hostPort,
      containerPort: m.containerPort,
      protocol: protocolName(m.protocol),
    };
    if (m.hostIp) entry.hostIP = m.hostIp;
    out.push(entry);
  }
  return out;
}

function bandwidthAnnotation(annotations: Record<string, string>, key: string): number | undefined {
  const raw = annotations[key];
  if (raw === undefined) return undefined;
  let v: bigint;
  try {
    v = parseQuantity(raw);
  } catch (err) {
    if (err instanceof QuantityError) throw new InvalidArgumentError(`annotations[${key}]`, err.message);
    throw err;
  }
  if (v < MIN_BANDWIDTH)
    throw new InvalidArgumentError(`annotations[${key}]`, `"${raw}" is unreasonably small (< 1kbit)`);
  if (v > MAX_BANDWIDTH)
    throw new InvalidArgumentError(`annotations[${key}]`, `"${raw}" is unreasonably large (> 1Pbit)`);
  return Number(v);
}

/** The bandwidth plugin's limits from the pod annotations, or undefined when there are none. */
export function toCniBandwidth(annotations: Record<string, string> | undefined): CniBandwidth | undefined {
  if (!annotations) return undefined;
  const ingress = bandwidthAnnotation(annotations, INGRESS_BANDWIDTH);
  const egress = bandwidthAnnotation(annotations, EGRESS_BANDWIDTH);
  if (ingress === undefined && egress === undefined) return undefined;
  const bw: CniBandwidth = {};
  if (ingress !== undefined) {
    bw.ingressRate = ingress;
    bw.ingressBurst = DEFAULT_BURST;
  }
  if (egress !== undefined) {
    bw.egressRate = egress;
    bw.egressBurst = DEFAULT_BURST;
  }
  return bw;
}

/** Capability arguments for a pod: only the ones with content. */
export function capabilityArgs(
  portMappings: readonly PodPortMapping[] | undefined,
  annotations: Record<string, string> | undefined,
): CapabilityArgs {
  const out: CapabilityArgs = {};
  const pm = toCniPortMappings(portMappings);
  if (pm.length) out.portMappings = pm;
  const bw = toCniBandwidth(annotations);
  if (bw) out.bandwidth = bw;
  return out;
}

export interface PodIdentity {
  sandboxId: string;
  name: string;
  namespace: string;
  uid: string;
}

/** CNI_ARGS as kubelet's runtimes send it; values are k8s names and a UID, so ';' and '=' cannot occur. */
export function cniArgs(pod: PodIdentity): string {
  const pairs: [string, string, string][] = [
    ['K8S_POD_NAMESPACE', pod.namespace, 'metadata.namespace'],
    ['K8S_POD_NAME', pod.name, 'metadata.name'],
    ['K8S_POD_INFRA_CONTAINER_ID', pod.sandboxId, 'pod_sandbox_id'],
    ['K8S_POD_UID', pod.uid, 'metadata.uid'],
  ];
  for (const [, v, field] of pairs) {
    if (/[;=\0\n]/.test(v))
      throw new InvalidArgumentError(field, `"${v}" may not contain ';', '=' or control characters`);
  }
  return ['IgnoreUnknown=1', ...pairs.map(([k, v]) => `${k}=${v}`)].join(';');
}

/**
 * The `runtimeConfig` a plugin gets: the capability arguments it declares
 * in its `capabilities` and that this pod has; undefined when none apply.
 */
export function runtimeConfigFor(
  capabilities: Record<string, boolean> | undefined,
  args: CapabilityArgs,
): Record<string, unknown> | undefined {
  if (!capabilities) return undefined;
  const rc: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(capabilities)) {
    if (on === true && args[cap] !== undefined) rc[cap] = args[cap];
  }
  return Object.keys(rc).length ? rc : undefined;
}
