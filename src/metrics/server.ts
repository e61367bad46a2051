// The Prometheus endpoint: GET /metrics on metrics_address (plain HTTP, as
// kubelet's and containerd's are; bind it to loopback or a node-local
// address), and GET /healthz (observability/health.ts). Anything else is
// 404/405. A failure to bind stops the daemon's start with the address
// named, like a taken socket path would.
import * as http from 'http';
import type { AddressInfo } from 'net';
import type { Logger } from '../log';
import { splitAddress, urlHost } from '../util/address';
import type { Health } from '../observability/health';
import { Metrics } from './metrics';

export interface MetricsServer {
  /** host:port actually bound (port 0 resolved). */
  address: string;
  close(): Promise<void>;
}

/** A scrape that takes longer than this is answered 503 rather than left hanging. */
const SCRAPE_TIMEOUT_MS = 10_000;

export async function startMetricsServer(
  address: string,
  metrics: Metrics,
  log: Logger,
  health?: Health,
): Promise<MetricsServer> {
  const { host, port } = splitAddress(address, 'metrics_address');
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics' && !(url === '/healthz' && health)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    if (url === '/healthz' && health) {
      void health
        .check()
        .catch((err: Error) => ({ ok: false, reason: `health check failed: ${err.message}` }))
        .then((h) => {
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : `${h.reason}\n`);
        });
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`scrape took over ${SCRAPE_TIMEOUT_MS} ms`)), SCRAPE_TIMEOUT_MS);
    });
    Promise.race([metrics.render(), timeout])
      .then(
        (body) => {
          res.writeHead(200, { 'content-type': metrics.contentType });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (err: Error) => {
          log.warn({ err: err.message }, 'metrics scrape failed');
          res.writeHead(503, { 'content-type': 'text/plain' }).end(`scrape failed: ${err.message}\n`);
        },
      )
      .finally(() => clearTimeout(timer));
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  // Scrapers keep connections alive; they must not hold the daemon's shutdown.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`metrics_address ${address}: cannot listen: ${err.code ?? err.message}`)),
    );
    server.listen({ host: host === '' ? undefined : host, port }, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => log.error({ err: err.message }, 'metrics endpoint error'));
      resolve();
    });
  });
  const bound = urlHost(host, (server.address() as AddressInfo).port);
  log.info({ address: bound }, 'metrics endpoint is serving /metrics');
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
