import { mkdirSync, mkdtempSync, promises as fs, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../../src/errors';
import {
  ContainerConfig,
  PodSandboxConfig,
  SecurityProfile_ProfileType,
  type DeepPartial,
} from '../../src/gen/runtime/v1/api';
import { buildContainerSpec, DEFAULT_CAPABILITIES, type BuildContainerSpecInput } from '../../src/cri/container-spec';
import {
  CLONE_NAMESPACE_FLAGS,
  defaultSeccompProfile,
  MAX_PROFILE_BYTES,
  parseProfile,
  readProfileFile,
  resolveSeccomp,
  type SeccompSpec,
} from '../../src/cri/seccomp';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-seccomp-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

/** Every name a profile allows without argument conditions. */
function allowed(spec: SeccompSpec): Set<string> {
  return new Set(spec.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names));
}

function rulesFor(spec: SeccompSpec, name: string) {
  return spec.syscalls.filter((s) => s.names.includes(name));
}

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<InvalidArgumentError> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('defaultSeccompProfile', () => {
  const plain = defaultSeccompProfile(DEFAULT_CAPABILITIES, 'x64');

  test('an allowlist: EPERM for the rest, x86_64 with its 32-bit ABIs', () => {
    expect(plain.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(plain.defaultErrnoRet).toBe(1);
    expect(plain.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const ok = allowed(plain);
    for (const n of ['read', 'write', 'openat', 'execve', 'exit_group', 'futex', 'rt_sigreturn', 'chmod', 'fchmodat']) {
      expect(ok.has(n)).toBe(true);
    }
    expect(ok.has('arch_prctl')).toBe(true);
    expect(ok.size).toBeGreaterThan(300);
  });

  test('without CAP_SYS_ADMIN: no mount, unshare, setns, sethostname, bpf; io_uring never', () => {
    for (const n of ['mount', 'umount2', 'unshare', 'setns', 'sethostname', 'setdomainname', 'bpf', 'reboot']) {
      expect(rulesFor(plain, n)).toEqual([]);
    }
    for (const n of ['io_uring_setup', 'io_uring_enter', 'io_uring_register', 'kexec_load', 'open_by_handle_at']) {
      expect(rulesFor(plain, n)).toEqual([]);
    }
  });

  test('without CAP_SYS_ADMIN: clone only without namespace flags, clone3 gets ENOSYS', () => {
    expect(rulesFor(plain, 'clone')).toEqual([
      {
        names: ['clone'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ]);
    expect(rulesFor(plain, 'clone3')).toEqual([{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
  });

  test('socket: anything but AF_VSOCK; personality: a few personas only', () => {
    expect(rulesFor(plain, 'socket')).toEqual([
      { names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }] },
    ]);
    expect(rulesFor(plain, 'personality').map((r) => r.args?.[0].value)).toEqual([0, 8, 0x20000, 0x20008, 0xffffffff]);
  });

  test('CAP_SYS_ADMIN unlocks mount, unshare, sethostname, clone and clone3', () => {
    const admin = defaultSeccompProfile([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'], 'x64');
    const ok = allowed(admin);
    for (const n of ['mount', 'umount2', 'unshare', 'setns', 'sethostname', 'clone', 'clone3', 'syslog']) {
      expect(ok.has(n)).toBe(true);
    }
    expect(rulesFor(admin, 'clone3')).toEqual([expect.objectContaining({ action: 'SCMP_ACT_ALLOW' })]);
    expect(rulesFor(admin, 'clone').some((r) => r.args)).toBe(false);
  });

  test('other capabilities: ptrace family, time, modules, boot, chroot (names with or without CAP_)', () => {
    const ok = allowed(
      defaultSeccompProfile(['SYS_PTRACE', 'cap_sys_time', 'CAP_SYS_MODULE', 'CAP_SYS_BOOT', 'CAP_SYS_CHROOT'], 'x64'),
    );
    for (const n of ['kcmp', 'pidfd_getfd', 'clock_settime', 'settimeofday', 'init_module', 'reboot', 'chroot']) {
      expect(ok.has(n)).toBe(true);
    }
    expect(allowed(plain).has('chroot')).toBe(true); // CAP_SYS_CHROOT is in the default set
    expect(allowed(defaultSeccompProfile([], 'x64')).has('chroot')).toBe(false);
  });

  test('architecture-specific calls and the s390 clone argument', () => {
    const arm = defaultSeccompProfile(DEFAULT_CAPABILITIES, 'arm64');
    expect(arm.architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    expect(allowed(arm).has('set_tls')).toBe(true);
    expect(allowed(arm).has('arch_prctl')).toBe(false);
    const s390 = defaultSeccompProfile(DEFAULT_CAPABILITIES, 's390x');
    expect(rulesFor(s390, 'clone')[0].args?.[0].index).toBe(1);
  });

  test('no name twice in the unconditional group; JSON-clean', () => {
    const first = plain.syscalls[0].names;
    expect(new Set(first).size).toBe(first.length);
    expect(JSON.parse(JSON.stringify(plain))).toEqual(plain);
  });
});

describe('parseProfile (Localhost, Docker/containerd format)', () => {
  const ctx = { where: 'f (/p.json)', capabilities: DEFAULT_CAPABILITIES, arch: 'x64', kernel: '6.1.0-18-amd64' };

  test("critest's block-chmod profile", () => {
    const spec = parseProfile(
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]}',
      ctx,
    );
    expect(spec).toEqual({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: [],
      syscalls: [{ names: ['chmod', 'fchmodat'], action: 'SCMP_ACT_ERRNO' }],
    });
  });

  test('name, errnoRet, args, flags, defaultErrnoRet', () => {
    const spec = parseProfile(
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrnoRet: 38,
        architectures: ['SCMP_ARCH_X86_64'],
        flags: ['SECCOMP_FILTER_FLAG_LOG'],
        syscalls: [
          { name: 'read', action: 'SCMP_ACT_ALLOW', comment: 'ignored' },
          {
            names: ['personality'],
            action: 'SCMP_ACT_ALLOW',
            args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }],
          },
          { names: ['kill'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
          {
            names: ['x'],
            action: 'SCMP_ACT_LOG',
            args: [{ index: 1, value: 3, valueTwo: 1, op: 'SCMP_CMP_MASKED_EQ' }],
          },
        ],
      }),
      ctx,
    );
    expect(spec).toEqual({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      architectures: ['SCMP_ARCH_X86_64'],
      flags: ['SECCOMP_FILTER_FLAG_LOG'],
      syscalls: [
        { names: ['read'], action: 'SCMP_ACT_ALLOW' },
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
        { names: ['kill'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
        { names: ['x'], action: 'SCMP_ACT_LOG', args: [{ index: 1, value: 3, valueTwo: 1, op: 'SCMP_CMP_MASKED_EQ' }] },
      ],
    });
  });

  test('includes/excludes: capabilities, architectures, minKernel; archMap picks the native entry', () => {
    const spec = parseProfile(
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ERRNO',
        archMap: [
          { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
          { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] },
        ],
        syscalls: [
          { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
          { names: ['chown'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_CHOWN'] } },
          { names: ['clone'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN'] } },
          { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64'] } },
          { names: ['set_tls'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm64'] } },
          { names: ['modify_ldt'], action: 'SCMP_ACT_ALLOW', excludes: { arches: ['amd64'] } },
          { names: ['ptrace'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4.8' } },
          { names: ['future'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '9.0' } },
        ],
      }),
      ctx,
    )!;
    expect(spec.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    expect(spec.syscalls.flatMap((s) => s.names)).toEqual(['chown', 'clone', 'arch_prctl', 'ptrace']);
  });

  test('a profile with neither defaultAction nor syscalls means no filter', () => {
    expect(parseProfile('{}', ctx)).toBeUndefined();
  });

  test.each([
    ['not JSON', '{', 'not valid JSON'],
    ['not an object', '[]', 'expected a JSON object'],
    ['unknown action', '{"defaultAction":"SCMP_ACT_MAYBE"}', 'defaultAction: unknown action "SCMP_ACT_MAYBE"'],
    ['notify', '{"defaultAction":"SCMP_ACT_NOTIFY"}', 'SCMP_ACT_NOTIFY is not supported'],
    ['no default with rules', '{"syscalls":[{"names":["a"],"action":"SCMP_ACT_ALLOW"}]}', 'defaultAction'],
    [
      'bad op',
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}',
      'syscalls[0].args[0].op',
    ],
    [
      'arg index',
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}',
      'syscalls[0].args[0].index',
    ],
    [
      'huge value',
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}',
      'value',
    ],
    [
      'errno range',
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}',
      'errnoRet',
    ],
    ['no names', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}', 'must name syscalls'],
    [
      'name and names',
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}',
      "use either 'name' or 'names'",
    ],
    [
      'unknown arch',
      '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}',
      'unknown architecture SCMP_ARCH_VAX',
    ],
    [
      'both arch forms',
      '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}',
      "use either 'architectures' or 'archMap'",
    ],
    [
      'unknown flag',
      '{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}',
      'unsupported flag',
    ],
    ['listener', '{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/x.sock"}', 'notify is not supported'],
  ])('refuses %s', async (_n, text, msg) => {
    const err = await errorOf(() => parseProfile(text, ctx));
    expect(err.context.field).toBe('f (/p.json)');
    expect(err.message).toContain(msg);
  });
});

describe('resolveSeccomp', () => {
  const base = {
    field: 'config.linux.security_context.seccomp_profile_path',
    capabilities: DEFAULT_CAPABILITIES,
    privileged: false,
    arch: 'x64',
  };

  test('Unconfined and privileged: no filter; RuntimeDefault: the default profile', async () => {
    expect(await resolveSeccomp({ ...base, profile: { type: 'Unconfined' } })).toBeUndefined();
    expect(await resolveSeccomp({ ...base, privileged: true, profile: { type: 'RuntimeDefault' } })).toBeUndefined();
    expect(await resolveSeccomp({ ...base, profile: { type: 'RuntimeDefault' } })).toEqual(
      defaultSeccompProfile(DEFAULT_CAPABILITIES, 'x64'),
    );
  });

  test('Localhost: reads and parses the host file', async () => {
    const file = path.join(tmp, 'block-hostname.json');
    writeFileSync(
      file,
      '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}',
    );
    expect(await resolveSeccomp({ ...base, profile: { type: 'Localhost', localhostRef: file } })).toEqual({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: [],
      syscalls: [{ names: ['sethostname'], action: 'SCMP_ACT_ERRNO' }],
    });
  });

  test('Localhost: a missing file or a relative path is an InvalidArgument naming the field and the path', async () => {
    const missing = path.join(tmp, 'nope.json');
    const err = await errorOf(resolveSeccomp({ ...base, profile: { type: 'Localhost', localhostRef: missing } }));
    expect(err.context.field).toBe(base.field);
    expect(err.message).toContain(missing);
    expect(err.message).toContain('does not exist');
    const rel = await errorOf(resolveSeccomp({ ...base, profile: { type: 'Localhost', localhostRef: 'p.json' } }));
    expect(rel.message).toContain('not an absolute path');
  });

  test('Localhost: a reader failure is an InvalidArgument too', async () => {
    const err = await errorOf(
      resolveSeccomp({
        ...base,
        profile: { type: 'Localhost', localhostRef: '/x.json' },
        readProfile: () => Promise.reject(new Error('EACCES')),
      }),
    );
    expect(err.message).toContain('cannot read seccomp profile /x.json: EACCES');
  });
});

describe('readProfileFile', () => {
  test('reads a file, undefined when missing, refuses a directory and an oversized file', async () => {
    const ok = path.join(tmp, 'ok.json');
    writeFileSync(ok, '{}');
    expect((await readProfileFile(ok))?.toString()).toBe('{}');
    expect(await readProfileFile(path.join(tmp, 'missing.json'))).toBeUndefined();
    mkdirSync(path.join(tmp, 'dir'));
    await expect(readProfileFile(path.join(tmp, 'dir'))).rejects.toThrow('not a regular file');
    const big = path.join(tmp, 'big.json');
    writeFileSync(big, Buffer.alloc(MAX_PROFILE_BYTES + 1, 0x20));
    await expect(readProfileFile(big)).rejects.toThrow(`larger than ${MAX_PROFILE_BYTES} bytes`);
  });
});

describe('buildContainerSpec wiring', () => {
  const rootfs = path.join(tmp, 'rootfs');
  mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\n');
  const input = (
    sc: DeepPartial<NonNullable<ContainerConfig['linux']>['securityContext']>,
    privileged = false,
    over: Partial<BuildContainerSpecInput> = {},
  ): BuildContainerSpecInput => ({
    config: ContainerConfig.fromPartial({
      metadata: { name: 'c', attempt: 0 },
      image: { image: 'sha256:1' },
      command: ['sleep', '1'],
      linux: { securityContext: sc },
    }),
    sandboxConfig: PodSandboxConfig.fromPartial({
      metadata: { name: 'pod', namespace: 'ns', uid: 'u', attempt: 0 },
      linux: { securityContext: { privileged } },
    }),
    imageConfig: { config: {} },
    sandbox: {
      nsPaths: { net: '/run/n', ipc: '/run/i', uts: '/run/u' },
      pidNsPath: '/proc/1/ns/pid',
      shmPath: '/run/shm',
      hostsPath: '/h',
      resolvPath: '/r',
      hostnamePath: '/hn',
      hostNetwork: false,
      hostIpc: false,
      hostPid: false,
      cgroupParent: '/kubepods',
    },
    rootfsPath: rootfs,
    containerId: 'b'.repeat(64),
    volumesRoot: '/v',
    daemonOomScoreAdj: 0,
    daemonNofile: { soft: 1024, hard: 1024 },
    nodeHostname: 'node',
    io: { pathExists: () => Promise.resolve(false), statDevice: () => Promise.resolve(undefined) },
    ...over,
  });

  test('unset: no filter (CRI default Unconfined)', async () => {
    const { spec } = await buildContainerSpec(input({}));
    expect(spec.linux.seccomp).toBeUndefined();
    expect(spec.capsa.seccomp).toEqual({ type: 'Unconfined' });
  });

  test('docker/default with SYS_ADMIN added: the default profile resolved against the effective set', async () => {
    const { spec } = await buildContainerSpec(
      input({ seccompProfilePath: 'docker/default', capabilities: { addCapabilities: ['SYS_ADMIN'] } }),
    );
    expect(spec.linux.seccomp).toEqual(defaultSeccompProfile(spec.process.capabilities.effective));
    expect(allowed(spec.linux.seccomp!).has('sethostname')).toBe(true);
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
  });

  test('privileged ignores a Localhost profile', async () => {
    const { spec } = await buildContainerSpec(input({ privileged: true, seccompProfilePath: 'localhost/nope' }, true));
    expect(spec.linux.seccomp).toBeUndefined();
  });

  test('a missing Localhost file fails with the field used (structured or deprecated)', async () => {
    const missing = path.join(tmp, 'absent.json');
    const viaPath = await errorOf(buildContainerSpec(input({ seccompProfilePath: `localhost/${missing}` })));
    expect(viaPath.context.field).toBe('config.linux.security_context.seccomp_profile_path');
    expect(viaPath.message).toContain(missing);
    const viaProfile = await errorOf(
      buildContainerSpec(
        input({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: missing } }),
      ),
    );
    expect(viaProfile.context.field).toBe('config.linux.security_context.seccomp.localhost_ref');
  });

  test('the io reader is used when given', async () => {
    const { spec } = await buildContainerSpec(
      input({ seccompProfilePath: 'localhost//virtual.json' }, false, {
        io: {
          pathExists: () => Promise.resolve(false),
          statDevice: () => Promise.resolve(undefined),
          readSeccompProfile: () => Promise.resolve(Buffer.from('{"defaultAction":"SCMP_ACT_LOG"}')),
        },
      }),
    );
    expect(spec.linux.seccomp).toEqual({ defaultAction: 'SCMP_ACT_LOG', architectures: [], syscalls: [] });
  });
});
