// Worker-thread entry for layer unpacking (see worker-pool.ts). Receives
// {id, job} messages, answers {id, ok, result} or {id, ok: false, error};
// log lines travel as {log: {level, obj, msg}}.
import { parentPort } from 'worker_threads';

import { JobLogger, runUnpackJob, serializeError, UnpackJob } from './job';

interface Request {
  id: number;
  job: UnpackJob;
}

const port = parentPort;
if (port) {
  const log: JobLogger = {
    debug: () => undefined,
    warn: (obj: unknown, msg?: string) => port.postMessage({ log: { level: 'warn', obj, msg } }),
  } as unknown as JobLogger;
  port.on('message', (req: Request) => {
    runUnpackJob(req.job, log).then(
      (result) => port.postMessage({ id: req.id, ok: true, result }),
      (err: unknown) => port.postMessage({ id: req.id, ok: false, error: serializeError(err) }),
    );
  });
}
