// The containerizer as the layers above see it: one object that owns the
// pod sandboxes (Mesos top-level containers) and their containers (nested
// ones), built and recovered together, and the one monitor client every
// capsa-monitor call goes through. Sandboxes ask their containers to stop
// and go before a pod does; this owner wires that once.
import * as path from 'path';
import type { CgroupDriver, Config, RuntimeConfig } from '../config/schema';
import type { Logger } from '../log';
import type { Provisioner } from '../provisioner/provisioner';
import { Containers } from './containers';
import type { ContainerEvents } from './events';
import { createNetworkIsolator } from './isolators/network';
import type { Launcher } from './launcher/launcher';
import { MonitorClient } from './launcher/monitor-client';
import { MonitorLauncher } from './launcher/monitor-launcher';
import { HandlerLauncher } from './launcher/handlers';
import { Sandboxes } from './sandboxes';

// What the layers above (cri, server, streaming) may use: they import the
// containerizer through this file only (.dependency-cruiser.cjs).
export { type BuiltSpec, type ContainerImageInfo, type ContainerRequest, type SpecBuildInput } from './container-spec';
export { Containers, type Container } from './containers';
export { Checkpointer, POD_FORMAT, POD_RECORD } from './criu/checkpoint';
export { CriuProbe, type CriuStatus } from './criu/criu';
export { PendingRestores, RestoreLauncher, RESTORE_ENV } from './criu/restore';
export { type ContainerEvent, type ContainerEventKind } from './events';
export { type Usage } from './isolator';
export { CgroupPathError, normalizeCgroupfsParent, systemdParentSlice } from './isolators/cgroups/paths';
export { type BlkioEntry, type CgroupStats, type Pressure, type PressureLine } from './isolators/cgroups/stats';
export { validateResources, type CgroupResources } from './isolators/cgroups/values';
export { type InterfaceUsage } from './isolators/namespaces/netdev';
export { sysctlProblem } from './isolators/namespaces/sysctl';
export { usernsSupport, type UsernsSupport } from './isolators/namespaces/userns-probe';
export { type Launcher } from './launcher/launcher';
export { runtimeHandlerList } from './launcher/handlers';
export { MonitorClient, execSpecOf, parseExecOutcome } from './launcher/monitor-client';
export { signalNumber } from './launcher/signals';
export {
  SECCOMP_ACTIONS,
  SECCOMP_ARCHITECTURES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
  type CapabilitySets,
  type DeviceRule,
  type DeviceSpec,
  type IdMapping,
  type LaunchSpec,
  type MonitorErrorRecord,
  type MountSpec,
  type NamespaceSpec,
  type ProfileSpec,
  type ResourcesSpec,
  type RlimitSpec,
  type SeccompAction,
  type SeccompArg,
  type SeccompOperator,
  type SeccompSpec,
  type SeccompSyscall,
} from './launcher/spec';
export { type Sandbox } from './sandbox';
export { type HostOrPod, type PidMode, type SandboxSpec, type UsernsSpec } from './sandbox-spec';
export { type Sandboxes } from './sandboxes';
export { nowNs, type ContainerCriState, type SandboxCriState } from './state';

export interface ContainerizerOptions {
  root: string;
  state: string;
  cgroupDriver: CgroupDriver;
  /** The daemon's logger: sandboxes log as component "containerizer", containers as "containers". */
  log: Logger;
  provisioner: Provisioner;
  /** CNI's conf and bin dirs: pods get the `network` isolator over them. */
  cni: Pick<Config, 'root' | 'cni_conf_dir' | 'cni_bin_dirs'>;
  /** Where container lifecycle events go (GetContainerEvents). */
  events?: ContainerEvents;
  /** Told what start-up is doing (the daemon's /healthz). */
  onStage?: (what: string) => void;
  /** Wraps the launcher (a tracker: tracing, timing), as Mesos wraps its launcher and isolators. */
  wrapLauncher?: (launcher: Launcher) => Launcher;
  /** RuntimeClass handlers besides the default (config [runtimes.<name>]); type "oci" runs an OCI runtime. */
  runtimes?: Readonly<Record<string, RuntimeConfig>>;
}

export class Containerizer {
  private constructor(
    readonly sandboxes: Sandboxes,
    readonly containers: Containers,
    readonly monitor: MonitorClient,
    /** Writable container layers live here (stats' and ImageFsInfo's fs id). */
    readonly containerFsDir: string,
  ) {}

  /** Recovers every checkpointed sandbox, then every container (running ones keep running). */
  static async start(o: ContainerizerOptions): Promise<Containerizer> {
    o.onStage?.('recovering pod sandboxes');
    const sandboxes = await Sandboxes.start({
      root: o.root,
      state: o.state,
      cgroupDriver: o.cgroupDriver,
      log: o.log.child({ component: 'containerizer' }),
      network: createNetworkIsolator(o.cni, o.log),
    });
    try {
      o.onStage?.('recovering containers');
      const clog = o.log.child({ component: 'containers' });
      const monitor = new MonitorClient();
      const containerFsDir = path.join(o.root, 'rootfs');
      const handlers = new HandlerLauncher(new MonitorLauncher({ log: clog, client: monitor }), o.runtimes ?? {}, clog);
      const containers = await Containers.start({
        root: o.root,
        state: o.state,
        log: clog,
        sandboxes,
        provisioner: o.provisioner,
        launcher: (o.wrapLauncher ?? ((l: Launcher) => l))(handlers),
        backendStateDir: containerFsDir,
        events: o.events,
      });
      sandboxes.setContainerHooks(containers.hooks());
      return new Containerizer(sandboxes, containers, monitor, containerFsDir);
    } catch (err) {
      sandboxes.cgroups.close();
      throw err;
    }
  }

  get cgroupVersion(): 1 | 2 {
    return this.sandboxes.cgroups.layout.version;
  }

  /** Stops the watches and the cgroup driver's connections; containers keep running. */
  async close(): Promise<void> {
    await this.containers.close();
    this.sandboxes.cgroups.close();
  }
}
