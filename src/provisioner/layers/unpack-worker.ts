// Worker-thread entry for layer unpacking (see worker-pool.ts). Receives
// {id, job} messages, answers {id, ok, result} or {id, ok: false, error};
// log lines travel as {log: {level, obj, msg}}.
import { parentPort } from 'worker_threads';
import { gzipSync } from 'zlib';

import { ChunkQueue, JobLogger, runUnpackJob, serializeError, UnpackJob } from './job';
import type { StreamMessage } from './worker-pool';

interface Request {
  id: number;
  job: UnpackJob;
}

/** Sources of the streamed jobs running here, by job id. */
const sources = new Map<number, ChunkQueue>();

/**
 * Runs an empty gzip layer through the job's code once, at boot: Node loads
 * and compiles the parts of itself a job uses (zlib streams, Readable.from,
 * pipeline, …) on first use, some 40 ms of CPU per worker that would
 * otherwise land on the first pull. Writes nothing.
 */
async function warmUp(): Promise<void> {
  const q = new ChunkQueue();
  void q.push(gzipSync(Buffer.alloc(1024)));
  q.end();
  await runUnpackJob(
    {
      blobPath: '(warm-up)',
      streamed: true,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      fsDir: '/nonexistent/capsa-unpack-warm-up',
      maxEntries: 1,
    },
    undefined,
    q,
  ).catch(() => undefined);
}

const port = parentPort;
if (port) {
  void warmUp();
  const log: JobLogger = {
    debug: () => undefined,
    warn: (obj: unknown, msg?: string) => port.postMessage({ log: { level: 'warn', obj, msg } }),
  } as unknown as JobLogger;
  port.on('message', (msg: Request | StreamMessage) => {
    if (!('job' in msg)) {
      const q = sources.get(msg.id);
      if (!q) return;
      if ('chunk' in msg) void q.push(Buffer.from(msg.chunk));
      else if ('end' in msg) q.end();
      else q.fail(new Error(msg.abort));
      return;
    }
    const req = msg;
    let source: ChunkQueue | undefined;
    if (req.job.streamed) {
      source = new ChunkQueue((n) => port.postMessage({ id: req.id, ack: n }), Infinity);
      sources.set(req.id, source);
    }
    runUnpackJob(req.job, log, source)
      .finally(() => sources.delete(req.id))
      .then(
        (result) => port.postMessage({ id: req.id, ok: true, result }),
        (err: unknown) => port.postMessage({ id: req.id, ok: false, error: serializeError(err) }),
      );
  });
}
