import { InvalidArgumentError } from '../../src/errors';
import { LinuxContainerSecurityContext, SecurityProfile_ProfileType } from '../../src/gen/runtime/v1/api';
import {
  buildRlimits,
  checkPrivileged,
  oomScoreAdj,
  securityProfiles,
  workingDir,
} from '../../src/cri/container-spec/linux';
import { fieldOf } from '../helpers/invalid';

describe('oomScoreAdj', () => {
  test.each([
    [1000n, -999, false, 1000],
    [-998n, -999, false, -998],
    [-1000n, -500, false, -1000],
    [-1000n, -500, true, -500],
    [100n, -500, true, 100],
    [0n, 0, true, 0],
  ])('requested %s, daemon %i, restricted %s → %i', (req, daemon, restrict, want) => {
    expect(oomScoreAdj(req, daemon, restrict)).toBe(want);
  });
  test.each([[1001n], [-1001n], [1n << 40n]])('%s is refused', (v) => {
    expect(fieldOf(() => oomScoreAdj(v, 0, false))).toBe('config.linux.resources.oom_score_adj');
  });
});

describe('workingDir', () => {
  test.each([
    ['', undefined, '/'],
    ['', '', '/'],
    ['', '/app', '/app'],
    ['', 'app/', '/app/'],
    ['/work', '/app', '/work'],
    ['/a/../b', '/app', '/b'],
  ])('CRI %j, image %j → %s', (cri, image, want) => {
    expect(workingDir(cri, image)).toBe(want);
  });
  test.each([
    ['relative', 'work', undefined, 'config.working_dir'],
    ['NUL', '/w\0', undefined, 'config.working_dir'],
    ['image not a string', '', 5, 'config.image'],
  ])('error: %s', (_n, cri, image, field) => {
    expect(fieldOf(() => workingDir(cri, image))).toBe(field);
  });
});

describe('rlimits and privilege', () => {
  test('RLIMIT_NOFILE from the daemon', () => {
    expect(buildRlimits({ soft: 1024, hard: 524288 })).toEqual([{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 524288 }]);
    expect(() => buildRlimits({ soft: 10, hard: 5 })).toThrow(InvalidArgumentError);
  });
  test('a privileged container needs a privileged sandbox', () => {
    expect(checkPrivileged(true, true)).toBe(true);
    expect(checkPrivileged(false, false)).toBe(false);
    expect(fieldOf(() => checkPrivileged(true, false))).toBe('config.linux.security_context.privileged');
  });
});

describe('securityProfiles (recorded, not enforced)', () => {
  const sc = (over: Partial<LinuxContainerSecurityContext>): LinuxContainerSecurityContext =>
    LinuxContainerSecurityContext.fromPartial(over);
  test.each([
    ['unset: seccomp Unconfined, AppArmor RuntimeDefault', sc({}), { type: 'Unconfined' }, { type: 'RuntimeDefault' }],
    ['no security context', undefined, { type: 'Unconfined' }, { type: 'RuntimeDefault' }],
    [
      'structured',
      sc({
        seccomp: {
          profileType: SecurityProfile_ProfileType.Localhost,
          localhostRef: '/var/lib/kubelet/seccomp/x.json',
        },
        apparmor: { profileType: SecurityProfile_ProfileType.Unconfined, localhostRef: '' },
      }),
      { type: 'Localhost', localhostRef: '/var/lib/kubelet/seccomp/x.json' },
      { type: 'Unconfined' },
    ],
    [
      'deprecated strings',
      sc({ seccompProfilePath: 'runtime/default', apparmorProfile: 'localhost/my-profile' }),
      { type: 'RuntimeDefault' },
      { type: 'Localhost', localhostRef: 'my-profile' },
    ],
    [
      'docker/default',
      sc({ seccompProfilePath: 'docker/default', apparmorProfile: 'unconfined' }),
      { type: 'RuntimeDefault' },
      { type: 'Unconfined' },
    ],
  ])('%s', (_n, ctx, seccomp, apparmor) => {
    expect(securityProfiles(ctx, false)).toEqual({ seccomp, apparmor });
  });
  test('privileged: unconfined', () => {
    expect(securityProfiles(sc({ seccompProfilePath: 'runtime/default' }), true)).toEqual({
      seccomp: { type: 'Unconfined' },
      apparmor: { type: 'Unconfined' },
    });
  });
  const F = 'config.linux.security_context';
  test.each([
    [
      'Localhost seccomp without ref',
      sc({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: '' } }),
      `${F}.seccomp.localhost_ref`,
    ],
    [
      'relative seccomp ref',
      sc({ seccomp: { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: 'x.json' } }),
      `${F}.seccomp.localhost_ref`,
    ],
    [
      'unknown profile type',
      sc({ apparmor: { profileType: 7 as SecurityProfile_ProfileType, localhostRef: '' } }),
      `${F}.apparmor.profile_type`,
    ],
    ['unknown seccomp string', sc({ seccompProfilePath: 'strict' }), `${F}.seccomp_profile_path`],
    ['bare localhost/', sc({ apparmorProfile: 'localhost/' }), `${F}.apparmor_profile`],
  ])('error: %s', (_n, ctx, field) => {
    expect(fieldOf(() => securityProfiles(ctx, false))).toBe(field);
  });
});
