// Capability sets. An unprivileged container starts from containerd's default
// set; security_context.capabilities then applies, in this order: "ALL" in
// add, "ALL" in drop, each named add, each named drop (so add ALL + drop
// CHOWN is everything but CHOWN). Names may come with or without "CAP_", in
// any case. The result goes into the bounding, effective and permitted sets;
// inheritable holds only the ambient capabilities (CVE-2022-24769). A
// privileged container gets every capability the kernel knows and ignores
// add/drop. Capabilities the kernel does not know (above cap_last_cap) are
// left out with a warning.

import { InvalidArgumentError } from '../../errors';
import type { Capability } from '../../gen/runtime/v1/api';
import type { CapabilitySets } from '../../containerizer';

/** Every Linux capability, indexed by its number. */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** containerd's default set for unprivileged containers. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** The last capability of the kernels capsa was written against (CAP_CHECKPOINT_RESTORE, 5.9). */
export const DEFAULT_CAP_LAST_CAP = ALL_CAPABILITIES.length - 1;

const FIELD = 'config.linux.security_context.capabilities';

export interface CapabilityInput {
  capabilities: Capability | undefined;
  privileged: boolean;
  /** /proc/sys/kernel/cap_last_cap on this host. */
  capLastCap: number;
}

/** "net_admin" or "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; an unknown name is an error naming `field`. */
export function capabilityName(name: string, field: string): string {
  const upper = name.trim().toUpperCase();
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!ALL_CAPABILITIES.includes(full)) throw new InvalidArgumentError(field, `unknown capability "${name}"`);
  return full;
}

function isAll(name: string): boolean {
  return name.trim().toUpperCase() === 'ALL';
}

export function buildCapabilities(input: CapabilityInput): { sets: CapabilitySets; warnings: string[] } {
  const warnings: string[] = [];
  const known = ALL_CAPABILITIES.slice(0, Math.min(input.capLastCap, DEFAULT_CAP_LAST_CAP) + 1);
  const order = (set: Set<string>): string[] => ALL_CAPABILITIES.filter((c) => set.has(c));
  if (input.privileged) {
    const all = order(new Set(known));
    return { sets: { bounding: all, effective: all, inheritable: [], permitted: all, ambient: [] }, warnings };
  }
  const c = input.capabilities;
  const add = c?.addCapabilities ?? [];
  const drop = c?.dropCapabilities ?? [];
  const ambientNames = c?.addAmbientCapabilities ?? [];
  const set = new Set<string>(DEFAULT_CAPABILITIES);
  if (add.some(isAll)) ALL_CAPABILITIES.forEach((x) => set.add(x));
  if (drop.some(isAll)) set.clear();
  add.forEach((n, i) => {
    if (!isAll(n)) set.add(capabilityName(n, `${FIELD}.add_capabilities[${i}]`));
  });
  drop.forEach((n, i) => {
    if (!isAll(n)) set.delete(capabilityName(n, `${FIELD}.drop_capabilities[${i}]`));
  });
  const ambient = new Set(ambientNames.map((n, i) => capabilityName(n, `${FIELD}.add_ambient_capabilities[${i}]`)));
  // An ambient capability must also be permitted and inheritable.
  ambient.forEach((a) => set.add(a));
  // Unknown-to-the-kernel capabilities only warn when asked for by name.
  const requested = new Set([...add.filter((n) => !isAll(n)), ...ambientNames].map((n) => capabilityName(n, FIELD)));
  const main = new Set<string>();
  for (const cap of set) {
    if (known.includes(cap)) main.add(cap);
    else if (requested.has(cap)) warnings.push(`${cap} is not supported by this kernel; left out`);
  }
  const list = order(main);
  const ambientList = order(new Set([...ambient].filter((a) => main.has(a))));
  return {
    sets: { bounding: list, effective: list, inheritable: ambientList, permitted: list, ambient: ambientList },
    warnings: [...new Set(warnings)],
  };
}
