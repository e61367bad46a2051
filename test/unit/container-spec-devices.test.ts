import { Device } from '../../src/gen/runtime/v1/api';
import { buildDevices, DEFAULT_DEVICE_RULES, type DevicesInput } from '../../src/cri/container-spec/devices';
import { splitDev, statHostDevice } from '../../src/cri/container-spec/host-io';
import type { HostDevice } from '../../src/cri/container-spec/types';
import { fieldOfAsync as fieldOf } from '../helpers/invalid';

const hostDevs: Record<string, HostDevice> = {
  '/dev/fuse': { path: '/dev/fuse', type: 'c', major: 10, minor: 229, mode: 0o666, uid: 0, gid: 0 },
  '/dev/sda': { path: '/dev/sda', type: 'b', major: 8, minor: 0, mode: 0o660, uid: 0, gid: 6 },
};
const base: DevicesInput = {
  devices: [],
  privileged: false,
  devReplaced: false,
  statDevice: (p) => Promise.resolve(hostDevs[p]),
};
const dev = (hostPath: string, containerPath = '', permissions = ''): Device =>
  Device.fromPartial({ hostPath, containerPath, permissions });

describe('buildDevices', () => {
  test('no devices: the monitor makes the defaults; cgroup denies all but them', async () => {
    const r = await buildDevices(base);
    expect(r.devices).toEqual([]);
    expect(r.rules).toEqual(DEFAULT_DEVICE_RULES);
    expect(r.rules[0]).toEqual({ allow: false, access: 'rwm' });
    expect(r.rules).toContainEqual({ allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' });
    expect(r.rules).toContainEqual({ allow: true, type: 'c', major: 136, access: 'rwm' });
  });

  test('CRI devices: node with the host mode/owner, allowed with their permissions', async () => {
    const r = await buildDevices({ ...base, devices: [dev('/dev/fuse'), dev('/dev/sda', '/dev/xvda', 'rw')] });
    expect(r.devices).toEqual([
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
      { path: '/dev/xvda', type: 'b', major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 },
    ]);
    expect(r.rules.slice(-2)).toEqual([
      { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
      { allow: true, type: 'b', major: 8, minor: 0, access: 'rw' },
    ]);
  });

  test('privileged: all host devices, cgroup allows all', async () => {
    const r = await buildDevices({
      ...base,
      privileged: true,
      devices: [dev('/dev/fuse', '/dev/fuse2')],
      listHostDevices: () => Promise.resolve(Object.values(hostDevs)),
    });
    expect(r.rules).toEqual([{ allow: true, access: 'rwm' }]);
    expect(r.devices.map((d) => d.path)).toEqual(['/dev/fuse', '/dev/sda', '/dev/fuse2']);
  });

  test('privileged with /dev replaced: no host device list', async () => {
    const r = await buildDevices({
      ...base,
      privileged: true,
      devReplaced: true,
      listHostDevices: () => Promise.resolve(Object.values(hostDevs)),
    });
    expect(r.devices).toEqual([]);
  });

  const F = 'config.devices[1]';
  const errors: [string, Device[], string][] = [
    ['not a device node', [dev('/dev/fuse'), dev('/etc/passwd')], `${F}.host_path`],
    ['missing host path', [dev('/dev/fuse'), dev('/dev/nope')], `${F}.host_path`],
    ['relative host path', [dev('/dev/fuse'), dev('dev/sda')], `${F}.host_path`],
    ['container path outside /dev', [dev('/dev/fuse'), dev('/dev/sda', '/mnt/sda')], `${F}.container_path`],
    ['container path /dev itself', [dev('/dev/fuse'), dev('/dev/sda', '/dev/')], `${F}.container_path`],
    ['relative container path', [dev('/dev/fuse'), dev('/dev/sda', 'sda')], `${F}.container_path`],
    ['same container path twice', [dev('/dev/fuse'), dev('/dev/sda', '/dev/fuse')], `${F}.container_path`],
    ['bad permissions', [dev('/dev/fuse'), dev('/dev/sda', '', 'rwx')], `${F}.permissions`],
    ['repeated permission', [dev('/dev/fuse'), dev('/dev/sda', '', 'rr')], `${F}.permissions`],
  ];
  test.each(errors)('error: %s', async (_name, devices, field) => {
    expect(await fieldOf(buildDevices({ ...base, devices }))).toBe(field);
  });
});

// glibc's makedev.
const makedev = (major: bigint, minor: bigint): bigint =>
  ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);

describe('host device helpers', () => {
  test.each([
    [0x0103n, 1, 3],
    [0x0800n, 8, 0],
    [(259n << 8n) | 0x5n, 259, 5],
    [makedev(0x1234abcn, 0x5678n), 0x1234abc, 0x5678],
    [makedev(4095n, 1048575n), 4095, 1048575],
  ])('splitDev(%s) = %i:%i', (dev, major, minor) => {
    expect(splitDev(dev as bigint)).toEqual({ major, minor });
  });

  test('statHostDevice: /dev/null is c 1:3, a file or a missing path is not a device', async () => {
    expect(await statHostDevice('/dev/null')).toMatchObject({ type: 'c', major: 1, minor: 3 });
    expect(await statHostDevice('/etc/hostname')).toBeUndefined();
    expect(await statHostDevice('/no/such/dev')).toBeUndefined();
  });
});
