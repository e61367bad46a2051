// The observability hooks of a running daemon, in one call from
// cri/services/index.ts: every CRI method's call counter at 0, pull metrics from
// the provisioner's pull watcher, OOM kills from the containerizer's events,
// the image filesystem's size.
import { promises as fs } from 'fs';
import type { Containers } from '../containerizer';
import type { Metrics } from '../metrics/metrics';
import type { Provisioner } from '../provisioner/provisioner';
import { allOf, pullMetrics, pullSpans } from './pulls';
import { tracingEnabled } from './tracing';

export function observeDaemon(opts: {
  metrics: Metrics;
  provisioner: Provisioner;
  containers: Containers;
  /** Every CRI method's name (the server knows them). */
  methods: readonly string[];
}): void {
  const { metrics, provisioner, containers } = opts;
  metrics.knownMethods(opts.methods);
  provisioner.watchPulls(tracingEnabled() ? allOf(pullMetrics(metrics), pullSpans()) : pullMetrics(metrics));
  containers.events.subscribe((e) => {
    if (e.kind !== 'stopped') return;
    if (containers.find(e.containerId)?.record.reason === 'OOMKilled') metrics.containerOomKilled();
  });
}

/** statfs of the filesystem holding `dir` (the image store's root). */
export async function imageFsOf(dir: string): Promise<{ sizeBytes: number; availableBytes: number }> {
  const st = await fs.statfs(dir);
  return { sizeBytes: st.blocks * st.bsize, availableBytes: st.bavail * st.bsize };
}
