// Device nodes and the device cgroup rules.
//
// The monitor itself makes the OCI default nodes (null, zero, full, random,
// urandom, tty) and the /dev symlinks whenever /dev is a tmpfs, so
// linux.devices lists only the extra nodes: each CRI Device, which must name
// a character or block device node on the host (checked by the
// caller-supplied stat) and lands at container_path (default: the host path,
// always under /dev/) with the host node's mode and owner; and, for a
// privileged container, every host device the caller lists. When a CRI mount
// replaces /dev, privileged containers see the host's nodes through it and no
// host device list is added.
//
// The device cgroup (applied by the cgroups isolator) denies everything but
// the default nodes, /dev/console, /dev/ptmx, the devpts ptys, mknod, and the
// CRI devices with their permissions ("rwm" subset, default "rwm"). A
// privileged container's cgroup allows every device.

import * as path from 'path';
import { InvalidArgumentError } from '../../errors';
import type { Device } from '../../gen/runtime/v1/api';
import type { HostDevice } from './types';
import type { DeviceRule, DeviceSpec } from '../../containerizer';
import { checkString } from './values';

/** The nodes the monitor creates in every /dev tmpfs (for the cgroup rules). */
export const DEFAULT_DEVICE_NODES: readonly { type: 'c'; major: number; minor: number }[] = [
  { type: 'c', major: 1, minor: 3 }, // null
  { type: 'c', major: 1, minor: 5 }, // zero
  { type: 'c', major: 1, minor: 7 }, // full
  { type: 'c', major: 1, minor: 8 }, // random
  { type: 'c', major: 1, minor: 9 }, // urandom
  { type: 'c', major: 5, minor: 0 }, // tty
];

/** The device cgroup rules every unprivileged container starts from (deny all first). */
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  ...DEFAULT_DEVICE_NODES.map((d) => ({ allow: true, ...d, access: 'rwm' })),
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' }, // /dev/console
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // /dev/ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // /dev/pts/*
];

export interface DevicesInput {
  devices: readonly Device[];
  privileged: boolean;
  /** A CRI mount replaces /dev. */
  devReplaced: boolean;
  /** stat(2) of a host path: the device it is, or undefined when it is not a char/block device. */
  statDevice: (hostPath: string) => Promise<HostDevice | undefined>;
  /** Every device node under the host's /dev, for privileged containers. */
  listHostDevices?: () => Promise<HostDevice[]>;
}

export interface DevicesResult {
  devices: DeviceSpec[];
  rules: DeviceRule[];
}

/** "rwm" subset, each letter once; empty means "rwm". */
export function devicePermissions(p: string, field: string): string {
  if (p === '') return 'rwm';
  if (!/^[rwm]{1,3}$/.test(p) || new Set(p).size !== p.length) {
    throw new InvalidArgumentError(field, `"${p}" is not a combination of r, w and m`);
  }
  return p;
}

function devPath(p: string, field: string, underDev: boolean): string {
  checkString(p, field);
  if (!p.startsWith('/')) throw new InvalidArgumentError(field, `"${p}" is not an absolute path`);
  const clean = path.posix.normalize(p).replace(/(.)\/$/, '$1');
  if (clean === '/') throw new InvalidArgumentError(field, 'must not be "/"');
  if (underDev && !clean.startsWith('/dev/')) throw new InvalidArgumentError(field, `"${p}" is not under /dev/`);
  return clean;
}

function toSpec(d: HostDevice, at: string): DeviceSpec {
  return { path: at, type: d.type, major: d.major, minor: d.minor, fileMode: d.mode, uid: d.uid, gid: d.gid };
}

export async function buildDevices(input: DevicesInput): Promise<DevicesResult> {
  const byPath = new Map<string, DeviceSpec>();
  const rules: DeviceRule[] = input.privileged ? [{ allow: true, access: 'rwm' }] : [...DEFAULT_DEVICE_RULES];
  if (input.privileged && input.listHostDevices && !input.devReplaced) {
    for (const d of await input.listHostDevices()) {
      if (d.path.startsWith('/dev/')) byPath.set(d.path, toSpec(d, d.path));
    }
  }
  const requested = new Set<string>();
  for (const [i, dev] of input.devices.entries()) {
    const f = `config.devices[${i}]`;
    const hostPath = devPath(dev.hostPath, `${f}.host_path`, false);
    const at =
      dev.containerPath === ''
        ? devPath(hostPath, `${f}.host_path`, true)
        : devPath(dev.containerPath, `${f}.container_path`, true);
    if (requested.has(at)) throw new InvalidArgumentError(`${f}.container_path`, `"${at}" is requested twice`);
    requested.add(at);
    const access = devicePermissions(dev.permissions, `${f}.permissions`);
    const host = await input.statDevice(hostPath);
    if (!host) throw new InvalidArgumentError(`${f}.host_path`, `"${dev.hostPath}" is not a device node`);
    byPath.set(at, toSpec(host, at));
    if (!input.privileged) rules.push({ allow: true, type: host.type, major: host.major, minor: host.minor, access });
  }
  return { devices: [...byPath.values()], rules };
}
