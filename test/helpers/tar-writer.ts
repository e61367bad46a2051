// A small tar writer for tests: ustar headers, PAX records (long names,
// xattrs, arbitrary keys) or GNU 'L'/'K' long names, base-256 numbers on
// request, and gzip/zstd compression. Enough to build every entry type and
// every hostile layer the unpacker must handle.
import { spawnSync } from 'child_process';
import { createHash } from 'crypto';
import { writeFileSync } from 'fs';
import { gzipSync } from 'zlib';

export type TarType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarSpec {
  name: string;
  type?: TarType;
  data?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, string | Buffer>;
  /** Extra PAX records (e.g. { path: '../x' } to override the ustar name). */
  pax?: Record<string, string>;
  /** How names over 100 bytes are written (default 'pax'). */
  longNames?: 'pax' | 'gnu';
  /** Write the size field in GNU base-256 form. */
  base256Size?: boolean;
  /** Raw typeflag override. */
  typeflag?: string;
}

const TYPEFLAG: Record<TarType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

function octal(buf: Buffer, off: number, len: number, value: number): void {
  const s = value.toString(8).padStart(len - 1, '0');
  if (s.length > len - 1) throw new Error(`value ${value} does not fit in ${len} octal bytes`);
  buf.write(s, off, len - 1, 'latin1');
  buf[off + len - 1] = 0;
}

function base256(buf: Buffer, off: number, len: number, value: number): void {
  let v = BigInt(value);
  for (let i = len - 1; i > 0; i--) {
    buf[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  buf[off] = 0x80;
}

function header(
  name: string,
  typeflag: string,
  size: number,
  s: Partial<TarSpec>,
  opts: { linkname?: string; base256Size?: boolean } = {},
): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from(name, 'utf8').copy(b, 0, 0, 100);
  octal(b, 100, 8, s.mode ?? (typeflag === '5' ? 0o755 : 0o644));
  octal(b, 108, 8, s.uid ?? 0);
  octal(b, 116, 8, s.gid ?? 0);
  if (opts.base256Size) base256(b, 124, 12, size);
  else octal(b, 124, 12, size);
  octal(b, 136, 12, Math.floor(s.mtime ?? 1_600_000_000));
  b.write('        ', 148, 8, 'latin1');
  b.write(typeflag, 156, 1, 'latin1');
  Buffer.from(opts.linkname ?? '', 'utf8').copy(b, 157, 0, 100);
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  b.write('root', 265, 32, 'latin1');
  b.write('root', 297, 32, 'latin1');
  octal(b, 329, 8, s.devmajor ?? 0);
  octal(b, 337, 8, s.devminor ?? 0);
  let sum = 0;
  for (const c of b) sum += c;
  octal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

function pad(data: Buffer): Buffer[] {
  const rem = data.length % 512;
  return rem ? [data, Buffer.alloc(512 - rem)] : [data];
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** One entry's blocks (extended headers included). */
export function tarEntry(s: TarSpec): Buffer {
  const type = s.type ?? 'file';
  const typeflag = s.typeflag ?? TYPEFLAG[type];
  const data = s.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(s.data) ? s.data : Buffer.from(s.data);
  const parts: Buffer[] = [];
  const records: Buffer[] = [];
  let name = type === 'dir' && !s.name.endsWith('/') ? `${s.name}/` : s.name;
  let linkname = s.linkname ?? '';
  const longMode = s.longNames ?? 'pax';
  if (Buffer.byteLength(name) > 100) {
    if (longMode === 'gnu') {
      const n = Buffer.concat([Buffer.from(name), Buffer.alloc(1)]);
      parts.push(header('././@LongLink', 'L', n.length, {}), ...pad(n));
    } else records.push(paxRecord('path', Buffer.from(name)));
    name = name.slice(0, 99);
  }
  if (Buffer.byteLength(linkname) > 100) {
    if (longMode === 'gnu') {
      const n = Buffer.concat([Buffer.from(linkname), Buffer.alloc(1)]);
      parts.push(header('././@LongLink', 'K', n.length, {}), ...pad(n));
    } else records.push(paxRecord('linkpath', Buffer.from(linkname)));
    linkname = linkname.slice(0, 99);
  }
  for (const [k, v] of Object.entries(s.xattrs ?? {})) {
    records.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.isBuffer(v) ? v : Buffer.from(v)));
  }
  for (const [k, v] of Object.entries(s.pax ?? {})) records.push(paxRecord(k, Buffer.from(v)));
  if (records.length) {
    const pax = Buffer.concat(records);
    parts.push(header(`PaxHeaders/${name.slice(0, 80)}`, 'x', pax.length, {}), ...pad(pax));
  }
  const size = type === 'file' ? data.length : 0;
  parts.push(header(name, typeflag, size, s, { linkname, base256Size: s.base256Size }));
  if (size) parts.push(...pad(data));
  return Buffer.concat(parts);
}

/** A complete archive (two zero blocks at the end). */
export function buildTar(entries: TarSpec[]): Buffer {
  return Buffer.concat([...entries.map(tarEntry), Buffer.alloc(1024)]);
}

export type TestCompression = 'none' | 'gzip' | 'zstd';

export function compress(tar: Buffer, how: TestCompression): Buffer {
  if (how === 'none') return tar;
  if (how === 'gzip') return gzipSync(tar);
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: tar, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr.toString()}`);
  return r.stdout;
}

export function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export const MEDIA_TYPES: Record<TestCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** Writes a layer blob; returns its path, media type and diffID (sha256 of the uncompressed tar). */
export function writeLayerBlob(
  file: string,
  entries: TarSpec[],
  how: TestCompression = 'gzip',
): { blobPath: string; mediaType: string; diffId: string; tar: Buffer } {
  const tar = buildTar(entries);
  writeFileSync(file, compress(tar, how));
  return { blobPath: file, mediaType: MEDIA_TYPES[how], diffId: sha256(tar), tar };
}
