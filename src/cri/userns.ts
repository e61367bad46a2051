// CRI user namespaces (namespace_options.userns_options): kubelet sends mode
// NODE (hostUsers: true or unset) or POD with the pod's uid and gid mappings
// (hostUsers: false; pkg/kubelet/userns gives each pod a range of 65536 ids
// above the node's, container 0 → host N·65536). Validated here against what
// the kernel would refuse when capsa-pause writes the maps, so the request's
// field is named instead of a failed write, plus what capsa refuses on
// purpose: a map that makes the container's root the host's.
import { promises as fs } from 'fs';
import { InvalidArgumentError } from '../errors';
import { NamespaceMode, type IDMapping, type UserNamespace } from '../gen/runtime/v1/api';
import type { IdMapping, UsernsSpec } from '../containerizer';

/** uid_map and gid_map take at most 340 lines (kernel/user_namespace.c, UID_GID_MAP_MAX_EXTENTS). */
export const MAX_ID_MAPPINGS = 340;
const U32_MAX = 0xffffffff;

function overlaps(a: { first: number; length: number }, b: { first: number; length: number }): boolean {
  return a.first < b.first + b.length && b.first < a.first + a.length;
}

/** One list (uids or gids): checked, as the launch spec's IdMapping. */
export function idMappings(list: readonly IDMapping[], field: string): IdMapping[] {
  if (list.length === 0) throw new InvalidArgumentError(field, 'must not be empty with mode POD');
  if (list.length > MAX_ID_MAPPINGS) {
    throw new InvalidArgumentError(field, `${list.length} mappings; the kernel takes at most ${MAX_ID_MAPPINGS}`);
  }
  const out: IdMapping[] = [];
  list.forEach((m, i) => {
    const f = `${field}[${i}]`;
    if (m.length === 0) throw new InvalidArgumentError(`${f}.length`, 'must be positive');
    // The kernel refuses a range whose end wraps past 2^32 - 1.
    if (m.containerId + m.length > U32_MAX) {
      throw new InvalidArgumentError(`${f}.length`, `container ids ${m.containerId}+${m.length} pass 2^32 - 1`);
    }
    if (m.hostId + m.length > U32_MAX) {
      throw new InvalidArgumentError(`${f}.length`, `host ids ${m.hostId}+${m.length} pass 2^32 - 1`);
    }
    if (m.hostId === 0) {
      // Container ids mapped onto the host's root would be root on the host:
      // what a user namespace is asked for to prevent.
      throw new InvalidArgumentError(`${f}.host_id`, 'must not map onto host id 0 (the host root)');
    }
    out.forEach((o, j) => {
      if (overlaps({ first: m.containerId, length: m.length }, { first: o.containerID, length: o.size })) {
        throw new InvalidArgumentError(`${f}.container_id`, `container ids overlap those of ${field}[${j}]`);
      }
      if (overlaps({ first: m.hostId, length: m.length }, { first: o.hostID, length: o.size })) {
        throw new InvalidArgumentError(`${f}.host_id`, `host ids overlap those of ${field}[${j}]`);
      }
    });
    out.push({ containerID: m.containerId, hostID: m.hostId, size: m.length });
  });
  if (!out.some((m) => m.containerID === 0)) {
    // The init becomes root in the namespace before it drops to the container's user.
    throw new InvalidArgumentError(field, 'must map container id 0 (root in the container)');
  }
  return out;
}

/** A range of subordinate ids (/etc/subuid, /etc/subgid). */
export interface IdRange {
  first: number;
  count: number;
}

/** The ranges the subordinate id file `text` gives user `name` (or its uid), merged where they touch. */
export function parseSubIds(text: string, name: string, uid: number | undefined): IdRange[] {
  const out: IdRange[] = [];
  for (const line of text.split('\n')) {
    const [who, first, count] = line.trim().split(':');
    if (who !== name && (uid === undefined || who !== String(uid))) continue;
    const f = Number(first);
    const c = Number(count);
    if (Number.isSafeInteger(f) && Number.isSafeInteger(c) && f >= 0 && c > 0) out.push({ first: f, count: c });
  }
  out.sort((a, b) => a.first - b.first);
  const merged: IdRange[] = [];
  for (const r of out) {
    const last = merged[merged.length - 1];
    if (last && r.first <= last.first + last.count) {
      last.count = Math.max(last.count, r.first + r.count - last.first);
    } else merged.push({ ...r });
  }
  return merged;
}

/** The host side of every mapping must lie in the subordinate ids (when the host has set some aside). */
export function checkSubIds(list: readonly IdMapping[], ranges: readonly IdRange[], field: string, file: string): void {
  list.forEach((m, i) => {
    const inside = ranges.some((r) => m.hostID >= r.first && m.hostID + m.size <= r.first + r.count);
    if (!inside) {
      const have = ranges.map((r) => `${r.first}+${r.count}`).join(', ');
      throw new InvalidArgumentError(
        `${field}[${i}].host_id`,
        `host ids ${m.hostID}+${m.size} are outside the kubelet user's subordinate ids in ${file} (${have})`,
      );
    }
  });
}

/**
 * The subordinate ids the host sets aside for pods: those of the user
 * `kubelet` in /etc/subuid and /etc/subgid, which is where kubelet takes
 * the pods' ranges from when that user exists (pkg/kubelet, getsubids).
 * undefined when there is no such user or it has no ranges: kubelet then
 * uses 65536 up to 2^32 and capsa checks nothing more than the kernel would.
 */
export async function readKubeletSubIds(etc = '/etc'): Promise<{ uids: IdRange[]; gids: IdRange[] } | undefined> {
  const read = (f: string): Promise<string> => fs.readFile(`${etc}/${f}`, 'utf8').catch(() => '');
  const passwd = (await read('passwd')).split('\n').find((l) => l.startsWith('kubelet:'));
  if (!passwd) return undefined;
  const uid = Number(passwd.split(':')[2]);
  const uids = parseSubIds(await read('subuid'), 'kubelet', Number.isSafeInteger(uid) ? uid : undefined);
  const gids = parseSubIds(await read('subgid'), 'kubelet', Number.isSafeInteger(uid) ? uid : undefined);
  return uids.length > 0 || gids.length > 0 ? { uids, gids } : undefined;
}

/**
 * The pod's user namespace: undefined for NODE (or none given), the checked
 * mappings for POD. `field` is the userns_options field of the request.
 */
export function usernsFromCri(opts: UserNamespace | undefined, field: string): UsernsSpec | undefined {
  if (!opts) return undefined;
  switch (opts.mode) {
    case NamespaceMode.NODE:
      if (opts.uids.length > 0 || opts.gids.length > 0) {
        throw new InvalidArgumentError(`${field}.uids`, 'mappings are only for mode POD (NODE uses the host ids)');
      }
      return undefined;
    case NamespaceMode.POD:
      return { uids: idMappings(opts.uids, `${field}.uids`), gids: idMappings(opts.gids, `${field}.gids`) };
    default:
      throw new InvalidArgumentError(
        `${field}.mode`,
        `${NamespaceMode[opts.mode] ?? String(opts.mode)}: only POD and NODE`,
      );
  }
}

/** The host uid/gid root in the container maps to (container id 0). */
export function hostRoot(list: readonly IdMapping[]): number {
  const m = list.find((x) => x.containerID === 0)!;
  return m.hostID;
}

/** True when two mapping lists are the same (a container's must be its pod's). */
export function sameMappings(a: readonly IdMapping[], b: readonly IdMapping[]): boolean {
  return (
    a.length === b.length &&
    a.every((m, i) => m.containerID === b[i].containerID && m.hostID === b[i].hostID && m.size === b[i].size)
  );
}

/** The pod's user namespace as PodSandboxStatus reports it (undefined: the host's). */
export function usernsToCri(u: UsernsSpec | undefined): UserNamespace | undefined {
  if (!u) return undefined;
  const list = (l: IdMapping[]): IDMapping[] =>
    l.map((m) => ({ containerId: m.containerID, hostId: m.hostID, length: m.size }));
  return { mode: NamespaceMode.POD, uids: list(u.uids), gids: list(u.gids) };
}
