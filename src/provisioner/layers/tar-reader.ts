// A pull-based streaming tar reader: ustar, GNU (long names/links 'L'/'K',
// base-256 numbers for large sizes, uids and times) and PAX (local headers,
// including SCHILY.xattr.* extended attributes). Global PAX headers are read
// and ignored, as Go's archive/tar callers (containerd, moby) do. GNU sparse
// files (old 'S' headers, PAX 0.0, 0.1 and 1.0; see tar-sparse.ts) come with
// their map; multi-volume archives are refused.
//
// The reader never buffers a whole entry: `body()` yields the entry's bytes
// as they arrive, and `next()` skips whatever the caller left unread. It
// consumes an AsyncIterable<Buffer> (a decompressed layer stream) and reads
// exactly as far as the end-of-archive marker; `drain()` reads the rest, so a
// hash computed over the source covers the whole stream.

import { ByteSource } from './byte-source';
import { parseNumeric, TarFormatError } from './tar-fields';
import {
  DEFAULT_MAX_SPARSE_SEGMENTS,
  paxSparseMap01,
  paxSparseRealSize,
  paxSparseVersion,
  readOldGnuSparse,
  readSparseMap10,
  validateSparseMap,
  type SparseMap,
  type SparsePax,
} from './tar-sparse';

export { parseNumeric, TarFormatError } from './tar-fields';
export type { SparseMap, SparseSegment } from './tar-sparse';

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** The entry's path as recorded (PAX `path`, GNU long name or ustar prefix + name), undecoded otherwise. */
  name: string;
  type: TarEntryType;
  /** The raw typeflag character. */
  typeflag: string;
  /** Symlink target or hardlink target path. */
  linkname: string;
  /** Permission and special bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** The file's size (0 for header-only types); for a sparse file, its size with the holes. */
  size: number;
  /**
   * A sparse file's map: body() then yields only the segments' bytes, back to
   * back (the sum of their lengths), and everything between them is a hole.
   */
  sparse?: SparseMap;
  /** Seconds since the epoch, fractional when PAX gave sub-second precision. */
  mtime: number;
  atime?: number;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX SCHILY.xattr.* records, in archive order. */
  xattrs: Map<string, Buffer>;
}

export interface TarReaderLimits {
  /** Largest PAX header or GNU long name/link record accepted, in bytes. */
  maxMetaSize?: number;
  /** Most xattrs accepted on one entry. */
  maxXattrs?: number;
  /** Most segments in one sparse file's map. */
  maxSparseSegments?: number;
}

const BLOCK = 512;
const DEFAULT_MAX_META = 1 << 20;
const DEFAULT_MAX_XATTRS = 1024;

/** Types whose size field is ignored: they never carry data (as in Go's archive/tar). */
const HEADER_ONLY: ReadonlySet<string> = new Set(['1', '2', '3', '4', '5', '6']);

function cstring(b: Buffer, off: number, len: number): Buffer {
  const field = b.subarray(off, off + len);
  const nul = field.indexOf(0);
  return nul < 0 ? field : field.subarray(0, nul);
}

function decodeName(raw: Buffer, what: string): string {
  const s = raw.toString('utf8');
  // Paths are bytes on Linux; we keep them as JS strings, so refuse names
  // that would not round-trip rather than silently renaming files.
  if (s.includes('\ufffd') && !Buffer.from(s, 'utf8').equals(raw)) {
    throw new TarFormatError(`${what} is not valid UTF-8: ${JSON.stringify(raw.toString('latin1'))}`);
  }
  return s;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function verifyChecksum(b: Buffer): void {
  const want = parseNumeric(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (want !== unsigned && want !== signed) throw new TarFormatError('invalid tar header checksum');
}

interface PaxRecords {
  strings: Map<string, string>;
  xattrs: Map<string, Buffer>;
  sparse?: SparsePax;
}

function parsePax(data: Buffer, maxXattrs: number): PaxRecords {
  const strings = new Map<string, string>();
  const xattrs = new Map<string, Buffer>();
  let sparse: SparsePax | undefined;
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break; // some writers pad with NULs
    const sp = data.indexOf(0x20, off);
    if (sp < 0 || sp - off > 20) throw new TarFormatError('malformed PAX record length');
    const lenText = data.toString('latin1', off, sp);
    if (!/^[0-9]+$/.test(lenText)) throw new TarFormatError('malformed PAX record length');
    const len = Number(lenText);
    const end = off + len;
    if (len <= sp - off + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw new TarFormatError('malformed PAX record');
    }
    const rec = data.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError('malformed PAX record: no key');
    const key = rec.toString('utf8', 0, eq);
    const value = rec.subarray(eq + 1);
    if (key.startsWith('SCHILY.xattr.')) {
      const name = key.slice('SCHILY.xattr.'.length);
      if (!name) throw new TarFormatError('PAX xattr record with an empty name');
      xattrs.set(name, Buffer.from(value));
      if (xattrs.size > maxXattrs) throw new TarFormatError(`more than ${maxXattrs} xattrs on one entry`);
    } else if (key.startsWith('GNU.sparse.')) {
      sparse ??= { records: new Map(), pairs: [] };
      const v = decodeName(value, `PAX ${key}`);
      // PAX 0.0 repeats these two, in order: the map is their sequence.
      if (key === 'GNU.sparse.offset') sparse.pairs.push({ key: 'offset', value: v });
      else if (key === 'GNU.sparse.numbytes') sparse.pairs.push({ key: 'numbytes', value: v });
      else sparse.records.set(key, v);
    } else {
      strings.set(key, decodeName(value, `PAX ${key}`));
    }
    off = end;
  }
  return { strings, xattrs, sparse };
}

function paxNumber(v: string, key: string, allowFraction: boolean): number {
  const re = allowFraction ? /^-?[0-9]+(\.[0-9]+)?$/ : /^[0-9]+$/;
  if (!re.test(v)) throw new TarFormatError(`invalid PAX ${key}: ${JSON.stringify(v)}`);
  const n = Number(v);
  if (!Number.isFinite(n) || Math.abs(n) > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`PAX ${key} out of range`);
  return n;
}

export class TarReader {
  private readonly src: ByteSource;
  private readonly maxMeta: number;
  private readonly maxXattrs: number;
  private readonly maxSparse: number;
  private remaining = 0;
  private padding = 0;
  private finished = false;
  private bodyTaken = false;

  constructor(source: AsyncIterable<Buffer>, limits: TarReaderLimits = {}) {
    this.src = new ByteSource(source);
    this.maxMeta = limits.maxMetaSize ?? DEFAULT_MAX_META;
    this.maxXattrs = limits.maxXattrs ?? DEFAULT_MAX_XATTRS;
    this.maxSparse = limits.maxSparseSegments ?? DEFAULT_MAX_SPARSE_SEGMENTS;
  }

  /** Bytes read from the source so far. */
  get position(): number {
    return this.src.position;
  }

  private async skipRest(): Promise<void> {
    if (this.remaining > 0) await this.src.skip(this.remaining);
    this.remaining = 0;
    if (this.padding > 0) {
      // A stream that ends right after the last entry's data (no padding, no
      // end marker) is accepted, as Go's reader does (containerd unpacks it);
      // a stream that ends inside the padding is not.
      const pad = await this.src.read(this.padding);
      if (pad.length === 0) this.finished = true;
      else if (pad.length < this.padding) throw new TarFormatError("unexpected end of archive in an entry's padding");
    }
    this.padding = 0;
  }

  private async readMeta(size: number, what: string): Promise<Buffer> {
    if (size > this.maxMeta)
      throw new TarFormatError(`${what} of ${size} bytes exceeds the ${this.maxMeta}-byte limit`);
    const data = await this.src.read(size);
    if (data.length < size) throw new TarFormatError(`unexpected end of archive in ${what}`);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) await this.src.skip(pad);
    return Buffer.from(data);
  }

  /** Advances to the next entry; null at the end of the archive. */
  async next(): Promise<TarHeader | null> {
    if (this.finished) return null;
    await this.skipRest();
    if (this.finished) return null;
    let pax: PaxRecords | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.src.read(BLOCK);
      if (block.length === 0 && !pax && longName === undefined && longLink === undefined) {
        // The stream ended at a header boundary without the end marker:
        // accepted, as Go's reader does (the diffID still covers it).
        this.finished = true;
        return null;
      }
      if (block.length < BLOCK) throw new TarFormatError('unexpected end of archive in a header');
      if (isZeroBlock(block)) {
        if (pax || longName !== undefined || longLink !== undefined) {
          throw new TarFormatError('end of archive after an extended header');
        }
        this.finished = true;
        return null;
      }
      verifyChecksum(block);
      const typeflag = block[156] === 0 ? '\0' : String.fromCharCode(block[156]);
      const rawSize = parseNumeric(block, 124, 12, 'size');
      switch (typeflag) {
        case 'x':
          pax = parsePax(await this.readMeta(rawSize, 'PAX header'), this.maxXattrs);
          continue;
        case 'g':
          // Global PAX header: read and ignored.
          await this.readMeta(rawSize, 'PAX global header');
          continue;
        case 'L':
          longName = decodeName(cstring(await this.readMeta(rawSize, 'GNU long name'), 0, rawSize), 'GNU long name');
          continue;
        case 'K':
          longLink = decodeName(cstring(await this.readMeta(rawSize, 'GNU long link'), 0, rawSize), 'GNU long link');
          continue;
        case 'M':
        case 'N':
          throw new TarFormatError(`GNU typeflag ${typeflag} (multi-volume / old long names) is not supported`);
        case 'V':
          // Volume label: no file to make.
          await this.src.skip(rawSize + ((BLOCK - (rawSize % BLOCK)) % BLOCK));
          pax = undefined;
          longName = longLink = undefined;
          continue;
        default:
          break;
      }
      const h = this.buildHeader(block, typeflag, rawSize, pax, longName, longLink);
      if (typeflag === 'S' || pax?.sparse) {
        try {
          await this.readSparse(h, block, pax?.sparse);
        } catch (err) {
          // Name the entry: the caller never sees its header.
          if (err instanceof TarFormatError)
            throw new TarFormatError(`entry ${JSON.stringify(h.name)}: ${err.message}`);
          throw err;
        }
      }
      return h;
    }
  }

  /**
   * Reads a sparse file's map (from the extension blocks after an 'S' header,
   * the PAX records or, for PAX 1.0, the start of the data), checks it and
   * puts it on the header: `size` becomes the real size, the body the data.
   */
  private async readSparse(h: TarHeader, block: Buffer, pax: SparsePax | undefined): Promise<void> {
    if (h.type !== 'file') throw new TarFormatError(`sparse records on a ${h.type}`);
    const readBlock = async (): Promise<Buffer> => {
      const b = await this.src.read(BLOCK);
      if (b.length < BLOCK) throw new TarFormatError('unexpected end of archive in a sparse map');
      return b;
    };
    let map: SparseMap;
    if (!pax) {
      map = (await readOldGnuSparse(block, readBlock, this.maxSparse)).map;
    } else {
      const version = paxSparseVersion(pax);
      const realSize = paxSparseRealSize(pax);
      const name = pax.records.get('GNU.sparse.name');
      if (name !== undefined) h.name = name;
      if (version === '1.0') {
        // The map is the first blocks of the entry's data.
        const m = await readSparseMap10(
          async () => {
            if (this.remaining < BLOCK) throw new TarFormatError("sparse map runs past the entry's data");
            this.remaining -= BLOCK;
            return readBlock();
          },
          this.maxMeta,
          this.maxSparse,
        );
        map = { realSize, segments: m.segments };
      } else {
        map = { realSize, segments: paxSparseMap01(pax, version, this.maxSparse) };
      }
    }
    h.sparse = validateSparseMap(map, this.remaining, this.maxSparse);
    h.size = map.realSize;
  }

  private buildHeader(
    block: Buffer,
    typeflag: string,
    rawSize: number,
    pax: PaxRecords | undefined,
    longName: string | undefined,
    longLink: string | undefined,
  ): TarHeader {
    const magic = block.toString('latin1', 257, 263);
    const isUstar = magic === 'ustar\0';
    let name: string;
    const p = pax?.strings;
    if (p?.has('path')) name = p.get('path')!;
    else if (longName !== undefined) name = longName;
    else {
      name = decodeName(cstring(block, 0, 100), 'entry name');
      if (isUstar) {
        const prefix = decodeName(cstring(block, 345, 155), 'entry name prefix');
        if (prefix) name = `${prefix}/${name}`;
      }
    }
    let linkname: string;
    if (p?.has('linkpath')) linkname = p.get('linkpath')!;
    else if (longLink !== undefined) linkname = longLink;
    else linkname = decodeName(cstring(block, 157, 100), 'link name');

    let type: TarEntryType;
    switch (typeflag) {
      case '0':
      case '\0':
      case '7':
      case 'S': // GNU sparse: a regular file with a map
        type = name.endsWith('/') ? 'dir' : 'file';
        break;
      case '1':
        type = 'hardlink';
        break;
      case '2':
        type = 'symlink';
        break;
      case '3':
        type = 'char';
        break;
      case '4':
        type = 'block';
        break;
      case '5':
      case 'D': // GNU dumpdir: a directory whose data is a listing
        type = 'dir';
        break;
      case '6':
        type = 'fifo';
        break;
      default:
        throw new TarFormatError(
          `unsupported tar entry type ${JSON.stringify(typeflag)} for ${JSON.stringify(name.slice(0, 256))}`,
        );
    }
    if (name.includes('\0') || linkname.includes('\0')) throw new TarFormatError('NUL byte in an entry name');

    let size = p?.has('size') ? paxNumber(p.get('size')!, 'size', false) : rawSize;
    const mode = parseNumeric(block, 100, 8, 'mode') & 0o7777;
    const uid = p?.has('uid') ? paxNumber(p.get('uid')!, 'uid', false) : parseNumeric(block, 108, 8, 'uid');
    const gid = p?.has('gid') ? paxNumber(p.get('gid')!, 'gid', false) : parseNumeric(block, 116, 8, 'gid');
    const mtime = p?.has('mtime') ? paxNumber(p.get('mtime')!, 'mtime', true) : parseNumeric(block, 136, 12, 'mtime');
    const atime = p?.has('atime') ? paxNumber(p.get('atime')!, 'atime', true) : undefined;
    const hasDev = isUstar || magic === 'ustar ';
    const devmajor = hasDev ? parseNumeric(block, 329, 8, 'devmajor') : 0;
    const devminor = hasDev ? parseNumeric(block, 337, 8, 'devminor') : 0;
    const uname = p?.get('uname') ?? cstring(block, 265, 32).toString('utf8');
    const gname = p?.get('gname') ?? cstring(block, 297, 32).toString('utf8');

    if (HEADER_ONLY.has(typeflag)) size = 0;
    this.remaining = size;
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
    this.bodyTaken = false;
    return {
      name,
      type,
      typeflag,
      linkname,
      mode,
      uid,
      gid,
      uname,
      gname,
      size,
      mtime,
      atime,
      devmajor,
      devminor,
      xattrs: pax?.xattrs ?? new Map(),
    };
  }

  /** The current entry's data, as chunks. Call at most once per entry. */
  async *body(): AsyncGenerator<Buffer> {
    if (this.bodyTaken) throw new Error('TarReader.body() called twice for one entry');
    this.bodyTaken = true;
    while (this.remaining > 0) {
      const n = this.remaining;
      for await (const chunk of this.src.take(n)) {
        this.remaining -= chunk.length;
        yield chunk;
      }
    }
  }

  /** Reads the rest of the source (after the end marker, or to abandon the archive). */
  async drain(): Promise<void> {
    await this.src.drain();
    this.finished = true;
  }

  /** Releases the source (ends the underlying iterator early, e.g. on error). */
  async close(): Promise<void> {
    await this.src.close();
  }
}
