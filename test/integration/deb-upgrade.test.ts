// The Debian package's upgrade path under a real systemd (252 on Debian 12):
// a systemd as PID 1 of its own namespaces (hack/sysd/sysd-ns.sh) on an
// overlay of the host's / whose upper layer is a tmpfs, so apt and dpkg run
// there for real (maintainer scripts, systemctl) while the host's /usr,
// /etc and dpkg database stay untouched. Version N is installed with apt
// and started as capsa.service, a pod and a container run through its
// socket, then version N+1 (the same package, its version bumped) is
// installed over it: postinst restarts the daemon, KillMode=process keeps
// the container, and the new daemon re-adopts it (same pid, RUNNING, its
// log still growing, stop and remove working). Last, a purge with another
// container running: the unit is gone, the daemon stopped, the container
// not. The namespaces go at the end, and with them every process, mount
// and cgroup (sysd-ns.sh stop removes the cgroups or fails).
import * as grpc from '@grpc/grpc-js';
import { execFileSync, spawnSync } from 'child_process';
import { existsSync, mkdtempSync, promises as fs, readdirSync } from 'fs';
import * as path from 'path';
import { CgroupDriver, ContainerState, NamespaceMode } from '../../src/gen/runtime/v1/api';
import { ImageServiceClient, RuntimeServiceClient } from '../../src/gen/runtime/v1/api';
import { TestDaemon, call, createContainer, runp } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';
import { SysdEnv, sysdAvailable } from '../helpers/sysd';

const REPO = path.resolve(__dirname, '..', '..', '..');
const IMAGE = 'registry.example.test/capsa-test/busybox:latest';
const skip = sysdAvailable();
const describeSysd = skip ? describe.skip : describe;
if (skip) console.warn(`deb upgrade suite skipped: ${skip}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describeSysd('the .deb under systemd: install N, upgrade to N+1 with a container running, purge', () => {
  let env: SysdEnv | undefined;
  let reg: TestRegistry | undefined;
  let dir: string;
  let debN: string;
  let debN1: string;
  let versionN: string;
  let versionN1: string;
  const d = {} as Pick<TestDaemon, 'runtime' | 'image'>;
  const envName = `deb-${process.pid}`;
  let logFile: string;
  // The host's own view of the package and the program, which the installs inside must not change.
  const onHost = (): string =>
    spawnSync('dpkg-query', ['-W', '-f=${Status}', 'capsa'], { encoding: 'utf8' }).stdout +
    String(existsSync('/usr/lib/capsa'));
  const hostBefore = onHost();

  const sh = (script: string, timeoutMs = 30_000): Promise<string> => env!.sh(script, timeoutMs);
  const show = async (unit: string, prop: string): Promise<string> =>
    (await sh(`systemctl show -p ${prop} --value ${unit}`)).trim();
  const servings = async (): Promise<number> =>
    ((await fs.readFile(logFile, 'utf8').catch(() => '')).match(/capsa is serving/g) ?? []).length;
  const apt = (args: string): Promise<string> =>
    sh(`DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends ${args} 2>&1`, 180_000);

  // The operator's config, in place before an install (postinst keeps an existing one): the
  // state and the socket in the dir the host shares, no metrics port on the host's network.
  async function writeConfig(): Promise<void> {
    await fs.mkdir(env!.hostPath('/etc/capsa'), { recursive: true });
    await fs.writeFile(
      env!.hostPath('/etc/capsa/capsa.toml'),
      [
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        `socket = "${dir}/state/capsa.sock"`,
        `log_level = "debug"`,
        `metrics_address = ""`,
        `cni_conf_dir = "${dir}/cni"`,
        `[registries."registry.example.test"]`,
        `mirrors = ["${reg!.url}"]`,
        '',
      ].join('\n'),
    );
  }

  async function connect(): Promise<void> {
    const target = `unix://${path.join(dir, 'state', 'capsa.sock')}`;
    d.runtime?.close();
    d.image?.close();
    d.runtime = new RuntimeServiceClient(target, grpc.credentials.createInsecure());
    d.image = new ImageServiceClient(target, grpc.credentials.createInsecure());
    await until(
      'the CRI socket',
      async () =>
        call(d.runtime, 'version', {}, 2000).then(
          () => true,
          () => false,
        ),
      60_000,
    );
  }

  beforeAll(async () => {
    dir = mkdtempSync('/var/tmp/capsa-deb-upgrade-');
    logFile = path.join(dir, 'capsa.log');
    // N: make deb's package (uncompressed: a quick build); N+1: the same tree, its version bumped.
    const debs = path.join(dir, 'debs');
    execFileSync('bash', [path.join(REPO, 'hack', 'deb.sh'), debs], {
      env: { ...process.env, CAPSA_DEB_COMPRESS: 'none' },
      timeout: 600_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    debN = path.join(debs, readdirSync(debs).filter((f) => f.endsWith('.deb'))[0]);
    versionN = execFileSync('dpkg-deb', ['-f', debN, 'Version'], { encoding: 'utf8' }).trim();
    versionN1 = `${versionN}+upgrade1`;
    const tree = path.join(dir, 'n1');
    execFileSync('dpkg-deb', ['-R', debN, tree]);
    const control = path.join(tree, 'DEBIAN', 'control');
    await fs.writeFile(
      control,
      (await fs.readFile(control, 'utf8')).replace(/^Version: .*$/m, `Version: ${versionN1}`),
    );
    const arch = execFileSync('dpkg-deb', ['-f', debN, 'Architecture'], { encoding: 'utf8' }).trim();
    debN1 = path.join(debs, `capsa_${versionN1}_${arch}.deb`);
    execFileSync('dpkg-deb', ['--root-owner-group', '-Znone', '-b', tree, debN1], { stdio: 'ignore' });
    await fs.rm(tree, { recursive: true });
    execFileSync('dpkg', ['--compare-versions', versionN1, 'gt', versionN]);

    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');

    env = await SysdEnv.start(envName, [dir], 60_000);
    await writeConfig();
    // The daemon's output to a file the host reads (the namespace runs no journald).
    const dropin = env.hostPath('/etc/systemd/system/capsa.service.d');
    await fs.mkdir(dropin, { recursive: true });
    await fs.writeFile(
      path.join(dropin, 'test.conf'),
      ['[Service]', `StandardOutput=append:${logFile}`, 'StandardError=inherit', 'RestartSec=1', ''].join('\n'),
    );
  }, 900_000);

  afterAll(async () => {
    d.runtime?.close();
    d.image?.close();
    try {
      if (env) await env.stop();
      if (dir) await assertNoCapsaLeaks([dir], { skipCgroups: true });
      // sysd-ns.sh stop removed systemd's cgroups (it fails otherwise); none of them is left.
      for (const h of readdirSync('/sys/fs/cgroup')) {
        const found = execFileSync(
          'find',
          [`/sys/fs/cgroup/${h}`, '-maxdepth', '4', '-name', `capsa-sysd-${envName}`],
          {
            encoding: 'utf8',
          },
        );
        expect(found).toBe('');
      }
    } finally {
      await reg?.stop();
      if (dir) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }, 180_000);

  let seq = 0;
  function podConfig(): Record<string, unknown> {
    const uid = `deb-${process.pid}-${++seq}`;
    return {
      metadata: { name: `pod${seq}`, uid, namespace: 'capsa-deb', attempt: 0 },
      hostname: `pod${seq}`,
      logDirectory: path.join(dir, 'logs', uid),
      // The host's network: nothing of CNI to clean up on the host.
      linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.POD } } },
    };
  }
  const ticker = (name: string): Record<string, unknown> => ({
    metadata: { name, attempt: 0 },
    image: { image: IMAGE },
    logPath: `${name}.log`,
    command: ['sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'],
    linux: {},
  });
  const verbose = async (id: string): Promise<{ state: ContainerState; pid: number }> => {
    const r = await call(d.runtime, 'containerStatus', { containerId: id, verbose: true });
    return { state: r.status.state, pid: (JSON.parse(r.info.info) as { pid: number }).pid };
  };
  const ticks = async (file: string): Promise<number> =>
    Math.max(-1, ...[...(await fs.readFile(file, 'utf8')).matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
  const alive = async (pid: number): Promise<boolean> =>
    (await sh(`kill -0 ${pid} 2>/dev/null && echo alive || echo gone`)).trim() === 'alive';
  const startTime = async (pid: number): Promise<string> => (await sh(`cut -d' ' -f22 /proc/${pid}/stat`)).trim();

  let pod1 = '';
  let c1 = '';
  let c1Pid = 0;
  let c1Start = '';
  let c1Log = '';

  test('apt installs N from its file: the postinst enables and starts capsa.service, which serves', async () => {
    const out = await apt(`install ${debN}`);
    expect(out).toMatch(new RegExp(`Setting up capsa \\(${versionN.replace(/[.+]/g, '\\$&')}\\)`));
    expect(await show('capsa.service', 'ActiveState')).toBe('active');
    expect(await show('capsa.service', 'UnitFileState')).toBe('enabled');
    expect(await show('capsa.service', 'KillMode')).toBe('process');
    expect(await show('capsa.service', 'FragmentPath')).toBe('/lib/systemd/system/capsa.service');
    // The package's own Node runs the daemon.
    const main = await show('capsa.service', 'MainPID');
    expect((await sh(`readlink /proc/${main}/exe`)).trim()).toBe('/usr/lib/capsa/node/bin/node');
    await connect();
    const rc = await call<{ linux: { cgroupDriver: number } }>(d.runtime, 'runtimeConfig', {});
    expect(rc.linux.cgroupDriver).toBe(CgroupDriver.SYSTEMD);
    expect(await servings()).toBe(1);
    expect(onHost()).toBe(hostBefore);
  }, 240_000);

  test('a pod and a container through the socket', async () => {
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
    const cfg = podConfig();
    pod1 = await runp(d as TestDaemon, cfg, 60_000);
    c1 = await createContainer(d as TestDaemon, pod1, cfg, ticker('ticker'), 60_000);
    await call(d.runtime, 'startContainer', { containerId: c1 }, 30_000);
    const s = await verbose(c1);
    expect(s.state).toBe(ContainerState.CONTAINER_RUNNING);
    c1Pid = s.pid;
    c1Start = await startTime(c1Pid);
    c1Log = path.join(dir, 'logs', (cfg.metadata as { uid: string }).uid, 'ticker.log');
    await until('the first ticks', async () => (await ticks(c1Log)) >= 2);
    expect(await show(`capsa-${c1}.scope`, 'ActiveState')).toBe('active');
  }, 240_000);

  test('apt installs N+1 over it: the daemon restarts, the container keeps running and is re-adopted', async () => {
    const mainBefore = await show('capsa.service', 'MainPID');
    const out = await apt(`install ${debN1}`);
    expect(out).toMatch(new RegExp(`Unpacking capsa \\(${versionN1.replace(/[.+]/g, '\\$&')}\\) over`));
    expect((await sh(`dpkg-query -W -f='\${Version} \${Status}' capsa`)).trim()).toBe(
      `${versionN1} install ok installed`,
    );
    // postinst's try-restart: a new main process, serving again.
    await until('capsa to serve again', async () => (await servings()) >= 2, 60_000);
    const mainAfter = await show('capsa.service', 'MainPID');
    expect(mainAfter).not.toBe(mainBefore);
    expect(await show('capsa.service', 'ActiveState')).toBe('active');
    expect(await servings()).toBe(2); // one restart, not a stop-then-start per maintainer script
    expect(onHost()).toBe(hostBefore);
    await connect();

    // The same process, never restarted.
    expect(await alive(c1Pid)).toBe(true);
    expect(await startTime(c1Pid)).toBe(c1Start);
    const s = await verbose(c1);
    expect(s).toEqual({ state: ContainerState.CONTAINER_RUNNING, pid: c1Pid });
    expect(await show(`capsa-${c1}.scope`, 'ActiveState')).toBe('active');
    // Its log still flowing.
    const n = await ticks(c1Log);
    await until('more ticks after the upgrade', async () => (await ticks(c1Log)) >= n + 3);

    // The new daemon stops and removes it.
    await call(d.runtime, 'stopContainer', { containerId: c1, timeout: 2 }, 60_000);
    expect((await verbose(c1)).state).toBe(ContainerState.CONTAINER_EXITED);
    expect(await alive(c1Pid)).toBe(false);
    await call(d.runtime, 'removeContainer', { containerId: c1 }, 60_000);
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod1 }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod1 }, 60_000);
    expect((await call<{ items?: unknown[] }>(d.runtime, 'listContainers', {})).items ?? []).toEqual([]);
    expect(await show(`capsa-${c1}.scope`, 'LoadState')).toBe('not-found');
  }, 300_000);

  test('apt purge: the unit and the program go, the daemon stops, a running container does not', async () => {
    const cfg = podConfig();
    const pod = await runp(d as TestDaemon, cfg, 60_000);
    const id = await createContainer(d as TestDaemon, pod, cfg, ticker('survivor'), 60_000);
    await call(d.runtime, 'startContainer', { containerId: id }, 30_000);
    const { pid } = await verbose(id);
    const mainPid = Number(await show('capsa.service', 'MainPID'));
    d.runtime.close();
    d.image.close();

    await apt('purge capsa');
    expect((await sh(`dpkg-query -W -f='\${Status}' capsa 2>&1 || true`)).trim()).toMatch(/not-installed|no packages/);
    expect(await show('capsa.service', 'LoadState')).toBe('not-found');
    expect((await sh('systemctl list-unit-files --no-legend capsa.service || true')).trim()).toBe('');
    expect(await alive(mainPid)).toBe(false);
    const files = '/usr/lib/capsa /usr/bin/capsa /lib/systemd/system/capsa.service /etc/capsa/capsa.toml';
    expect(await sh(`for f in ${files}; do if [ -e $f ]; then echo "left: $f"; fi; done`)).toBe('');
    // Nothing it should not have stopped: the container and its scope.
    expect(await alive(pid)).toBe(true);
    expect(await show(`capsa-${id}.scope`, 'ActiveState')).toBe('active');
    // The state stays (the package never removes it).
    expect(existsSync(path.join(dir, 'root'))).toBe(true);

    // Installed again, capsa re-adopts what it left running and removes it; then purged for good.
    await writeConfig();
    await apt(`install ${debN1}`);
    await connect();
    expect(await verbose(id)).toEqual({ state: ContainerState.CONTAINER_RUNNING, pid });
    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 60_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 60_000);
    expect(await alive(pid)).toBe(false);
    expect(await show(`capsa-${id}.scope`, 'LoadState')).toBe('not-found');
    d.runtime.close();
    d.image.close();
    await apt('purge capsa');
    expect(await show('capsa.service', 'LoadState')).toBe('not-found');
  }, 300_000);
});
