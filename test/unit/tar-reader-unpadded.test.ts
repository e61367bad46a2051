// An archive that ends right after its last entry's data, with neither the
// entry's padding nor the end-of-archive blocks (critest's nginx image has
// such a layer): Go's archive/tar, and so containerd, accept it; so do we.
// One that ends inside the padding stays an error.
import { TarReader } from '../../src/provisioner/layers/tar-reader';
import { buildTar } from '../helpers/tar-writer';

async function* chunked(b: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function names(b: Buffer): Promise<{ name: string; data: string }[]> {
  const r = new TarReader(chunked(b, 100));
  const out: { name: string; data: string }[] = [];
  for (let h = await r.next(); h; h = await r.next()) {
    const parts: Buffer[] = [];
    for await (const c of r.body()) parts.push(Buffer.from(c));
    out.push({ name: h.name, data: Buffer.concat(parts).toString() });
  }
  return out;
}

describe('TarReader on unpadded archives', () => {
  const tar = buildTar([
    { name: 'dir/', typeflag: '5', data: '' },
    { name: 'dir/index.html', data: 'x'.repeat(115) },
  ]);

  it('accepts an archive cut right after the last entry data', async () => {
    const cut = tar.subarray(0, 512 + 512 + 115);
    expect(await names(cut)).toEqual([
      { name: 'dir/', data: '' },
      { name: 'dir/index.html', data: 'x'.repeat(115) },
    ]);
  });

  it('refuses one cut inside the padding or the data', async () => {
    await expect(names(tar.subarray(0, 512 + 512 + 200))).rejects.toThrow(/end of archive/);
    await expect(names(tar.subarray(0, 512 + 512 + 100))).rejects.toThrow(/end of archive/);
  });
});
