// Opening a layer blob as an uncompressed tar stream. The compression is
// read from the blob's magic bytes, which win over the media type: Docker
// archives label plain tars as gzip often enough that trusting the label
// would fail real images. The media type is still checked for what we
// cannot do (encrypted layers).
//
// gzip: node:zlib. zstd: Node 20 has none, so Debian's `zstd -dc` runs as a
// child process reading the blob itself; it is fast (native, multi-GB/s),
// ships with every Debian, and a child keeps a corrupt or hostile frame's
// memory use out of the daemon. A memory cap refuses frames with absurd
// window sizes.
import { spawn } from 'child_process';
import { createReadStream, promises as fs } from 'fs';
import { pipeline, Readable } from 'stream';
import * as zlib from 'zlib';

import { FailedPreconditionError, InvalidArgumentError, UnimplementedError } from '../../errors';

export type Compression = 'gzip' | 'zstd' | 'none';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Largest zstd window (decoder memory) accepted, in MiB. */
const ZSTD_MEMORY_MIB = 1024;
const READ_CHUNK = 1 << 20;

/** What the media type claims, or undefined when it says nothing we know. */
export function compressionFromMediaType(mediaType: string): Compression | undefined {
  const mt = mediaType.toLowerCase();
  if (mt.includes('+encrypted')) return undefined;
  if (mt.endsWith('+zstd') || mt.endsWith('.zstd')) return 'zstd';
  if (mt.endsWith('+gzip') || mt.endsWith('.tar.gzip') || mt.endsWith('.gzip')) return 'gzip';
  if (mt.endsWith('.tar') || mt.endsWith('.v1.tar')) return 'none';
  return undefined;
}

export function compressionFromMagic(head: Buffer): Compression {
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  if (head.length >= 2 && head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  return 'none';
}

function refuseEncrypted(mediaType: string, blobPath: string): void {
  if (/\+encrypted$/i.test(mediaType)) {
    throw new UnimplementedError(`encrypted layers are not supported (${mediaType})`, {
      stage: 'unpack',
      path: blobPath,
    });
  }
}

/** Decides how to decompress `blobPath`: magic bytes first, the media type as a cross-check. */
export async function detectCompression(blobPath: string, mediaType: string): Promise<Compression> {
  refuseEncrypted(mediaType, blobPath);
  const fh = await fs.open(blobPath, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return compressionFromMagic(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** The blob's uncompressed bytes. Breaking out of the iteration releases the file and any child. */
export function decompressedStream(blobPath: string, compression: Compression): AsyncIterable<Buffer> {
  switch (compression) {
    case 'none':
      return createReadStream(blobPath, { highWaterMark: READ_CHUNK });
    case 'gzip': {
      const gunzip = zlib.createGunzip({ chunkSize: 256 * 1024 });
      // Errors from either side surface through the gunzip stream's iteration.
      return pipeline(createReadStream(blobPath, { highWaterMark: READ_CHUNK }), gunzip, () => undefined);
    }
    case 'zstd':
      return zstdStream(blobPath);
  }
}

/**
 * A layer's bytes as they arrive (`source`: the compressed blob) as an
 * uncompressed stream: the compression is read from the first bytes, as for
 * a blob file. `blobPath` only names the layer in errors.
 */
export async function decompressedSource(
  source: AsyncIterable<Buffer>,
  mediaType: string,
  blobPath: string,
): Promise<{ compression: Compression; stream: AsyncIterable<Buffer> }> {
  refuseEncrypted(mediaType, blobPath);
  const it = source[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < ZSTD_MAGIC.length) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head.push(r.value);
    have += r.value.length;
  }
  const first = Buffer.concat(head, have);
  const compression = compressionFromMagic(first);
  async function* whole(): AsyncGenerator<Buffer> {
    if (first.length) yield first;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  switch (compression) {
    case 'none':
      return { compression, stream: whole() };
    case 'gzip': {
      const gunzip = zlib.createGunzip({ chunkSize: 256 * 1024 });
      return { compression, stream: pipeline(Readable.from(whole()), gunzip, () => undefined) };
    }
    case 'zstd':
      return { compression, stream: zstdStream(blobPath, whole()) };
  }
}

async function* zstdStream(blobPath: string, input?: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  // From the file, or from `input` through stdin.
  const child = spawn('zstd', ['-d', '-c', '-q', `--memory=${ZSTD_MEMORY_MIB}MB`, ...(input ? [] : ['--', blobPath])], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // zstd quitting early (a bad frame) shows as its exit status, not as a broken pipe here
  child.stdin.on('error', () => undefined);
  if (input) pipeline(Readable.from(input), child.stdin, () => undefined);
  else child.stdin.end();
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  let spawnError: NodeJS.ErrnoException | undefined;
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
      resolve({ code: null, signal: null });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  let complete = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    const { code, signal } = await closed;
    if (spawnError) throw spawnError;
    if (code !== 0) {
      throw new InvalidArgumentError(
        'layer',
        `zstd decompression failed (${signal ?? `exit ${code}`}): ${stderr.trim() || 'no message'}`,
        { stage: 'unpack', path: blobPath },
      );
    }
    complete = true;
  } catch (err) {
    if (spawnError?.code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FailedPreconditionError('zstd layers need the zstd program (Debian package "zstd") in PATH', {
        stage: 'unpack',
        path: blobPath,
      });
    }
    throw err;
  } finally {
    if (!complete && child.exitCode === null && child.signalCode === null && !spawnError) child.kill('SIGKILL');
    await closed;
  }
}
