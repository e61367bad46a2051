// A minimal busybox root filesystem for tests: Debian's busybox (static or
// dynamic; for a dynamic one the libraries `ldd` names are copied too), one
// symlink per applet in /bin, the usual empty mount points and a tiny
// /etc/passwd and /etc/group.
import { execFileSync } from 'child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'fs';
import * as path from 'path';

const candidates = ['/usr/bin/busybox', '/bin/busybox'];

export function busyboxPath(): string {
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`busybox not found (looked in ${candidates.join(', ')}); apt-get install busybox`);
  return found;
}

/** Absolute paths of the shared libraries a binary needs; [] for a static one. */
export function sharedLibraries(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return []; // "not a dynamic executable"
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

function copyInto(root: string, hostPath: string): void {
  const dest = path.join(root, hostPath);
  mkdirSync(path.dirname(dest), { recursive: true });
  copyFileSync(hostPath, dest); // follows symlinks: the real library lands under its link's name
  chmodSync(dest, 0o755);
}

/** Builds the rootfs in `dir` (created if needed) and returns `dir`. */
export function buildBusyboxRootfs(dir: string): string {
  const busybox = busyboxPath();
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'root', 'var/log']) {
    mkdirSync(path.join(dir, d), { recursive: true });
  }
  chmodSync(path.join(dir, 'tmp'), 0o1777);
  copyFileSync(busybox, path.join(dir, 'bin/busybox'));
  chmodSync(path.join(dir, 'bin/busybox'), 0o755);
  for (const lib of sharedLibraries(busybox)) copyInto(dir, lib);
  const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((a) => a.trim())
    .filter((a) => a && a !== 'busybox' && !a.includes('/'));
  for (const applet of applets) {
    const link = path.join(dir, 'bin', applet);
    if (!existsSync(link)) symlinkSync('busybox', link);
  }
  writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  return dir;
}
