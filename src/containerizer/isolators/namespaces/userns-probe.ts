// Whether this host can run pods in user namespaces (CRI userns_options POD)
// the way capsa does: a user namespace made by capsa-pause, volumes and
// copy/bind rootfs as idmapped binds (mount_setattr MOUNT_ATTR_IDMAP, kernel
// 5.12, and a filesystem that allows it: ext4, xfs, btrfs, tmpfs from 6.3),
// and the overlay rootfs over idmapped layers (overlayfs 5.19; an overlay
// mount itself cannot be idmapped, so its layers are). `capsa-pause
// probe-idmap DIR` tries both on DIR's filesystem (the root dir, where the
// layers are) in a mount namespace of its own. There is no fallback that
// keeps ownership right without idmapped mounts (chowning every layer per
// pod is not done): without them Status advertises no user namespaces and a
// pod asking for one fails with FailedPrecondition naming the reason; it
// never runs with host ids.
import { execFile } from 'child_process';
import { promisify } from 'util';
import { findPauseBinary } from './pid-holder';

export interface UsernsSupport {
  ok: boolean;
  /** Why not, when !ok ("overlay: mount_setattr(MOUNT_ATTR_IDMAP): invalid argument"). */
  reason: string;
}

const cache = new Map<string, Promise<UsernsSupport>>();

/** Parses the probe's two lines ("plain ok", "overlay error <why>"). */
export function parseProbe(out: string): UsernsSupport {
  const lines = out.split('\n').filter((l) => l !== '');
  const get = (what: string): string | undefined => lines.find((l) => l.startsWith(`${what} `))?.slice(what.length + 1);
  for (const what of ['plain', 'overlay']) {
    const v = get(what);
    if (v === undefined) return { ok: false, reason: `the idmap probe printed no ${what} result` };
    if (v !== 'ok')
      return {
        ok: false,
        reason: `${what === 'plain' ? 'idmapped bind' : 'overlay over idmapped layers'}: ${v.replace(/^error /, '')}`,
      };
  }
  return { ok: true, reason: '' };
}

async function run(dir: string): Promise<UsernsSupport> {
  try {
    const { stdout } = await promisify(execFile)(findPauseBinary(), ['probe-idmap', dir], { timeout: 10000 });
    return parseProbe(stdout);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { ok: false, reason: `idmap probe failed: ${(e.stderr ?? '').trim() || e.message}` };
  }
}

/** The probe's answer for `dir`'s filesystem, asked once per daemon. */
export function usernsSupport(dir: string): Promise<UsernsSupport> {
  let p = cache.get(dir);
  if (!p) {
    p = run(dir);
    cache.set(dir, p);
  }
  return p;
}
