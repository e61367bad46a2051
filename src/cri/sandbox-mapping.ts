// CRI ⇄ containerizer for pod sandboxes: RunPodSandboxRequest → a
// validated SandboxSpec (InvalidArgument naming the CRI field), a sandbox →
// PodSandbox / PodSandboxStatus, and the ListPodSandbox filter. The only
// place that knows both vocabularies.
import { createHash } from 'crypto';
import { isIP } from 'net';
import * as os from 'os';
import { InvalidArgumentError } from '../errors';
import type { Sandbox } from '../containerizer';
import type { HostOrPod, PidMode, SandboxSpec } from '../containerizer';
import { CgroupPathError, normalizeCgroupfsParent, systemdParentSlice } from '../containerizer';
import { CgroupResources, validateResources } from '../containerizer';
import { sysctlProblem } from '../containerizer';
import {
  LinuxContainerResources,
  NamespaceMode,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxFilter,
  PodSandboxState,
  PodSandboxStatus,
  Protocol,
  RunPodSandboxRequest,
} from '../gen/runtime/v1/api';
import { canonicalJson } from '../util/canonical-json';
import { MIN_MEMORY_LIMIT } from './container-spec/resources';
import { checkEnums } from './enums';
import { checkHostResources } from './host-limits';
import { checkLogDirectory } from './log-directory';
import { checkSubIds, usernsFromCri, usernsToCri, type IdRange } from './userns';

const NSO = 'config.linux.security_context.namespace_options';

export interface MappingOptions {
  cgroupDriver: 'cgroupfs' | 'systemd';
  cgroupVersion: 1 | 2;
  /** The configured runtime_handlers: names served besides the default (""). */
  runtimeHandlers?: readonly string[];
  /** The kubelet user's subordinate ids (readKubeletSubIds), when the host sets some aside. */
  subIds?: { uids: readonly IdRange[]; gids: readonly IdRange[] };
}

/** kubelet's sandbox name: unique while the sandbox exists. */
export function sandboxKey(m: { name: string; namespace: string; uid: string; attempt: number }): string {
  return `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`;
}

/** Identity of a request: identical retries have the same fingerprint. */
export function requestFingerprint(req: RunPodSandboxRequest): string {
  return createHash('sha256')
    .update(canonicalJson(RunPodSandboxRequest.toJSON(req)))
    .digest('hex');
}

const MAX_NAME = 253;
const MAX_UID = 128;
/**
 * Most bytes of labels (or of annotations) on one pod or container. They come
 * back in every List reply, which kubelet reads with a 16 MiB limit: a few
 * objects with megabytes of metadata would make ListPodSandbox/ListContainers
 * fail for every pod of the node. Kubernetes itself allows 256 KiB of
 * annotations per object.
 */
export const MAX_METADATA_BYTES = 256 * 1024;

/** Labels or annotations: no empty key, at most MAX_METADATA_BYTES together. */
export function checkStringMap(field: string, m: Record<string, string>): void {
  let bytes = 0;
  for (const [k, v] of Object.entries(m)) {
    if (k === '') throw new InvalidArgumentError(field, 'empty key');
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
    if (bytes > MAX_METADATA_BYTES) {
      throw new InvalidArgumentError(field, `more than ${MAX_METADATA_BYTES} bytes of keys and values`);
    }
  }
}
// sethostname(2) takes at most 64 bytes; a DNS name, maybe ending in a dot:
// kubelet's setHostnameAsFQDN hostname is "<pod>.<subdomain>.<ns>.svc.<cluster
// domain>", which ends in "." when the cluster domain is empty.
const HOSTNAME = /^(?=.{1,64}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\.?$/;
const SEARCH = /^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$/;
const OPTION = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;

function checkText(field: string, v: string, max: number): void {
  if (v.length > max) throw new InvalidArgumentError(field, `longer than ${max} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw new InvalidArgumentError(field, 'contains control characters');
}

function nsMode(field: string, m: NamespaceMode, allowed: NamespaceMode[]): NamespaceMode {
  if (!allowed.includes(m)) {
    throw new InvalidArgumentError(
      field,
      `${NamespaceMode[m] ?? m} is not valid for a sandbox (allowed: ${allowed.map((a) => NamespaceMode[a]).join(', ')})`,
    );
  }
  return m;
}

function int64(field: string, v: bigint): number | undefined {
  if (v === 0n) return undefined;
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(field, `${v} is out of range`);
  }
  return Number(v);
}

/** CRI LinuxContainerResources → the cgroup resources (OCI shape), validated. */
export function criResources(
  r: LinuxContainerResources | undefined,
  field: string,
  cgroupVersion: 1 | 2,
): CgroupResources | undefined {
  if (!r) return undefined;
  // The same bounds CreateContainer enforces (container-spec/resources.ts), so an
  // update cannot set what a create would refuse, and the error names the CRI field.
  if (r.cpuShares !== 0n && (r.cpuShares < 2n || r.cpuShares > 262144n)) {
    throw new InvalidArgumentError(`${field}.cpu_shares`, `${r.cpuShares} is outside 2..262144`);
  }
  if (r.memoryLimitInBytes > 0n && r.memoryLimitInBytes < BigInt(MIN_MEMORY_LIMIT)) {
    throw new InvalidArgumentError(
      `${field}.memory_limit_in_bytes`,
      `${r.memoryLimitInBytes} is below the ${MIN_MEMORY_LIMIT}-byte minimum`,
    );
  }
  if (r.oomScoreAdj < -1000n || r.oomScoreAdj > 1000n) {
    throw new InvalidArgumentError(`${field}.oom_score_adj`, `${r.oomScoreAdj} is outside -1000..1000`);
  }
  const out: CgroupResources = {};
  const cpu = {
    shares: int64(`${field}.cpu_shares`, r.cpuShares),
    quota: int64(`${field}.cpu_quota`, r.cpuQuota),
    period: int64(`${field}.cpu_period`, r.cpuPeriod),
    cpus: r.cpusetCpus || undefined,
    mems: r.cpusetMems || undefined,
  };
  if (Object.values(cpu).some((x) => x !== undefined)) out.cpu = cpu;
  const memory = {
    limit: int64(`${field}.memory_limit_in_bytes`, r.memoryLimitInBytes),
    swap: int64(`${field}.memory_swap_limit_in_bytes`, r.memorySwapLimitInBytes),
  };
  if (memory.limit !== undefined || memory.swap !== undefined) out.memory = memory;
  if (r.hugepageLimits.length > 0) {
    out.hugepageLimits = r.hugepageLimits.map((h, i) => {
      if (h.limit > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new InvalidArgumentError(`${field}.hugepage_limits[${i}].limit`, `${h.limit} is out of range`);
      }
      return { pageSize: h.pageSize, limit: Number(h.limit) };
    });
  }
  if (Object.keys(r.unified).length > 0) out.unified = { ...r.unified };
  validateResources(out, field);
  checkHostResources(r, field);
  if (cgroupVersion === 1) {
    for (const k of Object.keys(out.unified ?? {})) {
      if (k !== 'pids.max') {
        throw new InvalidArgumentError(
          `${field}.unified[${k}]`,
          'raw cgroup v2 files need cgroup v2; this host runs cgroup v1',
        );
      }
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Validates a RunPodSandbox request and turns it into the containerizer's spec. */
export function sandboxSpecFromRequest(req: RunPodSandboxRequest, opts: MappingOptions): SandboxSpec {
  const config = req.config;
  if (!config) throw new InvalidArgumentError('config', 'is required');
  const md = config.metadata;
  if (!md) throw new InvalidArgumentError('config.metadata', 'is required');
  for (const [f, v, max] of [
    ['name', md.name, MAX_NAME],
    ['uid', md.uid, MAX_UID],
    ['namespace', md.namespace, MAX_NAME],
  ] as const) {
    if (v === '') throw new InvalidArgumentError(`config.metadata.${f}`, 'is required');
    checkText(`config.metadata.${f}`, v, max);
  }
  // Before anything serializes the request (the fingerprint's toJSON throws on them).
  checkEnums(config, 'config');
  // A named handler runs the pod exactly as the default one does: the names
  // exist so that RuntimeClasses an operator set up (or a test suite expects)
  // find a handler here.
  const handlers = opts.runtimeHandlers ?? [];
  if (req.runtimeHandler !== '' && !handlers.includes(req.runtimeHandler)) {
    const known = ['""', ...handlers.map((h) => `"${h}"`)].join(', ');
    throw new InvalidArgumentError(
      'runtime_handler',
      `unknown runtime handler "${req.runtimeHandler.slice(0, 80)}" (capsa serves ${known}; see runtime_handlers)`,
    );
  }

  const linux = config.linux;
  const nso = linux?.securityContext?.namespaceOptions;
  const network = nsMode('config.linux.security_context.namespace_options.network', nso?.network ?? NamespaceMode.POD, [
    NamespaceMode.POD,
    NamespaceMode.NODE,
  ]);
  const ipc = nsMode('config.linux.security_context.namespace_options.ipc', nso?.ipc ?? NamespaceMode.POD, [
    NamespaceMode.POD,
    NamespaceMode.NODE,
  ]);
  const pid = nsMode('config.linux.security_context.namespace_options.pid', nso?.pid ?? NamespaceMode.POD, [
    NamespaceMode.POD,
    NamespaceMode.CONTAINER,
    NamespaceMode.NODE,
  ]);
  const userns = usernsFromCri(nso?.usernsOptions, `${NSO}.userns_options`);
  if (userns && opts.subIds) {
    checkSubIds(userns.uids, opts.subIds.uids, `${NSO}.userns_options.uids`, '/etc/subuid');
    checkSubIds(userns.gids, opts.subIds.gids, `${NSO}.userns_options.gids`, '/etc/subgid');
  }
  if (userns) {
    // kubelet refuses hostUsers: false with host namespaces; the node's
    // namespaces are not the user namespace's to use.
    for (const [f, mode] of [
      ['network', network],
      ['ipc', ipc],
      ['pid', pid],
    ] as const) {
      if (mode === NamespaceMode.NODE) {
        throw new InvalidArgumentError(`${NSO}.${f}`, 'NODE cannot be combined with a POD user namespace');
      }
    }
  }
  const namespaces = {
    network: (network === NamespaceMode.NODE ? 'host' : 'pod') as HostOrPod,
    ipc: (ipc === NamespaceMode.NODE ? 'host' : 'pod') as HostOrPod,
    pid: (pid === NamespaceMode.NODE ? 'host' : pid === NamespaceMode.CONTAINER ? 'container' : 'pod') as PidMode,
    ...(userns ? { userns } : {}),
  };

  let hostname = config.hostname;
  if (hostname === '')
    hostname =
      namespaces.network === 'host'
        ? os.hostname()
        : md.name
            .slice(0, 63)
            .replace(/[^A-Za-z0-9.-]/g, '-')
            .replace(/^[-.]+|[-.]+$/g, '');
  if (!HOSTNAME.test(hostname)) {
    throw new InvalidArgumentError(
      'config.hostname',
      `"${hostname.slice(0, 80)}" is not a valid hostname (1-64 letters, digits, '-', '.')`,
    );
  }

  if (config.logDirectory !== '') {
    checkText('config.log_directory', config.logDirectory, 4096);
    checkLogDirectory('config.log_directory', config.logDirectory);
  }

  let dns: SandboxSpec['dns'];
  const d = config.dnsConfig;
  if (d && (d.servers.length > 0 || d.searches.length > 0 || d.options.length > 0)) {
    d.servers.forEach((s, i) => {
      if (isIP(s) === 0)
        throw new InvalidArgumentError(`config.dns_config.servers[${i}]`, `"${s.slice(0, 80)}" is not an IP address`);
    });
    d.searches.forEach((s, i) => {
      if (!SEARCH.test(s))
        throw new InvalidArgumentError(`config.dns_config.searches[${i}]`, `"${s.slice(0, 80)}" is not a domain`);
    });
    d.options.forEach((s, i) => {
      if (!OPTION.test(s))
        throw new InvalidArgumentError(
          `config.dns_config.options[${i}]`,
          `"${s.slice(0, 80)}" is not a resolver option`,
        );
    });
    if (d.servers.length > 32 || d.searches.length > 32 || d.options.length > 32) {
      throw new InvalidArgumentError('config.dns_config', 'at most 32 servers, searches and options each');
    }
    dns = { servers: [...d.servers], searches: [...d.searches], options: [...d.options] };
  }

  const portMappings = config.portMappings.map((p, i) => {
    const f = `config.port_mappings[${i}]`;
    if (p.containerPort < 0 || p.containerPort > 65535)
      throw new InvalidArgumentError(`${f}.container_port`, `${p.containerPort} is not a port`);
    if (p.hostPort < 0 || p.hostPort > 65535)
      throw new InvalidArgumentError(`${f}.host_port`, `${p.hostPort} is not a port`);
    if (p.hostIp !== '' && isIP(p.hostIp) === 0)
      throw new InvalidArgumentError(`${f}.host_ip`, `"${p.hostIp}" is not an IP address`);
    return {
      protocol: Protocol[p.protocol] ?? 'TCP',
      containerPort: p.containerPort,
      hostPort: p.hostPort,
      hostIp: p.hostIp,
    };
  });

  const sysctls: Record<string, string> = {};
  for (const [k, v] of Object.entries(linux?.sysctls ?? {})) {
    const problem = sysctlProblem(k, v, namespaces);
    if (problem) throw new InvalidArgumentError(`config.linux.sysctls[${k.slice(0, 80)}]`, problem);
    sysctls[k] = v;
  }

  const cgroupParent = linux?.cgroupParent ?? '';
  try {
    if (opts.cgroupDriver === 'systemd') systemdParentSlice(cgroupParent);
    else normalizeCgroupfsParent(cgroupParent);
  } catch (err) {
    if (err instanceof CgroupPathError) throw new InvalidArgumentError('config.linux.cgroup_parent', err.message);
    throw err;
  }

  checkStringMap('config.labels', config.labels);
  checkStringMap('config.annotations', config.annotations);

  return {
    key: sandboxKey(md),
    metadata: { name: md.name, uid: md.uid, namespace: md.namespace, attempt: md.attempt },
    hostname,
    logDirectory: config.logDirectory,
    dns,
    namespaces,
    sysctls,
    cgroupParent,
    resources: criResources(linux?.resources, 'config.linux.resources', opts.cgroupVersion),
    overhead: criResources(linux?.overhead, 'config.linux.overhead', opts.cgroupVersion),
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    runtimeHandler: req.runtimeHandler,
    portMappings,
    original: PodSandboxConfig.toJSON(config),
  };
}

function modeToCri(m: HostOrPod | PidMode): NamespaceMode {
  return m === 'host' ? NamespaceMode.NODE : m === 'container' ? NamespaceMode.CONTAINER : NamespaceMode.POD;
}

function criState(sb: Sandbox): PodSandboxState {
  return sb.criState() === 'SANDBOX_READY' ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY;
}

export function toPodSandbox(sb: Sandbox): PodSandbox {
  return {
    id: sb.id,
    metadata: { ...sb.spec.metadata },
    state: criState(sb),
    createdAt: sb.facts.createdAt,
    labels: { ...sb.spec.labels },
    annotations: { ...sb.spec.annotations },
    runtimeHandler: sb.spec.runtimeHandler,
  };
}

export function toPodSandboxStatus(sb: Sandbox): PodSandboxStatus {
  const ready = sb.criState() === 'SANDBOX_READY';
  const ips = ready && sb.spec.namespaces.network === 'pod' ? sb.ctx.network.ips : [];
  return {
    id: sb.id,
    metadata: { ...sb.spec.metadata },
    state: criState(sb),
    createdAt: sb.facts.createdAt,
    network: { ip: ips[0] ?? '', additionalIps: ips.slice(1).map((ip) => ({ ip })) },
    linux: {
      namespaces: {
        options: {
          network: modeToCri(sb.spec.namespaces.network),
          pid: modeToCri(sb.spec.namespaces.pid),
          ipc: modeToCri(sb.spec.namespaces.ipc),
          targetId: '',
          usernsOptions: usernsToCri(sb.spec.namespaces.userns),
        },
      },
    },
    labels: { ...sb.spec.labels },
    annotations: { ...sb.spec.annotations },
    runtimeHandler: sb.spec.runtimeHandler,
  };
}

/** The `info` map of a verbose PodSandboxStatus: one JSON document, as crictl inspectp shows it. */
export function verboseInfo(sb: Sandbox): Record<string, string> {
  const ctx = sb.ctx;
  const info = {
    id: sb.id,
    lifecycle: sb.state,
    createdAt: sb.facts.createdAt.toString(),
    readyAt: sb.facts.readyAt?.toString(),
    stoppedAt: sb.facts.stoppedAt?.toString(),
    stopReason: sb.facts.stopReason,
    cleanupPending: sb.cleanupPending,
    namespaces: ctx.namespaces,
    pidHolder: ctx.pidHolder,
    cgroup: ctx.cgroup ? { path: ctx.cgroup.path, version: ctx.cgroup.version } : undefined,
    files: ctx.files,
    network: ctx.network,
    runtimeHandler: sb.spec.runtimeHandler,
    config: sb.spec.original,
  };
  return { info: JSON.stringify(info) };
}

/** ListPodSandbox's filter: id prefix, state, every label equal (all ANDed). */
export function matchesFilter(sb: Sandbox, f: PodSandboxFilter | undefined): boolean {
  if (!f) return true;
  if (f.id !== '' && !sb.id.startsWith(f.id)) return false;
  if (f.state && criState(sb) !== f.state.state) return false;
  for (const [k, v] of Object.entries(f.labelSelector)) if (sb.spec.labels[k] !== v) return false;
  return true;
}
