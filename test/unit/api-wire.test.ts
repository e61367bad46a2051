// Wire compatibility of our CRI transcription (api/runtime/v1/api.proto) and
// its generated bindings (src/gen, from hack/gen-proto.sh).
//
// The known-bytes checks below were worked out by hand from the CRI v1 field
// numbers and wire types, so a wrong number, type or packing in the .proto
// fails here even if encode and decode agree with each other.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  AuthConfig,
  CgroupDriver,
  CheckpointPodRequest,
  ContainerConfig,
  ContainerEventResponse,
  ContainerEventType,
  ContainerState,
  ExecSyncResponse,
  IDMapping,
  ImageServiceClient,
  ImageServiceServer,
  ImageServiceService,
  ImageSpec,
  ImageStatusResponse,
  Int64Value,
  KeyValue,
  LinuxContainerResources,
  LinuxContainerSecurityContext,
  LinuxSandboxSecurityContext,
  ListContainersResponse,
  MetricType,
  Mount,
  MountPropagation,
  NamespaceMode,
  PodSandboxConfig,
  PodSandboxState,
  PodSandboxStatusResponse,
  PortForwardRequest,
  Protocol,
  PsiData,
  PullImageRequest,
  RuntimeConfigResponse,
  RuntimeServiceClient,
  RuntimeServiceServer,
  RuntimeServiceService,
  SecurityProfile,
  SecurityProfile_ProfileType,
  Signal,
  StreamImagesResponse,
  SupplementalGroupsPolicy,
  UInt64Value,
  VersionRequest,
  VersionResponse,
} from '../../src/gen/runtime/v1/api';

/** Hex string of an encoded message. */
function hex(writer: { finish(): Uint8Array }): string {
  return Buffer.from(writer.finish()).toString('hex');
}

/** Bytes from a hex string with optional spaces. */
function bytes(spaced: string): Buffer {
  return Buffer.from(spaced.replace(/\s+/g, ''), 'hex');
}

describe('known bytes', () => {
  it('VersionRequest{version:"v1"} is 0a 02 76 31', () => {
    expect(hex(VersionRequest.encode({ version: 'v1' }))).toBe('0a027631');
    expect(VersionRequest.decode(bytes('0a 02 76 31'))).toEqual({ version: 'v1' });
  });

  it('omits proto3 default values', () => {
    expect(hex(VersionRequest.encode({ version: '' }))).toBe('');
    expect(hex(VersionResponse.encode(VersionResponse.create()))).toBe('');
  });

  it('VersionResponse uses fields 1-4', () => {
    const msg = { version: 'a', runtimeName: 'b', runtimeVersion: 'c', runtimeApiVersion: 'd' };
    expect(hex(VersionResponse.encode(msg))).toBe('0a0161' + '120162' + '1a0163' + '220164');
  });

  it('ImageSpec high field numbers 18, 19, 20 take two-byte tags', () => {
    const spec = ImageSpec.fromPartial({ userSpecifiedImage: 'u', runtimeHandler: 'r', imageRef: 'x' });
    // (18<<3)|2 = 0x92 0x01, (19<<3)|2 = 0x9a 0x01, (20<<3)|2 = 0xa2 0x01
    expect(hex(ImageSpec.encode(spec))).toBe('92010175' + '9a010172' + 'a2010178');
    expect(ImageSpec.decode(bytes('a2 01 01 78')).imageRef).toBe('x');
  });

  it('LinuxContainerSecurityContext.supplemental_groups_policy is field 17 (varint)', () => {
    const ctx = LinuxContainerSecurityContext.fromPartial({
      supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict,
    });
    expect(hex(LinuxContainerSecurityContext.encode(ctx))).toBe('880101');
  });

  it('ContainerConfig.stop_signal is field 18 with SIGNAL_SIGTERM = 23', () => {
    const cfg = ContainerConfig.fromPartial({ stopSignal: Signal.SIGNAL_SIGTERM });
    expect(hex(ContainerConfig.encode(cfg))).toBe('900117');
    expect(ContainerConfig.decode(bytes('90 01 0d')).stopSignal).toBe(Signal.SIGNAL_SIGKILL);
  });

  it('packs repeated int32 (PortForwardRequest.port)', () => {
    const req = PortForwardRequest.fromPartial({ podSandboxId: 'p', port: [80, 443] });
    expect(hex(PortForwardRequest.encode(req))).toBe('0a0170' + '1203' + '50' + 'bb03');
    // Decoders must also accept the unpacked form.
    expect(PortForwardRequest.decode(bytes('10 50 10 bb 03')).port).toEqual([80, 443]);
  });

  it('encodes a map<string,string> entry as a nested key=1/value=2 message (labels = 6)', () => {
    const cfg = PodSandboxConfig.fromPartial({ labels: { a: 'b' } });
    expect(hex(PodSandboxConfig.encode(cfg))).toBe('3206' + '0a0161' + '120162');
  });

  it('encodes negative int64 as a 10-byte varint (memory_swap_limit_in_bytes = 10)', () => {
    const res = LinuxContainerResources.fromPartial({ memorySwapLimitInBytes: -1 });
    expect(hex(LinuxContainerResources.encode(res))).toBe('50' + 'ff'.repeat(9) + '01');
  });

  it('encodes negative int32 sign-extended to 10 bytes, unlike sint32/uint32 (ExecSyncResponse.exit_code = 3)', () => {
    const res = ExecSyncResponse.fromPartial({ exitCode: -1 });
    expect(hex(ExecSyncResponse.encode(res))).toBe('18' + 'ff'.repeat(9) + '01');
    expect(ExecSyncResponse.decode(bytes('18 ff ff ff ff ff ff ff ff ff 01')).exitCode).toBe(-1);
  });

  it('keeps presence of wrapped zero values (run_as_user = 3, run_as_group = 8)', () => {
    const ctx = LinuxSandboxSecurityContext.fromPartial({ runAsUser: { value: 0 }, runAsGroup: { value: 1000 } });
    expect(hex(LinuxSandboxSecurityContext.encode(ctx))).toBe('1a00' + '4203' + '08e807');
    const back = LinuxSandboxSecurityContext.decode(bytes('1a 00'));
    expect(back.runAsUser).toEqual({ value: 0n });
    expect(back.runAsGroup).toBeUndefined();
  });

  it('still carries the deprecated seccomp_profile_path (field 7)', () => {
    const ctx = LinuxSandboxSecurityContext.fromPartial({ seccompProfilePath: 'u' });
    expect(hex(LinuxSandboxSecurityContext.encode(ctx))).toBe('3a0175');
  });

  it('encodes PSI averages as little-endian doubles (PsiData.Avg10 = 2)', () => {
    const psi = PsiData.fromPartial({ Total: 5, Avg10: 1.5 });
    expect(hex(PsiData.encode(psi))).toBe('0805' + '11' + '000000000000f83f');
  });

  it('KeyValue.value is bytes and carries non-UTF-8 data', () => {
    const kv = KeyValue.fromPartial({ key: 'A', value: Buffer.from([0xff]) });
    expect(hex(KeyValue.encode(kv))).toBe('0a0141' + '1201ff');
    // A string value on the wire (older senders) decodes to its UTF-8 bytes.
    expect(KeyValue.decode(bytes('0a 01 41 12 02 68 69')).value.toString('utf8')).toBe('hi');
  });

  it('nested enum SecurityProfile.ProfileType', () => {
    const p = SecurityProfile.fromPartial({
      profileType: SecurityProfile_ProfileType.Localhost,
      localhostRef: 'p',
    });
    expect(hex(SecurityProfile.encode(p))).toBe('0802' + '120170');
  });

  it('Mount: propagation = 5, uidMappings = 6, recursive_read_only = 8, mount_options = 11', () => {
    const m = Mount.fromPartial({
      propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL,
      uidMappings: [{ hostId: 1, containerId: 0, length: 1 }],
      recursiveReadOnly: true,
      mountOptions: ['noexec'],
    });
    expect(hex(Mount.encode(m))).toBe('2802' + '32040801' + '1801' + '4001' + '5a066e6f65786563');
  });

  it('IDMapping uint32 varints', () => {
    const m = IDMapping.fromPartial({ hostId: 100000, containerId: 0, length: 65536 });
    expect(hex(IDMapping.encode(m))).toBe('08a08d06' + '18808004');
  });

  it('CheckpointPodRequest (pod checkpoint RPC messages)', () => {
    const req = CheckpointPodRequest.fromPartial({ podSandboxId: 'p', outputPath: '/o', containerIds: ['c'] });
    expect(hex(CheckpointPodRequest.encode(req))).toBe('0a0170' + '12022f6f' + '1a0163');
  });

  it('enum values on the wire', () => {
    const ev = ContainerEventResponse.fromPartial({ containerEventType: ContainerEventType.CONTAINER_DELETED_EVENT });
    expect(hex(ContainerEventResponse.encode(ev))).toBe('1003');
    const rc = RuntimeConfigResponse.fromPartial({ linux: { cgroupDriver: CgroupDriver.CGROUPFS } });
    expect(hex(RuntimeConfigResponse.encode(rc))).toBe('0a020801');
  });

  it('enum numbers match CRI v1', () => {
    expect([Protocol.TCP, Protocol.UDP, Protocol.SCTP]).toEqual([0, 1, 2]);
    expect([NamespaceMode.POD, NamespaceMode.CONTAINER, NamespaceMode.NODE, NamespaceMode.TARGET]).toEqual([
      0, 1, 2, 3,
    ]);
    expect([PodSandboxState.SANDBOX_READY, PodSandboxState.SANDBOX_NOTREADY]).toEqual([0, 1]);
    expect([
      ContainerState.CONTAINER_CREATED,
      ContainerState.CONTAINER_RUNNING,
      ContainerState.CONTAINER_EXITED,
      ContainerState.CONTAINER_UNKNOWN,
    ]).toEqual([0, 1, 2, 3]);
    expect([CgroupDriver.SYSTEMD, CgroupDriver.CGROUPFS]).toEqual([0, 1]);
    expect([MetricType.COUNTER, MetricType.GAUGE]).toEqual([0, 1]);
    expect(Signal.SIGNAL_RUNTIME_DEFAULT).toBe(0);
    expect(Signal.SIGNAL_SIGKILL).toBe(13);
    expect(Signal.SIGNAL_SIGRTMIN).toBe(35);
    expect(Signal.SIGNAL_SIGRTMAX).toBe(65);
  });

  it('skips unknown fields from newer peers', () => {
    // VersionRequest{version:"v1"} followed by field 99 (varint 7) and field 100 (bytes "z").
    const msg = VersionRequest.decode(bytes('0a 02 76 31  98 06 07  a2 06 01 7a'));
    expect(msg).toEqual({ version: 'v1' });
  });

  it('int64/uint64 are exact bigints, past 2^53 too', () => {
    // uint64 2^63: 80 80 80 80 80 80 80 80 80 01
    expect(UInt64Value.decode(bytes('08 80 80 80 80 80 80 80 80 80 01')).value).toBe(2n ** 63n);
    expect(Int64Value.decode(Int64Value.encode({ value: -5n }).finish()).value).toBe(-5n);
  });

  it('a Unix-nanosecond timestamp survives a round trip to the nanosecond', () => {
    // 2026-01-01T00:00:00.000000001Z
    const ns = 1_767_225_600_000_000_001n;
    const wire = Int64Value.encode({ value: ns }).finish();
    expect(Buffer.from(wire).toString('hex')).toBe('088180e8ef9eca9cc318');
    expect(Int64Value.decode(wire).value).toBe(ns);
  });
});

describe('round trips', () => {
  function roundTrip<T>(codec: { encode(m: T): { finish(): Uint8Array }; decode(b: Uint8Array): T }, msg: T): T {
    return codec.decode(codec.encode(msg).finish());
  }

  it('PodSandboxConfig with metadata, labels, annotations, linux options, ports and DNS', () => {
    const cfg = PodSandboxConfig.fromPartial({
      metadata: { name: 'web-0', uid: '3f1c-uid', namespace: 'default', attempt: 2 },
      hostname: 'web-0',
      logDirectory: '/var/log/pods/default_web-0_3f1c-uid',
      dnsConfig: {
        servers: ['10.96.0.10'],
        searches: ['default.svc.cluster.local', 'svc.cluster.local'],
        options: ['ndots:5'],
      },
      portMappings: [
        { protocol: Protocol.TCP, containerPort: 8080, hostPort: 80, hostIp: '0.0.0.0' },
        { protocol: Protocol.SCTP, containerPort: 9000, hostPort: 0, hostIp: '' },
      ],
      labels: { app: 'web', 'io.kubernetes.pod.name': 'web-0' },
      annotations: { 'kubernetes.io/config.seen': '2026-01-01T00:00:00Z', empty: '' },
      linux: {
        cgroupParent: '/kubepods/burstable/pod3f1c',
        sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
        securityContext: {
          namespaceOptions: {
            network: NamespaceMode.POD,
            pid: NamespaceMode.CONTAINER,
            ipc: NamespaceMode.POD,
            usernsOptions: {
              mode: NamespaceMode.POD,
              uids: [{ hostId: 65536, containerId: 0, length: 65536 }],
              gids: [{ hostId: 65536, containerId: 0, length: 65536 }],
            },
          },
          runAsUser: { value: 0 },
          supplementalGroups: [1000, 2000],
          supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict,
          seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
          apparmor: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: 'k8s-default' },
        },
        overhead: { cpuShares: 10, memoryLimitInBytes: 64 << 20 },
        resources: { cpuPeriod: 100000, cpuQuota: 50000, memoryLimitInBytes: 512 * 1024 * 1024 },
      },
    });
    expect(roundTrip(PodSandboxConfig, cfg)).toEqual(cfg);
  });

  it('ContainerConfig with mounts, devices, resources and security context', () => {
    const cfg = ContainerConfig.fromPartial({
      metadata: { name: 'app', attempt: 1 },
      image: { image: 'sha256:' + 'ab'.repeat(32), userSpecifiedImage: 'nginx:1.27', annotations: { a: 'b' } },
      command: ['/bin/sh', '-c'],
      args: ['exec nginx -g "daemon off;"'],
      workingDir: '/srv',
      envs: [
        { key: 'PATH', value: Buffer.from('/usr/bin:/bin') },
        { key: 'BIN', value: Buffer.from([0, 1, 0xfe, 0xff]) },
      ],
      mounts: [
        {
          containerPath: '/data',
          hostPath: '/var/lib/kubelet/pods/x/volumes/data',
          readonly: true,
          recursiveReadOnly: true,
          propagation: MountPropagation.PROPAGATION_PRIVATE,
          selinuxRelabel: true,
          mountOptions: ['nosuid', 'nodev'],
        },
        {
          containerPath: '/models',
          image: { image: 'sha256:' + 'cd'.repeat(32) },
          imageSubPath: 'weights',
          propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER,
          gidMappings: [{ hostId: 1000, containerId: 0, length: 1 }],
        },
      ],
      devices: [{ containerPath: '/dev/fuse', hostPath: '/dev/fuse', permissions: 'rwm' }],
      CDIDevices: [{ name: 'vendor.com/gpu=gpu0' }],
      labels: { 'io.kubernetes.container.name': 'app' },
      annotations: { 'io.kubernetes.container.restartCount': '1' },
      logPath: 'app/1.log',
      stdin: true,
      stdinOnce: true,
      tty: false,
      stopSignal: Signal.SIGNAL_SIGQUIT,
      linux: {
        resources: {
          cpuPeriod: 100000,
          cpuQuota: 25000,
          cpuShares: 256,
          memoryLimitInBytes: 256 * 1024 * 1024,
          oomScoreAdj: -997,
          cpusetCpus: '0-3',
          cpusetMems: '0',
          hugepageLimits: [{ pageSize: '2MB', limit: 4 * 2 * 1024 * 1024 }],
          unified: { 'memory.high': '200000000', 'io.weight': 'default 100' },
          memorySwapLimitInBytes: -1,
        },
        securityContext: {
          capabilities: {
            addCapabilities: ['NET_ADMIN'],
            dropCapabilities: ['ALL'],
            addAmbientCapabilities: ['NET_BIND_SERVICE'],
          },
          privileged: false,
          namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.TARGET, targetId: 'abc123' },
          selinuxOptions: { user: 'system_u', role: 'system_r', type: 'container_t', level: 's0:c1,c2' },
          runAsUser: { value: 1000 },
          runAsGroup: { value: 1000 },
          readonlyRootfs: true,
          supplementalGroups: [5, 6],
          noNewPrivs: true,
          maskedPaths: ['/proc/kcore', '/sys/firmware'],
          readonlyPaths: ['/proc/sys'],
          seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: '/var/lib/seccomp/p.json' },
          apparmor: { profileType: SecurityProfile_ProfileType.Unconfined },
          apparmorProfile: 'unconfined',
        },
      },
    });
    const back = roundTrip(ContainerConfig, cfg);
    expect(back).toEqual(cfg);
    expect(back.envs[1].value).toEqual(Buffer.from([0, 1, 0xfe, 0xff]));
  });

  it('PullImageRequest with AuthConfig and sandbox config', () => {
    const req = PullImageRequest.fromPartial({
      image: { image: 'registry.example.com/team/app:v2', runtimeHandler: 'kata' },
      auth: AuthConfig.fromPartial({
        username: 'robot',
        password: 's3cret',
        auth: Buffer.from('robot:s3cret').toString('base64'),
        serverAddress: 'registry.example.com',
        identityToken: 'id-token',
        registryToken: 'bearer-token',
      }),
      sandboxConfig: { metadata: { name: 'p', uid: 'u', namespace: 'n', attempt: 0 } },
    });
    expect(roundTrip(PullImageRequest, req)).toEqual(req);
  });

  it('ImageStatusResponse with image and verbose info', () => {
    const res = ImageStatusResponse.fromPartial({
      image: {
        id: 'sha256:' + 'ef'.repeat(32),
        repoTags: ['docker.io/library/busybox:1.36'],
        repoDigests: ['docker.io/library/busybox@sha256:' + '01'.repeat(32)],
        size: 4_300_000_000,
        uid: { value: 0 },
        username: '',
        spec: { image: 'sha256:' + 'ef'.repeat(32), annotations: { pinned: 'true' } },
        pinned: true,
      },
      info: { info: JSON.stringify({ config: { Env: ['PATH=/bin'] } }) },
    });
    expect(roundTrip(ImageStatusResponse, res)).toEqual(res);
    // A missing image is an empty response.
    expect(ImageStatusResponse.decode(new Uint8Array()).image).toBeUndefined();
  });

  it('ListContainersResponse', () => {
    const res = ListContainersResponse.fromPartial({
      containers: [1, 2, 3].map((i) => ({
        id: `c${i}`,
        podSandboxId: 'p1',
        metadata: { name: `n${i}`, attempt: i },
        image: { image: 'busybox' },
        imageRef: 'sha256:' + '11'.repeat(32),
        imageId: 'sha256:' + '11'.repeat(32),
        state: [ContainerState.CONTAINER_CREATED, ContainerState.CONTAINER_RUNNING, ContainerState.CONTAINER_EXITED][
          i - 1
        ],
        createdAt: 1_767_225_600_123_456, // Unix ns would exceed 2^53 only after 2255
        labels: { i: String(i) },
        annotations: {},
      })),
    });
    const back = roundTrip(ListContainersResponse, res);
    expect(back).toEqual(res);
    expect(back.containers.map((c) => c.state)).toEqual([0, 1, 2]);
  });

  it('enum-heavy PodSandboxStatusResponse with container statuses', () => {
    const res = PodSandboxStatusResponse.fromPartial({
      status: {
        id: 'p1',
        state: PodSandboxState.SANDBOX_NOTREADY,
        createdAt: 1_700_000_000_000_000,
        network: { ip: '10.0.0.5', additionalIps: [{ ip: 'fd00::5' }] },
        linux: {
          namespaces: {
            options: { network: NamespaceMode.NODE, pid: NamespaceMode.POD, ipc: NamespaceMode.NODE },
          },
        },
        runtimeHandler: 'runc',
      },
      containersStatuses: [
        {
          id: 'c1',
          state: ContainerState.CONTAINER_EXITED,
          exitCode: 137,
          reason: 'OOMKilled',
          stopSignal: Signal.SIGNAL_SIGRTMAXMINUS3,
          mounts: [{ containerPath: '/x', propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }],
          user: { linux: { uid: 1000, gid: 1000, supplementalGroups: [1000, 4] } },
          resources: { linux: { cpuShares: 2, unified: { 'cpu.weight': '1' } } },
        },
        { id: 'c2', state: ContainerState.CONTAINER_UNKNOWN, stopSignal: Signal.SIGNAL_SIGRTMAX },
      ],
      timestamp: 1_700_000_000_000,
    });
    expect(roundTrip(PodSandboxStatusResponse, res)).toEqual(res);
  });

  it('decodes the unrecognised enum value of a newer peer as its number', () => {
    // ContainerConfig.stop_signal = 200
    expect(ContainerConfig.decode(bytes('90 01 c8 01')).stopSignal).toBe(200);
  });
});

// Every RPC of the CRI v1 services, in protocol order.
const RUNTIME_RPCS = [
  'Version',
  'RunPodSandbox',
  'StopPodSandbox',
  'RemovePodSandbox',
  'PodSandboxStatus',
  'ListPodSandbox',
  'StreamPodSandboxes',
  'CreateContainer',
  'StartContainer',
  'StopContainer',
  'RemoveContainer',
  'ListContainers',
  'StreamContainers',
  'ContainerStatus',
  'UpdateContainerResources',
  'ReopenContainerLog',
  'ExecSync',
  'Exec',
  'Attach',
  'PortForward',
  'ContainerStats',
  'ListContainerStats',
  'StreamContainerStats',
  'PodSandboxStats',
  'ListPodSandboxStats',
  'StreamPodSandboxStats',
  'UpdateRuntimeConfig',
  'Status',
  'CheckpointContainer',
  'CheckpointPod',
  'RestorePod',
  'GetContainerEvents',
  'ListMetricDescriptors',
  'ListPodSandboxMetrics',
  'StreamPodSandboxMetrics',
  'RuntimeConfig',
  'UpdatePodSandboxResources',
];
const IMAGE_RPCS = ['ListImages', 'StreamImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo'];
// RPCs whose responses are server streams; all others are unary.
const SERVER_STREAMING = new Set([
  'StreamPodSandboxes',
  'StreamContainers',
  'StreamContainerStats',
  'StreamPodSandboxStats',
  'GetContainerEvents',
  'StreamPodSandboxMetrics',
  'StreamImages',
]);

interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

function methodsOf(service: Record<string, MethodDef>, prefix: string): { name: string; def: MethodDef }[] {
  return Object.values(service).map((def) => {
    expect(def.path.startsWith(prefix)).toBe(true);
    return { name: def.path.slice(prefix.length), def };
  });
}

describe('service definitions', () => {
  it('RuntimeService has exactly the 37 CRI v1 RPCs at /runtime.v1.RuntimeService/<Rpc>', () => {
    const methods = methodsOf(RuntimeServiceService, '/runtime.v1.RuntimeService/');
    expect(methods).toHaveLength(37);
    expect(methods.map((m) => m.name)).toEqual(RUNTIME_RPCS);
  });

  it('ImageService has exactly the 6 CRI v1 RPCs at /runtime.v1.ImageService/<Rpc>', () => {
    const methods = methodsOf(ImageServiceService, '/runtime.v1.ImageService/');
    expect(methods).toHaveLength(6);
    expect(methods.map((m) => m.name)).toEqual(IMAGE_RPCS);
  });

  it('43 RPCs in all, streaming exactly where the protocol says', () => {
    const all = [
      ...methodsOf(RuntimeServiceService, '/runtime.v1.RuntimeService/'),
      ...methodsOf(ImageServiceService, '/runtime.v1.ImageService/'),
    ];
    expect(all).toHaveLength(43);
    for (const { name, def } of all) {
      expect({ name, requestStream: def.requestStream }).toEqual({ name, requestStream: false });
      expect({ name, responseStream: def.responseStream }).toEqual({
        name,
        responseStream: SERVER_STREAMING.has(name),
      });
    }
  });
});

describe('over gRPC', () => {
  let server: grpc.Server;
  let dir: string;
  let address: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-api-wire-'));
    address = `unix://${path.join(dir, 'cri.sock')}`;
    server = new grpc.Server();
    const runtime: Pick<RuntimeServiceServer, 'version'> = {
      version: (call, callback) => {
        callback(null, {
          version: call.request.version,
          runtimeName: 'capsa',
          runtimeVersion: '0.1.0',
          runtimeApiVersion: 'v1',
        });
      },
    };
    const images: Pick<ImageServiceServer, 'streamImages'> = {
      streamImages: (call) => {
        call.write(StreamImagesResponse.fromPartial({ images: [{ id: 'a' }, { id: 'b' }] }));
        call.write(StreamImagesResponse.fromPartial({ images: [{ id: 'c' }] }));
        call.end();
      },
    };
    // Unimplemented methods answer UNIMPLEMENTED, as grpc-js does for missing handlers.
    server.addService(RuntimeServiceService, runtime);
    server.addService(ImageServiceService, images);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('unary Version round trip', async () => {
    const client = new RuntimeServiceClient(address, grpc.credentials.createInsecure());
    try {
      const res = await new Promise<VersionResponse>((resolve, reject) =>
        client.version({ version: 'v1' }, (err, r) => (err ? reject(err) : resolve(r))),
      );
      expect(res).toEqual({ version: 'v1', runtimeName: 'capsa', runtimeVersion: '0.1.0', runtimeApiVersion: 'v1' });
    } finally {
      client.close();
    }
  });

  it('server-streaming StreamImages', async () => {
    const client = new ImageServiceClient(address, grpc.credentials.createInsecure());
    try {
      const ids: string[] = [];
      await new Promise<void>((resolve, reject) => {
        const stream = client.streamImages({ filter: undefined });
        stream.on('data', (chunk: StreamImagesResponse) => ids.push(...chunk.images.map((i) => i.id)));
        stream.on('error', reject);
        stream.on('end', resolve);
      });
      expect(ids).toEqual(['a', 'b', 'c']);
    } finally {
      client.close();
    }
  });

  it('a method without a handler is UNIMPLEMENTED', async () => {
    const client = new RuntimeServiceClient(address, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.status({ verbose: false }, (e) => resolve(e)),
      );
      expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
    } finally {
      client.close();
    }
  });
});
