// RuntimeService handlers that belong to the daemon itself: Version, Status,
// RuntimeConfig, UpdateRuntimeConfig. Pods, containers, stats and streaming
// have their own files beside this one.
import { isIPv4, isIPv6 } from 'net';
import { Config } from '../../config/schema';
import { InvalidArgumentError } from '../../errors';
import {
  CgroupDriver,
  RuntimeConfigRequest,
  RuntimeConfigResponse,
  StatusRequest,
  StatusResponse,
  UpdateRuntimeConfigRequest,
  UpdateRuntimeConfigResponse,
  VersionRequest,
  VersionResponse,
  type RuntimeServiceServer,
} from '../../gen/runtime/v1/api';
import { runtimeHandlerList, usernsSupport } from '../../containerizer';
import { kernelHasMountSetattr } from '../container-spec/host-io';
import { networkReadiness } from '../../network/cni-status';
import { RuntimeState, saveRuntimeState } from '../../network/runtime-state';
import type { ServiceHandlers } from './handler';
import { RUNTIME_API_VERSION, RUNTIME_NAME, runtimeVersion } from '../runtime-info';

/** Pod CIDRs in one UpdateRuntimeConfig (kubelet sends one per IP family). */
const MAX_POD_CIDRS = 8;

export interface RuntimeServiceDeps {
  config: Config;
  state: RuntimeState;
}

export function runtimeHandlers(deps: RuntimeServiceDeps): ServiceHandlers<RuntimeServiceServer> {
  const rro = kernelHasMountSetattr();
  const version = async (_req: VersionRequest): Promise<VersionResponse> => ({
    version: '0.1.0',
    runtimeName: RUNTIME_NAME,
    runtimeVersion: runtimeVersion(),
    runtimeApiVersion: RUNTIME_API_VERSION,
  });

  const status = async (req: StatusRequest): Promise<StatusResponse> => {
    const net = await networkReadiness(deps.config.cni_conf_dir, deps.config.cni_bin_dirs);
    const userns = await usernsSupport(deps.config.root);
    const info: Record<string, string> = {};
    if (req.verbose) {
      info.config = JSON.stringify({ ...deps.config, podCidr: deps.state.podCidr, networkConfigFile: net.file ?? '' });
    }
    return {
      status: {
        conditions: [
          { type: 'RuntimeReady', status: true, reason: '', message: '' },
          { type: 'NetworkReady', status: net.ready, reason: net.reason, message: net.message },
        ],
      },
      info,
      // kubelet copies these into the Node's status.runtimeHandlers and
      // rejects a pod asking for recursive read-only mounts or a user
      // namespace on a handler that lacks them. Recursive read-only binds
      // need mount_setattr (the same test the container spec builder makes);
      // user namespaces need idmapped binds and overlayfs over idmapped
      // layers on the root dir's filesystem (the daemon's probe, run once).
      runtimeHandlers: await runtimeHandlerList(deps.config, {
        recursiveReadOnlyMounts: rro,
        userNamespaces: userns.ok,
      }),
      // SupplementalGroupsPolicy (Strict leaves out the image's /etc/group) and
      // ContainerStatus.user are served; kubelet and critest only use them when this says so.
      features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false, mountOptions: false },
    };
  };

  const runtimeConfig = async (_req: RuntimeConfigRequest): Promise<RuntimeConfigResponse> => ({
    linux: {
      cgroupDriver: deps.config.cgroup_driver === 'systemd' ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS,
    },
  });

  const updateRuntimeConfig = async (req: UpdateRuntimeConfigRequest): Promise<UpdateRuntimeConfigResponse> => {
    const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? '';
    const F = 'runtime_config.network_config.pod_cidr';
    // kubelet sends one CIDR per IP family; the value is persisted and handed to CNI plugins.
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(cidr)) throw new InvalidArgumentError(F, 'contains control characters');
    if (cidr.split(',').length > MAX_POD_CIDRS) {
      throw new InvalidArgumentError(F, `more than ${MAX_POD_CIDRS} CIDRs`);
    }
    for (const part of cidr.split(',').filter((p) => p !== '')) {
      if (!isCidr(part.trim())) {
        throw new InvalidArgumentError(F, `"${part.slice(0, 80)}" is not a CIDR`);
      }
    }
    if (cidr !== deps.state.podCidr) {
      await saveRuntimeState(deps.config.root, { podCidr: cidr });
      deps.state.podCidr = cidr;
    }
    return {};
  };

  return {
    version: version,
    status: status,
    runtimeConfig: runtimeConfig,
    updateRuntimeConfig: updateRuntimeConfig,
  };
}

export function isCidr(s: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const bits = Number(m[2]);
  if (isIPv4(m[1])) return bits <= 32;
  if (isIPv6(m[1])) return bits <= 128;
  return false;
}
