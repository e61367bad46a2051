// What a pull reports while it runs (the puller's events) turned into the
// pull metrics: bytes downloaded as they arrive, the result and duration
// at the end. Tracing adds its spans through the same watcher.
import type { Metrics } from '../metrics/metrics';
import type { PullWatcher } from '../provisioner/provisioner';

export function pullMetrics(metrics: Metrics): PullWatcher {
  return () => {
    const started = process.hrtime.bigint();
    // BlobProgress.bytes counts up per blob; report the growth.
    const seen = new Map<string, number>();
    return {
      event(e) {
        if (e.kind !== 'blob') return;
        const before = seen.get(e.digest) ?? 0;
        if (e.bytes > before) {
          metrics.pulledBytes(e.bytes - before);
          seen.set(e.digest, e.bytes);
        }
      },
      done(err) {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        metrics.observePull(err === undefined ? 'success' : 'failure', seconds);
      },
    };
  };
}

/** Several watchers as one (metrics and traces). */
export function allOf(...watchers: PullWatcher[]): PullWatcher {
  return (image) => {
    const ws = watchers.map((w) => w(image));
    return {
      event: (e) => ws.forEach((w) => w.event(e)),
      done: (err) => ws.forEach((w) => w.done(err)),
    };
  };
}
