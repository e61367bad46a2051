// Tar header fields shared by the reader and the sparse map parser.

/** A malformed or unsupported archive. The message names the offending field or entry. */
export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

/** Parses a numeric header field: octal text, or GNU base-256 when the high bit is set. */
export function parseNumeric(b: Buffer, off: number, len: number, field: string): number {
  const first = b[off];
  if (first & 0x80) {
    if (first & 0x40) throw new TarFormatError(`negative base-256 value in ${field}`);
    let v = first & 0x3f;
    for (let i = 1; i < len; i++) {
      v = v * 256 + b[off + i];
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${field} is too large`);
    }
    return v;
  }
  let v = 0;
  let seen = false;
  for (let i = 0; i < len; i++) {
    const c = b[off + i];
    if (c === 0 || c === 0x20) {
      if (seen) break;
      continue;
    }
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`invalid octal digit in ${field}`);
    seen = true;
    v = v * 8 + (c - 0x30);
    if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${field} is too large`);
  }
  return v;
}
