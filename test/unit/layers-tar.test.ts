import { parseNumeric, TarHeader, TarReader } from '../../src/provisioner/layers/tar-reader';
import { buildTar, TarSpec, tarEntry } from '../helpers/tar-writer';

async function* chunked(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function readAll(b: Buffer, chunk = 7): Promise<{ h: TarHeader; data: Buffer }[]> {
  const r = new TarReader(chunked(b, chunk));
  const out: { h: TarHeader; data: Buffer }[] = [];
  for (let h = await r.next(); h; h = await r.next()) {
    const parts: Buffer[] = [];
    if (h.name.endsWith('skip-body')) {
      out.push({ h, data: Buffer.alloc(0) });
      continue;
    }
    for await (const c of r.body()) parts.push(Buffer.from(c));
    out.push({ h, data: Buffer.concat(parts) });
  }
  return out;
}

describe('TarReader', () => {
  it('reads every entry type with its metadata, across odd chunk boundaries', async () => {
    const specs: TarSpec[] = [
      { name: 'dir', type: 'dir', mode: 0o1755, uid: 5, gid: 6, mtime: 1234567890 },
      { name: 'dir/file', data: 'hello', mode: 0o4755 },
      { name: 'dir/skip-body', data: 'x'.repeat(1000) },
      { name: 'dir/link', type: 'symlink', linkname: '../target' },
      { name: 'dir/hard', type: 'hardlink', linkname: 'dir/file' },
      { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3 },
      { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 1 },
      { name: 'fifo', type: 'fifo' },
    ];
    for (const chunk of [1, 7, 512, 100000]) {
      const got = await readAll(buildTar(specs), chunk);
      expect(got.map((e) => [e.h.name, e.h.type])).toEqual([
        ['dir/', 'dir'],
        ['dir/file', 'file'],
        ['dir/skip-body', 'file'],
        ['dir/link', 'symlink'],
        ['dir/hard', 'hardlink'],
        ['dev/null', 'char'],
        ['dev/sda', 'block'],
        ['fifo', 'fifo'],
      ]);
      expect(got[0].h).toMatchObject({ mode: 0o1755, uid: 5, gid: 6, mtime: 1234567890 });
      expect(got[1].data.toString()).toBe('hello');
      expect(got[1].h.mode).toBe(0o4755);
      expect(got[3].h.linkname).toBe('../target');
      expect(got[5].h).toMatchObject({ devmajor: 1, devminor: 3 });
    }
  });

  it('reads PAX long names, link names, xattrs (binary) and times', async () => {
    const long = `${'a'.repeat(120)}/${'b'.repeat(120)}`;
    const cap = Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const got = await readAll(
      buildTar([
        { name: long, data: 'x', xattrs: { 'user.a': 'b', 'security.capability': cap } },
        { name: 'l', type: 'symlink', linkname: long },
        { name: 't', data: '', pax: { mtime: '1600000000.5', atime: '1600000001.25', uid: '70000' } },
      ]),
    );
    expect(got[0].h.name).toBe(long);
    expect(got[0].h.xattrs.get('user.a')?.toString()).toBe('b');
    expect(got[0].h.xattrs.get('security.capability')).toEqual(cap);
    expect(got[1].h.linkname).toBe(long);
    expect(got[2].h).toMatchObject({ mtime: 1600000000.5, atime: 1600000001.25, uid: 70000 });
  });

  it('reads GNU long names and links', async () => {
    const long = `${'c'.repeat(150)}/file`;
    const got = await readAll(
      buildTar([
        { name: long, data: 'y', longNames: 'gnu' },
        { name: 'h', type: 'hardlink', linkname: long, longNames: 'gnu' },
      ]),
    );
    expect(got[0].h.name).toBe(long);
    expect(got[0].data.toString()).toBe('y');
    expect(got[1].h.linkname).toBe(long);
  });

  it('reads base-256 sizes and numbers', async () => {
    const got = await readAll(buildTar([{ name: 'big', data: 'z'.repeat(700), base256Size: true }]));
    expect(got[0].h.size).toBe(700);
    expect(got[0].data.length).toBe(700);
    const b = Buffer.alloc(12);
    b[0] = 0x80;
    b.writeUIntBE(2 ** 40 + 5, 6, 6);
    expect(parseNumeric(b, 0, 12, 'size')).toBe(2 ** 40 + 5);
  });

  it('ignores global PAX headers and accepts a missing end marker', async () => {
    const g = tarEntry({ name: 'pax_global_header', typeflag: 'g', data: '' });
    const gh = Buffer.from(g);
    const body = buildTar([{ name: 'a', data: '1' }]).subarray(0, -1024);
    const got = await readAll(Buffer.concat([gh, body]));
    expect(got.map((e) => e.h.name)).toEqual(['a']);
  });

  it('refuses corrupt headers, truncation, sparse maps that do not fit and unknown types', async () => {
    const good = buildTar([{ name: 'a', data: 'hello' }]);
    const corrupt = Buffer.from(good);
    corrupt[10] ^= 0xff;
    await expect(readAll(corrupt)).rejects.toThrow(/checksum/);
    await expect(readAll(good.subarray(0, 600))).rejects.toThrow(/end of archive/);
    await expect(readAll(good.subarray(0, 300))).rejects.toThrow(/end of archive/);
    // An old GNU sparse header whose (empty) map does not account for its data.
    await expect(readAll(buildTar([{ name: 's', typeflag: 'S', data: 'x' }]))).rejects.toThrow(/sparse/);
    await expect(readAll(buildTar([{ name: 's', data: '', pax: { 'GNU.sparse.map': '0,1' } }]))).rejects.toThrow(
      /sparse/,
    );
    await expect(readAll(buildTar([{ name: 'q', typeflag: 'Q', data: '' }]))).rejects.toThrow(/unsupported/);
  });

  it('caps PAX header size', async () => {
    const r = new TarReader(chunked(buildTar([{ name: 'a', data: '', pax: { comment: 'x'.repeat(5000) } }]), 512), {
      maxMetaSize: 4096,
    });
    await expect(r.next()).rejects.toThrow(/limit/);
  });
});
