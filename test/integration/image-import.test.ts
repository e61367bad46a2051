// `capsa image import` (the compiled CLI) on OCI layouts (dir and tar) and
// docker-archive tars made with skopeo from our test images, then the real
// daemon on the same root serving what was imported. Also: the refusal
// while a daemon runs, failures and interruption leaving nothing behind,
// and the progress line on a terminal.
import { ChildProcess, execFile, spawn } from 'child_process';
import { createHash } from 'crypto';
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { CLI, call, startDaemon, TestDaemon, waitForExit } from '../helpers/daemon';
import { ensureTestImages, TestImages } from '../helpers/registry';

jest.setTimeout(180_000);

const execFileP = promisify(execFile);

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `capsa ARGS` to completion (stdin closed, stdout/stderr pipes: not a terminal). */
function capsa(args: string[], onSpawn?: (p: ChildProcess) => void): Promise<CliResult> {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  onSpawn?.(proc);
  return new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function skopeo(...args: string[]): Promise<void> {
  await execFileP('skopeo', ['--policy', policy, 'copy', '--quiet', ...args]);
}

interface LayoutImage {
  manifestDigest: string;
  configDigest: string;
  config: { rootfs: { diff_ids: string[] } } & Record<string, unknown>;
}

/** The single image of an OCI layout directory, as the layout itself describes it. */
async function readLayout(dir: string): Promise<LayoutImage> {
  const blob = async (d: string): Promise<unknown> =>
    JSON.parse(await fs.readFile(path.join(dir, 'blobs', 'sha256', d.slice(7)), 'utf8'));
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  const manifestDigest = index.manifests[0].digest;
  const manifest = (await blob(manifestDigest)) as { config: { digest: string } };
  return {
    manifestDigest,
    configDigest: manifest.config.digest,
    config: (await blob(manifest.config.digest)) as LayoutImage['config'],
  };
}

/** OCI image-spec chain IDs of a config's diff IDs. */
function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev ? `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}` : d);
  }
  return out;
}

async function entries(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
}

/** What the store holds on disk under a root: blob and layer names. */
async function stored(root: string): Promise<{ blobs: string[]; layers: string[]; ingest: string[] }> {
  return {
    blobs: (await entries(path.join(root, 'content', 'blobs', 'sha256'))).sort(),
    layers: (await entries(path.join(root, 'layers'))).sort(),
    ingest: await entries(path.join(root, 'content', 'ingest')),
  };
}

interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
}

async function listImages(d: TestDaemon): Promise<CriImage[]> {
  return (await call<{ images: CriImage[] }>(d.image, 'listImages', {})).images;
}

// ---------------------------------------------------------------- fixtures

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-image-import-'));
const policy = path.join(tmp, 'policy.json');
/** Every test's own daemon dir (root = <dir>/root, config = <dir>/capsa.toml, as startDaemon uses them). */
const dirs: string[] = [];
let images: TestImages;
const files = {
  ociDir: path.join(tmp, 'busybox-oci'),
  ociTar: path.join(tmp, 'layers-oci.tar'),
  ociTarGz: path.join(tmp, 'layers-oci.tar.gz'),
  dockerTar: path.join(tmp, 'busybox-docker.tar'),
};
let busybox: LayoutImage;
let layers: LayoutImage;

/** A fresh daemon dir with an empty config file, so the host's /etc/capsa/capsa.toml never applies. */
async function newDir(): Promise<{ dir: string; root: string; flags: string[] }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  dirs.push(dir);
  await fs.writeFile(path.join(dir, 'capsa.toml'), '');
  const root = path.join(dir, 'root');
  return { dir, root, flags: ['--root', root, '--config', path.join(dir, 'capsa.toml')] };
}

beforeAll(async () => {
  images = await ensureTestImages();
  await fs.writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  // An OCI layout dir whose image is named only by a tag (needs --name); an OCI tar whose
  // image carries a full name; the same as tar.gz; a docker-archive with a RepoTag.
  await skopeo(`oci:${images.busybox.layout}:latest`, `oci:${files.ociDir}:v1`);
  await skopeo(
    `oci:${images.layers.layout}:latest`,
    `oci-archive:${files.ociTar}:registry.example.test/capsa-test/layers:1.0`,
  );
  await execFileP('sh', ['-c', `gzip -c '${files.ociTar}' > '${files.ociTarGz}'`]);
  await skopeo(`oci:${images.busybox.layout}:latest`, `docker-archive:${files.dockerTar}:capsa-test/busybox:archived`);
  busybox = await readLayout(files.ociDir);
  layers = await readLayout(images.layers.layout);
}, 600_000);

afterAll(async () => {
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

test('OCI layout dir, OCI tar and docker-archive tar: imported offline, then served by the daemon', async () => {
  const { dir, root, flags } = await newDir();

  const a = await capsa(['image', 'import', files.ociDir, '--name', 'capsa-test/busybox', ...flags]);
  expect(a).toEqual({
    code: 0,
    stdout: `${busybox.configDigest} docker.io/capsa-test/busybox:v1\n`,
    stderr: 'imported docker.io/capsa-test/busybox:v1\n',
  });
  const b = await capsa(['image', 'import', ...flags, files.ociTar]);
  expect(b).toEqual({
    code: 0,
    stdout: `${layers.configDigest} registry.example.test/capsa-test/layers:1.0\n`,
    stderr: 'imported registry.example.test/capsa-test/layers:1.0\n',
  });
  // docker-archive: same image (same config) as the OCI dir, layers stored uncompressed; the tag adds up.
  const c = await capsa(['image', 'import', files.dockerTar, ...flags]);
  expect(c).toEqual({
    code: 0,
    stdout: `${busybox.configDigest} docker.io/capsa-test/busybox:v1 docker.io/capsa-test/busybox:archived\n`,
    stderr: 'imported docker.io/capsa-test/busybox:archived\n',
  });

  // Each layer unpacked once: the busybox layer is the bottom layer of the layers image too.
  const want = [...new Set([...chainIds(busybox.config.rootfs.diff_ids), ...chainIds(layers.config.rootfs.diff_ids)])];
  expect(want).toHaveLength(layers.config.rootfs.diff_ids.length);
  const disk = await stored(root);
  expect(disk.layers).toEqual(want.map((c) => c.slice(7)).sort());
  expect(disk.ingest).toEqual([]);

  const d = await startDaemon({ dir });
  try {
    const list = await listImages(d);
    expect(list.map((i) => i.id).sort()).toEqual([busybox.configDigest, layers.configDigest].sort());
    const bb = list.find((i) => i.id === busybox.configDigest)!;
    expect(bb.repoTags).toEqual(['docker.io/capsa-test/busybox:v1', 'docker.io/capsa-test/busybox:archived']);
    expect(bb.repoDigests).toEqual([`docker.io/capsa-test/busybox@${busybox.manifestDigest}`]);
    const ly = list.find((i) => i.id === layers.configDigest)!;
    expect(ly.repoTags).toEqual(['registry.example.test/capsa-test/layers:1.0']);
    expect(ly.repoDigests).toEqual([`registry.example.test/capsa-test/layers@${layers.manifestDigest}`]);

    const s = await call<{ image?: CriImage; info: Record<string, string> }>(d.image, 'imageStatus', {
      image: { image: 'docker.io/capsa-test/busybox:archived' },
      verbose: true,
    });
    expect(s.image?.id).toBe(busybox.configDigest);
    expect(JSON.parse(s.info.info).imageSpec).toEqual(busybox.config);

    // Imported images are ordinary images: removing them frees everything the imports stored.
    for (const img of list) await call(d.image, 'removeImage', { image: { image: img.id } });
    expect(await listImages(d)).toEqual([]);
    expect(await stored(root)).toEqual({ blobs: [], layers: [], ingest: [] });
  } finally {
    await d.stop();
  }
});

test('a gzip-compressed OCI tar imports the same image', async () => {
  const { root, flags } = await newDir();
  const r = await capsa(['image', 'import', files.ociTarGz, ...flags]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${layers.configDigest} registry.example.test/capsa-test/layers:1.0\n`);
  // The decompressed scratch copy is gone.
  expect((await stored(root)).ingest).toEqual([]);
});

test('an OCI layout named only by a tag, without --name: imported untagged, with a hint', async () => {
  const { flags } = await newDir();
  const r = await capsa(['image', 'import', files.ociDir, ...flags]);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${busybox.configDigest}\n`);
  expect(r.stderr).toContain(`imported ${busybox.configDigest}`);
  expect(r.stderr).toContain(`note: ${busybox.configDigest} has no name`);
  expect(r.stderr).toContain('--name REPO');
});

test('with the daemon running, import refuses with a clear message and changes nothing', async () => {
  const { dir, root, flags } = await newDir();
  const d = await startDaemon({ dir });
  try {
    const before = await stored(root);
    const r = await capsa(['image', 'import', files.dockerTar, ...flags]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(
      `capsa: image import: another capsa daemon (pid ${d.proc.pid}) is running with root dir ${root}`,
    );
    expect(r.stderr).toMatch(/stop it \(running containers are not affected\), run the import again, then start it/);
    expect(await stored(root)).toEqual(before);
    expect(await listImages(d)).toEqual([]);
  } finally {
    expect(await d.stop()).toBe(0);
  }
  // Stopped: the same command works, and the restarted daemon has the image.
  expect((await capsa(['image', 'import', files.dockerTar, ...flags])).code).toBe(0);
  const d2 = await startDaemon({ dir });
  try {
    expect((await listImages(d2)).map((i) => i.repoTags)).toEqual([['docker.io/capsa-test/busybox:archived']]);
  } finally {
    await d2.stop();
  }
});

test('on a terminal: one progress line redrawn in place, then a line per image', async () => {
  const { flags } = await newDir();
  // script(1) gives the command a pseudo-terminal (stdout and stderr both on it).
  const cmd = [process.execPath, CLI, 'image', 'import', files.ociTar, ...flags].map((a) => `'${a}'`).join(' ');
  const { stdout } = await execFileP('script', ['-qec', cmd, '/dev/null'], { maxBuffer: 16 << 20 });
  expect(stdout).toMatch(/\r\[[#.]{24}\] +\d+% {2}[\d.]+ [KMG]?i?B \/ [\d.]+ MiB {2}/);
  expect(stdout).toContain('\x1b[K');
  expect(stdout).toContain('imported registry.example.test/capsa-test/layers:1.0\r\n');
  expect(stdout).toContain(`${layers.configDigest} registry.example.test/capsa-test/layers:1.0\r\n`);
  // The progress line is cleared before the permanent lines: none of them starts with a bar.
  for (const line of stdout.split('\r\n')) expect(line.split('\r').pop()).not.toMatch(/^\[[#.]{24}\]/);
});

test('failures exit non-zero with the reason and leave nothing in the store', async () => {
  const { root, flags } = await newDir();
  const missing = await capsa(['image', 'import', path.join(tmp, 'nope.tar'), ...flags]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/^capsa: image import: cannot read .*nope\.tar: ENOENT/);

  const notImage = path.join(tmp, 'not-an-image.tar');
  await execFileP('tar', ['-cf', notImage, '-C', tmp, 'policy.json']);
  const r1 = await capsa(['image', 'import', notImage, ...flags]);
  expect(r1.code).toBe(1);
  expect(r1.stderr).toContain(`${notImage} is neither an OCI image layout nor a docker archive`);

  // A layout whose layer blob does not match its digest: the bytes never enter the store.
  const corrupt = path.join(tmp, 'corrupt-oci');
  await execFileP('cp', ['-a', files.ociDir, corrupt]);
  const manifest = JSON.parse(
    await fs.readFile(path.join(corrupt, 'blobs', 'sha256', busybox.manifestDigest.slice(7)), 'utf8'),
  ) as { layers: { digest: string }[] };
  const layerBlob = path.join(corrupt, 'blobs', 'sha256', manifest.layers[0].digest.slice(7));
  const bytes = await fs.readFile(layerBlob);
  bytes[bytes.length >> 1] ^= 0xff;
  await fs.writeFile(layerBlob, bytes);
  const r2 = await capsa(['image', 'import', corrupt, '--name', 'capsa-test/corrupt', ...flags]);
  expect(r2.code).toBe(1);
  expect(r2.stderr).toMatch(/^capsa: image import: .*digest/m);
  expect(r2.stderr).toContain(manifest.layers[0].digest);
  expect(r2.stdout).toBe('');
  expect(await stored(root)).toEqual({ blobs: [], layers: [], ingest: [] });
  expect(await entries(path.join(root, 'images')).then((n) => n.filter((f) => f.endsWith('.json')))).toEqual([]);

  // Usage errors: exit 2.
  for (const args of [[], ['a.tar', '--name', 'busybox:1.0'], ['a.tar', '--bogus', 'x']]) {
    const u = await capsa(['image', 'import', ...args, ...flags]);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/^capsa: /);
  }
  expect((await capsa(['image', 'frobnicate'])).code).toBe(2);
  const help = await capsa(['image', 'import', '--help']);
  expect(help.code).toBe(0);
  expect(help.stderr).toContain('usage: capsa image import FILE');
  // A bad config file is a configuration error (exit 2), as for serve.
  const badConf = path.join(tmp, 'bad.toml');
  await fs.writeFile(badConf, 'no_such_key = 1\n');
  const conf = await capsa(['image', 'import', files.dockerTar, '--config', badConf, '--root', root]);
  expect(conf.code).toBe(2);
  expect(conf.stderr).toContain('key "no_such_key": unknown key');
});

test('SIGINT during an import: exit 130, nothing of the image kept, the root usable', async () => {
  const big = (await ensureTestImages({ big: true })).big!;
  const { dir, root, flags } = await newDir();
  let proc: ChildProcess | undefined;
  const run = capsa(['image', 'import', big.layout, '--name', 'capsa-test/big', ...flags], (p) => (proc = p));
  // Interrupt once the first blob is being copied into the store.
  const deadline = Date.now() + 30_000;
  while ((await entries(path.join(root, 'content', 'ingest'))).length === 0) {
    if (Date.now() > deadline) throw new Error('the import never started copying');
    await new Promise((r) => setTimeout(r, 2));
  }
  proc!.kill('SIGINT');
  const r = await run;
  expect(r.code).toBe(130);
  expect(r.stderr).toContain('interrupted');
  expect(r.stdout).toBe('');
  expect(await stored(root)).toEqual({ blobs: [], layers: [], ingest: [] });
  // The lock went with the process: a daemon starts on the root and has no images.
  const d = await startDaemon({ dir });
  try {
    expect(await listImages(d)).toEqual([]);
  } finally {
    await d.stop();
    await waitForExit(d.proc);
  }
});
