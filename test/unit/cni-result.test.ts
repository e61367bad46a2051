import { CapsaError } from '../../src/errors';
import { parseResult, selectPodIps, versionAtLeast } from '../../src/network/cni/result';

// As the Debian bridge plugin prints them (1.0.0 and 0.4.0), and as an old 0.2.0 plugin would.
const result100 = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'capsa0', mac: 'aa:bb:cc:dd:ee:01' },
    { name: 'veth1234', mac: 'aa:bb:cc:dd:ee:02' },
    { name: 'eth0', mac: 'aa:bb:cc:dd:ee:03', sandbox: '/run/capsa/ns/capsa-x-net' },
  ],
  ips: [
    { address: 'fd00:88::5/64', gateway: 'fd00:88::1', interface: 2 },
    { address: '10.88.0.5/16', gateway: '10.88.0.1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd00:88::1' }],
  dns: { nameservers: ['10.88.0.1'], search: ['svc.cluster.local'], options: ['ndots:5'] },
};

const result040 = {
  cniVersion: '0.4.0',
  interfaces: [
    { name: 'cni0', mac: 'aa:bb:cc:dd:ee:01' },
    { name: 'eth0', mac: 'aa:bb:cc:dd:ee:03', sandbox: '/var/run/netns/x' },
  ],
  ips: [{ version: '4', address: '10.22.0.7/24', gateway: '10.22.0.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.22.0.1' }],
  dns: {},
};

describe('CNI results', () => {
  test('1.0.0: interfaces, ips, routes, dns; IPv4 first, the rest as additional IPs', () => {
    const r = parseResult(result100);
    expect(r.cniVersion).toBe('1.0.0');
    expect(r.interfaces[2]).toEqual({ name: 'eth0', mac: 'aa:bb:cc:dd:ee:03', sandbox: '/run/capsa/ns/capsa-x-net' });
    expect(r.ips).toEqual([
      { address: 'fd00:88::5/64', gateway: 'fd00:88::1', interface: 2 },
      { address: '10.88.0.5/16', gateway: '10.88.0.1', interface: 2 },
    ]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd00:88::1' }]);
    expect(r.dns).toEqual({ nameservers: ['10.88.0.1'], search: ['svc.cluster.local'], options: ['ndots:5'] });
    expect(selectPodIps(r)).toEqual({ ip: '10.88.0.5', additionalIps: ['fd00:88::5'] });
  });

  test('0.4.0 (with ips[].version) and 0.3.1', () => {
    const r = parseResult(result040);
    expect(r.ips).toEqual([{ address: '10.22.0.7/24', gateway: '10.22.0.1', interface: 1 }]);
    expect(r.dns).toEqual({});
    expect(selectPodIps(r)).toEqual({ ip: '10.22.0.7', additionalIps: [] });
    expect(selectPodIps(parseResult({ ...result040, cniVersion: '0.3.1' })).ip).toBe('10.22.0.7');
  });

  test('only IPs on the sandbox eth0 count; IPv6-only pods get the IPv6 address', () => {
    const r = parseResult({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'br' }, { name: 'eth0', sandbox: '/ns' }, { name: 'net1', sandbox: '/ns' }],
      ips: [
        { address: '10.0.0.1/24', interface: 0 },
        { address: '10.9.0.2/24', interface: 2 },
        { address: 'fd00::7/64', interface: 1 },
      ],
    });
    expect(selectPodIps(r)).toEqual({ ip: 'fd00::7', additionalIps: [] });
    expect(selectPodIps(r, 'net1')).toEqual({ ip: '10.9.0.2', additionalIps: [] });
    // An interface named eth0 on the host side (no sandbox) does not count.
    const host = parseResult({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0' }],
      ips: [{ address: '10.0.0.1/24', interface: 0 }],
    });
    expect(selectPodIps(host)).toEqual({ ip: '', additionalIps: [] });
  });

  test('IPs without an interface index count when none names eth0', () => {
    const r = parseResult({
      cniVersion: '0.3.1',
      ips: [
        { version: '6', address: 'fd00::3/64' },
        { version: '4', address: '10.1.0.3/16' },
      ],
    });
    expect(selectPodIps(r)).toEqual({ ip: '10.1.0.3', additionalIps: ['fd00::3'] });
  });

  test('0.2.0 results (ip4/ip6)', () => {
    const r = parseResult({
      cniVersion: '0.2.0',
      ip4: { ip: '10.5.0.9/16', gateway: '10.5.0.1', routes: [{ dst: '0.0.0.0/0' }] },
      ip6: { ip: 'fd00:5::9/64' },
      dns: { nameservers: ['1.1.1.1'] },
    });
    expect(r.ips).toEqual([{ address: '10.5.0.9/16', gateway: '10.5.0.1' }, { address: 'fd00:5::9/64' }]);
    expect(r.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(selectPodIps(r)).toEqual({ ip: '10.5.0.9', additionalIps: ['fd00:5::9'] });
  });

  test('the version comes from the network config when the result has none', () => {
    expect(parseResult({ ips: [{ address: '10.0.0.2/8' }] }, '0.4.0').cniVersion).toBe('0.4.0');
  });

  test.each([
    [null, /not an object/],
    [{ cniVersion: '2.0.0' }, /unsupported cniVersion/],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1' }] }, /CIDR/],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/33' }] }, /CIDR/],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/8', interface: 0 }] }, /not an index/],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/8', gateway: 'x' }] }, /not an IP/],
    [{ cniVersion: '1.0.0', interfaces: [{ mac: 'x' }] }, /no name/],
    [{ cniVersion: '1.0.0', routes: [{ gw: '10.0.0.1' }] }, /routes\[0\]\.dst/],
    [{ cniVersion: '1.0.0', dns: { nameservers: [1] } }, /nameservers\[0\]/],
    [{ cniVersion: '1.0.0', ips: {} }, /not a list/],
  ])('rejects %j', (raw, msg) => {
    expect(() => parseResult(raw)).toThrow(CapsaError);
    expect(() => parseResult(raw)).toThrow(msg);
  });

  test('versionAtLeast', () => {
    expect(versionAtLeast('1.0.0', '0.4.0')).toBe(true);
    expect(versionAtLeast('0.4.0', '0.4.0')).toBe(true);
    expect(versionAtLeast('0.3.1', '0.4.0')).toBe(false);
    expect(versionAtLeast('0.10.0', '0.4.0')).toBe(true);
  });
});
