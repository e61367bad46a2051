// GNU sparse files: archives made by GNU tar itself (PAX 0.0, 0.1, 1.0 and the
// old GNU 'S' headers) from files with holes made by truncate + dd, read by the
// TarReader, cross-checked against python3's tarfile, and unpacked by the
// LayerApplier: same bytes, holes kept (st_blocks well under the size). Hostile
// maps are refused before anything is written.
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LayerApplier } from '../../src/provisioner/layers/apply';
import { TarHeader, TarReader } from '../../src/provisioner/layers/tar-reader';
import { buildTar, tarEntry } from '../helpers/tar-writer';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-sparse-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const KIB = 1024;
const src = path.join(tmp, 'src');
mkdirSync(src);

/** A file of `size` bytes with random data at `segments` ([offset, length]) and holes elsewhere. */
function holey(name: string, size: number, segments: [number, number][]): string {
  const f = path.join(src, name);
  execFileSync('truncate', ['-s', String(size), f]);
  for (const [off, len] of segments) {
    execFileSync('dd', [
      'if=/dev/urandom',
      `of=${f}`,
      `bs=${len}`,
      'count=1',
      `seek=${off}`,
      'oflag=seek_bytes',
      'conv=notrunc',
      'status=none',
    ]);
  }
  return f;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const FILES: Record<string, { size: number; segments: [number, number][] }> = {
  // Two data runs and a trailing hole.
  two: {
    size: 10 * KIB * KIB,
    segments: [
      [400 * KIB, 12 * KIB],
      [4880 * KIB, 4 * KIB],
    ],
  },
  // 30 runs: more than the 4 an old GNU header holds (two extension blocks).
  many: { size: 4 * KIB * KIB, segments: Array.from({ length: 30 }, (_x, i) => [i * 128 * KIB, 4 * KIB]) },
  // Data up to the very end, no trailing hole.
  tail: { size: 2 * KIB * KIB, segments: [[2 * KIB * KIB - 8 * KIB, 8 * KIB]] },
  // Nothing but a hole.
  empty: { size: 3 * KIB * KIB, segments: [] },
};
for (const [name, f] of Object.entries(FILES)) holey(name, f.size, f.segments);

const FORMATS: Record<string, string[]> = {
  'PAX 0.0': ['--format=posix', '--sparse-version=0.0'],
  'PAX 0.1': ['--format=posix', '--sparse-version=0.1'],
  'PAX 1.0': ['--format=posix', '--sparse-version=1.0'],
  "old GNU 'S'": ['--format=gnu'],
};

function gnuTar(label: string): string {
  const out = path.join(tmp, `${label.replace(/\W+/g, '_')}.tar`);
  execFileSync('tar', ['-C', src, '--sparse', ...FORMATS[label], '-cf', out, ...Object.keys(FILES)]);
  return out;
}

interface PyEntry {
  name: string;
  size: number;
  sparse: [number, number][] | null;
  sha256: string;
}

/** python3's tarfile on the same archive: names, sizes, maps and the files' expanded content. */
function pythonView(tar: string): PyEntry[] {
  const script = `
import hashlib, json, sys, tarfile
out = []
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        data = t.extractfile(m).read()
        out.append({"name": m.name, "size": m.size, "sparse": m.sparse, "sha256": hashlib.sha256(data).hexdigest()})
print(json.dumps(out))
`;
  return JSON.parse(execFileSync('python3', ['-c', script, tar]).toString()) as PyEntry[];
}

async function* chunks(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** Every entry with its data expanded (holes as zeros). */
async function readExpanded(tar: Buffer, chunk: number): Promise<{ h: TarHeader; content: Buffer }[]> {
  const r = new TarReader(chunks(tar, chunk));
  const out: { h: TarHeader; content: Buffer }[] = [];
  for (let h = await r.next(); h; h = await r.next()) {
    const parts: Buffer[] = [];
    for await (const c of r.body()) parts.push(Buffer.from(c));
    const data = Buffer.concat(parts);
    let content = data;
    if (h.sparse) {
      content = Buffer.alloc(h.size);
      let at = 0;
      for (const s of h.sparse.segments) {
        data.copy(content, s.offset, at, at + s.length);
        at += s.length;
      }
    }
    out.push({ h, content });
  }
  return out;
}

async function apply(tar: Buffer | string, into: string): Promise<void> {
  mkdirSync(into, { recursive: true });
  const source = typeof tar === 'string' ? createReadStream(tar) : chunks(tar, 4096);
  await new LayerApplier(into).applyAll(new TarReader(source as AsyncIterable<Buffer>));
}

describe.each(Object.keys(FORMATS))('sparse files made by GNU tar, %s', (label) => {
  const tar = gnuTar(label);

  it('reads the same names, sizes, maps and bytes as python3 tarfile and the source files', async () => {
    const py = pythonView(tar);
    for (const chunk of [7, 512, 1 << 20]) {
      const got = await readExpanded(readFileSync(tar), chunk);
      expect(got.map((e) => e.h.name)).toEqual(Object.keys(FILES));
      for (const [i, e] of got.entries()) {
        const name = Object.keys(FILES)[i];
        expect(e.h.type).toBe('file');
        expect(e.h.sparse).toBeDefined();
        expect(e.h.size).toBe(FILES[name].size);
        expect(py[i]).toMatchObject({ name, size: e.h.size });
        // Compared without empty segments: python lists an old GNU header's unused (0, 0)
        // slots but drops the empty ones of its extension blocks (GNU tar ends a map
        // with an empty segment at the real size).
        const pyMap = (py[i].sparse ?? []).filter(([, l]) => l !== 0);
        const ours = e.h.sparse!.segments.filter((s) => s.length !== 0).map((s) => [s.offset, s.length]);
        expect(ours).toEqual(pyMap);
        expect(ours).toEqual(FILES[name].segments);
        expect(sha(e.content)).toBe(py[i].sha256);
        expect(sha(e.content)).toBe(sha(readFileSync(path.join(src, name))));
      }
    }
  });

  it('unpacks the files with their holes: same bytes, st_blocks far under the size', async () => {
    const into = path.join(tmp, `out-${label.replace(/\W+/g, '_')}`);
    await apply(tar, into);
    for (const [name, f] of Object.entries(FILES)) {
      const st = statSync(path.join(into, name));
      expect(st.size).toBe(f.size);
      const data = f.segments.reduce((n, [, l]) => n + l, 0);
      // Allocation is in file system blocks; the holes are megabytes.
      expect(st.blocks * 512).toBeLessThanOrEqual(data + f.segments.length * 8 * KIB + 8 * KIB);
      expect(st.blocks * 512).toBeLessThan(f.size / 4);
      expect(sha(readFileSync(path.join(into, name)))).toBe(sha(readFileSync(path.join(src, name))));
    }
  });
});

describe('hostile sparse maps', () => {
  const pax01 = (map: string, numblocks: string, size: string, data: string): Buffer =>
    buildTar([
      {
        name: 'f',
        data,
        pax: { 'GNU.sparse.size': size, 'GNU.sparse.numblocks': numblocks, 'GNU.sparse.map': map },
      },
    ]);
  const pax10 = (mapText: string, realsize: string, data: string): Buffer => {
    const map = Buffer.alloc(Math.ceil(mapText.length / 512) * 512);
    map.write(mapText, 'latin1');
    return buildTar([
      {
        name: 'GNUSparseFile.1/f',
        data: Buffer.concat([map, Buffer.from(data)]),
        pax: {
          'GNU.sparse.major': '1',
          'GNU.sparse.minor': '0',
          'GNU.sparse.name': 'f',
          'GNU.sparse.realsize': realsize,
        },
      },
    ]);
  };
  /** A PAX 0.0 header: the records in this exact order (keys repeat). */
  const pax00 = (records: [string, string][], data: string): Buffer => {
    const recs = records.map(([k, v]) => {
      const body = ` ${k}=${v}\n`;
      let len = body.length + 1;
      while (String(len).length + body.length !== len) len++;
      return `${len}${body}`;
    });
    return Buffer.concat([
      tarEntry({ name: 'PaxHeaders/f', typeflag: 'x', data: recs.join('') }),
      buildTar([{ name: 'f', data }]),
    ]);
  };

  const cases: [string, Buffer, RegExp][] = [
    ['0.1 overlapping segments', pax01('0,8,4,8', '2', '100', 'x'.repeat(16)), /overlaps/],
    ['0.1 segments out of order', pax01('50,8,0,8', '2', '100', 'x'.repeat(16)), /overlaps or precedes/],
    ['0.1 segment past the real size', pax01('96,8', '1', '100', 'x'.repeat(8)), /past the file's size/],
    ['0.1 lengths not adding up to the data', pax01('0,8', '1', '100', 'x'.repeat(9)), /carries 9/],
    ['0.1 count not matching the map', pax01('0,8', '2', '100', 'x'.repeat(8)), /numblocks is 2/],
    ['0.1 absurd count', pax01('0,8', '99999999999', '100', 'x'.repeat(8)), /exceeds the limit/],
    ['0.1 a number that is not one', pax01('0,-8', '1', '100', 'x'), /not a number/],
    ['0.1 a 2^60 length', pax01(`0,${2 ** 60}`, '1', `${2 ** 60}`, 'x'), /too large|not a number/],
    ['1.0 absurd count', pax10('99999999999\n', '100', ''), /exceeds the limit/],
    ['1.0 count larger than the map', pax10('3\n0\n8\n', '100', 'x'.repeat(8)), /ends early: no offset/],
    [
      '1.0 map running past the data',
      pax10(`1000\n${'0\n'.repeat(253)}1`, '100', 'x'.repeat(8)),
      /runs past the entry's data/,
    ],
    ['1.0 stray bytes after the map', pax10('1\n0\n8\njunk', '100', 'x'.repeat(8)), /stray bytes/],
    ['1.0 overlapping segments', pax10('2\n0\n8\n4\n8\n', '100', 'x'.repeat(16)), /overlaps/],
    ['1.0 endless number', pax10(`1\n${'1'.repeat(600)}`, '100', ''), /not a number/],
    [
      '0.0 offset/numbytes out of order',
      pax00(
        [
          ['GNU.sparse.size', '100'],
          ['GNU.sparse.numblocks', '1'],
          ['GNU.sparse.numbytes', '8'],
          ['GNU.sparse.offset', '0'],
        ],
        'x'.repeat(8),
      ),
      /do not alternate/,
    ],
    [
      'unknown sparse version',
      buildTar([{ name: 'f', pax: { 'GNU.sparse.major': '2', 'GNU.sparse.minor': '0' } }]),
      /2\.0/,
    ],
    [
      'sparse records on a directory',
      buildTar([{ name: 'd', type: 'dir', pax: { 'GNU.sparse.map': '' } }]),
      /on a dir/,
    ],
  ];

  it.each(cases)('%s is refused with a clear error', async (_name, tar, message) => {
    await expect(readExpanded(tar, 512)).rejects.toThrow(message);
  });

  it("old GNU 'S' headers: overlapping, past the size, endless extension blocks", async () => {
    const base = readFileSync(gnuTar("old GNU 'S'"));
    const patch = (fn: (h: Buffer) => void, fix = true): Buffer => {
      const b = Buffer.from(base);
      const h = b.subarray(0, 512);
      fn(h);
      if (fix) {
        h.fill(0x20, 148, 156);
        let sum = 0;
        for (const c of h) sum += c;
        h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      }
      return b;
    };
    const octal = (h: Buffer, off: number, v: number): void => {
      h.write(v.toString(8).padStart(11, '0') + '\0', off, 'latin1');
    };
    // "two": segments at 386 (offset, length) pairs; make the second start inside the first.
    await expect(
      readExpanded(
        patch((h) => octal(h, 386 + 24, 400 * KIB + 4096)),
        512,
      ),
    ).rejects.toThrow(/overlaps/);
    await expect(
      readExpanded(
        patch((h) => octal(h, 483, 1000)),
        512,
      ),
    ).rejects.toThrow(/past the file's size/);
    // Extension blocks for ever: the data is read as more of them until the limit.
    const endless = Buffer.concat([
      patch((h) => (h[482] = 1)).subarray(0, 512),
      ...Array.from({ length: 10 }, () => {
        const ext = Buffer.alloc(512);
        for (let i = 0; i < 21; i++) octal(ext, i * 24, 0);
        ext[504] = 1;
        return ext;
      }),
    ]);
    const r = new TarReader(chunks(endless, 512), { maxSparseSegments: 50 });
    await expect(r.next()).rejects.toThrow(/exceeds the limit of 50/);
  });

  it('leaves nothing of a refused sparse entry on disk', async () => {
    const into = path.join(tmp, 'hostile-out');
    const tar = Buffer.concat([
      buildTar([{ name: 'before', data: 'ok' }]).subarray(0, -1024),
      pax01('0,8,4,8', '2', '100', 'x'.repeat(16)),
    ]);
    await expect(apply(tar, into)).rejects.toThrow(/overlaps/);
    expect(existsSync(path.join(into, 'before'))).toBe(true);
    expect(existsSync(path.join(into, 'f'))).toBe(false);
  });
});
