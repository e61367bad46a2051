// GNU sparse files in a tar stream: where the data of a file with holes is,
// so the unpack writes only that and leaves the holes as holes. Four ways
// GNU tar records the map, all read (as Go's archive/tar reads them):
// - old GNU ('S' typeflag): 4 (offset, length) pairs in the header, then
//   extension blocks of 21 while the "is extended" byte is set; real size in
//   the header;
// - PAX 0.0: GNU.sparse.offset / GNU.sparse.numbytes records, repeated, in order;
// - PAX 0.1: GNU.sparse.map = "offset,length,offset,length,...";
// - PAX 1.0 (GNU.sparse.major=1, minor=0): the map is text at the start of the
//   entry's data — count, then offset and length, one per line — padded to a block.
// The entry's data (after a 1.0 map) is the data segments back to back.
//
// A map is untrusted: segments must be in order, must not overlap, must end
// within the real size and their lengths must add up to the data the entry
// carries; counts are bounded. Anything else fails the entry before a byte of
// it is written.
import { parseNumeric, TarFormatError } from './tar-fields';

export interface SparseSegment {
  /** Where the segment's bytes go in the file. */
  offset: number;
  length: number;
}

export interface SparseMap {
  /** The file's size with its holes (the header's size is the data it carries). */
  realSize: number;
  /** Data segments, in file order, not overlapping; everything between them is a hole. */
  segments: SparseSegment[];
}

/** Sparse PAX records of one entry, as the PAX parser collected them. */
export interface SparsePax {
  /** GNU.sparse.* records other than offset/numbytes (the last one of each key wins). */
  records: Map<string, string>;
  /** PAX 0.0: the values of GNU.sparse.offset and GNU.sparse.numbytes records, in archive order. */
  pairs: { key: 'offset' | 'numbytes'; value: string }[];
}

export const DEFAULT_MAX_SPARSE_SEGMENTS = 100_000;

const BLOCK = 512;

function sparseNumber(v: string, what: string): number {
  if (!/^[0-9]{1,16}$/.test(v))
    throw new TarFormatError(`sparse map: ${what} ${JSON.stringify(v.slice(0, 40))} is not a number`);
  const n = Number(v);
  if (n > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`sparse map: ${what} is too large`);
  return n;
}

function checkCount(n: number, max: number): void {
  if (n > max) throw new TarFormatError(`sparse map of ${n} segments exceeds the limit of ${max}`);
}

/**
 * Checks a map against the file's real size and the bytes the entry carries:
 * in order, not overlapping, inside the file, lengths adding up to `dataSize`.
 */
export function validateSparseMap(map: SparseMap, dataSize: number, max: number): SparseMap {
  checkCount(map.segments.length, max);
  let end = 0;
  let total = 0;
  for (const [i, s] of map.segments.entries()) {
    if (s.offset < end) {
      throw new TarFormatError(
        `sparse map: segment ${i} at ${s.offset} overlaps or precedes the one before (ends at ${end})`,
      );
    }
    end = s.offset + s.length;
    if (end > map.realSize) {
      throw new TarFormatError(`sparse map: segment ${i} ends at ${end}, past the file's size ${map.realSize}`);
    }
    total += s.length;
  }
  if (total !== dataSize) {
    throw new TarFormatError(`sparse map: segments hold ${total} bytes but the entry carries ${dataSize}`);
  }
  return map;
}

/** The old GNU format's pairs in `b` from `off`: 24 bytes each; an offset starting with NUL ends them. */
function oldGnuPairs(b: Buffer, off: number, count: number, out: SparseSegment[]): void {
  for (let i = 0; i < count; i++) {
    const at = off + i * 24;
    if (b[at] === 0) return;
    out.push({
      offset: parseNumeric(b, at, 12, 'sparse offset'),
      length: parseNumeric(b, at + 12, 12, 'sparse length'),
    });
  }
}

/**
 * An old GNU 'S' header's map. `readBlock` reads the next 512-byte extension
 * block (they sit between the header and the data).
 */
export async function readOldGnuSparse(
  header: Buffer,
  readBlock: () => Promise<Buffer>,
  max: number,
): Promise<{ map: SparseMap; headerBlocks: number }> {
  const segments: SparseSegment[] = [];
  const realSize = parseNumeric(header, 483, 12, 'sparse real size');
  oldGnuPairs(header, 386, 4, segments);
  let extended = header[482] !== 0;
  let headerBlocks = 0;
  while (extended) {
    // A stream of extension blocks is bounded by the segment limit (21 per block).
    checkCount(segments.length, max);
    const ext = await readBlock();
    headerBlocks++;
    oldGnuPairs(ext, 0, 21, segments);
    extended = ext[504] !== 0;
  }
  return { map: { realSize, segments }, headerBlocks };
}

/** The format a PAX header's sparse records describe: '1.0' keeps its map in the data. */
export function paxSparseVersion(sp: SparsePax): '0.0' | '0.1' | '1.0' {
  const major = sp.records.get('GNU.sparse.major');
  const minor = sp.records.get('GNU.sparse.minor');
  if (major !== undefined || minor !== undefined) {
    if (major === '1' && minor === '0') return '1.0';
    throw new TarFormatError(`GNU sparse format ${major ?? '?'}.${minor ?? '?'} is not supported`);
  }
  if (sp.records.has('GNU.sparse.map')) return '0.1';
  if (sp.pairs.length > 0 || sp.records.has('GNU.sparse.numblocks')) return '0.0';
  throw new TarFormatError('GNU.sparse PAX records without a sparse map');
}

/** The real size PAX gives: GNU.sparse.size (0.x) or GNU.sparse.realsize (1.0). */
export function paxSparseRealSize(sp: SparsePax): number {
  const v = sp.records.get('GNU.sparse.size') ?? sp.records.get('GNU.sparse.realsize');
  if (v === undefined) throw new TarFormatError('sparse file without GNU.sparse.size or GNU.sparse.realsize');
  return sparseNumber(v, 'real size');
}

/** A PAX 0.0 or 0.1 map from the records (the count in GNU.sparse.numblocks must match). */
export function paxSparseMap01(sp: SparsePax, version: '0.0' | '0.1', max: number): SparseSegment[] {
  const nb = sp.records.get('GNU.sparse.numblocks');
  if (nb === undefined) throw new TarFormatError('sparse map without GNU.sparse.numblocks');
  const count = sparseNumber(nb, 'GNU.sparse.numblocks');
  checkCount(count, max);
  const values: string[] = [];
  if (version === '0.1') {
    const text = sp.records.get('GNU.sparse.map') ?? '';
    if (text !== '') values.push(...text.split(','));
  } else {
    for (const [i, p] of sp.pairs.entries()) {
      if (p.key !== (i % 2 === 0 ? 'offset' : 'numbytes')) {
        throw new TarFormatError('sparse map: GNU.sparse.offset and GNU.sparse.numbytes records do not alternate');
      }
      values.push(p.value);
    }
  }
  if (values.length !== 2 * count) {
    throw new TarFormatError(`sparse map: GNU.sparse.numblocks is ${count} but ${values.length} numbers follow`);
  }
  const segments: SparseSegment[] = [];
  for (let i = 0; i < values.length; i += 2) {
    segments.push({ offset: sparseNumber(values[i], 'offset'), length: sparseNumber(values[i + 1], 'length') });
  }
  return segments;
}

/**
 * A PAX 1.0 map from the start of the entry's data: decimal numbers, one per
 * line, padded with NULs to a block. `readBlock` reads the next data block;
 * at most `maxBytes` of map are read. Returns the map and the bytes it took.
 */
export async function readSparseMap10(
  readBlock: () => Promise<Buffer>,
  maxBytes: number,
  max: number,
): Promise<{ segments: SparseSegment[]; bytes: number }> {
  let text = '';
  let bytes = 0;
  let pos = 0;
  const nextNumber = async (what: string): Promise<number> => {
    for (;;) {
      const nl = text.indexOf('\n', pos);
      if (nl >= 0) {
        const v = sparseNumber(text.slice(pos, nl), what);
        pos = nl + 1;
        return v;
      }
      // Padding (NULs) before the number: the map says it has more segments than it lists.
      if (text.indexOf('\0', pos) >= 0) throw new TarFormatError(`sparse map ends early: no ${what}`);
      if (text.length - pos > 20) throw new TarFormatError(`sparse map: ${what} is not a number`);
      if (bytes + BLOCK > maxBytes) throw new TarFormatError(`sparse map longer than ${maxBytes} bytes`);
      const b = await readBlock();
      bytes += BLOCK;
      text = text.slice(pos) + b.toString('latin1');
      pos = 0;
    }
  };
  const count = await nextNumber('segment count');
  checkCount(count, max);
  const segments: SparseSegment[] = [];
  for (let i = 0; i < count; i++) {
    segments.push({ offset: await nextNumber('offset'), length: await nextNumber('length') });
  }
  // What is left of the last block is padding.
  if (/[^\0]/.test(text.slice(pos))) throw new TarFormatError('sparse map: stray bytes after the map');
  return { segments, bytes };
}
