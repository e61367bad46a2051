// The pod files every container bind-mounts: /etc/hosts, /etc/resolv.conf,
// /etc/hostname (under <root>/sandboxes/<id>/, persistent like the
// checkpoint), and the pod's /dev/shm: a 64 MiB tmpfs mounted at
// <state>/shm/capsa-<id>-shm (volatile), unless the pod uses the host IPC
// namespace. Runs after the network isolator when there is one, so
// /etc/hosts can name the pod's IP. Provides `pod-files`.
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InternalError } from '../../../errors';
import type { Logger } from '../../../log';
import { native } from '../../../native';
import type { IsolatorCheckpoint } from '../../checkpoint';
import type { CheckpointFn, Isolator, RecoverResult } from '../../isolator';
import type { PodFiles, SandboxContext, SandboxSpec } from '../../sandbox-spec';

export interface PodFilesState {
  files: PodFiles;
  /** The tmpfs mount point we own, when not host IPC. */
  shmMount?: string;
}

export const PODFILES_ISOLATOR_VERSION = 1;
export const SHM_SIZE = '65536k';
export const OWNED_SHM = /^capsa-([0-9a-f]{64})-shm$/;

const HOSTS_HEADER = `# Kubernetes-managed hosts file (capsa).
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
`;

/** /etc/hosts of a pod with its own network namespace (pure). */
export function hostsFile(hostname: string, ips: readonly string[]): string {
  const lines = ips.length > 0 ? ips.map((ip) => `${ip}\t${hostname}`) : [`127.0.1.1\t${hostname}`];
  return HOSTS_HEADER + lines.join('\n') + '\n';
}

/** resolv.conf from the pod's DNSConfig (pure). */
export function resolvConf(dns: NonNullable<SandboxSpec['dns']>): string {
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  for (const s of dns.servers) lines.push(`nameserver ${s}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return lines.join('\n') + '\n';
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

async function isMountPoint(dir: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([fs.stat(dir), fs.stat(path.dirname(dir))]);
    return a.dev !== b.dev;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}

async function unmountShm(dir: string): Promise<void> {
  const n = native();
  for (let i = 0; i < 8 && (await isMountPoint(dir)); i++) {
    try {
      n.umount2(dir, n.constants.MNT_DETACH);
    } catch (err) {
      if (errno(err) === 'EINVAL' || errno(err) === 'ENOENT') break;
      throw new InternalError(`umount ${dir}: ${(err as Error).message}`, { path: dir, stage: 'shm' });
    }
  }
  try {
    await fs.rmdir(dir);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw new InternalError(`rmdir ${dir}: ${(err as Error).message}`, { path: dir });
  }
}

export class PodFilesIsolator implements Isolator<SandboxContext, PodFilesState> {
  readonly name = 'podfiles';
  readonly version = PODFILES_ISOLATOR_VERSION;
  readonly needs = [];
  readonly after = ['network'];
  readonly provides = ['pod-files'];

  constructor(
    private readonly shmDir: string,
    private readonly log: Logger,
  ) {}

  private planned(ctx: SandboxContext): PodFilesState {
    const shmMount = ctx.spec.namespaces.ipc === 'pod' ? path.join(this.shmDir, `capsa-${ctx.id}-shm`) : undefined;
    return {
      files: {
        hosts: path.join(ctx.dir, 'hosts'),
        resolvConf: path.join(ctx.dir, 'resolv.conf'),
        hostname: path.join(ctx.dir, 'hostname'),
        shm: shmMount ?? '/dev/shm',
      },
      shmMount,
    };
  }

  async prepare(ctx: SandboxContext, checkpoint: CheckpointFn<PodFilesState>): Promise<PodFilesState> {
    const state = this.planned(ctx);
    await checkpoint(state);
    const { spec } = ctx;
    const hostNet = spec.namespaces.network === 'host';
    const hostname = hostNet && spec.hostname === '' ? os.hostname() : spec.hostname;
    const hosts = hostNet ? await readHost('/etc/hosts', HOSTS_HEADER) : hostsFile(hostname, ctx.network.ips);
    const resolv = spec.dns ? resolvConf(spec.dns) : await readHost('/etc/resolv.conf', '');
    // Plain writes, no fsync: the files are regenerated from the checkpointed spec, nothing
    // bind-mounts them before the sandbox is ready (a crash before that discards the sandbox),
    // and after a power loss the sandbox is NOTREADY anyway (its namespaces are gone).
    await writePodFile(state.files.hosts, hosts);
    await writePodFile(state.files.resolvConf, resolv);
    await writePodFile(state.files.hostname, hostname + '\n');
    // A pod in a user namespace: its files and /dev/shm are its root's, as
    // they are root's in any other pod (host root's would show as nobody).
    const owner = podRoot(ctx);
    if (owner) {
      for (const f of [state.files.hosts, state.files.resolvConf, state.files.hostname]) {
        await fs.chown(f, owner.uid, owner.gid);
      }
    }
    if (state.shmMount) {
      await fs.mkdir(this.shmDir, { recursive: true, mode: 0o711 });
      await unmountShm(state.shmMount);
      await fs.mkdir(state.shmMount, { mode: 0o1777 });
      const n = native();
      const c = n.constants;
      try {
        const ids = owner ? `,uid=${owner.uid},gid=${owner.gid}` : '';
        n.mount(
          'shm',
          state.shmMount,
          'tmpfs',
          c.MS_NOSUID | c.MS_NODEV | c.MS_NOEXEC,
          `mode=1777,size=${SHM_SIZE}${ids}`,
        );
      } catch (err) {
        throw new InternalError(`mount tmpfs on ${state.shmMount}: ${(err as Error).message}`, {
          path: state.shmMount,
          stage: 'shm',
        });
      }
    }
    ctx.files = state.files;
    return state;
  }

  /** Unmounts the shm; the files stay until the sandbox's directory is removed. */
  async cleanup(ctx: SandboxContext, state: PodFilesState | undefined): Promise<void> {
    const mount = state?.shmMount ?? path.join(this.shmDir, `capsa-${ctx.id}-shm`);
    await unmountShm(mount);
  }

  async recover(ctx: SandboxContext, saved: IsolatorCheckpoint | undefined): Promise<RecoverResult<PodFilesState>> {
    const state = saved?.version === 1 ? (saved.state as PodFilesState) : this.planned(ctx);
    if (state.shmMount && !(await isMountPoint(state.shmMount))) {
      return { status: 'lost', reason: `pod /dev/shm ${state.shmMount} is not mounted`, state };
    }
    ctx.files = state.files;
    return { status: 'alive', state };
  }

  async sweep(known: ReadonlySet<string>): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.shmDir);
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw err;
    }
    const removed: string[] = [];
    for (const n of names) {
      const m = OWNED_SHM.exec(n);
      if (!m || known.has(m[1])) continue;
      const dir = path.join(this.shmDir, n);
      await unmountShm(dir);
      this.log.info({ dir }, 'removed orphaned pod shm');
      removed.push(dir);
    }
    return removed;
  }
}

/** The host ids root of a pod with a user namespace has (container id 0), undefined otherwise. */
function podRoot(ctx: SandboxContext): { uid: number; gid: number } | undefined {
  const u = ctx.spec.namespaces.userns;
  if (!u) return undefined;
  return { uid: u.uids.find((m) => m.containerID === 0)!.hostID, gid: u.gids.find((m) => m.containerID === 0)!.hostID };
}

/** One pod file, created 0644 in the sandbox's own directory. */
async function writePodFile(file: string, data: string): Promise<void> {
  await fs.writeFile(file, data, { mode: 0o644 });
}

async function readHost(file: string, fallback: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if (errno(err) === 'ENOENT') return fallback;
    throw err;
  }
}
