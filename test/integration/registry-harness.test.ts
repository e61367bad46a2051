// The registry harness itself: images built by hack/make-test-images.sh,
// pushed with skopeo into a real docker-registry, read back over HTTP; the
// basic-auth and bearer-token registries refuse anonymous clients and
// serve authenticated ones; stop() leaves nothing behind.
import { execFile } from 'child_process';
import { createHash } from 'crypto';
import { existsSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { ensureTestImages, startRegistry, TestImages, TestRegistry } from '../helpers/registry';

const execFileP = promisify(execFile);

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const ACCEPT = [OCI_MANIFEST, DOCKER_MANIFEST].join(', ');

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
interface Manifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

let images: TestImages;

beforeAll(async () => {
  images = await ensureTestImages();
}, 300_000);

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function getManifest(reg: TestRegistry, repo: string, ref: string): Promise<{ m: Manifest; body: Buffer }> {
  const res = await reg.fetch(`/v2/${repo}/manifests/${ref}`, { headers: { Accept: ACCEPT } });
  expect(res.status).toBe(200);
  const body = Buffer.from(await res.arrayBuffer());
  expect(res.headers.get('docker-content-digest')).toBe(sha256(body));
  return { m: JSON.parse(body.toString()) as Manifest, body };
}

async function getBlob(reg: TestRegistry, repo: string, digest: string): Promise<Buffer> {
  const res = await reg.fetch(`/v2/${repo}/blobs/${digest}`);
  expect(res.status).toBe(200);
  const body = Buffer.from(await res.arrayBuffer());
  expect(sha256(body)).toBe(digest);
  return body;
}

/** `tar -tvzf` of a gzip layer blob. */
async function listLayer(blob: Buffer): Promise<string> {
  const f = path.join(os.tmpdir(), `capsa-layer-${process.pid}-${Date.now()}.tar.gz`);
  await fs.writeFile(f, blob);
  try {
    return (await execFileP('tar', ['-tvzf', f])).stdout;
  } finally {
    await fs.rm(f, { force: true });
  }
}

describe('test images', () => {
  it('are OCI layouts listed in images.json', () => {
    for (const name of ['busybox', 'layers'] as const) {
      const img = images[name];
      expect(img.ref).toBe(`capsa-test/${name}:latest`);
      expect(img.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(existsSync(path.join(img.layout, 'oci-layout'))).toBe(true);
      expect(existsSync(path.join(img.layout, 'blobs', 'sha256', img.digest.slice(7)))).toBe(true);
    }
  });

  it('are not rebuilt when nothing changed', async () => {
    const again = await execFileP('bash', [
      path.join(__dirname, '..', '..', '..', 'hack', 'make-test-images.sh'),
      path.dirname(images.busybox.layout),
    ]);
    expect(again.stderr).not.toMatch(/built/);
  });
});

describe('plain registry', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('answers GET /v2/ on loopback', async () => {
    expect(reg.host).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await fetch(`${reg.url}/v2/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
  });

  it('serves a pushed image: manifest, config and layer by digest', async () => {
    const pushed = await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    // the OCI manifest is pushed unchanged, so its digest is the layout's
    expect(pushed.digest).toBe(images.busybox.digest);

    const res = await fetch(`${reg.url}/v2/capsa-test/busybox/manifests/latest`, { headers: { Accept: ACCEPT } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(OCI_MANIFEST);
    const body = Buffer.from(await res.arrayBuffer());
    expect(sha256(body)).toBe(pushed.digest);
    expect(res.headers.get('docker-content-digest')).toBe(pushed.digest);

    const m = JSON.parse(body.toString()) as Manifest;
    expect(m.layers).toHaveLength(1);
    const byDigest = await getManifest(reg, 'capsa-test/busybox', pushed.digest);
    expect(byDigest.body.equals(body)).toBe(true);

    const config = JSON.parse((await getBlob(reg, 'capsa-test/busybox', m.config.digest)).toString()) as {
      architecture: string;
      os: string;
      config: Record<string, unknown>;
    };
    expect(config.architecture).toBe('amd64');
    expect(config.os).toBe('linux');
    expect(config.config).toMatchObject({
      Entrypoint: ['/usr/local/bin/capsa-entrypoint'],
      Cmd: ['capsa-idle'],
      WorkingDir: '/srv/capsa',
      Volumes: { '/data': {} },
      StopSignal: 'SIGUSR1',
    });
    expect(config.config.Env).toContain('CAPSA_TEST_EQ=a=b=c');

    const listing = await listLayer(await getBlob(reg, 'capsa-test/busybox', m.layers[0].digest));
    expect(listing).toMatch(/^-rwxr-xr-x 0\/0 .* bin\/busybox$/m);
    expect(listing).toMatch(/^l.* bin\/sh -> busybox$/m);
    expect(listing).toMatch(/ lib\/x86_64-linux-gnu\/libc\.so\.6$/m);
    expect(listing).toMatch(/ lib64\/ld-linux-x86-64\.so\.2$/m);
    expect(listing).toMatch(/^drwxr-xr-x 1000\/1000 .* home\/capsa\/$/m);
  });

  it('serves the multi-layer image with whiteouts, an opaque dir, hardlinks and symlinks', async () => {
    await reg.push(images.layers.layout, 'capsa-test/layers:v1');
    const { m } = await getManifest(reg, 'capsa-test/layers', 'v1');
    expect(m.layers.length).toBeGreaterThanOrEqual(3);
    // the base layer is the busybox image's: the same blob
    const bb = await getManifest(reg, 'capsa-test/busybox', 'latest');
    expect(m.layers[0].digest).toBe(bb.m.layers[0].digest);

    const l2 = await listLayer(await getBlob(reg, 'capsa-test/layers', m.layers[1].digest));
    expect(l2).toMatch(/^h.* layers\/hardlink-b link to layers\/hardlink-a$/m);
    expect(l2).toMatch(/^l.* layers\/symlink-rel -> keep\.txt$/m);
    expect(l2).toMatch(/^l.* layers\/symlink-abs -> \/layers\/keep\.txt$/m);
    expect(l2).toMatch(/^-rw-r----- 1000\/1000 .* layers\/owned\.txt$/m);
    const l3 = await listLayer(await getBlob(reg, 'capsa-test/layers', m.layers[2].digest));
    expect(l3).toMatch(/ layers\/\.wh\.gone\.txt$/m);
    expect(l3).toMatch(/ layers\/\.wh\.gone-dir$/m);
    expect(l3).toMatch(/ layers\/opaque\/\.wh\.\.wh\.\.opq$/m);
    expect(l3).toMatch(/^d.* layers\/file-then-dir\/$/m);
  });

  it('converts on push: Docker schema 2 and zstd layers', async () => {
    await reg.push(images.busybox.layout, 'capsa-test/busybox:v2s2', { format: 'v2s2' });
    const docker = await getManifest(reg, 'capsa-test/busybox', 'v2s2');
    expect(docker.m.mediaType).toBe(DOCKER_MANIFEST);
    expect(docker.m.layers[0].mediaType).toBe('application/vnd.docker.image.rootfs.diff.tar.gzip');

    await reg.push(images.busybox.layout, 'capsa-test/busybox:zstd', { compress: 'zstd' });
    const zstd = await getManifest(reg, 'capsa-test/busybox', 'zstd');
    expect(zstd.m.layers[0].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    const blob = await getBlob(reg, 'capsa-test/busybox', zstd.m.layers[0].digest);
    expect(blob.subarray(0, 4).toString('hex')).toBe('28b52ffd'); // zstd frame magic
  });

  it('answers 404 for what it does not hold', async () => {
    const res = await fetch(`${reg.url}/v2/capsa-test/busybox/manifests/nope`, { headers: { Accept: ACCEPT } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0].code).toBe('MANIFEST_UNKNOWN');
  });
});

describe('basic-auth registry', () => {
  const account = { username: 'capsa', password: 's3cret:with colon' };
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ basicAuth: account });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('answers 401 without credentials and 200 with them', async () => {
    const anon = await fetch(`${reg.url}/v2/`);
    expect(anon.status).toBe(401);
    expect(anon.headers.get('www-authenticate')).toBe('Basic realm="capsa-test"');
    const wrong = await fetch(`${reg.url}/v2/`, {
      headers: { Authorization: `Basic ${Buffer.from('capsa:wrong').toString('base64')}` },
    });
    expect(wrong.status).toBe(401);
    const auth = Buffer.from(`${account.username}:${account.password}`).toString('base64');
    const ok = await fetch(`${reg.url}/v2/`, { headers: { Authorization: `Basic ${auth}` } });
    expect(ok.status).toBe(200);
  });

  it('takes pushes with credentials only, and serves manifests with credentials only', async () => {
    await expect(reg.push(images.busybox.layout, 'private/busybox:1', { anonymous: true })).rejects.toThrow(
      /unauthorized|authentication required/i,
    );
    const pushed = await reg.push(images.busybox.layout, 'private/busybox:1');
    expect(pushed.digest).toBe(images.busybox.digest);
    const anon = await reg.fetch('/v2/private/busybox/manifests/1', { anonymous: true, headers: { Accept: ACCEPT } });
    expect(anon.status).toBe(401);
    await getManifest(reg, 'private/busybox', '1');
  });
});

describe('bearer-token registry', () => {
  const account = { username: 'capsa', password: 'tok3n' };
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ tokenAuth: account });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('challenges with the token realm', async () => {
    const res = await fetch(`${reg.url}/v2/`);
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    expect(challenge).toContain(`Bearer realm="${reg.tokenServer!.realm}"`);
    expect(challenge).toContain('service="capsa-test-registry"');
  });

  it('takes a skopeo push through the token flow and serves it to token holders only', async () => {
    const pushed = await reg.push(images.busybox.layout, 'tok/busybox:1');
    expect(pushed.digest).toBe(images.busybox.digest);
    expect(reg.tokenServer!.requests.some((r) => r.subject === 'capsa' && r.status === 200)).toBe(true);

    await getManifest(reg, 'tok/busybox', '1');
    // anonymous tokens carry no access (anonymousPull is off)
    const anon = await reg.fetch('/v2/tok/busybox/manifests/1', { anonymous: true, headers: { Accept: ACCEPT } });
    expect(anon.status).toBe(401);
    // a token for another repository is refused
    const other = reg.tokenServer!.sign('capsa', [{ type: 'repository', name: 'other', actions: ['pull'] }]);
    const res = await fetch(`${reg.url}/v2/tok/busybox/manifests/1`, {
      headers: { Accept: ACCEPT, Authorization: `Bearer ${other}` },
    });
    expect(res.status).toBe(401);
  });

  it('issues tokens for the OAuth2 password and refresh-token grants', async () => {
    const ts = reg.tokenServer!;
    const post = (form: Record<string, string>): Promise<Response> =>
      fetch(ts.realm, { method: 'POST', body: new URLSearchParams(form) });
    const scope = 'repository:tok/busybox:pull';
    const pw = await post({
      grant_type: 'password',
      username: 'capsa',
      password: 'tok3n',
      service: 'capsa-test-registry',
      scope,
      access_type: 'offline',
      client_id: 'capsa-test',
    });
    expect(pw.status).toBe(200);
    const { refresh_token } = (await pw.json()) as { refresh_token: string };
    expect(refresh_token).toBe(ts.refreshToken);
    const rt = await post({ grant_type: 'refresh_token', refresh_token, service: 'capsa-test-registry', scope });
    expect(rt.status).toBe(200);
    const { access_token } = (await rt.json()) as { access_token: string };
    const res = await fetch(`${reg.url}/v2/tok/busybox/manifests/1`, {
      headers: { Accept: ACCEPT, Authorization: `Bearer ${access_token}` },
    });
    expect(res.status).toBe(200);
    const bad = await post({
      grant_type: 'refresh_token',
      refresh_token: 'nope',
      service: 'capsa-test-registry',
      scope,
    });
    expect(bad.status).toBe(401);
  });
});

describe('stop()', () => {
  it('kills the registry and removes its directory', async () => {
    const reg = await startRegistry({ basicAuth: { username: 'a', password: 'b' } });
    const { pid, dir, url } = reg;
    expect(existsSync(path.join(dir, 'htpasswd'))).toBe(true);
    await reg.stop();
    expect(() => process.kill(pid!, 0)).toThrow();
    expect(existsSync(dir)).toBe(false);
    await expect(fetch(`${url}/v2/`)).rejects.toThrow();
    await reg.stop(); // idempotent
  });
});
