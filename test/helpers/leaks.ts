// The end-of-test check that nothing capsa made is left on the host:
//   - mounts under the test's directories (pinned namespaces, pod shm, rootfs …)
//   - files or directories named capsa-<64 hex>… under those directories
//     (namespace pins, shm mount points, run dirs)
//   - cgroups named capsa-<64 hex>… in any hierarchy under /sys/fs/cgroup
//     (within `cgroupParents` when given: other test files may run pods
//     concurrently under their own parents)
//   - capsa-* helper processes (capsa-pause, capsa-monitor) whose command
//     line names one of the directories
// Use: `await assertNoCapsaLeaks([daemon.dir])` after removing the pods.
import { promises as fs } from 'fs';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { TestDaemon, call } from './daemon';

/** capsa's own object names: the prefix and a 64-hex id. */
export const CAPSA_OBJECT = /^capsa-[0-9a-f]{64}/;

export interface LeakOptions {
  /** Cgroup paths (relative to each hierarchy) to search below; default the whole tree. */
  cgroupParents?: string[];
  /** Skip the cgroup walk (e.g. a test that never creates cgroups). */
  skipCgroups?: boolean;
}

function under(p: string, dirs: string[]): boolean {
  return dirs.some((d) => p === d || p.startsWith(d.endsWith('/') ? d : d + '/'));
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

async function mountinfo(): Promise<{ mount: string; fstype: string }[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter((l) => l.includes(' - '))
    .map((l) => {
      const [pre, post] = l.split(' - ');
      return { mount: unescapeMount(pre.split(' ')[4]), fstype: post.split(' ')[0] };
    });
}

async function walk(dir: string, visit: (p: string, isDir: boolean) => void, depth = 12): Promise<void> {
  if (depth < 0) return;
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    visit(p, e.isDirectory());
    if (e.isDirectory() && !e.isSymbolicLink()) await walk(p, visit, depth - 1);
  }
}

/** Everything capsa left behind, as human-readable lines (empty when clean). */
export async function listCapsaLeaks(dirs: string[], opts: LeakOptions = {}): Promise<string[]> {
  const roots = dirs.map((d) => path.resolve(d));
  const leaks: string[] = [];
  const mounts = await mountinfo();

  for (const m of mounts) {
    if (under(m.mount, roots) && !roots.includes(m.mount)) leaks.push(`mount: ${m.mount} (${m.fstype})`);
  }

  for (const root of roots) {
    await walk(root, (p) => {
      if (CAPSA_OBJECT.test(path.basename(p)) && !/\/(sandboxes|containers)\/[0-9a-f]{64}/.test(p)) {
        leaks.push(`file: ${p}`);
      }
    });
  }

  if (!opts.skipCgroups) {
    const cgroupMounts = [
      ...new Set(mounts.filter((m) => m.fstype === 'cgroup' || m.fstype === 'cgroup2').map((m) => m.mount)),
    ];
    for (const mount of cgroupMounts) {
      for (const parent of opts.cgroupParents ?? ['/']) {
        const base = path.join(mount, parent);
        await walk(
          base,
          (p, isDir) => {
            if (isDir && CAPSA_OBJECT.test(path.basename(p))) leaks.push(`cgroup: ${p}`);
          },
          16,
        );
      }
    }
  }

  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
    } catch {
      continue;
    }
    if (argv.length === 0 || !path.basename(argv[0]).startsWith('capsa-')) continue;
    if (argv.some((a) => under(a, roots))) leaks.push(`process: ${entry} ${argv.join(' ')}`);
  }
  return leaks;
}

/** Throws listing every leak; resolves when nothing capsa- is left. */
export async function assertNoCapsaLeaks(dirs: string[], opts: LeakOptions = {}): Promise<void> {
  const leaks = await listCapsaLeaks(dirs, opts);
  if (leaks.length > 0) throw new Error(`capsa left ${leaks.length} object(s) behind:\n  ${leaks.join('\n  ')}`);
}

/**
 * A suite's teardown for a daemon still running: stops and removes every pod
 * through the socket, checks nothing of capsa's is left under its dir and the
 * default cgroupfs parent, then stops the daemon.
 */
export async function removePodsCheckLeaksAndStop(d: TestDaemon): Promise<void> {
  const pods = await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {});
  for (const p of pods.items) {
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000);
  }
  await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
  await d.stop();
}
