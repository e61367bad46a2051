// Resources → systemd unit properties and the file writes systemd cannot
// express (systemd/properties.ts), for cgroup v1 and v2, and the pieces of
// the driver that need no systemd: unit names of cgroup paths, systemd's
// tracking hierarchies in a mountinfo.
import { InvalidArgumentError } from '../../src/errors';
import {
  INFINITY,
  UnitProperty,
  cpuMask,
  maskToList,
  parseMemoryValue,
  quotaPerSecUSec,
  unitResources,
} from '../../src/containerizer/isolators/cgroups/systemd/properties';
import { trackingMounts, unitOf } from '../../src/containerizer/isolators/cgroups/systemd/manager';
import { CgroupResources } from '../../src/containerizer/isolators/cgroups/values';

const FULL: CgroupResources = {
  cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
  memory: { limit: 256 << 20, swap: 512 << 20 },
  pids: { limit: 100 },
  hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }],
};

const props = (p: UnitProperty[]): Record<string, unknown> =>
  Object.fromEntries(p.map((x) => [x.name, Buffer.isBuffer(x.value) ? `mask:${maskToList(x.value)}` : x.value]));

describe('unit properties, cgroup v1', () => {
  test('cpu, memory and pids are properties; cpuset, memsw and hugetlb stay files', () => {
    const r = unitResources(FULL, 1);
    expect(props(r.properties)).toEqual({
      CPUShares: 512n,
      CPUQuotaPeriodUSec: 100000n,
      CPUQuotaPerSecUSec: 500000n,
      MemoryLimit: 256n << 20n,
      TasksMax: 100n,
    });
    expect(r.files).toEqual([
      { controller: 'cpuset', file: 'cpuset.cpus', value: '0-1' },
      { controller: 'cpuset', file: 'cpuset.mems', value: '0' },
      { controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: String(512 << 20), optional: true },
      { controller: 'hugetlb', file: 'hugetlb.2MB.limit_in_bytes', value: String(4 << 20) },
    ]);
  });

  test('shares stay shares (no lossy trip through a weight), clamped as the kernel would', () => {
    expect(props(unitResources({ cpu: { shares: 102 } }, 1).properties)).toEqual({ CPUShares: 102n });
    expect(props(unitResources({ cpu: { shares: 1 } }, 1).properties)).toEqual({ CPUShares: 2n });
  });

  test('unlimited values are systemd infinity; unified pids.max is TasksMax; other unified keys are refused', () => {
    expect(
      props(unitResources({ cpu: { quota: -1 }, memory: { limit: -1 }, pids: { limit: 0 } }, 1).properties),
    ).toEqual({ CPUQuotaPerSecUSec: INFINITY, MemoryLimit: INFINITY, TasksMax: INFINITY });
    expect(props(unitResources({ unified: { 'pids.max': '42' } }, 1).properties)).toEqual({ TasksMax: 42n });
    expect(() => unitResources({ unified: { 'memory.high': '1G' } }, 1)).toThrow(InvalidArgumentError);
  });

  test('devices stay files', () => {
    const r = unitResources({ devices: [{ allow: false, access: 'rwm' }] }, 1);
    expect(r.properties).toEqual([]);
    expect(r.files).toEqual([{ controller: 'devices', file: 'devices.deny', value: 'a *:* rwm' }]);
  });
});

describe('unit properties, cgroup v2', () => {
  test('weight, quota, cpuset masks, memory and swap-only max, pids; hugetlb stays a file', () => {
    const r = unitResources(FULL, 2);
    expect(props(r.properties)).toEqual({
      CPUWeight: 20n,
      CPUQuotaPeriodUSec: 100000n,
      CPUQuotaPerSecUSec: 500000n,
      AllowedCPUs: 'mask:0-1',
      AllowedMemoryNodes: 'mask:0',
      MemoryMax: 256n << 20n,
      MemorySwapMax: 256n << 20n,
      TasksMax: 100n,
    });
    expect(r.files).toEqual([{ controller: 'hugetlb', file: 'hugetlb.2MB.max', value: String(4 << 20) }]);
  });

  test('unified entries win over derived ones and map to properties where systemd has one', () => {
    const r = unitResources(
      {
        memory: { limit: 100 << 20 },
        unified: {
          'memory.max': '200M',
          'memory.high': '150M',
          'memory.low': 'max',
          'cpu.max': '25000 50000',
          'io.weight': 'default 300',
          'pids.max': 'max',
          'memory.oom.group': '1',
          'cpu.idle': '1',
        },
      },
      2,
    );
    expect(props(r.properties)).toEqual({
      MemoryMax: 200n << 20n,
      MemoryHigh: 150n << 20n,
      MemoryLow: INFINITY,
      CPUQuotaPeriodUSec: 50000n,
      CPUQuotaPerSecUSec: 500000n,
      IOWeight: 300n,
      TasksMax: INFINITY,
    });
    expect(r.files).toEqual([
      { controller: 'memory', file: 'memory.oom.group', value: '1' },
      { controller: 'cpu', file: 'cpu.idle', value: '1' },
    ]);
  });

  test('per-device io weights and junk values are refused naming the key', () => {
    expect(() => unitResources({ unified: { 'io.weight': '8:0 100' } }, 2)).toThrow(/unified\[io.weight\]/);
    expect(() => unitResources({ unified: { 'memory.high': 'lots' } }, 2)).toThrow(/unified\[memory.high\]/);
    expect(() => unitResources({ unified: { 'cpu.weight': '-1' } }, 2)).toThrow(/unified\[cpu.weight\]/);
  });
});

describe('conversions', () => {
  test('the quota per second is rounded up so systemd writes the exact quota back', () => {
    for (const [q, p] of [
      [50000, 100000],
      [33333, 70000],
      [1000, 1000000],
      [12345, 99999],
      [250000, 100000],
    ]) {
      const perSec = quotaPerSecUSec(q, p);
      // systemd: cfs_quota_us = CPUQuotaPerSecUSec * period / USEC_PER_SEC (integer division)
      expect((perSec * BigInt(p)) / 1_000_000n).toBe(BigInt(q));
    }
  });

  test('cpu masks: byte i bit j is cpu 8i+j', () => {
    expect([...cpuMask('0')]).toEqual([1]);
    expect([...cpuMask('0-2,9')]).toEqual([0b111, 0b10]);
    expect(maskToList(cpuMask('1,3-5,17'))).toBe('1,3-5,17');
    expect(() => cpuMask('3-1')).toThrow(/reversed/);
  });

  test('memory values: bytes, suffixes, max', () => {
    expect(parseMemoryValue('k', '4096')).toBe(4096n);
    expect(parseMemoryValue('k', '2G')).toBe(2n << 30n);
    expect(parseMemoryValue('k', 'max')).toBe(INFINITY);
  });
});

describe('driver naming', () => {
  test('a cgroup path names a unit when its last component is a slice or scope', () => {
    expect(unitOf('/kubepods.slice/kubepods-pod1.slice')).toBe('kubepods-pod1.slice');
    expect(unitOf('/a.slice/capsa-x.scope')).toBe('capsa-x.scope');
    expect(unitOf('/capsa/capsa-x')).toBeUndefined();
  });

  test("systemd's tracking hierarchies: name=systemd and a hybrid host's cgroup2; none on pure v2", () => {
    const hybrid = [
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n');
    expect(trackingMounts(hybrid, { version: 1, hierarchies: [] })).toEqual([
      '/sys/fs/cgroup/systemd',
      '/sys/fs/cgroup/unified',
    ]);
    expect(
      trackingMounts('30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw', { version: 2, hierarchies: [] }),
    ).toEqual([]);
  });
});
