import { InvalidArgumentError } from '../../src/errors';
import { Capability } from '../../src/gen/runtime/v1/api';
import {
  ALL_CAPABILITIES,
  buildCapabilities,
  DEFAULT_CAPABILITIES,
  DEFAULT_CAP_LAST_CAP,
} from '../../src/cri/container-spec/capabilities';

const caps = (add: string[] = [], drop: string[] = [], ambient: string[] = []): Capability =>
  Capability.fromPartial({ addCapabilities: add, dropCapabilities: drop, addAmbientCapabilities: ambient });
const sorted = (list: readonly string[]): string[] => ALL_CAPABILITIES.filter((c) => list.includes(c));
const F = 'config.linux.security_context.capabilities';

describe('buildCapabilities', () => {
  const cases: [string, Capability | undefined, string[]][] = [
    ['no capabilities message: the default set', undefined, sorted(DEFAULT_CAPABILITIES)],
    ['add by short name', caps(['NET_ADMIN']), sorted([...DEFAULT_CAPABILITIES, 'CAP_NET_ADMIN'])],
    ['add lower case with prefix', caps(['cap_sys_time']), sorted([...DEFAULT_CAPABILITIES, 'CAP_SYS_TIME'])],
    [
      'drop',
      caps([], ['CHOWN', 'CAP_KILL']),
      sorted(DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN' && c !== 'CAP_KILL')),
    ],
    ['add ALL', caps(['ALL']), [...ALL_CAPABILITIES]],
    ['add ALL, drop one', caps(['ALL'], ['CHOWN']), ALL_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN')],
    ['drop ALL', caps([], ['ALL']), []],
    ['drop ALL, add one (named adds come after ALL)', caps(['NET_BIND_SERVICE'], ['all']), ['CAP_NET_BIND_SERVICE']],
    ['add ALL and drop ALL: nothing', caps(['ALL'], ['ALL']), []],
    ['add and drop the same: dropped', caps(['SYS_ADMIN'], ['SYS_ADMIN']), sorted(DEFAULT_CAPABILITIES)],
  ];
  test.each(cases)('%s', (_name, c, want) => {
    const { sets } = buildCapabilities({ capabilities: c, privileged: false, capLastCap: DEFAULT_CAP_LAST_CAP });
    expect(sets.bounding).toEqual(want);
    expect(sets.effective).toEqual(want);
    expect(sets.permitted).toEqual(want);
    expect(sets.inheritable).toEqual([]);
    expect(sets.ambient).toEqual([]);
  });

  test("the default set is containerd's", () => {
    expect(sorted(DEFAULT_CAPABILITIES)).toEqual(
      sorted([
        'CAP_CHOWN',
        'CAP_DAC_OVERRIDE',
        'CAP_FSETID',
        'CAP_FOWNER',
        'CAP_MKNOD',
        'CAP_NET_RAW',
        'CAP_SETGID',
        'CAP_SETUID',
        'CAP_SETFCAP',
        'CAP_SETPCAP',
        'CAP_NET_BIND_SERVICE',
        'CAP_SYS_CHROOT',
        'CAP_KILL',
        'CAP_AUDIT_WRITE',
      ]),
    );
  });

  test('privileged: every capability the kernel knows, add/drop ignored', () => {
    const { sets } = buildCapabilities({ capabilities: caps([], ['ALL']), privileged: true, capLastCap: 37 });
    expect(sets.bounding).toEqual(ALL_CAPABILITIES.slice(0, 38));
    expect(sets.inheritable).toEqual([]);
  });

  test('ambient capabilities are also inheritable and permitted', () => {
    const { sets } = buildCapabilities({
      capabilities: caps([], ['ALL'], ['NET_BIND_SERVICE']),
      privileged: false,
      capLastCap: DEFAULT_CAP_LAST_CAP,
    });
    expect(sets).toEqual({
      bounding: ['CAP_NET_BIND_SERVICE'],
      effective: ['CAP_NET_BIND_SERVICE'],
      permitted: ['CAP_NET_BIND_SERVICE'],
      inheritable: ['CAP_NET_BIND_SERVICE'],
      ambient: ['CAP_NET_BIND_SERVICE'],
    });
  });

  test('capabilities the kernel lacks are left out with a warning', () => {
    const r = buildCapabilities({ capabilities: caps(['ALL', 'BPF']), privileged: false, capLastCap: 37 });
    expect(r.sets.bounding).toEqual(ALL_CAPABILITIES.slice(0, 38));
    expect(r.warnings).toEqual(['CAP_BPF is not supported by this kernel; left out']);
  });

  const errors: [string, Capability, string][] = [
    ['unknown add', caps(['NET_ADMIN', 'FLY']), `${F}.add_capabilities[1]`],
    ['unknown drop', caps([], ['CAP_NOPE']), `${F}.drop_capabilities[0]`],
    ['unknown ambient', caps([], [], ['X']), `${F}.add_ambient_capabilities[0]`],
    ['empty name', caps(['']), `${F}.add_capabilities[0]`],
  ];
  test.each(errors)('error: %s', (_name, c, field) => {
    try {
      buildCapabilities({ capabilities: c, privileged: false, capLastCap: DEFAULT_CAP_LAST_CAP });
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).context.field).toBe(field);
      return;
    }
    throw new Error('expected an InvalidArgumentError');
  });
});
