// Reads the table of contents of a tar file without extracting it: each
// entry's name, type, size and data offset, so an archive's members can be
// streamed straight from the file (ustar, pax and GNU long names).
import { promises as fs } from 'fs';
import * as path from 'path';
import { ErrorContext, InvalidArgumentError } from '../../errors';

export interface TarEntry {
  /** Normalized member name: no leading "./" or "/", no trailing "/". */
  name: string;
  /** ustar typeflag: '0' file, '1' hardlink, '2' symlink, '5' dir, … */
  type: string;
  size: number;
  /** Offset of the member's data in the file. */
  offset: number;
  linkname?: string;
}

const BLOCK = 512;
const MAX_META_BYTES = 1024 * 1024;

function cstr(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end === -1 || end > start + len ? start + len : end);
}

function parseNumber(buf: Buffer, start: number, len: number): number {
  if (buf[start] & 0x80) {
    // GNU base-256: big-endian, first byte's high bit set.
    let v = buf[start] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + buf[start + i];
    return v;
  }
  const s = cstr(buf, start, len).trim();
  return s ? parseInt(s, 8) : 0;
}

function checksumOk(h: Buffer): boolean {
  const want = parseNumber(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === want;
}

export function normalizeMemberName(name: string): string {
  let n = name.replace(/\\/g, '/');
  while (n.startsWith('./')) n = n.slice(2);
  n = n.replace(/^\/+/, '').replace(/\/+$/, '');
  return path.posix.normalize(n || '.');
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp === -1) break;
    const len = parseInt(data.toString('utf8', i, sp), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const rec = data.toString('utf8', sp + 1, i + len - 1); // drop trailing \n
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** Indexes every member of a tar file. Corrupt headers → InvalidArgument naming the file. */
export async function indexTar(file: string, context: ErrorContext = {}): Promise<Map<string, TarEntry>> {
  const fh = await fs.open(file, 'r');
  const entries = new Map<string, TarEntry>();
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError('file', `${file} is not a valid tar archive: ${why}`, { ...context, path: file });
  try {
    const { size: fileSize } = await fh.stat();
    const header = Buffer.alloc(BLOCK);
    let pos = 0;
    let pax: Record<string, string> = {};
    let longName: string | undefined;
    let longLink: string | undefined;
    while (pos + BLOCK <= fileSize) {
      const { bytesRead } = await fh.read(header, 0, BLOCK, pos);
      if (bytesRead < BLOCK) throw bad('truncated header');
      if (header.every((b) => b === 0)) break;
      if (!checksumOk(header)) throw bad(`bad header checksum at offset ${pos}`);
      const type = String.fromCharCode(header[156] || 0x30);
      let size = parseNumber(header, 124, 12);
      const dataOffset = pos + BLOCK;
      const readData = async (): Promise<Buffer> => {
        if (size > MAX_META_BYTES) throw bad(`metadata entry of ${size} bytes`);
        const b = Buffer.alloc(size);
        await fh.read(b, 0, size, dataOffset);
        return b;
      };
      const next = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'x') {
        pax = { ...pax, ...parsePax(await readData()) };
        pos = next;
        continue;
      }
      if (type === 'g') {
        pos = next;
        continue;
      }
      if (type === 'L') {
        longName = (await readData()).toString('utf8').replace(/\0+$/, '');
        pos = next;
        continue;
      }
      if (type === 'K') {
        longLink = (await readData()).toString('utf8').replace(/\0+$/, '');
        pos = next;
        continue;
      }
      let name = cstr(header, 0, 100);
      const magic = header.toString('latin1', 257, 262);
      if (magic === 'ustar') {
        const prefix = cstr(header, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      if (longName !== undefined) name = longName;
      if (pax.path !== undefined) name = pax.path;
      let linkname = cstr(header, 157, 100) || undefined;
      if (longLink !== undefined) linkname = longLink;
      if (pax.linkpath !== undefined) linkname = pax.linkpath;
      if (pax.size !== undefined) size = Number(pax.size);
      // Links, directories, devices and FIFOs carry no data whatever their size field says.
      const hasData = !'123456'.includes(type);
      const dataEnd = dataOffset + (hasData ? size : 0);
      if (dataEnd > fileSize) throw bad(`member ${name} runs past the end of the file`);
      const entry: TarEntry = { name: normalizeMemberName(name), type, size, offset: dataOffset };
      if (linkname !== undefined) entry.linkname = linkname;
      entries.set(entry.name, entry);
      pax = {};
      longName = undefined;
      longLink = undefined;
      pos = dataOffset + (hasData ? Math.ceil(size / BLOCK) * BLOCK : 0);
    }
    return entries;
  } finally {
    await fh.close();
  }
}

/** Follows symlinks and hardlinks to the regular file a member names (docker save links duplicate layers). */
export function resolveMember(entries: Map<string, TarEntry>, name: string): TarEntry | undefined {
  let cur = entries.get(normalizeMemberName(name));
  for (let hops = 0; cur && hops < 16; hops++) {
    if (cur.type === '0' || cur.type === '7') return cur;
    if (cur.type === '2' && cur.linkname !== undefined) {
      const target = cur.linkname.startsWith('/')
        ? cur.linkname
        : path.posix.join(path.posix.dirname(cur.name), cur.linkname);
      cur = entries.get(normalizeMemberName(target));
    } else if (cur.type === '1' && cur.linkname !== undefined) {
      cur = entries.get(normalizeMemberName(cur.linkname));
    } else {
      return undefined;
    }
  }
  return undefined;
}
