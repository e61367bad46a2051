// The daemon's outer shell: directories, the single-instance lock, the
// gRPC server on the unix socket, and an orderly shutdown that never
// touches containers.
import * as grpc from '@grpc/grpc-js';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as path from 'path';
import { Config } from '../config/schema';
import { Checkpointer, Containerizer } from '../containerizer';
import { readDaemonFacts } from '../cri/daemon-facts';
import {
  ImageServiceService,
  RuntimeServiceService,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from '../gen/runtime/v1/api';
import { Provisioner, diskUsage } from '../provisioner/provisioner';
import type { Logger } from '../log';
import { withTimeout } from '../util/timeout';
import { StreamRuntime } from '../streaming/runtime';
import { startStreamingServer } from '../streaming/server';
import { acceptConnection } from './h2-authority';
import { inFlightCalls } from './in-flight';
import { InstanceLock, acquireInstanceLock } from './instance-lock';
import { MethodDef, ServiceHandlers, instrumentService } from './instrument';
import { Metrics } from '../metrics/metrics';
import { startMetricsServer } from '../metrics/server';
import { imageFsOf, observeDaemon } from '../observability/daemon-hooks';
import { Health } from '../observability/health';
import { traceLauncher } from '../observability/launcher-tracing';
import { startTracing } from '../observability/tracing';
import { runtimeVersion } from './runtime-info';
import {
  ContainerServiceDeps,
  containerHandlers,
  containerStatsOf,
  containerStatsOfAll,
  listContainersWire,
} from './container-service';
import { LayerUsage } from './layer-usage';
import { checkpointHandlers } from './checkpoint-service';
import { eventHandlers } from './events-service';
import { metricsHandlers } from './metrics-service';
import { imageHandlers } from './image-service';
import { podHandlers } from './pod-service';
import { loadRuntimeState } from '../network/runtime-state';
import { runtimeHandlers } from './runtime-service';
import { prepareSocketPath, secureSocket } from './socket';
import { statsHandlers } from './stats-service';
import { CpuRates } from '../cri/cpu-rate';
import { streamingHandlers } from './streaming-service';

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
  const closers: (() => Promise<void>)[] = [];
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
    health.starting('opening the image store');
    const state = await loadRuntimeState(config.root);
    const provisioner = await Provisioner.open({ config, log, syncLayers: config.sync_layers });
    closers.push(() => provisioner.close());
    // The containerizer re-adopts every checkpointed sandbox, then every container, before we serve.
    const containerizer = await Containerizer.start({
      root: config.root,
      state: config.state,
      cgroupDriver: config.cgroup_driver,
      log,
      provisioner,
      cni: config,
      onStage: (what) => health.starting(what),
      wrapLauncher: traceLauncher,
    });
    closers.push(() => containerizer.close());
    const { sandboxes, containers } = containerizer;
    const checkpointer = new Checkpointer({
      containers,
      workRoot: path.join(config.state, 'checkpoints'),
      log: log.child({ component: 'checkpoint' }),
    });
    await checkpointer.sweep();
    const containerDeps: ContainerServiceDeps = {
      containers,
      facts: await readDaemonFacts(containerizer.cgroupVersion),
      containerFsDir: containerizer.containerFsDir,
      cpuRates: new CpuRates(),
      layerUsage: new LayerUsage(diskUsage),
      checkpointer,
    };
    closers.push(async () => containerDeps.layerUsage.stop());
    // Exec, Attach and PortForward answer URLs of this server (port 0 resolved once, here).
    const streaming = await startStreamingServer(config.streaming_address, log.child({ component: 'streaming' }));
    closers.push(() => streaming.close());
    const streamRuntime = new StreamRuntime({
      containers,
      sandboxes,
      monitor: containerizer.monitor,
      log: log.child({ component: 'streaming' }),
    });
    const runtime: ServiceHandlers<RuntimeServiceServer> = {
      ...runtimeHandlers({ config, state }),
      ...podHandlers({
        sandboxes,
        containers,
        cgroupDriver: config.cgroup_driver,
        runtimeHandlers: config.runtime_handlers,
      }),
      ...containerHandlers(containerDeps),
      ...statsHandlers({
        sandboxes,
        containers,
        // A pod's containers are reported exactly as ContainerStats reports each one.
        containerStats: (cs) => containerStatsOfAll(cs, containerDeps),
        cpuRates: containerDeps.cpuRates,
      }),
      ...streamingHandlers({ server: streaming, runtime: streamRuntime }),
      ...checkpointHandlers({
        checkpointer,
        containers,
        sandboxes,
        cgroupDriver: config.cgroup_driver,
        runtimeHandlers: config.runtime_handlers,
      }),
      ...eventHandlers({ sandboxes, containers }),
      ...metricsHandlers({
        sandboxes,
        containers,
        containerStats: (c) => containerStatsOf(c, containerDeps),
        containerFsDir: containerDeps.containerFsDir,
      }),
    };
    const image: ServiceHandlers<ImageServiceServer> = {
      ...imageHandlers({ provisioner, containerFsDir: path.join(config.root, 'rootfs') }),
    };

    const server = new grpc.Server({
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    });
    const rpcLog = log.child({ component: 'cri' });
    metrics.attach({
      sandboxes: () =>
        sandboxes.list().map((sb) => ({
          id: sb.id,
          state: sb.criState(),
          name: sb.spec.metadata.name,
          namespace: sb.spec.metadata.namespace,
        })),
      containers: () =>
        containers.list().map((c) => ({
          id: c.id,
          sandboxId: c.record.sandboxId,
          name: c.record.metadata.name,
          state: c.criState(),
          image: c.record.image.requested,
          startedAt: c.record.startedAt,
        })),
      usage: async (id) => containers.usage(containers.get(id)),
      imageFs: () => imageFsOf(config.root),
    });
    const methods = [RuntimeServiceService, ImageServiceService].flatMap((s) =>
      Object.values(s).map((m) => m.path.slice(m.path.lastIndexOf('/') + 1)),
    );
    observeDaemon({ metrics, provisioner, containers, methods });
    const observe = metrics.observeCall.bind(metrics);
    // ListContainers answers in wire bytes (container-service.ts): its serializer sends them.
    const runtimeService = {
      ...RuntimeServiceService,
      listContainers: { ...RuntimeServiceService.listContainers, responseSerialize: listContainersWire },
    };
    server.addService(
      runtimeService,
      instrumentService(runtimeService as unknown as Record<string, MethodDef>, runtime, rpcLog, observe),
    );
    server.addService(
      ImageServiceService,
      instrumentService(ImageServiceService as unknown as Record<string, MethodDef>, image, rpcLog, observe),
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
    await closeAll(closers, log);
    await lock.release();
    throw err;
  }
}

async function shutdown(
  server: grpc.Server,
  listener: net.Server,
  config: Config,
  lock: InstanceLock,
  closers: (() => Promise<void>)[],
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
  await closeAll(closers, log);
  await lock.release();
  log.info('stopped');
}

async function closeAll(closers: (() => Promise<void>)[], log: Logger): Promise<void> {
  for (const close of closers.reverse()) {
    try {
      await close();
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cleanup at shutdown failed');
    }
  }
}
