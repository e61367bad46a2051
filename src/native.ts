// Typed front for the node-addon-api addon in native/ (built by
// `npm run build:native`). Only syscalls Node lacks live there.
import * as path from 'path';

export interface NativeConstants {
  MS_RDONLY: number;
  MS_NOSUID: number;
  MS_NODEV: number;
  MS_NOEXEC: number;
  MS_REMOUNT: number;
  MS_BIND: number;
  MS_REC: number;
  MS_PRIVATE: number;
  MS_SLAVE: number;
  MS_SHARED: number;
  MNT_DETACH: number;
  MNT_FORCE: number;
}

export interface NativeAddon {
  mknod(path: string, mode: number, major: number, minor: number): void;
  lsetxattr(path: string, name: string, value: Buffer, flags?: number): void;
  /** null when the attribute does not exist */
  lgetxattr(path: string, name: string): Buffer | null;
  llistxattr(path: string): string[];
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  /** mount(2) run with cwd = `dir` (in a vfork-style child), so relative paths in `data` resolve against `dir`. */
  mountat(dir: string, source: string, target: string, fstype: string, flags: number, data: string): void;
  /** true when the lock was taken, false when another holder has it (non-blocking mode) */
  flock(fd: number, exclusive: boolean, nonblocking: boolean): boolean;
  /**
   * Creates the requested namespaces on a short-lived thread (unshare there
   * moves only that thread), sets the hostname in the new UTS namespace,
   * brings "lo" up and writes the sysctls (paths under /proc/sys) inside the
   * new namespaces, then bind-mounts each onto its target file (created, must
   * not exist). On failure nothing stays pinned.
   */
  pinNamespaces(opts: PinNamespacesOptions): void;
  /**
   * An idmapped bind mount of `source` on `target` through the user namespace
   * pinned at `usernsFile` (open_tree, mount_setattr MOUNT_ATTR_IDMAP, move_mount).
   */
  idmapBind(source: string, target: string, usernsFile: string): void;
  /** /proc/net/dev as seen inside the network namespace pinned at `nsPath` (read on a short-lived thread). */
  readNetDev(nsPath: string): string;
  /**
   * posix_spawn (no fork of the daemon) of `file` with `argv`: stdin /dev/null,
   * stdout and stderr on pipes whose read ends (close-on-exec) are returned, a
   * session of its own, default signals. The caller reaps it with waitPid.
   */
  spawnDetached?(file: string, argv: string[]): { pid: number; stdout: number; stderr: number };
  /** waitpid(WNOHANG): null while the child runs, else how it ended (once). */
  waitPid?(pid: number): { code: number | null; signal: number | null } | null;
  constants: NativeConstants;
}

export interface PinNamespacesOptions {
  /** Join the namespaces already pinned at net/uts/ipc (a user namespace's) instead of creating and pinning them. */
  join?: boolean;
  /** With join: the host ids of the user namespace's root, which the sysctls are written as (IPC ones need it). */
  owner?: { uid: number; gid: number };
  net?: string;
  uts?: string;
  ipc?: string;
  hostname?: string;
  loopback?: boolean;
  sysctls?: [string, string][];
}

let cached: NativeAddon | undefined;

/** Loads the addon on first use, so code paths that never need it run without a build. */
export function native(): NativeAddon {
  if (!cached) {
    // dist/src/native.js -> <repo>/native/build/Release; src/native.ts (ts-node) works the same.
    const file = path.resolve(__dirname, '..', '..', 'native', 'build', 'Release', 'capsa_native.node');
    const alt = path.resolve(__dirname, '..', 'native', 'build', 'Release', 'capsa_native.node');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(require('fs').existsSync(file) ? file : alt) as NativeAddon;
  }
  return cached;
}
