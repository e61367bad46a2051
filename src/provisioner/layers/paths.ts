// Path rules for layer entries. Everything here is pure (no file system):
// the unpacker combines it with lstat checks on the tree it is building.
//
// Rules (see docs in unpack.ts):
// - A name is cleaned lexically: empty and "." components dropped, leading
//   "/" removed (Docker's rule: "/etc/x" is "etc/x" in the layer), ".."
//   folded into its parent. A ".." that would climb above the layer root
//   rejects the entry; the cleaned path can never start with "..".
// - Limits: the cleaned path at most 4096 bytes, each component at most
//   255 bytes (Linux PATH_MAX / NAME_MAX), no NUL bytes.

export const MAX_PATH_BYTES = 4096;
export const MAX_NAME_BYTES = 255;

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';
/** The xattr overlayfs reads to hide a lower directory's contents. */
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

export type CleanPath = { ok: true; path: string } | { ok: false; reason: string };

/** Cleans a tar entry (or hardlink target) name into a path relative to the layer root ('' = the root itself). */
export function cleanEntryPath(name: string): CleanPath {
  if (name.includes('\0')) return { ok: false, reason: 'name contains a NUL byte' };
  if (Buffer.byteLength(name) > MAX_PATH_BYTES * 2) return { ok: false, reason: 'name is too long' };
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) return { ok: false, reason: 'path escapes the layer root ("..")' };
      out.pop();
      continue;
    }
    if (Buffer.byteLength(c) > MAX_NAME_BYTES) {
      return { ok: false, reason: `path component longer than ${MAX_NAME_BYTES} bytes` };
    }
    out.push(c);
  }
  const path = out.join('/');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES)
    return { ok: false, reason: `path longer than ${MAX_PATH_BYTES} bytes` };
  return { ok: true, path };
}

export type EntryKind =
  | { kind: 'normal' }
  /** ".wh..wh..opq": the directory `dir` hides its lower contents. */
  | { kind: 'opaque'; dir: string }
  /** ".wh.<name>": `name` in `dir` is deleted from the layers below. */
  | { kind: 'whiteout'; dir: string; name: string; target: string }
  /** Other ".wh..wh.*" names (aufs bookkeeping such as .wh..wh.plnk): skipped. */
  | { kind: 'meta' }
  | { kind: 'invalid'; reason: string };

/** Classifies a cleaned (relative) path by its last component. */
export function classifyEntry(rel: string): EntryKind {
  const slash = rel.lastIndexOf('/');
  const dir = slash < 0 ? '' : rel.slice(0, slash);
  const base = slash < 0 ? rel : rel.slice(slash + 1);
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'normal' };
  if (base === WHITEOUT_OPAQUE) return { kind: 'opaque', dir };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..') {
    return { kind: 'invalid', reason: `whiteout names an invalid file ${JSON.stringify(name)}` };
  }
  return { kind: 'whiteout', dir, name, target: dir ? `${dir}/${name}` : name };
}

/** The parent directories of a cleaned path, outermost first ("a/b/c" -> ["a", "a/b"]). */
export function parentDirs(rel: string): string[] {
  const out: string[] = [];
  let i = rel.indexOf('/');
  while (i >= 0) {
    out.push(rel.slice(0, i));
    i = rel.indexOf('/', i + 1);
  }
  return out;
}

export type XattrDecision = 'keep' | 'drop';

/**
 * Which xattrs a layer may set.
 * - user.*                          kept (application data)
 * - security.capability             kept (file capabilities, e.g. ping's cap_net_raw)
 * - system.posix_acl_access/default kept (POSIX ACLs)
 * - trusted.* (incl. trusted.overlay.*) dropped: host-kernel metadata; overlay
 *   would obey a layer's own opaque/redirect/metacopy marks. Only the
 *   unpacker sets trusted.overlay.opaque, from ".wh..wh..opq".
 * - other security.* (selinux, ima, evm, apparmor…) dropped: labels belong to
 *   the host's policy, not the image.
 * - anything else dropped.
 */
export function xattrDecision(name: string): XattrDecision {
  if (name.startsWith('user.') && name.length > 5) return 'keep';
  if (name === 'security.capability') return 'keep';
  if (name === 'system.posix_acl_access' || name === 'system.posix_acl_default') return 'keep';
  return 'drop';
}
