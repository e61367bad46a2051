// The systemd cgroup driver: pod slices and container scopes are transient
// units that systemd makes, owns and removes; capsa asks over D-Bus.
//
//   slice   StartTransientUnit(<name>.slice); limits as properties (only on
//           slices capsa makes: kubelet's are kubelet's). systemd makes its
//           parent slices itself.
//   scope   StartTransientUnit(capsa-<id>.scope, Slice=<pod slice>,
//           Delegate=yes, PIDs=[stand-in], limits…). systemd refuses a scope
//           with no process, and the monitor must find the scope's cgroup
//           before the container's init exists (it places the init itself
//           and reads the OOM counter first), so a stand-in (`sh` blocked on
//           a pipe from capsa) holds the scope until the init is in; then
//           settled() ends it. The init joins through cgroup.procs, which a
//           delegated scope allows, in every hierarchy including systemd's
//           own (name=systemd, and the unified one on a hybrid host), so the
//           unit lists it. A stand-in orphaned by a crash of capsa sees EOF
//           and exits. On v1 the monitor joins the scope in systemd's own
//           hierarchies only (no controller: nothing of it is charged to the
//           container): systemd removes a scope as soon as it is empty, and
//           the monitor must read the OOM counter and record the exit first.
//   update  SetUnitProperties (runtime), which systemd applies before it
//           answers; the properties outlive `systemctl daemon-reload`.
//   destroy the processes killed (freezer + SIGKILL, as for cgroupfs), then
//           StopUnit, waiting for the job; the units are transient with
//           CollectMode=inactive-or-failed, so nothing of them stays loaded.
//
// On cgroup v1 systemd delegates cpu, memory and pids (and its own
// name=systemd); cpuset, cpuacct, devices, freezer, blkio, hugetlb… stay
// where they are, so capsa makes the same path in those hierarchies and
// writes them directly, as runc does. See properties.ts for which limit
// goes where.
import { ChildProcess, spawn } from 'child_process';
import { promises as fs } from 'fs';
import * as path from 'path';
import { AlreadyExistsError, ErrorContext, FailedPreconditionError, InternalError } from '../../../../errors';
import type { Logger } from '../../../../log';
import type { CgroupBackend, CgroupHandle } from '../backend';
import type { CgroupLayout } from '../hierarchy';
import { CgroupManager } from '../manager';
import { CgroupDriverName, cgroupDir } from '../paths';
import { CgroupResources, CgroupWrite } from '../values';
import { BusError, SystemdBus, isBusError } from './bus';
import { INFINITY, UnitProperty, unitResources } from './properties';

const NO_SUCH_UNIT = 'org.freedesktop.systemd1.NoSuchUnit';
const UNIT_EXISTS = 'org.freedesktop.systemd1.UnitExists';
const CAPSA_SCOPE = /^capsa-[0-9a-f]{64}\.scope$/;

/** The unit a cgroup path names (its last component), if it is a slice or a scope. */
export function unitOf(cgPath: string): string | undefined {
  const base = path.posix.basename(cgPath);
  return /\.(slice|scope)$/.test(base) ? base : undefined;
}

/** Where systemd tracks processes besides the controller hierarchies: name=systemd, and cgroup2 on a hybrid host. */
export function trackingMounts(mountinfo: string, layout: CgroupLayout): string[] {
  if (layout.version === 2) return [];
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    if (pre[3] !== '/') continue;
    if (post[0] === 'cgroup' && (post[2] ?? '').split(',').includes('name=systemd')) out.push(pre[4]);
    else if (post[0] === 'cgroup2') out.push(pre[4]);
  }
  return out;
}

/** A stand-in: `sh` waiting on its stdin, a pipe from capsa (EOF ends it, also when capsa dies). */
function spawnStandIn(): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'read -r _'], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.once('error', (e) =>
      reject(new InternalError(`spawn /bin/sh (scope stand-in): ${e.message}`, { stage: 'cgroup create' })),
    );
    child.once('spawn', () => resolve(child));
  });
}

async function endStandIn(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin?.end();
  const t = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(t);
}

export class SystemdCgroupManager extends CgroupManager implements CgroupBackend {
  override readonly driver: CgroupDriverName = 'systemd';
  private readonly standIns = new Map<string, ChildProcess>();
  /** Slice starts and removals one at a time: removing an empty parent must not race a child's start. */
  private sliceLock: Promise<void> = Promise.resolve();

  private constructor(
    layout: CgroupLayout,
    private readonly slog: Logger,
    readonly bus: SystemdBus,
    /** Mount points of systemd's tracking hierarchies (v1/hybrid). */
    private readonly tracking: string[],
  ) {
    super(layout, slog);
  }

  /** Connects to systemd (failing clearly when it is not there) and reads the hierarchies. */
  static async start(layout: CgroupLayout, log: Logger, timeoutMs?: number): Promise<SystemdCgroupManager> {
    const slog = log.child({ driver: 'systemd' });
    try {
      await fs.access('/run/systemd/system');
    } catch {
      throw new FailedPreconditionError(
        'cgroup_driver is "systemd" but systemd is not PID 1 on this host (no /run/systemd/system): use cgroup_driver = "cgroupfs"',
        { stage: 'systemd cgroup driver' },
      );
    }
    const bus = new SystemdBus({ log: slog, timeoutMs });
    const version = (await bus
      .unitProperty('/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'Version')
      .catch((err: unknown) => {
        bus.close();
        throw err;
      })) as string;
    const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
    const m = new SystemdCgroupManager(layout, slog, bus, trackingMounts(mountinfo, layout));
    slog.info({ systemd: version, socket: bus.socket, cgroups: `v${layout.version}` }, 'systemd cgroup driver ready');
    return m;
  }

  override handle(cgPath: string): CgroupHandle {
    const h = super.handle(cgPath);
    // systemd's own hierarchies first: the unit knows the process from the moment it is placed.
    const extra = this.tracking.map((mnt) => path.join(cgroupDir(mnt, cgPath), 'cgroup.procs'));
    return {
      ...h,
      procs: [...new Set([...extra, ...h.procs])],
      monitorProcs: extra.length > 0 && unitOf(cgPath)?.endsWith('.scope') ? extra : undefined,
    };
  }

  override async exists(cgPath: string): Promise<boolean> {
    const unit = unitOf(cgPath);
    if (!unit) return super.exists(cgPath);
    const state = await this.activeState(unit);
    return state !== undefined && state !== 'inactive' && state !== 'failed';
  }

  /** The unit's ActiveState, undefined when systemd has no such unit loaded. */
  async activeState(unit: string): Promise<string | undefined> {
    return (await this.unitProperty(unit, 'org.freedesktop.systemd1.Unit', 'ActiveState')) as string | undefined;
  }

  /** The Description of the unit a cgroup path names; undefined when systemd has no such unit. */
  async description(cgPath: string): Promise<string | undefined> {
    const unit = unitOf(cgPath);
    if (!unit) return undefined;
    return (await this.unitProperty(unit, 'org.freedesktop.systemd1.Unit', 'Description')) as string | undefined;
  }

  /** A unit property; undefined when the unit is not loaded. */
  async unitProperty(unit: string, iface: string, name: string): Promise<unknown> {
    let objectPath: string;
    try {
      [objectPath] = (await this.bus.call('GetUnit', 's', [unit])) as [string];
    } catch (err) {
      if (isBusError(err, NO_SUCH_UNIT)) return undefined;
      throw err;
    }
    try {
      return await this.bus.unitProperty(objectPath, iface, name);
    } catch (err) {
      if (err instanceof BusError && /UnknownObject|NoSuchUnit/.test(err.busName)) return undefined;
      throw err;
    }
  }

  private async withSliceLock<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.sliceLock;
    let release!: () => void;
    this.sliceLock = new Promise<void>((r) => (release = r));
    try {
      await prev;
      return await fn();
    } finally {
      release();
    }
  }

  /** Starts a transient unit and waits for its job; false when it already existed. */
  private async startUnit(unit: string, props: UnitProperty[], ctx: ErrorContext): Promise<boolean> {
    const variants = SystemdBus.variants(props);
    let result: string;
    try {
      result = await this.bus.job('StartTransientUnit', 'ssa(sv)a(sa(sv))', [unit, 'fail', variants, []], unit);
    } catch (err) {
      if (isBusError(err, UNIT_EXISTS)) return false;
      throw err;
    }
    if (result !== 'done') {
      throw new InternalError(`systemd could not start ${unit}: job ${result} (see systemctl status ${unit})`, ctx);
    }
    return true;
  }

  /**
   * Makes the slice unless it is there; `resources` (a slice capsa owns) are
   * its properties. 'existed': somebody else (kubelet) made it, untouched.
   */
  async ensureSlice(
    cgPath: string,
    resources: CgroupResources | undefined,
    description: string,
  ): Promise<'created' | 'existed'> {
    const unit = unitOf(cgPath);
    if (!unit?.endsWith('.slice')) throw new InternalError(`${cgPath} is not a slice`, { path: cgPath });
    const ctx = { stage: 'cgroup create', path: cgPath };
    const { properties, files } = unitResources(resources ?? {}, this.layout.version);
    const made = await this.withSliceLock(async () =>
      // An active slice with no unit file (`systemctl start x.slice`) counts
      // as pristine to systemd, which would let StartTransientUnit take it
      // over (capsa's description, then stopped with capsa's last pod): ask first.
      (await this.activeState(unit)) === 'active'
        ? false
        : this.startUnit(
            unit,
            [
              { name: 'Description', signature: 's', value: description },
              { name: 'CollectMode', signature: 's', value: 'inactive-or-failed' },
              ...properties,
            ],
            ctx,
          ),
    );
    if (made) {
      if (this.layout.version === 1) await super.create(cgPath, undefined, { delegate: true });
      for (const w of files) await this.write(cgPath, w);
    }
    return made ? 'created' : 'existed';
  }

  override async create(
    cgPath: string,
    resources: CgroupResources | undefined,
    opts: { delegate: boolean },
  ): Promise<CgroupHandle> {
    const unit = unitOf(cgPath);
    if (!unit) return super.create(cgPath, resources, opts);
    if (unit.endsWith('.slice')) {
      await this.ensureSlice(cgPath, resources, `capsa ${unit}`);
      return this.handle(cgPath);
    }
    const slice = path.posix.basename(path.posix.dirname(cgPath));
    const ctx = { stage: 'cgroup create', path: cgPath };
    if (!slice.endsWith('.slice')) throw new InternalError(`scope ${unit} must sit in a slice, not in ${slice}`, ctx);
    const { properties, files } = unitResources(resources ?? {}, this.layout.version);
    const standIn = await spawnStandIn();
    this.standIns.set(cgPath, standIn);
    try {
      const made = await this.startUnit(
        unit,
        [
          { name: 'Description', signature: 's', value: `capsa ${unit.slice(0, -'.scope'.length)}` },
          { name: 'Slice', signature: 's', value: slice },
          { name: 'Delegate', signature: 'b', value: true },
          { name: 'PIDs', signature: 'au', value: [standIn.pid!] },
          // As runc: no ordering against shutdown.target; capsa stops its containers itself.
          { name: 'DefaultDependencies', signature: 'b', value: false },
          { name: 'CollectMode', signature: 's', value: 'inactive-or-failed' },
          // A stop by systemd (or an admin) gives the container 10 s after SIGTERM, as a CRI stop would.
          { name: 'TimeoutStopUSec', signature: 't', value: 10_000_000n },
          // No task limit but the one asked for: a scope would get systemd's
          // DefaultTasksMax (15% of the kernel's, 28910 here), where cgroupfs has none.
          ...(properties.some((p) => p.name === 'TasksMax')
            ? []
            : [{ name: 'TasksMax', signature: 't', value: INFINITY } as UnitProperty]),
          ...properties,
        ],
        ctx,
      );
      if (!made) throw new AlreadyExistsError(`systemd already has a unit ${unit}`, ctx);
      // The hierarchies systemd does not delegate (v1): the same path, made and written here.
      if (this.layout.version === 1) await super.create(cgPath, undefined, { delegate: false });
      for (const w of files) await this.write(cgPath, w);
    } catch (err) {
      this.standIns.delete(cgPath);
      await endStandIn(standIn);
      throw err;
    }
    return this.handle(cgPath);
  }

  override async settled(cgPath: string): Promise<void> {
    const s = this.standIns.get(cgPath);
    if (!s) return;
    this.standIns.delete(cgPath);
    await endStandIn(s);
  }

  override async apply(cgPath: string, r: CgroupResources): Promise<void> {
    const unit = unitOf(cgPath);
    if (!unit) return super.apply(cgPath, r);
    const { properties, files } = unitResources(r, this.layout.version);
    // v1: memory <= memory+swap at every moment; memsw goes first when it grows.
    const memsw = files.find((w) => w.file === 'memory.memsw.limit_in_bytes');
    let early: CgroupWrite | undefined;
    if (memsw && r.memory?.limit) {
      const dir = this.dirOf(cgPath, 'memory');
      const current = dir ? await readNumber(path.join(dir, 'memory.memsw.limit_in_bytes')) : undefined;
      const target = memsw.value === '-1' ? Infinity : Number(memsw.value);
      if (current !== undefined && target > current) early = memsw;
    }
    if (early) await this.write(cgPath, early);
    if (properties.length > 0) {
      await this.bus.call('SetUnitProperties', 'sba(sv)', [unit, true, SystemdBus.variants(properties)]);
    }
    for (const w of files) if (w !== early) await this.write(cgPath, w);
  }

  override async destroy(cgPath: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const unit = unitOf(cgPath);
    if (!unit) return super.destroy(cgPath, timeoutMs, signal);
    const deadline = Date.now() + timeoutMs;
    await this.settled(cgPath);
    // Killed here first: a process placed through cgroup.procs, or one in a v1
    // hierarchy systemd does not manage, is ours to collect.
    await this.killAll(cgPath, deadline, signal);
    await this.stopUnit(unit, { stage: 'cgroup destroy', path: cgPath });
    await this.removeTree(cgPath, deadline, signal);
  }

  /** StopUnit, waiting for the job; a unit systemd no longer has is stopped already. */
  async stopUnit(unit: string, ctx: ErrorContext): Promise<void> {
    let result: string;
    try {
      result = await this.bus.job('StopUnit', 'ss', [unit, 'replace'], unit);
    } catch (err) {
      if (isBusError(err, NO_SUCH_UNIT)) return;
      throw err;
    }
    if (result !== 'done' && (await this.activeState(unit)) === 'active') {
      throw new InternalError(`systemd could not stop ${unit}: job ${result}`, ctx);
    }
  }

  /** A slice with no child cgroup left is stopped (a scope: never). */
  override async removeIfEmpty(cgPath: string): Promise<boolean> {
    const unit = unitOf(cgPath);
    if (!unit) return super.removeIfEmpty(cgPath);
    if (!unit.endsWith('.slice')) return false;
    return this.withSliceLock(async () => {
      if ((await this.children(cgPath)).length > 0) return false;
      for (const mnt of this.tracking) {
        if (await hasChildren(cgroupDir(mnt, cgPath))) return false;
      }
      await this.stopUnit(unit, { stage: 'cgroup destroy', path: cgPath });
      return super.removeIfEmpty(cgPath);
    });
  }

  override async scopes(): Promise<string[]> {
    const units = (await this.bus.call('ListUnitsByPatterns', 'asas', [[], ['capsa-*.scope']])) as [unknown[][]];
    const out: string[] = [];
    for (const u of units[0] ?? []) {
      const name = u[0] as string;
      if (!CAPSA_SCOPE.test(name)) continue;
      const cg = (await this.unitProperty(name, 'org.freedesktop.systemd1.Scope', 'ControlGroup')) as
        string | undefined;
      if (cg) out.push(cg);
    }
    return out;
  }

  override close(): void {
    for (const s of this.standIns.values()) s.stdin?.end();
    this.bus.close();
  }
}

async function hasChildren(dir: string): Promise<boolean> {
  try {
    return (await fs.readdir(dir, { withFileTypes: true })).some((e) => e.isDirectory());
  } catch {
    return false;
  }
}

async function readNumber(file: string): Promise<number | undefined> {
  try {
    const t = (await fs.readFile(file, 'utf8')).trim();
    return /^\d+$/.test(t) ? Number(t) : undefined;
  } catch {
    return undefined;
  }
}
