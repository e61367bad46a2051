// What a pull reports while it runs (the puller's events) turned into the
// pull metrics: bytes downloaded as they arrive, the result and duration
// at the end; and, when tracing is on, a span for the pull with a child per
// blob downloaded and per layer unpacked (or found already unpacked).
import type { Metrics } from '../metrics/metrics';
import type { PullWatcher } from '../provisioner/provisioner';
import { OpenSpan, openSpan } from './tracing';

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

const NO_WATCH = { event: () => undefined, done: () => undefined };

/** Spans of a pull under the current one (the PullImage call's). */
export function pullSpans(): PullWatcher {
  return (image) => {
    const pull = openSpan('pull', { 'capsa.image': image });
    if (!pull) return NO_WATCH;
    const downloads = new Map<string, OpenSpan | undefined>();
    const unpacks = new Map<number, OpenSpan | undefined>();
    return {
      event(e) {
        switch (e.kind) {
          case 'resolved':
            pull.span.setAttribute('capsa.image.digest', e.digest);
            break;
          case 'blob': {
            let s = downloads.get(e.digest);
            if (!downloads.has(e.digest)) {
              s = openSpan(
                'pull download',
                { 'capsa.blob.digest': e.digest, 'capsa.blob.size': e.total },
                pull.context,
              );
              downloads.set(e.digest, s);
            }
            if (e.bytes >= e.total) s?.end();
            break;
          }
          case 'layer-cached':
            openSpan(
              'pull layer cached',
              { 'capsa.layer.index': e.index, 'capsa.blob.digest': e.digest, 'capsa.layer.chain_id': e.chainId },
              pull.context,
            )?.end();
            break;
          case 'unpack-start':
            unpacks.set(
              e.index,
              openSpan(
                'pull unpack layer',
                { 'capsa.layer.index': e.index, 'capsa.blob.digest': e.digest, 'capsa.layer.chain_id': e.chainId },
                pull.context,
              ),
            );
            break;
          case 'unpack-done':
            unpacks.get(e.index)?.end();
            break;
        }
      },
      done(err) {
        for (const s of [...downloads.values(), ...unpacks.values()]) s?.end(err);
        pull.end(err);
      },
    };
  };
}
