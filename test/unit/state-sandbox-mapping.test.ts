// CRI ⇄ sandbox mapping: validation naming fields, the spec built from a
// request, ListPodSandbox filters, request fingerprints and the CRI states
// shown for sandboxes.
import {
  matchesFilter,
  requestFingerprint,
  sandboxKey,
  sandboxSpecFromRequest,
  toPodSandbox,
  toPodSandboxStatus,
} from '../../src/cri/sandbox-mapping';
import { Sandbox } from '../../src/containerizer/sandbox';
import type { SandboxContext } from '../../src/containerizer/sandbox-spec';
import { CapsaError } from '../../src/errors';
import { NamespaceMode, PodSandboxState, RunPodSandboxRequest } from '../../src/gen/runtime/v1/api';
import { createLogger } from '../../src/log';

const opts = { cgroupDriver: 'cgroupfs' as const, cgroupVersion: 1 as const };

function req(partial: Record<string, unknown> = {}, config: Record<string, unknown> = {}): RunPodSandboxRequest {
  return RunPodSandboxRequest.fromPartial({
    config: {
      metadata: { name: 'web', uid: 'uid-1', namespace: 'default', attempt: 0 },
      hostname: 'web-0',
      ...config,
    },
    ...partial,
  });
}

function errorOf(fn: () => unknown): CapsaError {
  try {
    fn();
  } catch (e) {
    return e as CapsaError;
  }
  throw new Error('did not throw');
}

describe('RunPodSandbox validation', () => {
  test.each<[string, RunPodSandboxRequest, string, string]>([
    ['no config', RunPodSandboxRequest.fromPartial({}), 'InvalidArgument', 'config'],
    ['no metadata', req({}, { metadata: undefined }), 'InvalidArgument', 'config.metadata'],
    ['no name', req({}, { metadata: { uid: 'u', namespace: 'n' } }), 'InvalidArgument', 'config.metadata.name'],
    ['no uid', req({}, { metadata: { name: 'a', namespace: 'n' } }), 'InvalidArgument', 'config.metadata.uid'],
    ['no namespace', req({}, { metadata: { name: 'a', uid: 'u' } }), 'InvalidArgument', 'config.metadata.namespace'],
    [
      'huge name',
      req({}, { metadata: { name: 'x'.repeat(5000), uid: 'u', namespace: 'n' } }),
      'InvalidArgument',
      'config.metadata.name',
    ],
    [
      'control chars',
      req({}, { metadata: { name: 'a\nb', uid: 'u', namespace: 'n' } }),
      'InvalidArgument',
      'config.metadata.name',
    ],
    ['bad hostname', req({}, { hostname: 'a b' }), 'InvalidArgument', 'config.hostname'],
    ['long hostname', req({}, { hostname: 'h'.repeat(65) }), 'InvalidArgument', 'config.hostname'],
    ['long hostname with a dot', req({}, { hostname: `${'h'.repeat(64)}.` }), 'InvalidArgument', 'config.hostname'],
    ['hostname of a dot', req({}, { hostname: '.' }), 'InvalidArgument', 'config.hostname'],
    ['hostname ending in two dots', req({}, { hostname: 'a..' }), 'InvalidArgument', 'config.hostname'],
    [
      'dns server',
      req({}, { dnsConfig: { servers: ['8.8.8.8', 'nameserver evil'] } }),
      'InvalidArgument',
      'config.dns_config.servers[1]',
    ],
    ['dns search', req({}, { dnsConfig: { searches: ['a b'] } }), 'InvalidArgument', 'config.dns_config.searches[0]'],
    [
      'dns option',
      req({}, { dnsConfig: { options: ['ndots:5\nnameserver 1.2.3.4'] } }),
      'InvalidArgument',
      'config.dns_config.options[0]',
    ],
    ['relative log dir', req({}, { logDirectory: 'var/log' }), 'InvalidArgument', 'config.log_directory'],
    [
      'port',
      req({}, { portMappings: [{ containerPort: 70000 }] }),
      'InvalidArgument',
      'config.port_mappings[0].container_port',
    ],
    ['handler', req({ runtimeHandler: 'kata' }), 'InvalidArgument', 'runtime_handler'],
    [
      'net sysctl in host network',
      req(
        {},
        {
          linux: {
            sysctls: { 'net.ipv4.ip_forward': '1' },
            securityContext: { namespaceOptions: { network: NamespaceMode.NODE } },
          },
        },
      ),
      'InvalidArgument',
      'config.linux.sysctls[net.ipv4.ip_forward]',
    ],
    [
      'non-namespaced sysctl',
      req({}, { linux: { sysctls: { 'kernel.panic': '1' } } }),
      'InvalidArgument',
      'config.linux.sysctls[kernel.panic]',
    ],
    [
      'sysctl traversal',
      req({}, { linux: { sysctls: { 'net/../../kernel/panic': '1' } } }),
      'InvalidArgument',
      'config.linux.sysctls[net/../../kernel/panic]',
    ],
    [
      'cgroup parent traversal',
      req({}, { linux: { cgroupParent: '/kubepods/../../x' } }),
      'InvalidArgument',
      'config.linux.cgroup_parent',
    ],
    [
      'slice with cgroupfs',
      req({}, { linux: { cgroupParent: 'kubepods.slice' } }),
      'InvalidArgument',
      'config.linux.cgroup_parent',
    ],
    [
      'TARGET network',
      req({}, { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.TARGET } } } }),
      'InvalidArgument',
      'config.linux.security_context.namespace_options.network',
    ],
    [
      'negative memory',
      req({}, { linux: { resources: { memoryLimitInBytes: -5n } } }),
      'InvalidArgument',
      'config.linux.resources.memory_limit_in_bytes',
    ],
    [
      'tiny quota',
      req({}, { linux: { resources: { cpuQuota: 3n } } }),
      'InvalidArgument',
      'config.linux.resources.cpu_quota',
    ],
    [
      'huge period',
      req({}, { linux: { resources: { cpuPeriod: 99_000_000n } } }),
      'InvalidArgument',
      'config.linux.resources.cpu_period',
    ],
    [
      'absurd int64',
      req({}, { linux: { resources: { memoryLimitInBytes: 2n ** 62n } } }),
      'InvalidArgument',
      'config.linux.resources.memory_limit_in_bytes',
    ],
    [
      'v2 file on v1',
      req({}, { linux: { resources: { unified: { 'memory.high': '1' } } } }),
      'InvalidArgument',
      'config.linux.resources.unified[memory.high]',
    ],
  ])('%s', (_name, r, kind, field) => {
    const err = errorOf(() => sandboxSpecFromRequest(r, opts));
    expect(err).toBeInstanceOf(CapsaError);
    expect(err.kind).toBe(kind);
    expect(err.context.field).toBe(field);
    expect(err.message.startsWith(field)).toBe(true);
  });

  test('a POD user namespace: its checked mappings in the spec; none is InvalidArgument', () => {
    const MAP = [{ containerId: 0, hostId: 100000, length: 65536 }];
    const userns = (uids: typeof MAP): ReturnType<typeof req> =>
      req(
        {},
        {
          linux: {
            securityContext: { namespaceOptions: { usernsOptions: { mode: NamespaceMode.POD, uids, gids: MAP } } },
          },
        },
      );
    expect(sandboxSpecFromRequest(userns(MAP), opts).namespaces.userns).toEqual({
      uids: [{ containerID: 0, hostID: 100000, size: 65536 }],
      gids: [{ containerID: 0, hostID: 100000, size: 65536 }],
    });
    const err = errorOf(() => sandboxSpecFromRequest(userns([]), opts));
    expect(err.kind).toBe('InvalidArgument');
    expect(err.context.field).toBe('config.linux.security_context.namespace_options.userns_options.uids');
    // the host set ids aside for kubelet's pods (/etc/subuid): a pod outside them is refused
    const subIds = { uids: [{ first: 200000, count: 65536 }], gids: [{ first: 100000, count: 65536 }] };
    const outside = errorOf(() => sandboxSpecFromRequest(userns(MAP), { ...opts, subIds }));
    expect(outside.context.field).toBe(
      'config.linux.security_context.namespace_options.userns_options.uids[0].host_id',
    );
    expect(outside.message).toMatch(/outside the kubelet user's subordinate ids in \/etc\/subuid \(200000\+65536\)/);
  });

  test('a systemd slice is a valid parent for the systemd driver', () => {
    const r = req({}, { linux: { cgroupParent: 'kubepods-burstable-pod1.slice' } });
    expect(sandboxSpecFromRequest(r, { ...opts, cgroupDriver: 'systemd' }).cgroupParent).toBe(
      'kubepods-burstable-pod1.slice',
    );
  });
});

describe('the spec', () => {
  test('carries modes, sysctls, dns, resources and the name key', () => {
    const spec = sandboxSpecFromRequest(
      req(
        {},
        {
          dnsConfig: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
          labels: { app: 'web' },
          annotations: { a: 'b' },
          linux: {
            cgroupParent: '/kubepods/burstable/poduid-1',
            sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
            securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.NODE } },
            resources: { cpuShares: 512n, memoryLimitInBytes: 64n * 1024n * 1024n, unified: { 'pids.max': '50' } },
          },
        },
      ),
      opts,
    );
    expect(spec.key).toBe('web_default_uid-1_0');
    expect(spec.namespaces).toEqual({ network: 'pod', ipc: 'host', pid: 'container' });
    expect(spec.dns).toEqual({ servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] });
    expect(spec.resources).toEqual({
      cpu: { shares: 512 },
      memory: { limit: 64 * 1024 * 1024 },
      unified: { 'pids.max': '50' },
    });
    expect(spec.labels).toEqual({ app: 'web' });
  });

  test('an empty hostname defaults to the pod name', () => {
    expect(sandboxSpecFromRequest(req({}, { hostname: '' }), opts).hostname).toBe('web');
  });

  test("kubelet's FQDN hostname with an empty cluster domain (a trailing dot) is taken as it is", () => {
    // setHostnameAsFQDN: "<pod>.<subdomain>.<namespace>.svc.<cluster domain>"
    const fqdn = 'hostfqdn-35741.t.hostfqdn-3699.svc.';
    expect(sandboxSpecFromRequest(req({}, { hostname: fqdn }), opts).hostname).toBe(fqdn);
    const max = `${'h'.repeat(63)}.`; // 64 bytes, sethostname's limit
    expect(sandboxSpecFromRequest(req({}, { hostname: max }), opts).hostname).toBe(max);
  });

  test('an IPC sysctl with host IPC is refused, a net one is fine', () => {
    const host = { securityContext: { namespaceOptions: { ipc: NamespaceMode.NODE } } };
    expect(() =>
      sandboxSpecFromRequest(req({}, { linux: { ...host, sysctls: { 'kernel.msgmax': '1' } } }), opts),
    ).toThrow(/host IPC/);
    expect(() =>
      sandboxSpecFromRequest(req({}, { linux: { ...host, sysctls: { 'net.core.somaxconn': '1' } } }), opts),
    ).not.toThrow();
  });

  test('fingerprints: identical requests match, any difference does not', () => {
    expect(requestFingerprint(req())).toBe(requestFingerprint(req()));
    expect(requestFingerprint(req({}, { labels: { a: '1', b: '2' } }))).toBe(
      requestFingerprint(req({}, { labels: { b: '2', a: '1' } })),
    );
    expect(requestFingerprint(req({}, { hostname: 'other' }))).not.toBe(requestFingerprint(req()));
    expect(sandboxKey({ name: 'a', namespace: 'b', uid: 'c', attempt: 2 })).toBe('a_b_c_2');
  });
});

describe('listing', () => {
  const log = createLogger('fatal');
  function sandbox(id: string, labels: Record<string, string>, stopped: boolean): Sandbox {
    const spec = sandboxSpecFromRequest(req({}, { labels }), opts);
    const ctx = { id, spec, namespaces: {}, network: { ips: [] }, log } as unknown as SandboxContext;
    const sb = new Sandbox(id, ctx, 'fp', { createdAt: 10n, readyAt: 11n, stoppedAt: stopped ? 12n : undefined });
    sb.state = stopped ? 'STOPPED' : 'RUNNING';
    return sb;
  }
  const a = sandbox('ab' + '0'.repeat(62), { app: 'web', tier: 'front' }, false);
  const b = sandbox('ac' + '1'.repeat(62), { app: 'web' }, true);
  const c = sandbox('bc' + '2'.repeat(62), { app: 'db' }, false);
  const all = [a, b, c];
  const ids = (f: Parameters<typeof matchesFilter>[1]): string[] =>
    all.filter((s) => matchesFilter(s, f)).map((s) => s.id.slice(0, 2));

  test('no filter lists everything', () => {
    expect(ids(undefined)).toEqual(['ab', 'ac', 'bc']);
  });
  test('id prefix', () => {
    expect(ids({ id: 'a', state: undefined, labelSelector: {} })).toEqual(['ab', 'ac']);
    expect(ids({ id: a.id, state: undefined, labelSelector: {} })).toEqual(['ab']);
    expect(ids({ id: 'ff', state: undefined, labelSelector: {} })).toEqual([]);
  });
  test('state', () => {
    expect(ids({ id: '', state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: {} })).toEqual(['ab', 'bc']);
    expect(ids({ id: '', state: { state: PodSandboxState.SANDBOX_NOTREADY }, labelSelector: {} })).toEqual(['ac']);
  });
  test('labels: every selector label must match', () => {
    expect(ids({ id: '', state: undefined, labelSelector: { app: 'web' } })).toEqual(['ab', 'ac']);
    expect(ids({ id: '', state: undefined, labelSelector: { app: 'web', tier: 'front' } })).toEqual(['ab']);
    expect(ids({ id: '', state: undefined, labelSelector: { app: 'nope' } })).toEqual([]);
  });
  test('all ANDed', () => {
    expect(ids({ id: 'a', state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: { app: 'web' } })).toEqual([
      'ab',
    ]);
  });
  test('CRI shapes', () => {
    expect(toPodSandbox(b)).toMatchObject({
      id: b.id,
      state: PodSandboxState.SANDBOX_NOTREADY,
      createdAt: 10n,
      labels: { app: 'web' },
    });
    expect(toPodSandboxStatus(a).linux?.namespaces?.options).toEqual({
      network: NamespaceMode.POD,
      pid: NamespaceMode.POD,
      ipc: NamespaceMode.POD,
      targetId: '',
      usernsOptions: undefined,
    });
  });
});
