import { CapsaError } from '../../src/errors';
import { chainIds, sha256Of } from '../../src/provisioner/store/digest';
import {
  checkImageManifest,
  Descriptor,
  ImageIndex,
  MediaType,
  parseImageConfig,
  parseManifest,
  selectPlatformManifest,
} from '../../src/provisioner/store/manifest';
import { endpointsFor, isLoopbackHost, registryApiHost } from '../../src/provisioner/store/registry-client';

const d = (n: number): string => `sha256:${String(n).padStart(64, '0')}`;
const enc = (x: unknown): Buffer => Buffer.from(JSON.stringify(x));

function kind(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as CapsaError).kind;
  }
  return undefined;
}

const dockerManifest = {
  schemaVersion: 2,
  mediaType: MediaType.DockerManifest,
  config: { mediaType: MediaType.DockerConfig, size: 10, digest: d(1) },
  layers: [{ mediaType: MediaType.DockerLayer, size: 20, digest: d(2) }],
};

describe('manifest parsing', () => {
  test('Docker schema 2 manifest', () => {
    const p = parseManifest(enc(dockerManifest), 'application/json');
    expect(p.kind).toBe('manifest');
    if (p.kind === 'manifest') {
      expect(p.manifest.config.digest).toBe(d(1));
      expect(p.manifest.layers).toHaveLength(1);
      checkImageManifest(p.manifest);
    }
  });

  test('OCI manifest without mediaType uses the Content-Type, else the shape', () => {
    const { mediaType: _m, ...bare } = {
      ...dockerManifest,
      config: { ...dockerManifest.config, mediaType: MediaType.OciConfig },
      layers: [{ mediaType: MediaType.OciLayerGzip, size: 20, digest: d(2) }],
    };
    const p = parseManifest(enc(bare), `${MediaType.OciManifest}; charset=utf-8`);
    expect(p.kind === 'manifest' && p.manifest.mediaType).toBe(MediaType.OciManifest);
    const q = parseManifest(enc(bare), undefined);
    expect(q.kind === 'manifest' && q.manifest.mediaType).toBe(MediaType.OciManifest);
    const idx = parseManifest(enc({ schemaVersion: 2, manifests: [] }), undefined);
    expect(idx.kind).toBe('index');
  });

  test('indexes and manifest lists', () => {
    const list = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifestList,
      manifests: [
        {
          mediaType: MediaType.DockerManifest,
          size: 1,
          digest: d(3),
          platform: { os: 'linux', architecture: 'amd64' },
        },
      ],
    };
    const p = parseManifest(enc(list), MediaType.DockerManifestList);
    expect(p.kind).toBe('index');
  });

  test('schema 1 is Unimplemented; garbage and bad descriptors are InvalidArgument', () => {
    expect(kind(() => parseManifest(enc({ schemaVersion: 1, name: 'x' }), undefined))).toBe('Unimplemented');
    expect(kind(() => parseManifest(enc({ schemaVersion: 2 }), MediaType.DockerSchema1Signed))).toBe('Unimplemented');
    expect(kind(() => parseManifest(Buffer.from('{nope'), undefined))).toBe('InvalidArgument');
    expect(kind(() => parseManifest(enc([1, 2]), undefined))).toBe('InvalidArgument');
    expect(kind(() => parseManifest(enc({ ...dockerManifest, schemaVersion: 3 }), undefined))).toBe('InvalidArgument');
    expect(
      kind(() =>
        parseManifest(
          enc({ ...dockerManifest, config: { ...dockerManifest.config, digest: 'sha256:xyz' } }),
          undefined,
        ),
      ),
    ).toBe('InvalidArgument');
    expect(
      kind(() =>
        parseManifest(enc({ ...dockerManifest, layers: [{ digest: d(1), size: -1, mediaType: 'x' }] }), undefined),
      ),
    ).toBe('InvalidArgument');
    expect(kind(() => parseManifest(enc({ schemaVersion: 2, mediaType: 'application/x-other' }), undefined))).toBe(
      'Unimplemented',
    );
  });

  test('checkImageManifest refuses non-image artifacts and unknown layer types', () => {
    const p = parseManifest(
      enc({
        ...dockerManifest,
        config: { ...dockerManifest.config, mediaType: 'application/vnd.cncf.helm.config.v1+json' },
      }),
      undefined,
    );
    expect(kind(() => p.kind === 'manifest' && checkImageManifest(p.manifest))).toBe('Unimplemented');
    const q = parseManifest(
      enc({ ...dockerManifest, layers: [{ mediaType: 'application/x-weird', size: 1, digest: d(2) }] }),
      undefined,
    );
    expect(kind(() => q.kind === 'manifest' && checkImageManifest(q.manifest))).toBe('Unimplemented');
  });

  test('image config must list diff IDs', () => {
    expect(parseImageConfig(enc({ rootfs: { type: 'layers', diff_ids: [d(1)] } })).rootfs.diff_ids).toEqual([d(1)]);
    expect(kind(() => parseImageConfig(enc({})))).toBe('InvalidArgument');
    expect(kind(() => parseImageConfig(enc({ rootfs: { diff_ids: ['nope'] } })))).toBe('InvalidArgument');
  });
});

describe('platform selection', () => {
  const entry = (
    n: number,
    platform?: Descriptor['platform'],
    mediaType: string = MediaType.OciManifest,
  ): Descriptor => ({
    mediaType,
    size: 100,
    digest: d(n),
    ...(platform ? { platform } : {}),
  });
  const index = (...manifests: Descriptor[]): ImageIndex => ({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests,
  });

  test('picks linux/amd64 among others and skips attestations', () => {
    const idx = index(
      entry(1, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
      entry(2, { os: 'unknown', architecture: 'unknown' }),
      entry(3, { os: 'windows', architecture: 'amd64' }),
      entry(4, { os: 'linux', architecture: 'amd64' }),
      entry(5, { os: 'linux', architecture: 's390x' }),
    );
    expect(selectPlatformManifest(idx).digest).toBe(d(4));
  });

  test('variants: exact match wins, then an entry without variant', () => {
    const idx = index(
      entry(1, { os: 'linux', architecture: 'arm', variant: 'v6' }),
      entry(2, { os: 'linux', architecture: 'arm', variant: 'v7' }),
      entry(3, { os: 'linux', architecture: 'arm64' }),
    );
    expect(selectPlatformManifest(idx, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(d(2));
    expect(selectPlatformManifest(idx, { os: 'linux', architecture: 'arm' }).digest).toBe(d(2));
    expect(selectPlatformManifest(idx, { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest).toBe(d(3));
    const amd = index(
      entry(7, { os: 'linux', architecture: 'amd64', variant: 'v3' }),
      entry(8, { os: 'linux', architecture: 'amd64', variant: 'v1' }),
    );
    expect(selectPlatformManifest(amd).digest).toBe(d(8));
  });

  test('no match is NotFound naming the platform', () => {
    const idx = index(entry(1, { os: 'linux', architecture: 'arm64' }));
    let err: CapsaError | undefined;
    try {
      selectPlatformManifest(idx, undefined, { image: 'x' });
    } catch (e) {
      err = e as CapsaError;
    }
    expect(err?.kind).toBe('NotFound');
    expect(err?.message).toContain('linux/amd64');
    expect(err?.context).toMatchObject({ stage: 'pull', image: 'x' });
  });

  test('a single entry without platform is taken', () => {
    expect(selectPlatformManifest(index(entry(9))).digest).toBe(d(9));
  });
});

describe('chain IDs', () => {
  test('follow the OCI definition', () => {
    const a = sha256Of('a');
    const b = sha256Of('b');
    const c = sha256Of('c');
    const ids = chainIds([a, b, c]);
    expect(ids[0]).toBe(a);
    expect(ids[1]).toBe(sha256Of(`${a} ${b}`));
    expect(ids[2]).toBe(sha256Of(`${ids[1]} ${c}`));
    expect(chainIds([])).toEqual([]);
  });
});

describe('registry endpoints', () => {
  test('mirrors first, then the registry; the repository path has no host', () => {
    const eps = endpointsFor('registry.k8s.io', {
      registries: { 'registry.k8s.io': { mirrors: ['http://127.0.0.1:5000', 'https://mirror.example.com/prefix/'] } },
    });
    expect(eps.map((e) => e.base.href)).toEqual([
      'http://127.0.0.1:5000/v2/',
      'https://mirror.example.com/prefix/v2/',
      'https://registry.k8s.io/v2/',
    ]);
    expect(eps.map((e) => e.mirror)).toEqual([true, true, false]);
    expect(eps[0].base.protocol).toBe('http:');
    expect(eps[1].insecure).toBe(false);
    expect(eps[2].insecure).toBe(false);
    expect(new URL('pause/manifests/3.9', eps[0].base).href).toBe('http://127.0.0.1:5000/v2/pause/manifests/3.9');
  });

  test('Docker Hub is served at registry-1.docker.io', () => {
    expect(registryApiHost('docker.io')).toBe('registry-1.docker.io');
    expect(endpointsFor('docker.io', {}).map((e) => e.base.href)).toEqual(['https://registry-1.docker.io/v2/']);
    const eps = endpointsFor('docker.io', { registries: { 'docker.io': { mirrors: ['mirror.gcr.io'] } } });
    expect(eps.map((e) => e.base.href)).toEqual(['https://mirror.gcr.io/v2/', 'https://registry-1.docker.io/v2/']);
  });

  test('plain HTTP only for insecure or loopback registries', () => {
    expect(endpointsFor('example.com', {})[0]).toMatchObject({ insecure: false, probe: false });
    expect(endpointsFor('example.com', { registries: { 'example.com': { insecure: true } } })[0]).toMatchObject({
      insecure: true,
      probe: true,
    });
    expect(
      endpointsFor('example.com', { registries: { 'example.com': { insecure: false, mirrors: [] } } })[0].insecure,
    ).toBe(false);
    // Loopback registries may use plain HTTP but still verify certificates when they speak TLS.
    expect(endpointsFor('127.0.0.1:5000', {})[0]).toMatchObject({ insecure: false, probe: true });
    expect(endpointsFor('localhost:5000', {})[0].probe).toBe(true);
    // The daemon config fills insecure=false explicitly: loopback still allows HTTP.
    expect(endpointsFor('127.0.0.1:5000', { registries: { '127.0.0.1:5000': { insecure: false } } })[0].probe).toBe(
      true,
    );
    const m = endpointsFor('x.io', {
      registries: { 'x.io': { mirrors: ['127.0.0.1:5000', 'https://127.0.0.1:5001'] } },
    });
    expect(m.map((e) => e.probe)).toEqual([true, false, false]);
  });

  test('a bad mirror URL is a FailedPrecondition', () => {
    expect(kind(() => endpointsFor('x.io', { registries: { 'x.io': { mirrors: ['ftp://m'] } } }))).toBe(
      'FailedPrecondition',
    );
  });

  test.each([
    ['localhost', true],
    ['localhost:5000', true],
    ['127.0.0.1', true],
    ['127.1.2.3:80', true],
    ['[::1]:5000', true],
    ['::1', true],
    ['10.0.0.1:5000', false],
    ['example.com', false],
    ['127.0.0.1.example.com', false],
  ])('isLoopbackHost(%s) = %s', (h, want) => {
    expect(isLoopbackHost(h)).toBe(want);
  });
});
