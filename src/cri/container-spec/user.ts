// The process credentials. The user comes from (first match):
//   security_context.run_as_user        numeric uid
//   security_context.run_as_username    a name in the image's /etc/passwd
//   the image's User                    "uid", "uid:gid", "name", "name:group" (and mixes)
//   root
// run_as_group overrides the primary gid (and needs one of the first two);
// otherwise the gid is the passwd entry's, or 0 for a uid /etc/passwd does
// not list. The supplementary groups are the primary gid, the image's groups
// that list the user by name in /etc/group (unless the policy is Strict), and
// security_context.supplemental_groups, each once, in that order. HOME is the
// passwd entry's home directory, "/" when there is none.

import { InvalidArgumentError } from '../../errors';
import { readRootfsFile } from './rootfs-file';
import { IMAGE_FIELD, imageString, MAX_ID, toId } from './values';

const SC = 'config.linux.security_context';

/** Largest /etc/passwd or /etc/group read from an image. */
export const MAX_ACCOUNT_FILE_BYTES = 1 << 20;
/** The kernel's NGROUPS_MAX. */
export const MAX_GROUPS = 65536;

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface AccountDb {
  passwd: PasswdEntry[];
  group: GroupEntry[];
}

export interface UserRequest {
  /** security_context.run_as_user (Int64Value), when set. */
  runAsUser?: bigint;
  /** security_context.run_as_username; empty when unset. */
  runAsUsername: string;
  /** security_context.run_as_group (Int64Value), when set. */
  runAsGroup?: bigint;
  supplementalGroups: readonly bigint[];
  /** SupplementalGroupsPolicy Strict: leave out the image's /etc/group memberships. */
  strictGroups: boolean;
  /** The image config's User (untrusted). */
  imageUser: unknown;
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
  /** The passwd name of the user, when the image knows one. */
  username?: string;
}

function parseId(text: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/** Lines of an account file worth parsing: not blank, not comments, not NIS "+"/"-" entries. */
function accountLines(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('+') && !l.startsWith('-'))
    .map((l) => l.split(':'));
}

/** Parses /etc/passwd, skipping malformed lines (name:pw:uid:gid:gecos:home:shell). */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const f of accountLines(text)) {
    if (f.length < 4 || f[0] === '') continue;
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

/** Parses /etc/group, skipping malformed lines (name:pw:gid:member,member). */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const f of accountLines(text)) {
    if (f.length < 3 || f[0] === '') continue;
    const gid = parseId(f[2]);
    if (gid === undefined) continue;
    const members = (f[3] ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m !== '');
    out.push({ name: f[0], gid, members });
  }
  return out;
}

/** Reads the rootfs's /etc/passwd and /etc/group (absent files are empty). */
export async function readAccountDb(rootfs: string): Promise<AccountDb> {
  const [passwd, group] = await Promise.all([
    readRootfsFile(rootfs, '/etc/passwd', MAX_ACCOUNT_FILE_BYTES),
    readRootfsFile(rootfs, '/etc/group', MAX_ACCOUNT_FILE_BYTES),
  ]);
  return { passwd: parsePasswd(passwd ?? ''), group: parseGroup(group ?? '') };
}

interface UserSpec {
  user: string;
  group?: string;
  /** Where user names come from, for errors. */
  field: string;
  groupField: string;
  /** Prefix for messages about the image's User. */
  what: string;
}

function requestedUser(req: UserRequest): UserSpec {
  const group = req.runAsGroup !== undefined ? String(toId(req.runAsGroup, `${SC}.run_as_group`)) : undefined;
  if (req.runAsUsername !== '' && req.runAsUser !== undefined) {
    throw new InvalidArgumentError(`${SC}.run_as_username`, 'run_as_user and run_as_username are exclusive');
  }
  if (req.runAsUser !== undefined) {
    const uid = toId(req.runAsUser, `${SC}.run_as_user`);
    return { user: String(uid), group, field: `${SC}.run_as_user`, groupField: `${SC}.run_as_group`, what: 'user' };
  }
  if (req.runAsUsername !== '') {
    if (parseId(req.runAsUsername) !== undefined) {
      // A numeric "name" would be taken as a uid below; kubelet sends names only.
      throw new InvalidArgumentError(`${SC}.run_as_username`, `"${req.runAsUsername}" is numeric; use run_as_user`);
    }
    return {
      user: req.runAsUsername,
      group,
      field: `${SC}.run_as_username`,
      groupField: `${SC}.run_as_group`,
      what: 'user',
    };
  }
  if (group !== undefined) {
    throw new InvalidArgumentError(`${SC}.run_as_group`, 'requires run_as_user or run_as_username');
  }
  const image = imageString(req.imageUser, 'User') ?? '';
  if (image === '') return { user: '0', field: IMAGE_FIELD, groupField: IMAGE_FIELD, what: "the image's user" };
  const colon = image.indexOf(':');
  const user = colon < 0 ? image : image.slice(0, colon);
  const imageGroup = colon < 0 ? undefined : image.slice(colon + 1);
  if (user === '') throw new InvalidArgumentError(IMAGE_FIELD, `the image's User "${image}" names no user`);
  return {
    user,
    group: imageGroup === '' ? undefined : imageGroup,
    field: IMAGE_FIELD,
    groupField: IMAGE_FIELD,
    what: "the image's user",
  };
}

/** Resolves the credentials against an already-read account database (pure). */
export function resolveUserFromDb(db: AccountDb, req: UserRequest): ResolvedUser {
  const spec = requestedUser(req);
  let uid = parseId(spec.user);
  let entry: PasswdEntry | undefined;
  if (uid !== undefined) {
    entry = db.passwd.find((p) => p.uid === uid);
  } else {
    entry = db.passwd.find((p) => p.name === spec.user);
    if (!entry) {
      throw new InvalidArgumentError(spec.field, `${spec.what} "${spec.user}" is not in the image's /etc/passwd`);
    }
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  if (spec.group !== undefined) {
    const numeric = parseId(spec.group);
    if (numeric !== undefined) {
      gid = numeric;
    } else {
      const g = db.group.find((e) => e.name === spec.group);
      if (!g) {
        const what = spec.field === IMAGE_FIELD ? "the image's group" : 'group';
        throw new InvalidArgumentError(spec.groupField, `${what} "${spec.group}" is not in the image's /etc/group`);
      }
      gid = g.gid;
    }
  }
  const groups = new Set<number>([gid]);
  if (entry && !req.strictGroups) {
    const name = entry.name;
    for (const g of db.group) if (g.members.includes(name)) groups.add(g.gid);
  }
  req.supplementalGroups.forEach((g, i) => groups.add(toId(g, `${SC}.supplemental_groups[${i}]`)));
  if (groups.size > MAX_GROUPS) {
    throw new InvalidArgumentError(`${SC}.supplemental_groups`, `more than ${MAX_GROUPS} groups`);
  }
  const home = entry && entry.home.startsWith('/') && !entry.home.includes('\0') ? entry.home : '/';
  return { uid, gid, additionalGids: [...groups], home, username: entry?.name };
}

/** Resolves the credentials, reading the rootfs's /etc/passwd and /etc/group. */
export async function resolveUser(rootfs: string, req: UserRequest): Promise<ResolvedUser> {
  return resolveUserFromDb(await readAccountDb(rootfs), req);
}
