// buildContainerSpec: a CRI CreateContainer request (plus what the sandbox,
// the image store and the daemon know) → the launch spec capsa-monitor runs.
// Pure apart from reading the rootfs's /etc/passwd and /etc/group and the
// small host checks passed in as `io`. Every bad input is an
// InvalidArgumentError naming the CRI field (snake_case, as in the proto).

import * as path from 'path';
import { InvalidArgumentError } from '../../errors';
import {
  NamespaceMode,
  SupplementalGroupsPolicy,
  type ContainerConfig,
  type PodSandboxConfig,
} from '../../gen/runtime/v1/api';
import { buildCapabilities, DEFAULT_CAP_LAST_CAP } from './capabilities';
import { resolveCommand } from './command';
import { buildDevices } from './devices';
import { buildEnv } from './env';
import { buildRlimits, checkPrivileged, oomScoreAdj, securityProfiles, workingDir, type Rlimit } from './linux';
import type { ImageVolume } from './image-mounts';
import { buildMounts, type CgroupBind, type PodFiles } from './mounts';
import { buildNamespaces, type SandboxNamespaces } from './namespaces';
import { buildResources } from './resources';
import type { ImageConfigInput, SpecIo } from './types';
import type { LaunchSpec } from '../../containerizer';
import { resolveUser, type ResolvedUser } from './user';
import { resolveSeccomp } from '../seccomp/profile';
import { checkString, isWithin } from './values';
import { checkLogDirectory } from '../log-directory';

export * from './types';
export { resolveCommand } from './command';
export { buildEnv, DEFAULT_PATH } from './env';
export { resolveUser, resolveUserFromDb, parsePasswd, parseGroup, readAccountDb } from './user';
export type { ResolvedUser, UserRequest } from './user';
export { imageMounts, isImageMount } from './image-mounts';
export type { ImageMountInput, ImageVolume } from './image-mounts';
export { DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './mounts';
export type { CgroupBind, PodFiles } from './mounts';
export { ALL_CAPABILITIES, DEFAULT_CAPABILITIES } from './capabilities';
export { MIN_MEMORY_LIMIT } from './resources';

export const OCI_VERSION = '1.1.0';

/** What the sandbox (top-level container) provides to its containers. */
export interface SandboxInput extends SandboxNamespaces, PodFiles {
  hostPid: boolean;
  /** The pod cgroup (kubelet's cgroup_parent, cgroupfs syntax). */
  cgroupParent: string;
}

export interface BuildContainerSpecInput {
  config: ContainerConfig;
  sandboxConfig: PodSandboxConfig;
  imageConfig: ImageConfigInput;
  sandbox: SandboxInput;
  /** The assembled rootfs (its /etc/passwd and /etc/group are read). */
  rootfsPath: string;
  containerId: string;
  /** The CRI log file on the host; default: sandbox log_directory + config.log_path. */
  logPath?: string;
  /** Host directory under which the image volumes' empty directories go. */
  volumesRoot: string;
  /** Image volumes (Mount.image): the mounted image's directory to bind, by index in config.mounts. */
  imageSources?: ReadonlyMap<number, string>;
  /** The container's cgroup; default: <cgroup_parent>/capsa-<id>. */
  cgroupsPath?: string;
  /** The container's cgroup directories to show at /sys/fs/cgroup (none: no cgroup mount). */
  cgroupBinds?: readonly CgroupBind[];
  /** Give the container its own cgroup namespace (cgroup v2). */
  cgroupNamespace?: boolean;
  /** /proc/self/oom_score_adj of the daemon. */
  daemonOomScoreAdj: number;
  /** The daemon may not lower scores below its own (no CAP_SYS_RESOURCE). */
  restrictOomScoreAdj?: boolean;
  /** The daemon's RLIMIT_NOFILE, given to containers. */
  daemonNofile: Rlimit;
  /** /proc/sys/kernel/cap_last_cap (default: 40, CAP_CHECKPOINT_RESTORE). */
  capLastCap?: number;
  /** The node's hostname, for HOSTNAME in host-network pods. */
  nodeHostname: string;
  /** Daemon-wide default pids limit (0/undefined: none). */
  pidsLimit?: number;
  io: SpecIo;
}

export interface BuiltContainerSpec {
  spec: LaunchSpec;
  /** Empty directories the caller creates before the launch (image VOLUMEs). */
  imageVolumes: ImageVolume[];
  user: ResolvedUser;
  /** Things left out on purpose (unsupported capabilities, ignored volumes). */
  warnings: string[];
}

/** The CRI log file: <log_directory>/<log_path>, refused if it leaves the directory. */
export function containerLogPath(config: ContainerConfig, sandboxConfig: PodSandboxConfig): string | undefined {
  if (config.logPath === '' || sandboxConfig.logDirectory === '') return undefined;
  checkString(config.logPath, 'config.log_path');
  checkString(sandboxConfig.logDirectory, 'sandbox_config.log_directory');
  checkLogDirectory('sandbox_config.log_directory', sandboxConfig.logDirectory);
  const dir = path.posix.normalize(sandboxConfig.logDirectory).replace(/(.)\/$/, '$1');
  const file = path.posix.join(dir, config.logPath);
  if (file === dir || !isWithin(file, dir)) {
    throw new InvalidArgumentError('config.log_path', `"${config.logPath}" is not a file inside the log directory`);
  }
  // What open(2) accepts: PATH_MAX for the whole, NAME_MAX per component.
  if (Buffer.byteLength(file) > 4095) {
    throw new InvalidArgumentError('config.log_path', 'the log file path is longer than 4095 bytes');
  }
  if (file.split('/').some((c) => Buffer.byteLength(c) > 255)) {
    throw new InvalidArgumentError('config.log_path', 'a path component is longer than 255 bytes');
  }
  return file;
}

export async function buildContainerSpec(input: BuildContainerSpecInput): Promise<BuiltContainerSpec> {
  const { config, sandboxConfig, sandbox, imageConfig } = input;
  const sc = config.linux?.securityContext;
  const image = imageConfig.config ?? {};
  const warnings: string[] = [];
  const privileged = checkPrivileged(
    sc?.privileged ?? false,
    sandboxConfig.linux?.securityContext?.privileged ?? false,
  );
  const nsOpts = sc?.namespaceOptions;

  const args = resolveCommand(config, imageConfig);
  const user = await resolveUser(input.rootfsPath, {
    runAsUser: sc?.runAsUser?.value,
    runAsUsername: sc?.runAsUsername ?? '',
    runAsGroup: sc?.runAsGroup?.value,
    supplementalGroups: sc?.supplementalGroups ?? [],
    strictGroups: sc?.supplementalGroupsPolicy === SupplementalGroupsPolicy.Strict,
    imageUser: image.User,
  });
  const podHostname = sandboxConfig.hostname !== '' ? sandboxConfig.hostname : input.nodeHostname;
  const env = buildEnv({
    envs: config.envs,
    imageEnv: image.Env,
    hostname: sandbox.hostNetwork ? input.nodeHostname : podHostname,
    home: user.home,
    tty: config.tty,
  });
  checkExecSize(args, env);
  const cwd = workingDir(config.workingDir, image.WorkingDir);
  const caps = buildCapabilities({
    capabilities: sc?.capabilities,
    privileged,
    capLastCap: input.capLastCap ?? DEFAULT_CAP_LAST_CAP,
  });
  warnings.push(...caps.warnings);

  const ns = buildNamespaces({
    pidMode: nsOpts?.pid ?? NamespaceMode.POD,
    targetId: nsOpts?.targetId ?? '',
    userns: nsOpts?.usernsOptions,
    sandbox,
    targetPidNsPath: (id) => input.io.targetPidNsPath?.(id),
    cgroupNamespace: input.cgroupNamespace ?? false,
  });
  const mounts = await buildMounts({
    mounts: config.mounts,
    cgroupBinds: input.cgroupBinds ?? [],
    imageVolumes: image.Volumes,
    privileged,
    readonlyRootfs: sc?.readonlyRootfs ?? false,
    hostIpc: sandbox.hostIpc,
    pod: sandbox,
    volumesRoot: input.volumesRoot,
    maskedPaths: sc?.maskedPaths ?? [],
    readonlyPaths: sc?.readonlyPaths ?? [],
    pathExists: (p) => input.io.pathExists(p),
    isProcfs: input.io.isProcfs ? (p) => input.io.isProcfs!(p) : undefined,
    recursiveReadOnly: input.io.recursiveReadOnly ?? false,
    userns: sandbox.userns,
    imageSources: input.imageSources,
  });
  warnings.push(...mounts.warnings);
  const devices = await buildDevices({
    devices: config.devices,
    privileged,
    devReplaced: config.mounts.some((m) => path.posix.normalize(m.containerPath).replace(/(.)\/$/, '$1') === '/dev'),
    statDevice: (p) => input.io.statDevice(p),
    listHostDevices: input.io.listHostDevices?.bind(input.io),
  });
  const resources = buildResources({ resources: config.linux?.resources, pidsLimit: input.pidsLimit });
  const oom = oomScoreAdj(
    config.linux?.resources?.oomScoreAdj ?? 0n,
    input.daemonOomScoreAdj,
    input.restrictOomScoreAdj ?? false,
  );
  const profiles = securityProfiles(sc, privileged);
  const seccomp = await resolveSeccomp({
    profile: profiles.seccomp,
    field: sc?.seccomp
      ? 'config.linux.security_context.seccomp.localhost_ref'
      : 'config.linux.security_context.seccomp_profile_path',
    capabilities: caps.sets.effective,
    privileged,
    readProfile: input.io.readSeccompProfile?.bind(input.io),
  });
  const logPath = input.logPath ?? containerLogPath(config, sandboxConfig);
  const cgroupsPath = input.cgroupsPath ?? path.posix.join(sandbox.cgroupParent || '/', `capsa-${input.containerId}`);

  const spec: LaunchSpec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: config.tty,
      user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
      args,
      env,
      cwd,
      capabilities: caps.sets,
      rlimits: buildRlimits(input.daemonNofile),
      noNewPrivileges: sc?.noNewPrivs ?? false,
      oomScoreAdj: oom,
    },
    root: { path: input.rootfsPath, readonly: sc?.readonlyRootfs ?? false },
    mounts: mounts.mounts,
    linux: {
      namespaces: ns.namespaces,
      ...(ns.uidMappings ? { uidMappings: ns.uidMappings, gidMappings: ns.gidMappings } : {}),
      devices: devices.devices,
      resources: { devices: devices.rules, ...resources },
      cgroupsPath,
      maskedPaths: mounts.maskedPaths,
      readonlyPaths: mounts.readonlyPaths,
      rootfsPropagation: mounts.rootfsPropagation,
      ...(seccomp ? { seccomp } : {}),
    },
    capsa: {
      containerId: input.containerId,
      ...(logPath !== undefined ? { logPath } : {}),
      stdin: config.stdin,
      stdinOnce: config.stdinOnce,
      seccomp: profiles.seccomp,
      apparmor: profiles.apparmor,
    },
  };
  return { spec, imageVolumes: mounts.imageVolumes, user, warnings };
}
export * from './host-io';

/** What execve accepts by default: ARG_MAX (a quarter of the default 8 MiB stack) for argv + envp together. */
export const EXEC_ARGS_LIMIT = 2 * 1024 * 1024;

/**
 * Refuses a command line + environment that no execve could take (an image
 * config with 100k Entrypoint args, say): a clear error at create instead of
 * a launch spec too big for capsa-monitor or a start that can only fail.
 */
function checkExecSize(args: string[], env: string[]): void {
  let bytes = 0;
  for (const s of [...args, ...env]) bytes += Buffer.byteLength(s) + 1 + 8;
  if (bytes > EXEC_ARGS_LIMIT) {
    throw new InvalidArgumentError(
      'config.command/args/envs',
      `the process's arguments and environment (with the image's Entrypoint, Cmd and Env: ${args.length} args, ` +
        `${env.length} variables) take ${bytes} bytes, over the ${EXEC_ARGS_LIMIT} bytes execve accepts`,
    );
  }
}
