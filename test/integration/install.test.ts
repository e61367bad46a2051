// `make install` / `make uninstall` into a temporary PREFIX, a real daemon
// run from the installed copy (its capsa-pause and capsa-monitor are the
// installed ones), and `make deb` installed into a throwaway Debian 12 root
// (hack/deb-root-test.sh: apt resolves the Depends, the maintainer scripts
// run, capsa version / config default / serve / purge inside it).
import { execFileSync, spawnSync } from 'child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  promises as fs,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
} from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { NamespaceMode } from '../../src/gen/runtime/v1/api';
import { rmCgroupTree } from '../helpers/cgroups';
import { TestDaemon, call, createContainer, runp, startDaemon } from '../helpers/daemon';
import { assertNoCapsaLeaks } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const TOP = path.resolve(__dirname, '..', '..', '..');
const IMAGE = 'registry.example.test/capsa-test/busybox:latest';

function make(target: string, vars: Record<string, string>, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync('make', ['-s', '-C', TOP, target, ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)], {
    encoding: 'utf8',
    timeout: 300_000,
    env,
  });
  if (r.status !== 0) throw new Error(`make ${target} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe('make install / make uninstall', () => {
  let dir: string;
  let vars: Record<string, string>;
  let prefix: string;
  let d: TestDaemon | undefined;
  let reg: TestRegistry | undefined;

  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-install-'));
    prefix = path.join(dir, 'usr');
    vars = { PREFIX: prefix, SYSCONFDIR: path.join(dir, 'etc'), UNITDIR: path.join(dir, 'unit') };
  });
  afterAll(async () => {
    try {
      if (d) {
        await d.stop();
        await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
        await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
      }
    } finally {
      await d?.cleanup();
      await reg?.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test('the layout, the unit, the config only if absent', async () => {
    make('install', vars);
    const lib = path.join(prefix, 'lib', 'capsa');
    expect(readlinkSync(path.join(prefix, 'bin', 'capsa'))).toBe('../lib/capsa/bin/capsa');
    for (const f of ['bin/capsa', 'bin/capsa-monitor', 'bin/capsa-pause']) {
      expect(lstatSync(path.join(lib, f)).mode & 0o777).toBe(0o755);
    }
    expect(existsSync(path.join(lib, 'native/build/Release/capsa_native.node'))).toBe(true);
    expect(readFileSync(path.join(prefix, 'share/doc/capsa/prometheus/capsa-rules.yml'), 'utf8')).toBe(
      readFileSync(path.join(TOP, 'packaging/prometheus/capsa-rules.yml'), 'utf8'),
    );
    expect(existsSync(path.join(lib, 'node_modules/@grpc/grpc-js/package.json'))).toBe(true);
    // Production dependencies only, compiled sources only.
    expect(existsSync(path.join(lib, 'node_modules/typescript'))).toBe(false);
    expect(existsSync(path.join(lib, 'node_modules/jest'))).toBe(false);
    expect(existsSync(path.join(lib, 'dist/test'))).toBe(false);
    expect(existsSync(path.join(lib, 'dist/src/cli.js.map'))).toBe(false);

    const capsa = path.join(prefix, 'bin', 'capsa');
    const version = execFileSync(capsa, ['version'], { encoding: 'utf8' });
    expect(version).toMatch(/^capsa \d+\.\d+\.\d+ \(CRI v1\)\n$/);
    const conf = path.join(dir, 'etc', 'capsa', 'capsa.toml');
    expect(readFileSync(conf, 'utf8')).toBe(execFileSync(capsa, ['config', 'default'], { encoding: 'utf8' }));
    expect(readFileSync(path.join(dir, 'etc', 'crictl.yaml'), 'utf8')).toMatch(
      /^runtime-endpoint: unix:\/\/\/run\/capsa\/capsa\.sock$/m,
    );
    const unit = readFileSync(path.join(dir, 'unit', 'capsa.service'), 'utf8');
    expect(unit).toMatch(new RegExp(`^ExecStart=${prefix}/bin/capsa serve$`, 'm'));
    // The shipped unit otherwise unchanged.
    const shipped = readFileSync(path.join(TOP, 'packaging/systemd/capsa.service'), 'utf8');
    expect(unit.split('\n').slice(1).join('\n')).toBe(
      shipped.replace(/^ExecStart=.*$/m, `ExecStart=${prefix}/bin/capsa serve`),
    );

    // A second install keeps the operator's config.
    await fs.appendFile(conf, '# the operator was here\n');
    const edited = readFileSync(conf, 'utf8');
    make('install', vars);
    expect(readFileSync(conf, 'utf8')).toBe(edited);
  }, 300_000);

  test('the installed daemon runs pods and containers with its own capsa-pause and capsa-monitor', async () => {
    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    d = await startDaemon({
      cli: path.join(prefix, 'bin', 'capsa'),
      toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n`,
    });
    const lib = path.join(prefix, 'lib', 'capsa', 'bin');
    const podCfg = {
      metadata: { name: 'installed', uid: `install-${process.pid}`, namespace: 'install', attempt: 0 },
      hostname: 'installed',
      logDirectory: path.join(d.dir, 'logs'),
      linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.POD } } },
    };
    const pod = await runp(d, podCfg);
    const ps = await call<{ info: Record<string, string> }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: pod,
      verbose: true,
    });
    const holder = (JSON.parse(ps.info.info) as { pidHolder: { pid: number } }).pidHolder.pid;
    expect(readlinkSync(`/proc/${holder}/exe`)).toBe(path.join(lib, 'capsa-pause'));

    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
    const id = await createContainer(d, pod, podCfg, {
      metadata: { name: 'c', attempt: 0 },
      image: { image: IMAGE },
      command: ['sleep', '60'],
      logPath: 'c.log',
      linux: {},
    });
    await call(d.runtime, 'startContainer', { containerId: id });
    const cs = await call<{ info: Record<string, string> }>(d.runtime, 'containerStatus', {
      containerId: id,
      verbose: true,
    });
    const init = (JSON.parse(cs.info.info) as { pid: number }).pid;
    const ppid = Number(/^PPid:\t(\d+)$/m.exec(readFileSync(`/proc/${init}/status`, 'utf8'))?.[1]);
    expect(readlinkSync(`/proc/${ppid}/exe`)).toBe(path.join(lib, 'capsa-monitor'));

    await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod }, 30_000);
    await call(d.runtime, 'removePodSandbox', { podSandboxId: pod }, 30_000);
  }, 300_000);

  test('uninstall keeps the config and the state; PURGE=1 removes them, never under a mount', async () => {
    const state = { CAPSA_ROOT: path.join(dir, 'var-lib-capsa'), CAPSA_STATE: path.join(dir, 'run-capsa') };
    await fs.mkdir(path.join(state.CAPSA_ROOT, 'images'), { recursive: true });
    await fs.mkdir(state.CAPSA_STATE, { recursive: true });
    const env = { ...vars, ...state };

    make('uninstall', env);
    expect(existsSync(path.join(prefix, 'lib', 'capsa'))).toBe(false);
    expect(existsSync(path.join(prefix, 'bin', 'capsa'))).toBe(false);
    expect(existsSync(path.join(dir, 'unit', 'capsa.service'))).toBe(false);
    expect(existsSync(path.join(dir, 'etc', 'capsa', 'capsa.toml'))).toBe(true);
    expect(existsSync(path.join(state.CAPSA_ROOT, 'images'))).toBe(true);

    // Something mounted below the state (a container left): PURGE refuses and removes nothing.
    const mnt = path.join(state.CAPSA_ROOT, 'images');
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    try {
      expect(() => make('uninstall', { ...env, PURGE: '1' })).toThrow(/still mounted below/);
      expect(existsSync(path.join(dir, 'etc', 'capsa', 'capsa.toml'))).toBe(true);
    } finally {
      execFileSync('umount', [mnt]);
    }
    make('uninstall', { ...env, PURGE: '1' });
    expect(existsSync(path.join(dir, 'etc', 'capsa'))).toBe(false);
    expect(existsSync(path.join(dir, 'etc', 'crictl.yaml'))).toBe(false);
    expect(existsSync(state.CAPSA_ROOT)).toBe(false);
    expect(existsSync(state.CAPSA_STATE)).toBe(false);
  }, 120_000);
});

test('make deb installs into a plain Debian 12 root with apt (its own Node, no nodejs) and runs there', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'capsa-deb-'));
  try {
    // gzip -1 rather than the release's xz: the same tree, minutes less on 2 cores.
    make('deb', { DEBDIR: out }, { ...process.env, CAPSA_DEB_COMPRESS: 'gzip' });
    const debs = readdirSync(out).filter((f) => /^capsa_\d+\.\d+\.\d+_\w+\.deb$/.test(f));
    expect(debs).toHaveLength(1);
    const deb = path.join(out, debs[0]);
    const fields = execFileSync('dpkg-deb', ['-f', deb, 'Package', 'Depends'], { encoding: 'utf8' });
    // Debian 12's nodejs is 18: the package carries its own Node and depends on no nodejs.
    expect(fields).toMatch(/^Depends: containernetworking-plugins, iptables/m);
    expect(fields).not.toMatch(/nodejs/);
    const files = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' });
    expect(files).toMatch(/ \.\/usr\/lib\/capsa\/node\/bin\/node$/m);
    expect(files).toMatch(/ \.\/usr\/lib\/capsa\/node\/LICENSE$/m);
    expect(files).toMatch(/ \.\/usr\/share\/doc\/capsa\/copyright$/m);
    const r = spawnSync('bash', [path.join(TOP, 'hack/deb-root-test.sh'), deb], { encoding: 'utf8', timeout: 600_000 });
    const log = `${r.stdout}\n${r.stderr}`;
    if (r.status !== 0) throw new Error(`deb-root-test exited ${r.status}:\n${log.slice(-6000)}`);
    // The checks run as mmdebstrap hooks, whose output goes to stderr.
    expect(log).toMatch(/^capsa \S+ install ok installed$/m);
    expect(log).toMatch(/^capsa \d+\.\d+\.\d+ \(CRI v1\)$/m);
    expect(log).toMatch(/^#!\/usr\/lib\/capsa\/node\/bin\/node$/m);
    expect(log).toMatch(/^bundled node v24\.\d+\.\d+$/m);
    expect(log).toMatch(/^ExecStart=\/usr\/bin\/capsa serve$/m);
    expect(log).toMatch(/"msg":"capsa is serving"/);
    expect(log).toMatch(/^grpc Version: capsa \d+\.\d+\.\d+ v1$/m);
    expect(log).toMatch(/^grpc Status: RuntimeReady=true /m);
    expect(log).toMatch(/^grpc ListPodSandbox: 0 pods$/m);
    expect(log).toMatch(/^state kept: \/var\/lib\/capsa$/m);
    expect(r.stdout).toMatch(/^deb-root-test: ok$/m);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}, 900_000);
