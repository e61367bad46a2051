// The daemon's outer shell: directories, the single-instance lock, the
// gRPC server on the unix socket, and an orderly shutdown that never
// touches containers.
import * as grpc from '@grpc/grpc-js';
import { promises as fs } from 'fs';
import * as net from 'net';
import { Config } from '../config/schema';
import { IMAGE_SERVICE, RUNTIME_SERVICE, startCriServices } from '../cri/services';
import { runtimeVersion } from '../cri/runtime-info';
import type { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { startMetricsServer } from '../metrics/server';
import { Health } from '../observability/health';
import { startTracing } from '../observability/tracing';
import { Closers } from '../util/closers';
import { withTimeout } from '../util/timeout';
import { acceptConnection } from './h2-authority';
import { inFlightCalls } from './in-flight';
import { InstanceLock, acquireInstanceLock } from './instance-lock';
import { MethodDef, instrumentService } from './instrument';
import { prepareSocketPath, secureSocket } from './socket';

/** kubelet's own limit for CRI messages. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface Daemon {
  socket: string;
  /** Stops accepting, lets in-flight calls finish (bounded), removes the socket. */
  stop(): Promise<void>;
}

export async function startDaemon(config: Config, log: Logger): Promise<Daemon> {
  await fs.mkdir(config.root, { recursive: true, mode: 0o711 });
  await fs.mkdir(config.state, { recursive: true, mode: 0o711 });
  const lock = await acquireInstanceLock(config.root);
  // Undone in reverse on a failed start, and on shutdown.
  const closers = new Closers(log);
  try {
    // A live daemon's socket is refused first (the clearest message), then the
    // metrics listener starts: its /healthz tells what the rest of start-up is doing.
    await prepareSocketPath(config.socket);
    // First in, last out: spans of the whole start and shutdown are exported.
    const tracing = startTracing({
      endpoint: config.tracing_endpoint,
      version: runtimeVersion(),
      log: log.child({ component: 'tracing' }),
    });
    closers.push(() => tracing.close());
    const health = new Health();
    const metrics = new Metrics();
    if (config.metrics_address !== '') {
      const endpoint = await startMetricsServer(
        config.metrics_address,
        metrics,
        log.child({ component: 'metrics' }),
        health,
      );
      closers.push(() => endpoint.close());
    }
    // Everything below the transport: the image store, the containerizer, the handlers.
    const cri = await startCriServices({ config, log, metrics, onStage: (what) => health.starting(what) });
    closers.push(() => cri.close());

    const server = new grpc.Server({
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    });
    const rpcLog = log.child({ component: 'cri' });
    const observe = metrics.observeCall.bind(metrics);
    server.addService(
      RUNTIME_SERVICE,
      instrumentService(RUNTIME_SERVICE as unknown as Record<string, MethodDef>, cri.runtime, rpcLog, observe),
    );
    server.addService(
      IMAGE_SERVICE,
      instrumentService(IMAGE_SERVICE as unknown as Record<string, MethodDef>, cri.image, rpcLog, observe),
    );
    health.starting('binding the CRI socket');
    // We accept on the socket ourselves and hand each connection to grpc-js,
    // through the authority rewriter only when its first request needs it
    // (see h2-authority.ts for why).
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const listener = net.createServer((socket) => {
      socket.on('error', (err) => rpcLog.debug({ err: err.message }, 'client connection error'));
      acceptConnection(socket, (conn) => injector.injectConnection(conn), {
        onDecision: (how) => rpcLog.debug({ connection: how }, 'client connection'),
      });
    });
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(config.socket, () => {
        listener.removeListener('error', reject);
        resolve();
      });
    });
    await secureSocket(config.socket);
    await health.servingOn(config.socket, () => listener.listening);
    log.info({ socket: config.socket, root: config.root, state: config.state }, 'capsa is serving');
    return {
      socket: config.socket,
      stop: () => {
        health.shuttingDown();
        return shutdown(server, listener, config, lock, closers, log);
      },
    };
  } catch (err) {
    await closers.closeAll();
    await lock.release();
    throw err;
  }
}

async function shutdown(
  server: grpc.Server,
  listener: net.Server,
  config: Config,
  lock: InstanceLock,
  closers: Closers,
  log: Logger,
): Promise<void> {
  log.info('shutting down: no new calls, waiting for in-flight ones');
  // Stop accepting first; net.Server.close also unlinks the socket path.
  listener.close();
  try {
    await withTimeout('graceful shutdown', config.shutdown_timeout * 1000, () => {
      return new Promise<void>((resolve, reject) => server.tryShutdown((err) => (err ? reject(err) : resolve()))).then(
        () => inFlightCalls.idle(),
      );
    });
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'in-flight calls did not finish; closing them');
    server.forceShutdown();
  }
  await fs.rm(config.socket, { force: true });
  await closers.closeAll();
  await lock.release();
  log.info('stopped');
}
