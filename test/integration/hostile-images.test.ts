// Hostile images: image configs with absurd values, a manifest that lies
// about a layer's size, a layer of 200k tiny files, an /etc/passwd that is a
// symlink pointing at the host. Each is built here (the busybox test image's
// layer + our tar writer + OCI layout files) and pushed to the real test
// registry (the lying manifest is served by a small in-test registry on
// 127.0.0.1, as no real registry would accept it). CreateContainer /
// StartContainer must fail with a clear, typed error or run safely inside
// the container; never INTERNAL, never a hang, never a host file touched;
// nothing left behind.
import * as grpc from '@grpc/grpc-js';
import { existsSync, mkdtempSync, promises as fs, readdirSync, readFileSync, statSync } from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { ContainerState } from '../../src/gen/runtime/v1/api';
import { TestDaemon, call, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestImages, TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import { TarSpec, buildTar, compress, sha256 } from '../helpers/tar-writer';

const REG = 'registry.example.test';
const LIAR = 'liar.example.test';
const isRoot = process.getuid?.() === 0;
const suite = isRoot ? describe : describe.skip;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** Writes `data` into the layout's blob dir; returns its descriptor. */
async function putBlob(layout: string, data: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = sha256(data);
  await fs.writeFile(path.join(layout, 'blobs', 'sha256', digest.slice(7)), data);
  return { mediaType, digest, size: data.length };
}

/**
 * A new OCI layout: the busybox test image plus `extraLayers` (tar entries)
 * with its config changed by `mutate`. `lieSize` replaces the declared size
 * of the last layer in the manifest.
 */
async function makeImage(
  images: TestImages,
  dest: string,
  opts: {
    mutate?: (config: Record<string, unknown>) => void;
    extraLayers?: TarSpec[][];
    lieSize?: number;
  } = {},
): Promise<{ layout: string; manifest: Buffer; manifestDigest: string }> {
  const src = images.busybox.layout;
  await fs.mkdir(path.join(dest, 'blobs', 'sha256'), { recursive: true });
  const blob = (d: string): Promise<Buffer> => fs.readFile(path.join(src, 'blobs', 'sha256', d.slice(7)));
  const index = JSON.parse(await fs.readFile(path.join(src, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const manifest = JSON.parse((await blob(index.manifests[0].digest)).toString()) as {
    config: Descriptor;
    layers: Descriptor[];
  } & Record<string, unknown>;
  const config = JSON.parse((await blob(manifest.config.digest)).toString()) as {
    config: Record<string, unknown>;
    rootfs: { diff_ids: string[] };
  };
  for (const l of manifest.layers)
    await fs.copyFile(
      path.join(src, 'blobs', 'sha256', l.digest.slice(7)),
      path.join(dest, 'blobs', 'sha256', l.digest.slice(7)),
    );
  const layers = [...manifest.layers];
  for (const entries of opts.extraLayers ?? []) {
    const tar = buildTar(entries);
    layers.push(await putBlob(dest, compress(tar, 'gzip'), 'application/vnd.oci.image.layer.v1.tar+gzip'));
    config.rootfs.diff_ids.push(sha256(tar));
  }
  opts.mutate?.(config.config);
  if (opts.lieSize !== undefined) layers[layers.length - 1] = { ...layers[layers.length - 1], size: opts.lieSize };
  const cfg = await putBlob(dest, Buffer.from(JSON.stringify(config)), manifest.config.mediaType);
  const m = Buffer.from(JSON.stringify({ ...manifest, config: cfg, layers }));
  const md = await putBlob(dest, m, 'application/vnd.oci.image.manifest.v1+json');
  await fs.writeFile(path.join(dest, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    path.join(dest, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...md, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
    }),
  );
  return { layout: dest, manifest: m, manifestDigest: md.digest };
}

function code(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

async function outcome<T>(p: Promise<T>): Promise<{ ok?: T; err?: grpc.ServiceError }> {
  return p.then(
    (ok) => ({ ok }),
    (err: unknown) => ({ err: err as grpc.ServiceError }),
  );
}

/** A rejection must be typed and say something; never INTERNAL or UNKNOWN. */
function expectCleanError(err: grpc.ServiceError | undefined, re: RegExp): void {
  expect(err).toBeDefined();
  if (code(err) === grpc.status.INTERNAL || code(err) === grpc.status.UNKNOWN) {
    throw new Error(`an untyped error (${code(err)}) for bad input: ${err!.details}`);
  }
  expect(err!.details).toMatch(re);
}

suite('hostile images', () => {
  let images: TestImages;
  let reg: TestRegistry;
  let liar: http.Server;
  let liarHost: string;
  /** Served by the liar: repo → { manifest, blobs dir }. */
  const lies = new Map<string, { manifest: Buffer; layout: string; trickle: boolean }>();
  let work: string;
  let d: TestDaemon;
  let seq = 0;
  const hostSentinel = mkdtempSync(path.join(os.tmpdir(), 'capsa-hostile-host-'));

  const podConfig = (): Record<string, unknown> => {
    seq++;
    return {
      metadata: { name: `hi${seq}`, uid: `uid-hostile-${process.pid}-${seq}`, namespace: 'capsa-hostile', attempt: 0 },
      hostname: `hi${seq}`,
      logDirectory: path.join(d.dir, 'logs', `${seq}`),
      linux: { securityContext: { namespaceOptions: { network: 2 } } },
    };
  };

  const pull = (image: string, timeoutMs = 120_000): Promise<unknown> =>
    call(d.image, 'pullImage', { image: { image } }, timeoutMs);

  const runIn = async (
    image: string,
    extra: Record<string, unknown> = {},
  ): Promise<{ pod: string; create: { ok?: { containerId: string }; err?: grpc.ServiceError } }> => {
    const cfg = podConfig();
    const pod = (await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config: cfg }, 60_000))
      .podSandboxId;
    const create = await outcome(
      call<{ containerId: string }>(
        d.runtime,
        'createContainer',
        {
          podSandboxId: pod,
          sandboxConfig: cfg,
          config: { metadata: { name: 'c' }, image: { image }, logPath: 'c.log', ...extra },
        },
        60_000,
      ),
    );
    return { pod, create };
  };

  const removePod = async (pod: string): Promise<void> => {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
  };

  const push = async (name: string, opts: Parameters<typeof makeImage>[2]): Promise<string> => {
    const img = await makeImage(images, path.join(work, name), opts);
    await reg.push(img.layout, `hostile/${name}:latest`);
    return `${REG}/hostile/${name}:latest`;
  };

  beforeAll(async () => {
    images = await ensureTestImages();
    reg = await startRegistry();
    work = mkdtempSync(path.join(os.tmpdir(), 'capsa-hostile-images-'));
    liar = http.createServer((req, res) => {
      const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(req.url ?? '');
      if (req.url === '/v2/') {
        res.writeHead(200).end('{}');
        return;
      }
      const lie = m ? lies.get(m[1]) : undefined;
      if (!m || !lie) {
        res.writeHead(404).end();
        return;
      }
      if (m[2] === 'manifests') {
        res.writeHead(200, {
          'content-type': 'application/vnd.oci.image.manifest.v1+json',
          'content-length': lie.manifest.length,
          'docker-content-digest': sha256(lie.manifest),
        });
        res.end(req.method === 'HEAD' ? undefined : lie.manifest);
        return;
      }
      const file = path.join(lie.layout, 'blobs', 'sha256', m[3].replace(/^sha256:/, ''));
      if (!existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      const body = readFileSync(file);
      if (lie.trickle && body.length > 4096) {
        // Claims 100 GB and then stops sending: only the stall timeout ends it.
        res.writeHead(200, { 'content-length': String(100 * 1024 ** 3) });
        res.write(body.subarray(0, 1024));
        return;
      }
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
    liarHost = `127.0.0.1:${(liar.address() as AddressInfo).port}`;
    d = await startDaemon({
      toml:
        `pull_stall_timeout = 3\n` +
        `[registries."${REG}"]\nmirrors = ["${reg.url}"]\n` +
        `[registries."${LIAR}"]\nmirrors = ["http://${liarHost}"]\n`,
    });
  }, 300_000);

  afterEach(async () => {
    const pods = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {});
    for (const p of pods.items) await removePod(p.id);
    await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
    expect(d.proc.exitCode).toBeNull();
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    await d?.cleanup();
    if (d) {
      const parent = defaultCgroupParent('cgroupfs', d.root);
      for (const c of ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'devices', 'freezer', 'blkio']) {
        await fs.rmdir(path.join('/sys/fs/cgroup', c, parent)).catch(() => undefined);
      }
    }
    await new Promise<void>((r) => (liar ? liar.close(() => r()) : r()));
    liar?.closeAllConnections();
    await reg?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
    await fs.rm(hostSentinel, { recursive: true, force: true });
  }, 120_000);

  test('an Entrypoint of 100k long args: a clear start error (E2BIG), or it runs', async () => {
    const image = await push('argv', {
      mutate: (c) => {
        c.Entrypoint = [
          'sh',
          '-c',
          'sleep 1000',
          ...Array.from({ length: 100_000 }, (_x, i) => `arg-${i}-${'x'.repeat(24)}`),
        ];
        c.Cmd = null;
      },
    });
    await pull(image);
    const { create } = await runIn(image);
    if (create.err) {
      expectCleanError(create.err, /arg|too long|E2BIG|size/i);
      return;
    }
    const started = await outcome(call(d.runtime, 'startContainer', { containerId: create.ok!.containerId }, 30_000));
    if (started.err) expectCleanError(started.err, /argument list too long|E2BIG/i);
    else {
      const st = await call<{ status: { state: number } }>(d.runtime, 'containerStatus', {
        containerId: create.ok!.containerId,
      });
      expect(st.status.state).toBe(ContainerState.CONTAINER_RUNNING);
    }
  });

  test('an Env value of 1 MiB: a clear start error (E2BIG), not INTERNAL', async () => {
    const image = await push('env', {
      mutate: (c) => {
        c.Env = [...(c.Env as string[]), `HUGE=${'v'.repeat(1024 * 1024)}`];
        c.Entrypoint = ['sleep', '1000'];
        c.Cmd = null;
      },
    });
    await pull(image);
    const { create } = await runIn(image);
    if (create.err) {
      expectCleanError(create.err, /env|HUGE|too long|size/i);
      return;
    }
    const started = await outcome(call(d.runtime, 'startContainer', { containerId: create.ok!.containerId }, 30_000));
    expectCleanError(started.err, /argument list too long|E2BIG/i);
    const st = await call<{ status: { state: number; reason: string; message: string } }>(
      d.runtime,
      'containerStatus',
      { containerId: create.ok!.containerId },
    );
    expect(st.status).toMatchObject({ state: ContainerState.CONTAINER_EXITED, reason: 'StartError' });
  });

  test('User "nobody:nonexistent": CreateContainer names the missing group', async () => {
    const image = await push('user', { mutate: (c) => (c.User = 'nobody:nonexistent') });
    await pull(image);
    const { create } = await runIn(image);
    expectCleanError(create.err, /nonexistent/);
  });

  test('WorkingDir "../../..", Volumes with "..", StopSignal "SIGFOO": contained in the rootfs, or refused', async () => {
    const marker = path.basename(hostSentinel);
    const image = await push('paths', {
      mutate: (c) => {
        c.WorkingDir = '../../..';
        c.Volumes = { [`../../../../../../../../..${hostSentinel}/vol`]: {}, '/data/../../../../../../escape-vol': {} };
        c.StopSignal = 'SIGFOO';
        c.Entrypoint = ['sleep', '1000'];
        c.Cmd = null;
      },
    });
    await pull(image);
    const { create } = await runIn(image);
    if (create.err) {
      expectCleanError(create.err, /WorkingDir|Volumes|StopSignal|SIGFOO|\.\./);
    } else {
      const id = create.ok!.containerId;
      await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
      const st = await call<{ status: { state: number }; info: { info: string } }>(d.runtime, 'containerStatus', {
        containerId: id,
        verbose: true,
      });
      expect(st.status.state).toBe(ContainerState.CONTAINER_RUNNING);
      const info = JSON.parse(st.info.info) as { pid: number; rootfs: string };
      // The init's working directory is inside its own root.
      const pwd = await call<{ stdout: Buffer; exitCode: number }>(d.runtime, 'execSync', {
        containerId: id,
        cmd: ['pwd'],
        timeout: 10n,
      });
      expect(pwd.exitCode).toBe(0);
      expect(pwd.stdout.toString().trim()).toMatch(/^\//);
      const cwd = statSync(`/proc/${info.pid}/cwd`);
      const hostRoot = statSync('/');
      expect({ dev: cwd.dev, ino: cwd.ino }).not.toEqual({ dev: hostRoot.dev, ino: hostRoot.ino });
      // Stop works with the unknown StopSignal (SIGTERM instead).
      await call(d.runtime, 'stopContainer', { containerId: id, timeout: 1n }, 30_000);
    }
    // Nothing appeared on the host.
    expect(readdirSync(hostSentinel)).toEqual([]);
    expect(existsSync('/escape-vol')).toBe(false);
    expect(readdirSync(os.tmpdir()).filter((f) => f === 'vol' || f === 'escape-vol' || f === `${marker}vol`)).toEqual(
      [],
    );
  });

  test('/etc/passwd a symlink to a host file: user names are not looked up on the host', async () => {
    const hostPasswd = path.join(hostSentinel, 'passwd');
    await fs.writeFile(hostPasswd, 'hostonly:x:4242:4242::/:/bin/sh\n');
    const before = readFileSync(hostPasswd, 'utf8');
    const image = await push('passwd', {
      extraLayers: [
        [
          { name: 'etc/', type: 'dir', mode: 0o755 },
          { name: 'etc/passwd', type: 'symlink', linkname: hostPasswd },
          { name: 'etc/group', type: 'symlink', linkname: `../../../../../../..${path.join(hostSentinel, 'group')}` },
        ],
      ],
      mutate: (c) => {
        c.Entrypoint = ['sleep', '1000'];
        c.Cmd = null;
      },
    });
    await pull(image);
    const { create } = await runIn(image, { linux: { securityContext: { runAsUsername: 'hostonly' } } });
    expectCleanError(create.err, /hostonly/);
    expect(readFileSync(hostPasswd, 'utf8')).toBe(before);
    expect(existsSync(path.join(hostSentinel, 'group'))).toBe(false);
  });

  test('a manifest declaring a 100 GB layer: the pull fails cleanly and fast, nothing allocated', async () => {
    const img = await makeImage(images, path.join(work, 'liar'), {
      extraLayers: [[{ name: 'big', data: 'x'.repeat(10_000) }]],
      lieSize: 100 * 1024 ** 3,
    });
    lies.set('hostile/liar', { manifest: img.manifest, layout: img.layout, trickle: false });
    lies.set('hostile/trickle', { manifest: img.manifest, layout: img.layout, trickle: true });
    const rssBefore = daemonRss(d);
    for (const repo of ['hostile/liar', 'hostile/trickle']) {
      const t0 = Date.now();
      const r = await outcome(pull(`${LIAR}/${repo}:latest`, 90_000));
      expectCleanError(r.err, /size|bytes|stall|expected|progress/i);
      expect(Date.now() - t0).toBeLessThan(60_000);
    }
    expect(daemonRss(d) - rssBefore).toBeLessThan(200 * 1024 * 1024);
    // No partial download, no unpacked layer of the liar left.
    const ingest = path.join(d.root, 'content', 'ingest');
    expect(existsSync(ingest) ? readdirSync(ingest) : []).toEqual([]);
    const listed = await call<{ images: { repoTags: string[] }[] }>(d.image, 'listImages', {});
    expect(listed.images.flatMap((i) => i.repoTags).filter((t) => t.startsWith(LIAR))).toEqual([]);
  }, 150_000);

  test('a layer of 200k tiny files unpacks in bounded time and runs', async () => {
    const n = Number(process.env.CAPSA_HOSTILE_FILES ?? 200_000);
    const entries: TarSpec[] = [{ name: 'many/', type: 'dir', mode: 0o755 }];
    for (let i = 0; i < n; i++) entries.push({ name: `many/${Math.floor(i / 1000)}/f${i % 1000}`, data: '' });
    for (let i = 0; i < n / 1000; i++)
      entries.splice(1 + i * 1001, 0, { name: `many/${i}/`, type: 'dir', mode: 0o755 });
    const t0 = Date.now();
    const image = await push('many', {
      extraLayers: [entries],
      mutate: (c) => {
        c.Entrypoint = ['sleep', '1000'];
        c.Cmd = null;
      },
    });
    const built = Date.now();
    await pull(image, 150_000);
    const pulled = Date.now();
    console.log(`200k-file layer: built+pushed ${built - t0} ms, pulled+unpacked ${pulled - built} ms`);
    const { create } = await runIn(image);
    expect(create.err).toBeUndefined();
    const id = create.ok!.containerId;
    await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
    const ls = await call<{ stdout: Buffer }>(d.runtime, 'execSync', {
      containerId: id,
      cmd: ['sh', '-c', `ls /many/${n / 1000 - 1} | wc -l`],
      timeout: 30n,
    });
    expect(ls.stdout.toString().trim()).toBe('1000');
    await call(d.image, 'removeImage', { image: { image } });
  }, 240_000);

  test("removing the last container of an already removed image frees the image's layers", async () => {
    const image = await push('gc', {
      extraLayers: [[{ name: 'only-here', data: `unique ${process.pid} ${Date.now()}` }]],
      mutate: (c) => {
        c.Entrypoint = ['sleep', '1000'];
        c.Cmd = null;
      },
    });
    const layersDir = path.join(d.root, 'layers');
    const layers = (): string[] => readdirSync(layersDir).filter((l) => /^[0-9a-f]{64}$/.test(l));
    const before = layers();
    await pull(image);
    const added = layers().filter((l) => !before.includes(l));
    expect(added.length).toBeGreaterThan(0);
    const { pod, create } = await runIn(image);
    expect(create.err).toBeUndefined();
    await call(d.image, 'removeImage', { image: { image } });
    // Still in use: the layers stay.
    expect(layers()).toEqual(expect.arrayContaining(added));
    await removePod(pod);
    // The container was the last user: its image's own layers are gone, the shared ones stay.
    expect(layers().filter((l) => added.includes(l))).toEqual([]);
    expect(layers()).toEqual(expect.arrayContaining(before));
  });
});

function daemonRss(d: TestDaemon): number {
  const status = readFileSync(`/proc/${d.proc.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
}
