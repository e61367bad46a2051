// Hostile requests: a table of malformed CRI requests through the real
// socket for every implemented RPC — empty messages, missing nested
// messages, 1 MiB strings, NUL and odd unicode, path traversal, int64
// extremes, duplicate ids, ids of the wrong kind, 10k labels, absurd
// timeouts, calls on exited containers. Each must answer a typed gRPC error
// (or succeed where CRI says unknown ids succeed) within its deadline; never
// INTERNAL or UNKNOWN for bad input, never a hang; the daemon stays up and
// nothing is left behind.
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'crypto';
import { existsSync, promises as fs, readdirSync } from 'fs';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { TestDaemon, call, grpcCode, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';
const NOCMD = 'registry.example.test/capsa-test/nocmd:latest';
const isRoot = process.getuid?.() === 0;
const suite = isRoot ? describe : describe.skip;

const S = grpc.status;
const MIB = 'x'.repeat(1024 * 1024);
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** A copy of the OCI layout `src` whose image config has neither Entrypoint nor Cmd. */
async function noCommandImage(src: string, dest: string): Promise<void> {
  const blobs = path.join(dest, 'blobs', 'sha256');
  await fs.mkdir(blobs, { recursive: true });
  const blob = async (digest: string): Promise<Buffer> =>
    fs.readFile(path.join(src, 'blobs', 'sha256', digest.slice(7)));
  const put = async (data: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = createHash('sha256').update(data).digest('hex');
    await fs.writeFile(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const index = JSON.parse(await fs.readFile(path.join(src, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifest = JSON.parse((await blob(index.manifests[0].digest)).toString()) as {
    config: { digest: string; size: number; mediaType: string };
    layers: { digest: string }[];
  };
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as { config: Record<string, unknown> };
  for (const l of manifest.layers) await fs.writeFile(path.join(blobs, l.digest.slice(7)), await blob(l.digest));
  config.config.Entrypoint = null;
  config.config.Cmd = null;
  const cfg = await put(Buffer.from(JSON.stringify(config)));
  const m = await put(Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, ...cfg } })));
  await fs.writeFile(path.join(dest, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    path.join(dest, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...m,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
}

interface Case {
  name: string;
  client?: 'runtime' | 'image';
  method: string;
  req: () => unknown;
  /** Acceptable codes (OK = 0 where CRI says the call succeeds). */
  codes: grpc.status[];
  /** The error's details must match (e.g. name the field). */
  details?: RegExp;
}

suite('hostile requests', () => {
  let reg: TestRegistry;
  let d: TestDaemon;
  let pod = '';
  let running = '';
  let exited = '';
  let podCfg: Record<string, unknown>;

  const ctr = (name: string, over: Record<string, unknown> = {}): Record<string, unknown> => ({
    podSandboxId: pod,
    sandboxConfig: podCfg,
    config: {
      metadata: { name },
      image: { image: IMAGE },
      command: ['sleep', '1000'],
      logPath: `${name}.log`,
      ...over,
    },
  });
  const podWith = (over: Record<string, unknown>): Record<string, unknown> => ({
    config: {
      metadata: { name: 'h', uid: `uid-h-${Math.random()}`, namespace: 'capsa-hostile' },
      linux: { securityContext: { namespaceOptions: { network: 2 } } },
      ...over,
    },
  });

  beforeAll(async () => {
    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    d = await startDaemon({ toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n` });
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
    await noCommandImage(images.busybox.layout, path.join(d.dir, 'nocmd-layout'));
    await reg.push(path.join(d.dir, 'nocmd-layout'), 'capsa-test/nocmd:latest');
    await call(d.image, 'pullImage', { image: { image: NOCMD } }, 120_000);
    podCfg = {
      metadata: { name: 'target', uid: 'uid-target', namespace: 'capsa-hostile' },
      logDirectory: path.join(d.dir, 'logs'),
      linux: { securityContext: { namespaceOptions: { network: 2 } } },
    };
    pod = (await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config: podCfg }, 60_000)).podSandboxId;
    running = (await call<{ containerId: string }>(d.runtime, 'createContainer', ctr('running'), 60_000)).containerId;
    await call(d.runtime, 'startContainer', { containerId: running }, 30_000);
    exited = (
      await call<{ containerId: string }>(d.runtime, 'createContainer', ctr('exited', { command: ['true'] }), 60_000)
    ).containerId;
    await call(d.runtime, 'startContainer', { containerId: exited }, 30_000);
    for (let i = 0; i < 100; i++) {
      const st = await call<{ status: { state: number } }>(d.runtime, 'containerStatus', { containerId: exited });
      if (st.status.state === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 300_000);

  afterAll(async () => {
    if (d && d.proc.exitCode === null) {
      const pods = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {}).catch(() => ({
        items: [],
      }));
      for (const p of pods.items) {
        await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000).catch(() => undefined);
        await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000).catch(() => undefined);
      }
      await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
      await d.stop();
    }
    await d?.cleanup();
    await reg?.stop();
  }, 120_000);

  const BAD = [S.INVALID_ARGUMENT];
  const NF = [S.NOT_FOUND];
  const EMPTY_OK = [S.OK, S.INVALID_ARGUMENT];

  const cases: Case[] = [
    // ---- empty / missing nested messages, every RPC
    ...[
      'version',
      'status',
      'runtimeConfig',
      'listPodSandbox',
      'listContainers',
      'listContainerStats',
      'listPodSandboxStats',
      'updateRuntimeConfig',
    ].map((m) => ({ name: `${m} {}`, method: m, req: () => ({}), codes: [S.OK, S.UNIMPLEMENTED] })),
    { name: 'runPodSandbox {}', method: 'runPodSandbox', req: () => ({}), codes: BAD, details: /config/ },
    {
      name: 'runPodSandbox no metadata',
      method: 'runPodSandbox',
      req: () => ({ config: {} }),
      codes: BAD,
      details: /metadata/,
    },
    ...['stopPodSandbox', 'removePodSandbox', 'podSandboxStatus', 'podSandboxStats'].map((m) => ({
      name: `${m} {}`,
      method: m,
      req: () => ({}),
      codes: m === 'podSandboxStats' ? [S.INVALID_ARGUMENT, S.UNIMPLEMENTED] : BAD,
      details: /pod_sandbox_id/,
    })),
    ...[
      'startContainer',
      'stopContainer',
      'removeContainer',
      'containerStatus',
      'reopenContainerLog',
      'containerStats',
      'updateContainerResources',
    ].map((m) => ({ name: `${m} {}`, method: m, req: () => ({}), codes: BAD, details: /container_id/ })),
    { name: 'execSync {}', method: 'execSync', req: () => ({}), codes: BAD },
    { name: 'execSync no cmd', method: 'execSync', req: () => ({ containerId: running }), codes: BAD, details: /cmd/ },
    { name: 'createContainer {}', method: 'createContainer', req: () => ({}), codes: BAD },
    {
      name: 'createContainer no config',
      method: 'createContainer',
      req: () => ({ podSandboxId: pod }),
      codes: BAD,
      details: /config/,
    },
    {
      name: 'createContainer no metadata',
      method: 'createContainer',
      req: () => ({ podSandboxId: pod, sandboxConfig: podCfg, config: { image: { image: IMAGE } } }),
      codes: BAD,
      details: /metadata/,
    },
    {
      name: 'createContainer no image',
      method: 'createContainer',
      req: () => ({ podSandboxId: pod, sandboxConfig: podCfg, config: { metadata: { name: 'noimg' } } }),
      codes: [S.INVALID_ARGUMENT, S.NOT_FOUND],
      details: /image/,
    },
    { name: 'pullImage {}', client: 'image', method: 'pullImage', req: () => ({}), codes: BAD, details: /image/ },
    {
      name: 'imageStatus {}',
      client: 'image',
      method: 'imageStatus',
      req: () => ({}),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    { name: 'removeImage {}', client: 'image', method: 'removeImage', req: () => ({}), codes: BAD, details: /image/ },
    { name: 'listImages {}', client: 'image', method: 'listImages', req: () => ({}), codes: [S.OK] },
    { name: 'imageFsInfo {}', client: 'image', method: 'imageFsInfo', req: () => ({}), codes: [S.OK] },

    // ---- huge strings, NUL, unicode, many labels
    {
      name: 'runPodSandbox 1 MiB name',
      method: 'runPodSandbox',
      req: () => podWith({ metadata: { name: MIB, uid: 'u1', namespace: 'n' } }),
      codes: BAD,
      details: /name/,
    },
    {
      name: 'runPodSandbox NUL in name',
      method: 'runPodSandbox',
      req: () => podWith({ metadata: { name: 'a\0b', uid: 'u2', namespace: 'n' } }),
      codes: BAD,
      details: /name/,
    },
    {
      name: 'runPodSandbox name "../../etc"',
      method: 'runPodSandbox',
      req: () => podWith({ metadata: { name: '../../etc', uid: 'u3', namespace: 'n' } }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'runPodSandbox NUL in a label',
      method: 'runPodSandbox',
      req: () => podWith({ labels: { 'a\0': 'b\0' } }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'runPodSandbox unicode labels',
      method: 'runPodSandbox',
      req: () => podWith({ labels: { '💥\u202e': '\ud7ff\u0000\uffff' } }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'runPodSandbox 10k labels',
      method: 'runPodSandbox',
      req: () => podWith({ labels: Object.fromEntries(Array.from({ length: 10_000 }, (_x, i) => [`k${i}`, `v${i}`])) }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'runPodSandbox 1 MiB hostname',
      method: 'runPodSandbox',
      req: () => podWith({ hostname: MIB }),
      codes: BAD,
      details: /hostname/,
    },
    {
      name: 'runPodSandbox relative log_directory',
      method: 'runPodSandbox',
      req: () => podWith({ logDirectory: '../../etc' }),
      codes: BAD,
      details: /log_directory/,
    },
    {
      name: 'runPodSandbox NUL log_directory',
      method: 'runPodSandbox',
      req: () => podWith({ logDirectory: '/tmp/a\0b' }),
      codes: BAD,
      details: /log_directory/,
    },
    {
      name: 'runPodSandbox absurd cgroup_parent',
      method: 'runPodSandbox',
      req: () => podWith({ linux: { cgroupParent: '../../../..' } }),
      codes: BAD,
      details: /cgroup_parent/,
    },
    { name: 'createContainer 1 MiB name', method: 'createContainer', req: () => ctr(MIB), codes: BAD, details: /name/ },
    {
      name: 'createContainer name "../../etc"',
      method: 'createContainer',
      req: () => ctr('../../etc'),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'createContainer log_path "../../etc/passwd"',
      method: 'createContainer',
      req: () => ctr('lp', { logPath: '../../etc/passwd' }),
      codes: BAD,
      details: /log_path/,
    },
    {
      // Joined under the pod's log directory (as containerd does), or refused.
      name: 'createContainer absolute log_path',
      method: 'createContainer',
      req: () => ctr('lp2', { logPath: '/etc/passwd' }),
      codes: [S.OK, S.INVALID_ARGUMENT],
      details: /log_path/,
    },
    {
      name: 'createContainer mount container_path "../../etc"',
      method: 'createContainer',
      req: () => ctr('m1', { mounts: [{ containerPath: '../../etc', hostPath: '/tmp' }] }),
      codes: BAD,
      details: /container_path/,
    },
    {
      name: 'createContainer mount host_path traversal to nowhere',
      method: 'createContainer',
      req: () => ctr('m2', { mounts: [{ containerPath: '/x', hostPath: '/tmp/../../nonexistent-capsa' }] }),
      codes: BAD,
      details: /host_path/,
    },
    {
      name: 'createContainer NUL in an arg',
      method: 'createContainer',
      req: () => ctr('nul', { args: ['a\0b'] }),
      codes: BAD,
      details: /args/,
    },
    {
      name: 'createContainer NUL in an env key',
      method: 'createContainer',
      req: () => ctr('nulenv', { envs: [{ key: 'A\0', value: Buffer.from('b') }] }),
      codes: BAD,
      details: /envs/,
    },
    {
      name: 'createContainer unknown pod',
      method: 'createContainer',
      req: () => ({ ...ctr('nopod'), podSandboxId: 'f'.repeat(64) }),
      codes: NF,
    },
    {
      name: 'createContainer container id as pod id',
      method: 'createContainer',
      req: () => ({ ...ctr('wrongkind'), podSandboxId: running }),
      codes: NF,
    },
    {
      name: 'createContainer unknown image',
      method: 'createContainer',
      req: () => ctr('noimage', { image: { image: 'registry.example.test/nope:1' } }),
      codes: NF,
      details: /nope/,
    },
    {
      name: 'createContainer 1 MiB image',
      method: 'createContainer',
      req: () => ctr('bigimage', { image: { image: MIB } }),
      codes: [S.INVALID_ARGUMENT, S.NOT_FOUND],
    },

    // ---- numbers
    ...(
      [
        ['cpuPeriod', INT64_MIN],
        ['cpuPeriod', INT64_MAX],
        ['cpuQuota', INT64_MIN],
        ['cpuQuota', INT64_MAX],
        ['cpuShares', INT64_MIN],
        ['cpuShares', INT64_MAX],
        ['memoryLimitInBytes', INT64_MIN],
        ['memoryLimitInBytes', INT64_MAX],
        ['oomScoreAdj', INT64_MIN],
        ['oomScoreAdj', INT64_MAX],
        ['memorySwapLimitInBytes', INT64_MIN],
      ] as [string, bigint][]
    ).flatMap(([k, v]) => [
      {
        name: `createContainer ${k}=${v}`,
        method: 'createContainer',
        req: () => ctr(`n-${k}-${v < 0n ? 'min' : 'max'}`, { linux: { resources: { [k]: v } } }),
        codes: [S.OK, S.INVALID_ARGUMENT],
      },
      {
        name: `updateContainerResources ${k}=${v}`,
        method: 'updateContainerResources',
        req: () => ({ containerId: running, linux: { [k]: v } }),
        codes: [S.OK, S.INVALID_ARGUMENT],
      },
    ]),
    {
      name: 'createContainer cpuset "0-999999"',
      method: 'createContainer',
      req: () => ctr('cpuset', { linux: { resources: { cpusetCpus: '0-999999' } } }),
      codes: BAD,
      details: /cpuset/,
    },
    {
      name: 'createContainer 10k hugepage limits',
      method: 'createContainer',
      req: () =>
        ctr('hp', {
          linux: {
            resources: {
              hugepageLimits: Array.from({ length: 10_000 }, (_x, i) => ({ pageSize: `${i}KB`, limit: INT64_MAX })),
            },
          },
        }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'createContainer run_as_user -1',
      method: 'createContainer',
      req: () => ctr('uidneg', { linux: { securityContext: { runAsUser: { value: -1n } } } }),
      codes: BAD,
      details: /run_as_user/,
    },
    {
      name: 'createContainer run_as_user INT64_MAX',
      method: 'createContainer',
      req: () => ctr('uidmax', { linux: { securityContext: { runAsUser: { value: INT64_MAX } } } }),
      codes: BAD,
      details: /run_as_user/,
    },
    {
      name: 'stopContainer timeout -1',
      method: 'stopContainer',
      req: () => ({ containerId: 'f'.repeat(64), timeout: -1n }),
      codes: [S.OK],
    },
    {
      name: 'stopContainer timeout INT64_MIN (exited)',
      method: 'stopContainer',
      req: () => ({ containerId: exited, timeout: INT64_MIN }),
      codes: [S.OK],
    },
    {
      name: 'stopContainer timeout INT64_MAX',
      method: 'stopContainer',
      req: () => ({ containerId: running, timeout: INT64_MAX }),
      codes: [S.OK, S.INVALID_ARGUMENT],
      details: /timeout/,
    },
    {
      name: 'execSync timeout -1',
      method: 'execSync',
      req: () => ({ containerId: running, cmd: ['true'], timeout: -1n }),
      codes: [S.OK],
    },
    {
      name: 'execSync timeout INT64_MAX',
      method: 'execSync',
      req: () => ({ containerId: running, cmd: ['true'], timeout: INT64_MAX }),
      codes: [S.OK, S.INVALID_ARGUMENT],
      details: /timeout/,
    },
    {
      name: 'execSync timeout INT64_MIN',
      method: 'execSync',
      req: () => ({ containerId: running, cmd: ['true'], timeout: INT64_MIN }),
      codes: [S.OK],
    },
    {
      name: 'execSync NUL in cmd',
      method: 'execSync',
      req: () => ({ containerId: running, cmd: ['echo', 'a\0'] }),
      codes: BAD,
      details: /cmd/,
    },
    {
      name: 'execSync 1 MiB arg',
      method: 'execSync',
      req: () => ({ containerId: running, cmd: ['echo', MIB], timeout: 10n }),
      codes: [S.OK, S.INVALID_ARGUMENT, S.FAILED_PRECONDITION],
    },
    {
      name: 'execSync 100k args',
      method: 'execSync',
      req: () => ({
        containerId: running,
        cmd: ['true', ...Array.from({ length: 100_000 }, () => 'x'.repeat(40))],
        timeout: 10n,
      }),
      codes: [S.OK, S.INVALID_ARGUMENT, S.FAILED_PRECONDITION],
    },
    {
      name: 'execSync missing binary',
      method: 'execSync',
      req: () => ({ containerId: running, cmd: ['/nope'], timeout: 10n }),
      codes: [S.OK, S.FAILED_PRECONDITION, S.INVALID_ARGUMENT],
    },

    // ---- wrong kinds, unknown ids, exited containers
    {
      name: 'podSandboxStatus with a container id',
      method: 'podSandboxStatus',
      req: () => ({ podSandboxId: running }),
      codes: NF,
    },
    { name: 'containerStatus with a pod id', method: 'containerStatus', req: () => ({ containerId: pod }), codes: NF },
    { name: 'startContainer with a pod id', method: 'startContainer', req: () => ({ containerId: pod }), codes: NF },
    { name: 'execSync with a pod id', method: 'execSync', req: () => ({ containerId: pod, cmd: ['true'] }), codes: NF },
    {
      name: 'stopPodSandbox with a container id',
      method: 'stopPodSandbox',
      req: () => ({ podSandboxId: running }),
      codes: [S.OK],
    },
    {
      name: 'removePodSandbox with a container id',
      method: 'removePodSandbox',
      req: () => ({ podSandboxId: running }),
      codes: [S.OK],
    },
    {
      name: 'podSandboxStatus "../../etc"',
      method: 'podSandboxStatus',
      req: () => ({ podSandboxId: '../../etc' }),
      codes: NF,
    },
    {
      name: 'containerStatus 1 MiB id',
      method: 'containerStatus',
      req: () => ({ containerId: MIB }),
      codes: [S.NOT_FOUND, S.INVALID_ARGUMENT],
    },
    {
      name: 'removeContainer "../../etc"',
      method: 'removeContainer',
      req: () => ({ containerId: '../../etc' }),
      codes: EMPTY_OK,
    },
    {
      name: 'startContainer twice',
      method: 'startContainer',
      req: () => ({ containerId: running }),
      codes: [S.FAILED_PRECONDITION],
    },
    {
      name: 'startContainer exited',
      method: 'startContainer',
      req: () => ({ containerId: exited }),
      codes: [S.FAILED_PRECONDITION],
    },
    {
      name: 'reopenContainerLog exited',
      method: 'reopenContainerLog',
      req: () => ({ containerId: exited }),
      codes: [S.FAILED_PRECONDITION],
    },
    {
      name: 'execSync exited',
      method: 'execSync',
      req: () => ({ containerId: exited, cmd: ['true'] }),
      codes: [S.FAILED_PRECONDITION],
    },
    {
      name: 'updateContainerResources exited',
      method: 'updateContainerResources',
      req: () => ({ containerId: exited, linux: { cpuShares: 2n } }),
      codes: [S.FAILED_PRECONDITION],
    },
    {
      name: 'createContainer duplicate name, other config',
      method: 'createContainer',
      req: () => ctr('running', { command: ['sleep', '2'] }),
      codes: [S.ALREADY_EXISTS],
    },
    {
      name: 'runPodSandbox duplicate metadata, other config',
      method: 'runPodSandbox',
      req: () => ({ config: { ...podCfg, hostname: 'other' } }),
      codes: [S.ALREADY_EXISTS],
    },

    // ---- images
    {
      name: 'pullImage "../../etc"',
      client: 'image',
      method: 'pullImage',
      req: () => ({ image: { image: '../../etc' } }),
      codes: BAD,
      details: /etc/,
    },
    {
      name: 'pullImage 1 MiB ref',
      client: 'image',
      method: 'pullImage',
      req: () => ({ image: { image: MIB } }),
      codes: BAD,
    },
    {
      name: 'pullImage NUL',
      client: 'image',
      method: 'pullImage',
      req: () => ({ image: { image: 'busybox\0' } }),
      codes: BAD,
    },
    {
      name: 'pullImage unicode',
      client: 'image',
      method: 'pullImage',
      req: () => ({ image: { image: 'bü$ybox:💥' } }),
      codes: BAD,
    },
    {
      name: 'imageStatus "../../etc"',
      client: 'image',
      method: 'imageStatus',
      req: () => ({ image: { image: '../../etc' } }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
    {
      name: 'removeImage unknown',
      client: 'image',
      method: 'removeImage',
      req: () => ({ image: { image: 'registry.example.test/nope:1' } }),
      codes: [S.OK, S.NOT_FOUND],
    },
    {
      name: 'removeImage sha256 garbage',
      client: 'image',
      method: 'removeImage',
      req: () => ({ image: { image: 'sha256:../../etc' } }),
      codes: [S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND],
    },
    {
      name: 'listImages filter garbage',
      client: 'image',
      method: 'listImages',
      req: () => ({ filter: { image: { image: '\0../..' } } }),
      codes: [S.OK, S.INVALID_ARGUMENT],
    },
  ];

  // ---- found by the RPC-by-RPC audit: each answered INTERNAL, named a cgroup file
  // instead of the CRI field, or was accepted before.
  const KIB = 'k'.repeat(1024);
  const audit: Case[] = [
    // enum numbers outside their enum (protobuf keeps them; toJSON threw → INTERNAL)
    {
      name: 'runPodSandbox port_mappings protocol 99',
      method: 'runPodSandbox',
      req: () => podWith({ portMappings: [{ protocol: 99, containerPort: 80 }] }),
      codes: BAD,
      details: /config\.port_mappings\[0\]\.protocol/,
    },
    {
      name: 'runPodSandbox userns_options mode 99',
      method: 'runPodSandbox',
      req: () =>
        podWith({
          linux: { securityContext: { namespaceOptions: { network: 2, usernsOptions: { mode: 99 } } } },
        }),
      codes: BAD,
      details: /userns_options\.mode/,
    },
    {
      name: 'runPodSandbox seccomp profile_type 99',
      method: 'runPodSandbox',
      req: () =>
        podWith({ linux: { securityContext: { namespaceOptions: { network: 2 }, seccomp: { profileType: 99 } } } }),
      codes: BAD,
      details: /seccomp\.profile_type/,
    },
    ...(
      [
        ['mounts propagation', { mounts: [{ containerPath: '/x', hostPath: '/tmp', propagation: 99 }] }, /propagation/],
        [
          'namespace_options.pid',
          { linux: { securityContext: { namespaceOptions: { pid: 99 } } } },
          /namespace_options\.pid/,
        ],
        [
          'supplemental_groups_policy',
          { linux: { securityContext: { supplementalGroupsPolicy: 99 } } },
          /supplemental_groups_policy/,
        ],
        ['apparmor', { linux: { securityContext: { apparmor: { profileType: 99 } } } }, /apparmor\.profile_type/],
      ] as [string, Record<string, unknown>, RegExp][]
    ).map(([what, over, details], i) => ({
      name: `createContainer ${what} 99`,
      method: 'createContainer',
      req: () => ctr(`enum${i}`, over),
      codes: BAD,
      details,
    })),
    {
      name: 'createContainer sandbox_config port protocol 99',
      method: 'createContainer',
      req: () => ({
        ...ctr('enumsb'),
        sandboxConfig: { ...podCfg, portMappings: [{ protocol: 99, containerPort: 1 }] },
      }),
      codes: BAD,
      details: /sandbox_config\.port_mappings\[0\]\.protocol/,
    },
    // sysctls the kernel refuses at write time
    {
      name: 'runPodSandbox sysctl the kernel does not have',
      method: 'runPodSandbox',
      req: () => podWith({ linux: { sysctls: { 'kernel.shm_capsa_nonexistent': '1' } } }),
      codes: BAD,
      details: /config\.linux\.sysctls\[kernel\.shm_capsa_nonexistent\]/,
    },
    {
      name: 'runPodSandbox sysctl value the kernel refuses',
      method: 'runPodSandbox',
      req: () => podWith({ linux: { sysctls: { 'kernel.shm_rmid_forced': 'abc' } } }),
      codes: BAD,
      details: /config\.linux\.sysctls\[kernel\.shm_rmid_forced\]/,
    },
    // resources: named by their CRI field, checked against the host, same bounds for update
    {
      name: 'runPodSandbox resources cpuset_cpus "999"',
      method: 'runPodSandbox',
      req: () => podWith({ linux: { resources: { cpusetCpus: '999' } } }),
      codes: BAD,
      details: /config\.linux\.resources\.cpuset_cpus/,
    },
    {
      name: 'runPodSandbox resources memory 1 byte',
      method: 'runPodSandbox',
      req: () => podWith({ linux: { resources: { memoryLimitInBytes: 1n } } }),
      codes: BAD,
      details: /config\.linux\.resources\.memory_limit_in_bytes/,
    },
    {
      name: 'createContainer cpuset_cpus "999"',
      method: 'createContainer',
      req: () => ctr('cpus999', { linux: { resources: { cpusetCpus: '999' } } }),
      codes: BAD,
      details: /config\.linux\.resources\.cpuset_cpus/,
    },
    {
      name: 'createContainer cpuset_mems "999"',
      method: 'createContainer',
      req: () => ctr('mems999', { linux: { resources: { cpusetMems: '999' } } }),
      codes: BAD,
      details: /config\.linux\.resources\.cpuset_mems/,
    },
    {
      name: 'createContainer hugepage size the host lacks',
      method: 'createContainer',
      req: () => ctr('hp3', { linux: { resources: { hugepageLimits: [{ pageSize: '3MB', limit: 1n }] } } }),
      codes: BAD,
      details: /hugepage_limits\[0\]\.page_size/,
    },
    ...(
      [
        ['cpuShares', 1n << 40n, /linux\.cpu_shares/],
        ['memoryLimitInBytes', 4096n, /linux\.memory_limit_in_bytes/],
        ['oomScoreAdj', 5000n, /linux\.oom_score_adj/],
        ['cpusetCpus', '999', /linux\.cpuset_cpus/],
      ] as [string, unknown, RegExp][]
    ).map(([k, v, details]) => ({
      name: `updateContainerResources ${k}=${String(v)}`,
      method: 'updateContainerResources',
      req: () => ({ containerId: running, linux: { [k]: v } }),
      codes: BAD,
      details,
    })),
    {
      name: 'updatePodSandboxResources memory 1 byte',
      method: 'updatePodSandboxResources',
      req: () => ({ podSandboxId: pod, resources: { memoryLimitInBytes: 1n } }),
      codes: BAD,
      details: /resources\.memory_limit_in_bytes/,
    },
    // mounts
    {
      name: 'createContainer mount over /proc/sys',
      method: 'createContainer',
      req: () => ctr('procsys', { mounts: [{ containerPath: '/proc/sys', hostPath: '/tmp' }] }),
      codes: BAD,
      details: /config\.mounts\[0\]\.container_path/,
    },
    {
      name: 'createContainer mount of a plain dir over /proc',
      method: 'createContainer',
      req: () => ctr('proc', { mounts: [{ containerPath: '/proc', hostPath: '/tmp' }] }),
      codes: BAD,
      details: /config\.mounts\[0\]\.host_path/,
    },
    {
      name: 'createContainer mount of a file over a directory',
      method: 'createContainer',
      req: () => ctr('fileondir', { mounts: [{ containerPath: '/etc', hostPath: path.join(d.dir, 'capsa.toml') }] }),
      codes: BAD,
      details: /config\.mounts\[0\]/,
    },
    // sizes
    {
      name: 'createContainer log_path of 5000 characters',
      method: 'createContainer',
      req: () => ctr('lplong', { logPath: 'l'.repeat(5000) }),
      codes: BAD,
      details: /log_path/,
    },
    {
      name: 'runPodSandbox 400 KiB of annotations',
      method: 'runPodSandbox',
      req: () => podWith({ annotations: Object.fromEntries(Array.from({ length: 400 }, (_x, i) => [`a${i}`, KIB])) }),
      codes: BAD,
      details: /config\.annotations/,
    },
    {
      name: 'createContainer 400 KiB of image annotations',
      method: 'createContainer',
      req: () =>
        ctr('imgann', {
          image: {
            image: IMAGE,
            annotations: Object.fromEntries(Array.from({ length: 400 }, (_x, i) => [`a${i}`, KIB])),
          },
        }),
      codes: BAD,
      details: /config\.image\.annotations/,
    },
    // Exec checks its command like ExecSync (it handed out a URL for a command that cannot run)
    {
      name: 'exec NUL in cmd',
      method: 'exec',
      req: () => ({ containerId: running, cmd: ['echo', 'a\0b'], stdout: true }),
      codes: BAD,
      details: /cmd\[1\]/,
    },
    {
      name: 'exec 100k args',
      method: 'exec',
      req: () => ({
        containerId: running,
        cmd: ['true', ...Array.from({ length: 100_000 }, () => 'x'.repeat(40))],
        stdout: true,
      }),
      codes: BAD,
      details: /cmd/,
    },
    {
      name: 'exec empty program name',
      method: 'exec',
      req: () => ({ containerId: running, cmd: [''], stdout: true }),
      codes: BAD,
      details: /cmd\[0\]/,
    },
    // UpdateRuntimeConfig persisted whatever it got
    {
      name: 'updateRuntimeConfig pod_cidr with a newline',
      method: 'updateRuntimeConfig',
      req: () => ({ runtimeConfig: { networkConfig: { podCidr: '10.0.0.0/8\n' } } }),
      codes: BAD,
      details: /pod_cidr/,
    },
    {
      name: 'updateRuntimeConfig 10k pod CIDRs',
      method: 'updateRuntimeConfig',
      req: () => ({ runtimeConfig: { networkConfig: { podCidr: Array(10_000).fill('10.0.0.0/8').join(',') } } }),
      codes: BAD,
      details: /pod_cidr/,
    },
  ];
  cases.push(...audit);

  test.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const client = c.client === 'image' ? d.image : d.runtime;
    const t0 = Date.now();
    const got = await call(client, c.method, c.req(), 30_000).then(
      () => ({ code: S.OK, details: '' }),
      (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
    );
    expect(Date.now() - t0).toBeLessThan(25_000);
    if (!c.codes.includes(got.code)) {
      throw new Error(
        `${c.name}: got ${S[got.code]} "${got.details.slice(0, 300)}", expected ${c.codes.map((x) => S[x]).join('|')}`,
      );
    }
    if (got.code !== S.OK && got.code !== S.UNIMPLEMENTED && c.details)
      expect(got.details.slice(0, 2000)).toMatch(c.details);
    expect(d.proc.exitCode).toBeNull();
  });

  /** The RPC's outcome as { code, details } (OK = 0); never throws. */
  const outcome = (p: Promise<unknown>): Promise<{ code: number; details: string; res?: unknown }> =>
    p.then(
      (res) => ({ code: S.OK, details: '', res }),
      (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
    );

  test('a log_path through a symlink in the log directory is refused; nothing is written outside', async () => {
    const logs = path.join(d.dir, 'logs');
    const outside = path.join(d.dir, 'outside');
    await fs.mkdir(logs, { recursive: true });
    await fs.mkdir(outside, { recursive: true });
    await fs.writeFile(path.join(outside, 'victim'), 'untouched\n');
    await fs.symlink(outside, path.join(logs, 'to-outside'));
    await fs.symlink(path.join(outside, 'victim'), path.join(logs, 'victim.log'));
    for (const [name, logPath] of [
      ['lsym-dir', 'to-outside/ctr.log'],
      ['lsym-file', 'victim.log'],
      ['lsym-deep', 'to-outside/a/b/ctr.log'],
    ]) {
      const got = await outcome(
        call(d.runtime, 'createContainer', ctr(name, { command: ['echo', 'escaped'], logPath }), 60_000),
      );
      expect({ name, code: S[got.code] }).toEqual({ name, code: 'INVALID_ARGUMENT' });
      expect(got.details).toMatch(/config\.log_path/);
    }
    expect(readdirSync(outside)).toEqual(['victim']);
    expect(await fs.readFile(path.join(outside, 'victim'), 'utf8')).toBe('untouched\n');
    // A real directory below the log directory is fine.
    const ok = await call<{ containerId: string }>(
      d.runtime,
      'createContainer',
      ctr('lsub', { logPath: 'sub/dir/ctr.log' }),
      60_000,
    );
    expect(existsSync(path.join(logs, 'sub', 'dir'))).toBe(true);
    await call(d.runtime, 'removeContainer', { containerId: ok.containerId }, 60_000);
  });

  test('a working_dir the image lacks is made (as runc does), not an INTERNAL error', async () => {
    const id = (
      await call<{ containerId: string }>(
        d.runtime,
        'createContainer',
        ctr('wd', { workingDir: '/capsa/made/here' }),
        60_000,
      )
    ).containerId;
    await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
    const r = await call<{ stdout: Buffer; exitCode: number }>(d.runtime, 'execSync', {
      containerId: id,
      cmd: ['pwd'],
      timeout: 10n,
    });
    expect(r.stdout.toString()).toBe('/capsa/made/here\n');
    await call(d.runtime, 'removeContainer', { containerId: id }, 60_000);
  });

  test('an image with neither Entrypoint nor Cmd: empty command is InvalidArgument, args alone run', async () => {
    const got = await outcome(
      call(d.runtime, 'createContainer', ctr('nocmd', { image: { image: NOCMD }, command: [] }), 60_000),
    );
    expect(S[got.code]).toBe('INVALID_ARGUMENT');
    expect(got.details).toMatch(/config\.command/);
    const id = (
      await call<{ containerId: string }>(
        d.runtime,
        'createContainer',
        ctr('nocmd-args', { image: { image: NOCMD }, command: [], args: ['sleep', '1000'] }),
        60_000,
      )
    ).containerId;
    await call(d.runtime, 'removeContainer', { containerId: id }, 60_000);
  });

  describe('races', () => {
    const sbCfg = (i: number): Record<string, unknown> => ({
      ...podCfg,
      metadata: { name: `race${i}`, uid: `uid-race-${i}`, namespace: 'capsa-hostile' },
    });
    const settledOk = (c: number): boolean => c === S.OK || c === S.FAILED_PRECONDITION || c === S.NOT_FOUND;

    test('the same CreateContainer twice at once makes one container', async () => {
      const req = ctr('twice');
      const [a, b] = await Promise.all([
        call<{ containerId: string }>(d.runtime, 'createContainer', req, 60_000),
        call<{ containerId: string }>(d.runtime, 'createContainer', req, 60_000),
      ]);
      expect(a.containerId).toBe(b.containerId);
      const list = await call<{ containers: { id: string }[] }>(d.runtime, 'listContainers', {
        filter: { labelSelector: {}, podSandboxId: pod },
      });
      expect(list.containers.filter((c) => c.id === a.containerId)).toHaveLength(1);
      await call(d.runtime, 'removeContainer', { containerId: a.containerId }, 60_000);
    });

    test('RemoveContainer during StartContainer: both answer, the container is gone', async () => {
      for (let i = 0; i < 3; i++) {
        const id = (await call<{ containerId: string }>(d.runtime, 'createContainer', ctr(`rmstart${i}`), 60_000))
          .containerId;
        const [start, rm] = await Promise.all([
          outcome(call(d.runtime, 'startContainer', { containerId: id }, 60_000)),
          outcome(call(d.runtime, 'removeContainer', { containerId: id }, 60_000)),
        ]);
        expect({ start: settledOk(start.code), rm: S[rm.code] }).toEqual({ start: true, rm: 'OK' });
        expect(grpcCode(await call(d.runtime, 'containerStatus', { containerId: id }).catch((e: unknown) => e))).toBe(
          S.NOT_FOUND,
        );
      }
    });

    test('StopPodSandbox / RemovePodSandbox while a CreateContainer for it is in flight', async () => {
      for (const [i, rpc] of [
        [1, 'stopPodSandbox'],
        [2, 'removePodSandbox'],
      ] as const) {
        const p = (await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config: sbCfg(i) }, 60_000))
          .podSandboxId;
        const [created, stopped] = await Promise.all([
          outcome(call(d.runtime, 'createContainer', { ...ctr(`inflight${i}`), podSandboxId: p }, 60_000)),
          outcome(call(d.runtime, rpc, { podSandboxId: p }, 60_000)),
        ]);
        expect(settledOk(created.code)).toBe(true);
        expect(S[stopped.code]).toBe('OK');
        // Whatever the create made was stopped with the pod.
        const list = await call<{ containers: { id: string; state: number }[] }>(d.runtime, 'listContainers', {
          filter: { labelSelector: {}, podSandboxId: p },
        });
        for (const c of list.containers) expect(c.state).toBe(2);
        await call(d.runtime, 'removePodSandbox', { podSandboxId: p }, 60_000);
        const after = await call<{ containers: unknown[] }>(d.runtime, 'listContainers', {
          filter: { labelSelector: {}, podSandboxId: p },
        });
        expect(after.containers).toEqual([]);
      }
    });
  });

  test('after all that: the daemon answers and the target containers are as they were', async () => {
    const st = await call<{ status: { state: number } }>(d.runtime, 'containerStatus', { containerId: running });
    expect(st.status.state).toBe(1);
    const ex = await call<{ exitCode: number; stdout: Buffer }>(d.runtime, 'execSync', {
      containerId: running,
      cmd: ['echo', 'ok'],
      timeout: 10n,
    });
    expect(ex.stdout.toString()).toBe('ok\n');
  });
});
