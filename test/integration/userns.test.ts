// User namespaces through the real socket (issue 11): a pod with
// userns_options POD (kubelet's hostUsers: false) mapped 0→100000 for 65536
// ids. Its containers share the pod's user namespace: /proc/self/uid_map
// shows the mapping, root inside is uid 100000 on the host, the rootfs (an
// overlay of idmapped layers) shows the image's root files as root's and
// keeps what root writes as host uid 100000, a plain bind shows the
// container's writes with the mapped host ids, a bind with the pod's
// mappings (what kubelet sends for every volume) is idmapped both ways.
// ExecSync runs in it; a daemon restart re-adopts it all; stop and remove
// leave nothing behind (the leak check of stopBusyboxDaemon). Bad mappings are refused naming the field.
import { promises as fs } from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { usernsSupport } from '../../src/containerizer/isolators/namespaces/userns-probe';
import { MountPropagation, NamespaceMode } from '../../src/gen/runtime/v1/api';
import { call, createContainer, expectRpcError, runp, startDaemon } from '../helpers/daemon';
import { remoteCommand } from '../helpers/spdy-client';
import { BUSYBOX_IMAGE, BusyboxDaemon, startBusyboxDaemon, stopBusyboxDaemon } from '../helpers/busybox-daemon';

const MAP = [{ containerId: 0, hostId: 100000, length: 65536 }];
const USERNS = { mode: NamespaceMode.POD, uids: MAP, gids: MAP };

let b: BusyboxDaemon;
let supported = false;

beforeAll(async () => {
  b = await startBusyboxDaemon();
  supported = (await usernsSupport(b.d.root)).ok;
}, 600_000);

afterAll(async () => {
  const pods = b ? (await call<{ items: { id: string }[] }>(b.d.runtime, 'listPodSandbox', {})).items : [];
  for (const p of pods) {
    await call(b.d.runtime, 'stopPodSandbox', { podSandboxId: p.id });
    await call(b.d.runtime, 'removePodSandbox', { podSandboxId: p.id });
  }
  await stopBusyboxDaemon(b);
}, 120_000);

function podConfig(name: string, nso: Record<string, unknown>): Record<string, unknown> {
  return {
    metadata: { name, uid: `${name}-${process.pid}`, namespace: 'ns', attempt: 0 },
    logDirectory: path.join(b.d.dir, 'logs', name),
    linux: { securityContext: { namespaceOptions: nso } },
  };
}

async function exec(id: string, cmd: string): Promise<string> {
  const r = await call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>(
    b.d.runtime,
    'execSync',
    { containerId: id, cmd: ['sh', '-c', cmd], timeout: 10 },
    20_000,
  );
  if (r.exitCode !== 0) throw new Error(`${cmd}: exit ${r.exitCode}: ${Buffer.from(r.stderr).toString()}`);
  return Buffer.from(r.stdout).toString().trim();
}

async function hostPid(id: string): Promise<number> {
  const st = await call<{ info: Record<string, string> }>(b.d.runtime, 'containerStatus', {
    containerId: id,
    verbose: true,
  });
  return (JSON.parse(st.info.info) as { pid: number }).pid;
}

/** The Uid: line of /proc/<pid>/status: real, effective, saved, fs. */
async function hostUids(pid: number): Promise<string> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return /^Uid:\s+(.*)$/m.exec(status)![1].split(/\s+/).join(' ');
}

test('Status advertises user namespaces exactly when the probe says this host can', async () => {
  const st = await call<{ runtimeHandlers: { name: string; features: { userNamespaces: boolean } }[] }>(
    b.d.runtime,
    'status',
    {},
  );
  expect(st.runtimeHandlers[0]).toMatchObject({ name: '', features: { userNamespaces: supported } });
});

test('a pod in a user namespace: uid_map, host uids, rootfs, binds, ExecSync, nothing left', async () => {
  if (!supported) {
    // FailedPrecondition naming why, never a pod with host ids.
    await expectRpcError(
      runp(b.d, podConfig('userns-unsupported', { usernsOptions: USERNS })),
      grpc.status.FAILED_PRECONDITION,
      /user namespaces are not available on this host/,
    );
    return;
  }
  const { d } = b;
  const plain = path.join(d.dir, 'plain');
  const idm = path.join(d.dir, 'idmapped');
  await fs.mkdir(plain, { mode: 0o777 });
  await fs.chmod(plain, 0o777); // an emptyDir is 0777 (kubelet)
  await fs.mkdir(idm, { mode: 0o755 });
  await fs.writeFile(path.join(idm, 'from-host'), 'h');

  const podCfg = {
    ...podConfig('userns', { usernsOptions: USERNS }),
    hostname: 'userns-pod',
    // written by the daemon in namespaces the pod's user namespace owns
    linux: {
      securityContext: { namespaceOptions: { usernsOptions: USERNS } },
      sysctls: { 'kernel.shm_rmid_forced': '1', 'net.ipv4.ip_unprivileged_port_start': '0' },
    },
  };
  const pod = await runp(d, podCfg);
  const ps = await call<{ status: { linux: { namespaces: { options: { usernsOptions: unknown } } } } }>(
    d.runtime,
    'podSandboxStatus',
    { podSandboxId: pod },
  );
  expect(ps.status.linux.namespaces.options.usernsOptions).toEqual(USERNS);

  const mounts = [
    { containerPath: '/plain', hostPath: plain, propagation: MountPropagation.PROPAGATION_PRIVATE },
    // kubelet: every mount of a hostUsers: false pod carries the pod's mappings
    {
      containerPath: '/idm',
      hostPath: idm,
      propagation: MountPropagation.PROPAGATION_PRIVATE,
      uidMappings: MAP,
      gidMappings: MAP,
    },
    {
      containerPath: '/idm-ro',
      hostPath: idm,
      readonly: true,
      propagation: MountPropagation.PROPAGATION_PRIVATE,
      uidMappings: MAP,
      gidMappings: MAP,
    },
  ];
  const sleeper = (name: string, pid: NamespaceMode): Record<string, unknown> => ({
    metadata: { name, attempt: 0 },
    image: { image: BUSYBOX_IMAGE },
    command: ['sleep', '3600'],
    logPath: `${name}.log`,
    mounts,
    linux: { securityContext: { namespaceOptions: { pid, usernsOptions: USERNS } } },
  });
  // the pod's shared PID namespace (capsa-pause in the user namespace) and one of its own
  for (const [name, pidMode] of [
    ['shared-pid', NamespaceMode.POD],
    ['own-pid', NamespaceMode.CONTAINER],
  ] as const) {
    const id = await createContainer(d, pod, podCfg, sleeper(name, pidMode));
    await call(d.runtime, 'startContainer', { containerId: id });

    expect((await exec(id, 'cat /proc/self/uid_map')).split(/\s+/)).toEqual(['0', '100000', '65536']);
    expect((await exec(id, 'cat /proc/self/gid_map')).split(/\s+/)).toEqual(['0', '100000', '65536']);
    expect(await exec(id, 'id -u; id -g')).toBe('0\n0');
    expect(
      await exec(id, 'hostname; cat /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_unprivileged_port_start'),
    ).toBe('userns-pod\n1\n0');
    // root in the container is an unprivileged uid on the host
    const pid = await hostPid(id);
    expect(await hostUids(pid)).toBe('100000 100000 100000 100000');

    // the image's files are root's inside; what root writes is 100000's on the host
    expect(await exec(id, 'stat -c %u:%g /bin /etc')).toBe('0:0\n0:0');
    // the pod's own files and /dev/shm are the pod root's too
    expect(await exec(id, 'stat -c %u:%g /etc/hostname /etc/resolv.conf /dev/shm')).toBe('0:0\n0:0\n0:0');
    expect(await exec(id, `echo r > /rootfs-${name} && mkdir -p /etc/made && stat -c %u /rootfs-${name}`)).toBe('0');
    const inRoot = await fs.stat(`/proc/${pid}/root/rootfs-${name}`);
    expect([inRoot.uid, inRoot.gid]).toEqual([100000, 100000]);

    // a plain bind: the container's writes carry the mapped host ids
    expect(await exec(id, `echo p > /plain/${name} && stat -c %u /plain/${name}`)).toBe('0');
    const p = await fs.stat(path.join(plain, name));
    expect([p.uid, p.gid]).toEqual([100000, 100000]);
    // an idmapped bind: the host's root files are the container's root's, both ways
    expect(await exec(id, 'stat -c %u:%g /idm /idm/from-host')).toBe('0:0\n0:0');
    expect(await exec(id, `echo q > /idm/${name} && stat -c %u /idm/${name}`)).toBe('0');
    const q = await fs.stat(path.join(idm, name));
    expect([q.uid, q.gid]).toEqual([0, 0]);
    // read-only stays read-only when idmapped
    expect(await exec(id, `touch /idm-ro/${name}-ro 2>/dev/null; echo $?; cat /idm-ro/from-host`)).toBe('1\nh');
    // a /proc of its PID namespace: the pod's (capsa-pause is pid 1) or its own
    const init = await exec(id, 'cat /proc/1/cmdline | tr "\\0" " "');
    expect(init).toMatch(pidMode === NamespaceMode.POD ? /capsa-pause --pin / : /^sleep 3600/);
  }
  // one user namespace for the pod: both containers in it
  const ids = (await call<{ containers: { id: string }[] }>(d.runtime, 'listContainers', {})).containers.map(
    (c) => c.id,
  );
  const ns = await Promise.all(ids.map(async (id) => fs.readlink(`/proc/${await hostPid(id)}/ns/user`)));
  expect(new Set(ns).size).toBe(1);
  expect(ns[0]).not.toBe(await fs.readlink('/proc/self/ns/user'));

  // a daemon restart re-adopts the pod, its user namespace and its containers
  const toml = await fs.readFile(path.join(d.dir, 'capsa.toml'), 'utf8');
  await d.stop();
  b.d = await startDaemon({ dir: d.dir, toml });
  for (const id of ids) {
    expect((await exec(id, 'cat /proc/self/uid_map')).split(/\s+/)).toEqual(['0', '100000', '65536']);
    expect(await hostUids(await hostPid(id))).toBe('100000 100000 100000 100000');
    // CRI Exec (kubectl exec) too, on a pty of the container's devpts
    for (const tty of [false, true]) {
      const req = { containerId: id, cmd: ['sh', '-c', 'id -u; [ -t 1 ] && echo pty'], tty, stdout: true };
      const { url } = await call<{ url: string }>(b.d.runtime, 'exec', { ...req, stderr: !tty });
      const out = await remoteCommand(url, { stdout: true, stderr: !tty, tty });
      expect(out.stdout.trim().split(/\r?\n/)).toEqual(tty ? ['0', 'pty'] : ['0']);
    }
  }

  await call(b.d.runtime, 'stopPodSandbox', { podSandboxId: pod });
  await call(b.d.runtime, 'removePodSandbox', { podSandboxId: pod });
  // stopBusyboxDaemon checks that no mount, pin, cgroup or capsa- process is left
}, 120_000);

test('bad mappings are refused naming the field; nothing is made', async () => {
  const F = 'config.linux.security_context.namespace_options';
  const bad = async (nso: Record<string, unknown>, details: RegExp): Promise<void> =>
    expectRpcError(runp(b.d, podConfig('userns-bad', nso)), grpc.status.INVALID_ARGUMENT, details);
  const pod = (uids: unknown[], gids: unknown[] = MAP): Record<string, unknown> => ({
    usernsOptions: { mode: NamespaceMode.POD, uids, gids },
  });
  const esc = (s: string): string => s.replace(/[.[\]]/g, '\\$&');

  await bad(
    pod([...MAP, { containerId: 1000, hostId: 300000, length: 10 }]),
    new RegExp(`${esc(`${F}.userns_options.uids[1].container_id`)}: container ids overlap`),
  );
  await bad(
    pod([MAP[0], { containerId: 70000, hostId: 100100, length: 10 }]),
    new RegExp(`${esc(`${F}.userns_options.uids[1].host_id`)}: host ids overlap`),
  );
  await bad(
    pod([{ containerId: 0, hostId: 100000, length: 0 }]),
    new RegExp(`${esc(`${F}.userns_options.uids[0].length`)}`),
  );
  await bad(pod([{ containerId: 0, hostId: 0, length: 65536 }]), /uids\[0\]\.host_id: must not map onto host id 0/);
  await bad(pod([{ containerId: 1, hostId: 100000, length: 10 }]), /userns_options\.uids: must map container id 0/);
  await bad(pod(MAP, []), /userns_options\.gids: must not be empty/);
  await bad(
    pod(Array.from({ length: 341 }, (_, i) => ({ containerId: i, hostId: 100000 + i, length: 1 }))),
    /userns_options\.uids: 341 mappings; the kernel takes at most 340/,
  );
  await bad(
    pod([{ containerId: 0, hostId: 4294967000, length: 65536 }]),
    /uids\[0\]\.length: host ids 4294967000\+65536 pass 2\^32 - 1/,
  );
  await bad(
    { usernsOptions: { mode: NamespaceMode.NODE, uids: MAP, gids: MAP } },
    /userns_options\.uids: mappings are only for mode POD/,
  );
  await bad({ usernsOptions: { mode: NamespaceMode.TARGET } }, /userns_options\.mode: TARGET: only POD and NODE/);
  await bad(
    { network: NamespaceMode.NODE, usernsOptions: USERNS },
    new RegExp(`${esc(`${F}.network`)}: NODE cannot be combined`),
  );
  const pods = (await call<{ items: { metadata: { name: string } }[] }>(b.d.runtime, 'listPodSandbox', {})).items;
  expect(pods.filter((p) => p.metadata.name === 'userns-bad')).toEqual([]);
});

test('a container must share its pod user namespace, with the pod mappings; a volume that cannot be idmapped fails', async () => {
  if (!supported) return;
  const { d } = b;
  const F = 'config.linux.security_context.namespace_options.userns_options';
  const podCfg = podConfig('userns-ctr', { usernsOptions: USERNS });
  const pod = await runp(d, podCfg);
  const ctr = (usernsOptions: unknown, mounts: unknown[] = []): Record<string, unknown> => ({
    metadata: { name: 'c', attempt: 0 },
    image: { image: BUSYBOX_IMAGE },
    mounts,
    linux: { securityContext: { namespaceOptions: { usernsOptions } } },
  });
  const other = [{ containerId: 0, hostId: 200000, length: 65536 }];
  await expectRpcError(
    createContainer(d, pod, podCfg, ctr({ mode: NamespaceMode.POD, uids: other, gids: MAP })),
    grpc.status.INVALID_ARGUMENT,
    new RegExp(`${F.replace(/\./g, '\\.')}\\.uids: must be the pod sandbox's mappings`),
  );
  await expectRpcError(
    createContainer(d, pod, podCfg, ctr({ mode: NamespaceMode.NODE })),
    grpc.status.INVALID_ARGUMENT,
    /userns_options\.mode: NODE: the pod sandbox runs in a user namespace/,
  );
  await expectRpcError(
    createContainer(
      d,
      pod,
      podCfg,
      ctr(USERNS, [{ containerPath: '/x', hostPath: d.dir, uidMappings: other, gidMappings: MAP }]),
    ),
    grpc.status.INVALID_ARGUMENT,
    /config\.mounts\[0\]\.uid_mappings: must be the pod sandbox's uid mappings/,
  );
  await expectRpcError(
    createContainer(
      d,
      pod,
      podCfg,
      ctr(USERNS, [{ containerPath: '/x', hostPath: d.dir, propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }]),
    ),
    grpc.status.INVALID_ARGUMENT,
    /config\.mounts\[0\]\.propagation: BIDIRECTIONAL cannot be used/,
  );
  // sysfs cannot be idmapped: the host's fault, said so, never a plain bind instead
  await expectRpcError(
    createContainer(
      d,
      pod,
      podCfg,
      ctr(USERNS, [
        {
          containerPath: '/k',
          hostPath: '/sys/kernel/mm',
          uidMappings: MAP,
          gidMappings: MAP,
          propagation: MountPropagation.PROPAGATION_PRIVATE,
        },
      ]),
    ),
    grpc.status.FAILED_PRECONDITION,
    /config\.mounts\[0\]: the filesystem of the host path cannot be idmapped .*mount_setattr/,
  );
  const ctrs = (await call<{ containers: { podSandboxId: string }[] }>(d.runtime, 'listContainers', {})).containers;
  expect(ctrs.filter((c) => c.podSandboxId === pod)).toEqual([]);
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: pod });
  await call(d.runtime, 'removePodSandbox', { podSandboxId: pod });
});
