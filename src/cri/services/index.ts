// The daemon's wiring below the transport: opens the image store, the
// containerizer (which re-adopts every checkpointed sandbox and container),
// the checkpointer and the streaming server, and builds the handler tables
// of both CRI services over them. src/server/daemon.ts serves what this
// returns and knows nothing below the cri layer.
import * as path from 'path';
import type { Config } from '../../config/schema';
import { Checkpointer, Containerizer, CriuProbe, PendingRestores, RestoreLauncher } from '../../containerizer';
import {
  ImageServiceService,
  RuntimeServiceService,
  type ImageServiceServer,
  type RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import type { Logger } from '../../log';
import type { Metrics } from '../../metrics/metrics';
import { loadRuntimeState } from '../../network/runtime-state';
import { imageFsOf, observeDaemon } from '../../observability/daemon-hooks';
import { traceLauncher } from '../../observability/launcher-tracing';
import { Provisioner, diskUsage } from '../../provisioner/provisioner';
import { StreamRuntime } from '../../streaming/runtime';
import { startStreamingServer } from '../../streaming/server';
import { Closers } from '../../util/closers';
import { CpuRates } from '../cpu-rate';
import { readDaemonFacts } from '../daemon-facts';
import { checkpointHandlers } from './checkpoint';
import {
  ContainerServiceDeps,
  containerHandlers,
  containerStatsOf,
  containerStatsOfAll,
  listContainersWire,
} from './containers';
import { eventHandlers } from './events';
import type { ServiceHandlers } from './handler';
import { imageHandlers } from './images';
import { LayerUsage } from './layer-usage';
import { metricsHandlers } from './metrics';
import { podHandlers } from './pods';
import { runtimeHandlers } from './runtime';
import { statsHandlers } from './stats';
import { streamingHandlers } from './streaming';

/** RuntimeService as served: ListContainers answers in wire bytes (containers.ts), its serializer sends them. */
export const RUNTIME_SERVICE = {
  ...RuntimeServiceService,
  listContainers: { ...RuntimeServiceService.listContainers, responseSerialize: listContainersWire },
};
export const IMAGE_SERVICE = ImageServiceService;

export interface CriServicesOptions {
  config: Config;
  log: Logger;
  /** The daemon's metrics: fed the containerizer's and the provisioner's events. */
  metrics: Metrics;
  /** Told each step of start-up (the health endpoint shows it). */
  onStage: (what: string) => void;
}

export interface CriServices {
  runtime: ServiceHandlers<RuntimeServiceServer>;
  image: ServiceHandlers<ImageServiceServer>;
  /** Closes what start opened, in reverse; containers are never touched. */
  close(): Promise<void>;
}

export async function startCriServices(opts: CriServicesOptions): Promise<CriServices> {
  const { config, log, metrics } = opts;
  const closers = new Closers(log);
  try {
    opts.onStage('opening the image store');
    const state = await loadRuntimeState(config.root);
    const provisioner = await Provisioner.open({ config, log, syncLayers: config.sync_layers });
    closers.push(() => provisioner.close());
    // The containerizer re-adopts every checkpointed sandbox, then every container, before we serve.
    const criu = new CriuProbe(config.criu_path);
    const pending = new PendingRestores();
    const containerizer = await Containerizer.start({
      root: config.root,
      state: config.state,
      cgroupDriver: config.cgroup_driver,
      runtimes: config.runtimes,
      log,
      provisioner,
      cni: config,
      onStage: opts.onStage,
      // Containers created from a checkpoint archive are launched by criu restore (criu/restore.ts).
      wrapLauncher: (l) =>
        traceLauncher(new RestoreLauncher(l, pending, async () => (await criu.status()).path ?? config.criu_path)),
    });
    closers.push(() => containerizer.close());
    const { sandboxes, containers } = containerizer;
    const checkpointer = new Checkpointer({
      containers,
      workRoot: path.join(config.state, 'checkpoints'),
      log: log.child({ component: 'checkpoint' }),
      probe: criu,
      pending,
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
        facts: containerDeps.facts,
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
    return { runtime, image, close: () => closers.closeAll() };
  } catch (err) {
    await closers.closeAll();
    throw err;
  }
}
