import { FailedPreconditionError } from '../../src/errors';
import { NamespaceMode, UserNamespace } from '../../src/gen/runtime/v1/api';
import { buildNamespaces, type NamespaceInput } from '../../src/cri/container-spec/namespaces';
import { fieldOf } from '../helpers/invalid';

const nsPaths = { net: '/run/capsa/ns/p1/net', ipc: '/run/capsa/ns/p1/ipc', uts: '/run/capsa/ns/p1/uts' };
const base: NamespaceInput = {
  pidMode: NamespaceMode.CONTAINER,
  targetId: '',
  userns: undefined,
  sandbox: { nsPaths, pidNsPath: '/run/capsa/ns/p1/pid', hostNetwork: false, hostIpc: false },
  targetPidNsPath: (id) => (id === 'c-running' ? '/proc/4242/ns/pid' : undefined),
  cgroupNamespace: false,
};
const NS = 'config.linux.security_context.namespace_options';

describe('buildNamespaces', () => {
  const pod = [
    { type: 'network', path: nsPaths.net },
    { type: 'ipc', path: nsPaths.ipc },
    { type: 'uts', path: nsPaths.uts },
    { type: 'mount' },
  ];
  const cases: [string, Partial<NamespaceInput>, object[]][] = [
    ['CONTAINER pid: new', {}, [{ type: 'pid' }, ...pod]],
    [
      'POD pid: the sandbox one',
      { pidMode: NamespaceMode.POD },
      [{ type: 'pid', path: '/run/capsa/ns/p1/pid' }, ...pod],
    ],
    ['NODE pid: the host one (not listed)', { pidMode: NamespaceMode.NODE }, pod],
    [
      'TARGET pid: the target container one',
      { pidMode: NamespaceMode.TARGET, targetId: 'c-running' },
      [{ type: 'pid', path: '/proc/4242/ns/pid' }, ...pod],
    ],
    [
      'host network: no net, no uts',
      { sandbox: { ...base.sandbox, hostNetwork: true } },
      [{ type: 'pid' }, { type: 'ipc', path: nsPaths.ipc }, { type: 'mount' }],
    ],
    [
      'host IPC: no ipc',
      { sandbox: { ...base.sandbox, hostIpc: true } },
      [{ type: 'pid' }, { type: 'network', path: nsPaths.net }, { type: 'uts', path: nsPaths.uts }, { type: 'mount' }],
    ],
    [
      'all host',
      { pidMode: NamespaceMode.NODE, sandbox: { ...base.sandbox, hostIpc: true, hostNetwork: true } },
      [{ type: 'mount' }],
    ],
    ['cgroup namespace (v2)', { cgroupNamespace: true }, [{ type: 'pid' }, ...pod, { type: 'cgroup' }]],
    [
      'userns NODE: none',
      { userns: UserNamespace.fromPartial({ mode: NamespaceMode.NODE }) },
      [{ type: 'pid' }, ...pod],
    ],
  ];
  test.each(cases)('%s', (_name, over, want) => {
    expect(buildNamespaces({ ...base, ...over }).namespaces).toEqual(want);
  });

  const MAP = [{ hostId: 100000, containerId: 0, length: 65536 }];
  const podUserns = {
    nsPaths: { ...nsPaths, user: '/run/capsa/ns/p1/user' },
    userns: {
      uids: [{ containerID: 0, hostID: 100000, size: 65536 }],
      gids: [{ containerID: 0, hostID: 100000, size: 65536 }],
    },
  };
  test.each([
    ['the same mappings', UserNamespace.fromPartial({ mode: NamespaceMode.POD, uids: MAP, gids: MAP })],
    ['no userns_options (the pod decides)', undefined],
  ])('a pod in a user namespace: the container joins it first, with %s', (_name, userns) => {
    const r = buildNamespaces({ ...base, sandbox: { ...base.sandbox, ...podUserns }, userns });
    expect(r.namespaces[0]).toEqual({ type: 'user', path: '/run/capsa/ns/p1/user' });
    expect(r.uidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(r.gidMappings).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
  });

  const errors: [string, Partial<NamespaceInput>, string][] = [
    [
      'POD pid without a shared pid ns',
      { pidMode: NamespaceMode.POD, sandbox: { ...base.sandbox, pidNsPath: undefined } },
      `${NS}.pid`,
    ],
    ['TARGET without target_id', { pidMode: NamespaceMode.TARGET }, `${NS}.target_id`],
    ['TARGET of a container not running', { pidMode: NamespaceMode.TARGET, targetId: 'c-gone' }, `${NS}.target_id`],
    ['unknown pid mode', { pidMode: 9 as NamespaceMode }, `${NS}.pid`],
    [
      'userns POD without a sandbox userns',
      { userns: UserNamespace.fromPartial({ mode: NamespaceMode.POD, uids: MAP, gids: MAP }) },
      `${NS}.userns_options.mode`,
    ],
    [
      'userns POD with other mappings than the pod',
      {
        sandbox: { ...base.sandbox, ...podUserns },
        userns: UserNamespace.fromPartial({
          mode: NamespaceMode.POD,
          uids: [{ hostId: 200000, containerId: 0, length: 65536 }],
          gids: MAP,
        }),
      },
      `${NS}.userns_options.uids`,
    ],
    [
      'userns NODE in a pod with a user namespace',
      { sandbox: { ...base.sandbox, ...podUserns }, userns: UserNamespace.fromPartial({ mode: NamespaceMode.NODE }) },
      `${NS}.userns_options.mode`,
    ],
    [
      'host PID in a pod with a user namespace',
      { sandbox: { ...base.sandbox, ...podUserns }, pidMode: NamespaceMode.NODE },
      `${NS}.pid`,
    ],
    [
      'userns CONTAINER',
      { userns: UserNamespace.fromPartial({ mode: NamespaceMode.CONTAINER }) },
      `${NS}.userns_options.mode`,
    ],
    [
      'userns POD without mappings',
      {
        sandbox: { ...base.sandbox, ...podUserns },
        userns: UserNamespace.fromPartial({ mode: NamespaceMode.POD, uids: [] }),
      },
      `${NS}.userns_options.uids`,
    ],
  ];
  test.each(errors)('error: %s', (_name, over, field) => {
    expect(fieldOf(() => buildNamespaces({ ...base, ...over }))).toBe(field);
  });

  test('a sandbox without its pinned netns is a failed precondition', () => {
    expect(() => buildNamespaces({ ...base, sandbox: { ...base.sandbox, nsPaths: { ipc: '/i', uts: '/u' } } })).toThrow(
      FailedPreconditionError,
    );
  });
});
