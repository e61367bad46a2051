// The systemd cgroup driver against a real systemd (252 on Debian 12): a
// systemd as PID 1 of its own namespaces (hack/sysd/sysd-ns.sh) with a
// dbus-daemon system bus, and capsa INSIDE it as the shipped
// packaging/systemd/capsa.service (ExecStart pointed at this build). Every
// check goes through the CRI socket, systemctl and the cgroup files: pods
// are slices, containers capsa-<id>.scope units listing their processes,
// limits are unit properties and files, they survive daemon-reload, an
// update goes through, capsa killed with SIGKILL comes back and re-adopts
// its units while recovery stops units nobody checkpointed, and removal
// leaves no unit. The environment is torn down at the end (its cgroups
// too); the daemon's files live in a temp dir shared with the host.
// Here systemd runs on cgroup v1 (hybrid); on pure cgroup v2, in the VM:
//   bash hack/test-cgroup-v2.sh dist/test/integration/systemd.test.js   (~8 min emulated)
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'child_process';
import { existsSync, mkdtempSync, promises as fs } from 'fs';
import * as path from 'path';
import { ContainerState, CgroupDriver } from '../../src/gen/runtime/v1/api';
import { ImageServiceClient, RuntimeServiceClient } from '../../src/gen/runtime/v1/api';
import { defaultCgroupParent, expandSlice } from '../../src/containerizer/isolators/cgroups/paths';
import { TestDaemon, call, createContainer, runp } from '../helpers/daemon';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import { SysdEnv, sysdAvailable } from '../helpers/sysd';

const REPO = path.resolve(__dirname, '..', '..', '..');
const IMAGE = 'registry.example.test/capsa-test/busybox:latest';
const skip = sysdAvailable();
const describeSysd = skip ? describe.skip : describe;
if (skip) console.warn(`systemd suite skipped: ${skip}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// hack/test-cgroup-v2.sh runs this suite in an emulated VM (CAPSA_VM=1): everything is slower there.
const SLOW = process.env.CAPSA_VM ? 10 : 1;

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs * SLOW;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function hex64(): string {
  let s = '';
  while (s.length < 64)
    s += Math.floor(Math.random() * 0x100000000)
      .toString(16)
      .padStart(8, '0');
  return s.slice(0, 64);
}

describeSysd('systemd cgroup driver (real systemd in namespaces, capsa as capsa.service)', () => {
  let env: SysdEnv;
  let reg: TestRegistry;
  let dir: string;
  let d: Pick<TestDaemon, 'runtime' | 'image'> & { dir: string };
  let logFile: string;
  const envName = `jest-${process.pid}`;
  /** The cgroup version systemd runs on (v1 here: hybrid; v2 in hack/test-cgroup-v2.sh's VM). */
  let v2 = false;

  const show = async (unit: string, prop: string): Promise<string> =>
    (await env.sh(`systemctl show -p ${prop} --value ${unit}`)).trim();
  const cgFile = async (controller: string, cgPath: string, file: string): Promise<string> =>
    (await env.sh(`cat /sys/fs/cgroup/${v2 ? '' : controller}${cgPath}/${file}`)).trim();
  // Loaded units only (show would load a slice by its name: slices need no unit file).
  const listed = async (unit: string): Promise<boolean> =>
    (await env.sh(`systemctl list-units --all --plain --no-legend ${unit}`)).trim() !== '';
  const servings = async (): Promise<number> =>
    ((await fs.readFile(logFile, 'utf8').catch(() => '')).match(/capsa is serving/g) ?? []).length;

  async function connect(): Promise<void> {
    const target = `unix://${path.join(dir, 'state', 'capsa.sock')}`;
    d.runtime?.close();
    d.image?.close();
    d.runtime = new RuntimeServiceClient(target, grpc.credentials.createInsecure());
    d.image = new ImageServiceClient(target, grpc.credentials.createInsecure());
    await until('the CRI socket', async () =>
      call(d.runtime, 'version', {}, 2000).then(
        () => true,
        () => false,
      ),
    );
  }

  beforeAll(async () => {
    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    dir = mkdtempSync('/var/tmp/capsa-sysd-test-');
    logFile = path.join(dir, 'capsa.log');
    await fs.writeFile(
      path.join(dir, 'capsa.toml'),
      [
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        `socket = "${dir}/state/capsa.sock"`,
        `cgroup_driver = "systemd"`,
        `log_level = "debug"`,
        `metrics_address = ""`,
        `cni_conf_dir = "${dir}/cni"`,
        `[registries."registry.example.test"]`,
        `mirrors = ["${reg.url}"]`,
        '',
      ].join('\n'),
    );
    // the checkout too: the unit runs this build, and a clone under /tmp is hidden by the namespace's own /tmp
    env = await SysdEnv.start(envName, [dir, REPO], 60_000 * SLOW);
    v2 = (await env.sh('stat -f -c %T /sys/fs/cgroup')).trim() === 'cgroup2fs';
    // The shipped unit, ExecStart pointed at this build, output to a file the host reads.
    const units = env.hostPath('/etc/systemd/system');
    await fs.copyFile(path.join(REPO, 'packaging', 'systemd', 'capsa.service'), path.join(units, 'capsa.service'));
    await fs.mkdir(path.join(units, 'capsa.service.d'), { recursive: true });
    await fs.writeFile(
      path.join(units, 'capsa.service.d', 'test.conf'),
      [
        '[Service]',
        'ExecStart=',
        `ExecStart=${process.execPath} ${REPO}/bin/capsa serve --config ${dir}/capsa.toml`,
        `StandardOutput=append:${logFile}`,
        'StandardError=inherit',
        'RestartSec=1',
        '',
      ].join('\n'),
    );
    await env.sh('systemctl daemon-reload && systemctl start capsa.service');
    d = { dir } as typeof d;
    await connect();
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000 * SLOW);
  }, 300_000 * SLOW);

  afterAll(async () => {
    d?.runtime?.close();
    d?.image?.close();
    if (env) await env.stop();
    await reg?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }, 120_000 * SLOW);

  // A failed test must not leave its pods to the next one.
  afterEach(async () => {
    if (!d?.runtime) return;
    const pods = (await call<{ items: { id: string }[] }>(d.runtime, 'listPodSandbox', {}).catch(() => ({ items: [] })))
      .items;
    for (const p of pods) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id }, 60_000 * SLOW);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id }, 60_000 * SLOW);
    }
  }, 180_000 * SLOW);

  let seq = 0;
  function podConfig(linux: Record<string, unknown> = {}): Record<string, unknown> {
    const uid = `uid-${process.pid}-${++seq}`;
    return {
      metadata: { name: `pod${seq}`, uid, namespace: 'capsa-sysd', attempt: 0 },
      hostname: `pod${seq}`,
      logDirectory: path.join(dir, 'logs', uid),
      linux,
    };
  }
  const ctr = (name: string, over: Record<string, unknown> = {}): Record<string, unknown> => ({
    metadata: { name, attempt: 0 },
    image: { image: IMAGE },
    logPath: `${name}.log`,
    command: ['sleep', '1000'],
    linux: {},
    ...over,
  });
  const status = async (id: string): Promise<{ state: ContainerState; reason: string; exitCode: number }> =>
    (await call(d.runtime, 'containerStatus', { containerId: id })).status;
  const monitorPid = async (id: string): Promise<number> =>
    JSON.parse((await call(d.runtime, 'containerStatus', { containerId: id, verbose: true })).info.info).monitor.pid;
  const podPid = async (id: string): Promise<number> =>
    JSON.parse((await call(d.runtime, 'containerStatus', { containerId: id, verbose: true })).info.info).pid;

  test('the daemon runs under systemd and says so: RuntimeConfig is systemd, the unit is capsa.service', async () => {
    const rc = await call<{ linux: { cgroupDriver: number } }>(d.runtime, 'runtimeConfig', {});
    expect(rc.linux.cgroupDriver).toBe(CgroupDriver.SYSTEMD);
    expect(await show('capsa.service', 'ActiveState')).toBe('active');
    expect(await show('capsa.service', 'KillMode')).toBe('process');
    expect(await show('capsa.service', 'Delegate')).toBe('yes');
    expect(await fs.readFile(logFile, 'utf8')).toMatch(
      /"socket":"\/run\/dbus\/system_bus_socket".*connected to systemd/,
    );
  });

  test(
    'kubelet-style pod: slice and scopes as units, limits as properties and files, update, daemon-reload, removal',
    async () => {
      const podUid = hex64().slice(0, 32);
      const slice = `kubepods-burstable-pod${podUid}.slice`;
      const podPath = expandSlice(slice);
      const podCfg = podConfig({ cgroupParent: slice });
      const pod = await runp(d as TestDaemon, podCfg, 60_000 * SLOW);
      expect(await show(slice, 'ActiveState')).toBe('active');
      // The pod's PID namespace init has its own scope.
      const holder = `capsa-${pod}.scope`;
      expect(await show(holder, 'ActiveState')).toBe('active');
      expect(await env.sh(`systemctl status --no-pager ${holder} || true`)).toMatch(/capsa-pause/);

      const resources = {
        cpuShares: 512n,
        cpuPeriod: 100000n,
        cpuQuota: 50000n,
        memoryLimitInBytes: 64n << 20n,
        cpusetCpus: '0',
        unified: { 'pids.max': '64' },
      };
      const id = await createContainer(d as TestDaemon, pod, podCfg, ctr('web', { linux: { resources } }));
      await call(d.runtime, 'startContainer', { containerId: id }, 30_000 * SLOW);
      const unit = `capsa-${id}.scope`;
      const cg = `${podPath}/${unit}`;
      expect(await show(unit, 'ActiveState')).toBe('active');
      expect(await show(unit, 'Slice')).toBe(slice);
      expect(await show(unit, 'Delegate')).toBe('yes');
      expect(await show(unit, 'ControlGroup')).toBe(cg);
      // The container's processes are the scope's (the stand-in that held it is gone).
      const pid = await podPid(id);
      const st = await env.sh(`systemctl status --no-pager ${unit} || true`);
      expect(st).toMatch(/sleep 1000/);
      expect(st).not.toMatch(/read -r _/);
      const procs = await env.sh(`cat /sys/fs/cgroup/${v2 ? '' : 'systemd'}${cg}/cgroup.procs`);
      // v1: the monitor is in the scope in systemd's hierarchy too (never in a controller's), so the
      // unit lives until it has recorded the exit.
      const monitor = await monitorPid(id);
      expect(procs.trim().split('\n').map(Number).sort()).toEqual(v2 ? [pid] : [pid, monitor].sort());
      expect(await cgFile('memory', cg, 'cgroup.procs')).toBe(String(pid));
      // Limits: unit properties, and the files systemd wrote from them.
      const memProp = v2 ? 'MemoryMax' : 'MemoryLimit';
      expect(await show(unit, v2 ? 'CPUWeight' : 'CPUShares')).toBe(v2 ? '20' : '512');
      expect(await show(unit, 'CPUQuotaPerSecUSec')).toBe('500ms');
      expect(await show(unit, memProp)).toBe(String(64 << 20));
      expect(await show(unit, 'TasksMax')).toBe('64');
      if (v2) expect(await show(unit, 'AllowedCPUs')).toBe('0');
      const files = async (): Promise<string[]> =>
        v2
          ? [
              await cgFile('cpu', cg, 'cpu.weight'),
              await cgFile('cpu', cg, 'cpu.max'),
              await cgFile('memory', cg, 'memory.max'),
              await cgFile('pids', cg, 'pids.max'),
              await cgFile('cpuset', cg, 'cpuset.cpus'),
            ]
          : [
              await cgFile('cpu', cg, 'cpu.shares'),
              (await cgFile('cpu', cg, 'cpu.cfs_quota_us')) + ' ' + (await cgFile('cpu', cg, 'cpu.cfs_period_us')),
              await cgFile('memory', cg, 'memory.limit_in_bytes'),
              await cgFile('pids', cg, 'pids.max'),
              await cgFile('cpuset', cg, 'cpuset.cpus'),
            ];
      expect(await files()).toEqual([v2 ? '20' : '512', '50000 100000', String(64 << 20), '64', '0']);
      // The process is in the scope in every hierarchy, the ones systemd does not delegate included.
      const procCg = (await env.sh(`cat /proc/${pid}/cgroup`)).trim();
      if (v2) expect(procCg).toBe(`0::${cg}`);
      else {
        for (const h of ['cpu', 'memory', 'pids', 'cpuset', 'freezer', 'devices', 'name=systemd']) {
          expect(procCg).toContain(`:${h}:${cg}`);
        }
      }

      // ExecSync runs in the scope too; stats read the scope's cgroup.
      const ex = await call(d.runtime, 'execSync', {
        containerId: id,
        cmd: ['sh', '-c', 'echo in-scope'],
        timeout: 10n,
      });
      expect({ code: ex.exitCode, out: ex.stdout.toString() }).toEqual({ code: 0, out: 'in-scope\n' });
      const stats = await call(d.runtime, 'containerStats', { containerId: id });
      expect(BigInt(stats.stats.memory.usageBytes.value)).toBeGreaterThan(0n);

      // Update: through the unit (and the files systemd does not own).
      await call(d.runtime, 'updateContainerResources', {
        containerId: id,
        linux: {
          cpuShares: 256n,
          cpuPeriod: 100000n,
          cpuQuota: 20000n,
          memoryLimitInBytes: 96n << 20n,
          cpusetCpus: '0',
        },
      });
      expect(await show(unit, 'CPUQuotaPerSecUSec')).toBe('200ms');
      expect(await show(unit, memProp)).toBe(String(96 << 20));
      const updated = [v2 ? '10' : '256', '20000 100000', String(96 << 20), '64', '0'];
      expect(await files()).toEqual(updated);
      // daemon-reload re-applies every unit's properties: the limits are still the updated ones.
      await env.sh('systemctl daemon-reload');
      expect(await files()).toEqual(updated);
      expect(await show(unit, memProp)).toBe(String(96 << 20));

      // Stop: the scope goes with the container's processes; remove: no unit left.
      await call(d.runtime, 'stopContainer', { containerId: id, timeout: 2n }, 30_000 * SLOW);
      expect((await status(id)).state).toBe(ContainerState.CONTAINER_EXITED);
      await call(d.runtime, 'removeContainer', { containerId: id }, 30_000 * SLOW);
      expect(await listed(unit)).toBe(false);
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      expect(await listed(holder)).toBe(false);
      // capsa made the missing cgroup_parent slice, so it removed it too.
      expect(await listed(slice)).toBe(false);
      expect(await env.sh(`ls -d /sys/fs/cgroup/*${podPath} 2>/dev/null || true`)).toBe('');
    },
    180_000 * SLOW,
  );

  test(
    "kubelet's own form: the slice kubelet made, given as its expanded path; capsa's scopes in it, the slice left to kubelet",
    async () => {
      // kubelet (--cgroup-driver=systemd) makes the pod slice first, then sends
      // cgroup_parent as ToSystemd() renders it: the slice's full path.
      const podUid = hex64().slice(0, 32);
      const slice = `kubepods-besteffort-pod${podUid}.slice`;
      const podPath = expandSlice(slice);
      expect(podPath).toBe(`/kubepods.slice/kubepods-besteffort.slice/${slice}`);
      await env.sh(`systemctl start ${slice}`);
      const podCfg = podConfig({ cgroupParent: podPath });
      const pod = await runp(d as TestDaemon, podCfg, 60_000 * SLOW);
      const holder = `capsa-${pod}.scope`;
      expect(await show(holder, 'Slice')).toBe(slice);
      expect(await show(holder, 'ControlGroup')).toBe(`${podPath}/${holder}`);
      const id = await createContainer(d as TestDaemon, pod, podCfg, ctr('web'));
      await call(d.runtime, 'startContainer', { containerId: id }, 30_000 * SLOW);
      const unit = `capsa-${id}.scope`;
      expect(await show(unit, 'Slice')).toBe(slice);
      expect(await show(unit, 'ControlGroup')).toBe(`${podPath}/${unit}`);
      expect(await env.sh(`systemctl status --no-pager ${unit} || true`)).toMatch(/sleep 1000/);
      // No task limit asked for, none set (not systemd's DefaultTasksMax for scopes), as with cgroupfs.
      expect(await show(unit, 'TasksMax')).toBe('infinity');
      expect(await cgFile('pids', `${podPath}/${unit}`, 'pids.max')).toBe('max');
      // No slice of capsa's making beside kubelet's (a cgroupfs-style conversion of the path would be one).
      expect(await env.sh(`systemctl list-units --all --plain --no-legend '*kubepods_*' || true`)).toBe('');
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      expect(await listed(unit)).toBe(false);
      expect(await listed(holder)).toBe(false);
      // The slice is kubelet's: still there until kubelet stops it.
      expect(await show(slice, 'ActiveState')).toBe('active');
      await env.sh(`systemctl stop ${slice}`);

      // A slice path that is not where systemd would put that slice is refused, naming the field.
      const bad = `/kubepods.slice/kubepods-burstable-pod${podUid}.slice`;
      await expect(runp(d as TestDaemon, podConfig({ cgroupParent: bad }), 30_000 * SLOW)).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: expect.stringMatching(/cgroup_parent.*is not where systemd puts slice/),
      });
    },
    120_000 * SLOW,
  );

  test(
    "a pod without cgroup_parent gets capsa's own slice with the pod's limits; OOM is reported",
    async () => {
      const podCfg = podConfig({ resources: { memoryLimitInBytes: 256n << 20n, cpuShares: 1024n } });
      const pod = await runp(d as TestDaemon, podCfg, 60_000 * SLOW);
      const parent = defaultCgroupParent('systemd', path.join(dir, 'root'));
      const slice = `${parent.slice(0, -'.slice'.length)}-pod${pod}.slice`;
      expect(await show(slice, 'ActiveState')).toBe('active');
      expect(await show(slice, v2 ? 'MemoryMax' : 'MemoryLimit')).toBe(String(256 << 20));
      expect(await cgFile('memory', expandSlice(slice), v2 ? 'memory.max' : 'memory.limit_in_bytes')).toBe(
        String(256 << 20),
      );
      // UpdatePodSandboxResources: the slice's properties.
      await call(d.runtime, 'updatePodSandboxResources', {
        podSandboxId: pod,
        resources: { memoryLimitInBytes: 512n << 20n, cpuShares: 1024n },
      });
      expect(await show(slice, v2 ? 'MemoryMax' : 'MemoryLimit')).toBe(String(512 << 20));
      const oom = await createContainer(
        d as TestDaemon,
        pod,
        podCfg,
        ctr('oom', {
          command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
          linux: { resources: { memoryLimitInBytes: 8n << 20n, memorySwapLimitInBytes: 8n << 20n } },
        }),
      );
      await call(d.runtime, 'startContainer', { containerId: oom }, 30_000 * SLOW);
      const s = await until('the OOM kill', async () => {
        const x = await status(oom);
        return x.state === ContainerState.CONTAINER_EXITED && x;
      });
      expect(s).toMatchObject({ exitCode: 137, reason: 'OOMKilled' });
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      expect(await listed(slice)).toBe(false);
      expect(await listed(`capsa-${oom}.scope`)).toBe(false);
    },
    120_000 * SLOW,
  );

  test(
    'kill -9 of capsa: the service restarts, re-adopts its units and stops the ones nobody checkpointed',
    async () => {
      const podCfg = podConfig();
      const pod = await runp(d as TestDaemon, podCfg, 60_000 * SLOW);
      const id = await createContainer(
        d as TestDaemon,
        pod,
        podCfg,
        ctr('survivor', { linux: { resources: { memoryLimitInBytes: 32n << 20n } } }),
      );
      await call(d.runtime, 'startContainer', { containerId: id }, 30_000 * SLOW);
      const unit = `capsa-${id}.scope`;
      const pid = await podPid(id);
      // Orphans: a capsa- scope in a slice no pod of capsa's has, a pod slice of a sandbox that does not exist.
      const orphanScope = `capsa-${hex64()}.scope`;
      const parent = defaultCgroupParent('systemd', path.join(dir, 'root'));
      const orphanSlice = `${parent.slice(0, -'.slice'.length)}-pod${hex64()}.slice`;
      await env.sh(
        `setsid systemd-run --scope --unit ${orphanScope} --slice kubepods-besteffort-podorphan.slice sleep 1000 </dev/null >/dev/null 2>&1 &`,
      );
      await env.sh(`systemctl start ${orphanSlice}`);
      await until('the orphan scope', async () => (await show(orphanScope, 'ActiveState')) === 'active');

      const before = await servings();
      const mainPid = await show('capsa.service', 'MainPID');
      await env.sh('systemctl kill -s SIGKILL --kill-who=main capsa.service');
      await until('capsa to be back', async () => (await servings()) > before, 60_000);
      expect(await show('capsa.service', 'MainPID')).not.toBe(mainPid);
      await connect();
      // The container never stopped; its scope is the same unit, re-adopted.
      expect(await env.sh(`kill -0 ${pid} && echo alive`)).toContain('alive');
      expect((await status(id)).state).toBe(ContainerState.CONTAINER_RUNNING);
      expect(await show(unit, 'ActiveState')).toBe('active');
      await call(d.runtime, 'updateContainerResources', { containerId: id, linux: { memoryLimitInBytes: 48n << 20n } });
      expect(await show(unit, v2 ? 'MemoryMax' : 'MemoryLimit')).toBe(String(48 << 20));
      // Recovery stopped what no checkpoint names.
      await until('the orphans to go', async () => !(await listed(orphanScope)) && !(await listed(orphanSlice)));
      // The orphan's slice was systemd-run's, not capsa's: the test removes it.
      await env.sh('systemctl stop kubepods-besteffort-podorphan.slice');

      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      expect(await listed(unit)).toBe(false);
    },
    180_000 * SLOW,
  );

  test(
    'without the system bus capsa talks to systemd over /run/systemd/private',
    async () => {
      await env.sh('systemctl stop dbus.socket dbus.service');
      const before = await servings();
      await env.sh('systemctl restart capsa.service');
      await until('capsa to be back', async () => (await servings()) > before, 60_000);
      await connect();
      expect(await fs.readFile(logFile, 'utf8')).toMatch(/"socket":"\/run\/systemd\/private".*connected to systemd/);
      const podCfg = podConfig();
      const pod = await runp(d as TestDaemon, podCfg, 60_000 * SLOW);
      const id = await createContainer(d as TestDaemon, pod, podCfg, ctr('p2p'));
      await call(d.runtime, 'startContainer', { containerId: id }, 30_000 * SLOW);
      expect(await show(`capsa-${id}.scope`, 'ActiveState')).toBe('active');
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000 * SLOW);
      expect(await listed(`capsa-${id}.scope`)).toBe(false);
    },
    120_000 * SLOW,
  );

  test('nothing of capsa is left in systemd after every pod is gone', async () => {
    const units = await env.sh(
      'systemctl list-units --all --plain --no-legend "capsa-*.scope" "capsa*.slice" "kubepods-*pod*.slice"',
    );
    // The default parents (capsa.slice, capsa-r<root>.slice) go with their last pod too.
    expect(units.trim()).toBe('');
  });
});

describe('systemd cgroup driver on a host whose PID 1 is not systemd', () => {
  const hostHasSystemd = existsSync('/run/systemd/system');
  (hostHasSystemd ? test.skip : test)('cgroup_driver = "systemd" is a clear start-up error', async () => {
    const dir = mkdtempSync('/var/tmp/capsa-sysd-host-');
    try {
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [
            path.join(REPO, 'bin', 'capsa'),
            'serve',
            '--root',
            `${dir}/root`,
            '--state',
            `${dir}/state`,
            '--socket',
            `${dir}/s.sock`,
            '--metrics-address',
            '',
            '--cgroup-driver',
            'systemd',
            '--config',
            '/dev/null',
          ],
          { timeout: 30_000 },
          (err, _out, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr: stderr.toString() }),
        );
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cgroup_driver is "systemd" but systemd is not PID 1 on this host/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
