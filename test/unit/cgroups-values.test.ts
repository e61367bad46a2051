// Resources → cgroup v1 and v2 files (v2 cannot run on this v1 machine:
// its file names and values are pinned here), validation of absurd values,
// and the v2 manager's directory/subtree_control handling on a fake tree.
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../../src/errors';
import { createLogger } from '../../src/log';
import { CgroupManager } from '../../src/containerizer/isolators/cgroups/manager';
import {
  CgroupResources,
  parseCpuList,
  sharesToWeight,
  v1Writes,
  v2ControllersFor,
  v2Writes,
  validateResources,
} from '../../src/containerizer/isolators/cgroups/values';

const FULL: CgroupResources = {
  cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0-1', mems: '0' },
  memory: { limit: 256 * 1024 * 1024, swap: 512 * 1024 * 1024 },
  pids: { limit: 100 },
  hugepageLimits: [{ pageSize: '2MB', limit: 4 * 1024 * 1024 }],
};

describe('cgroup v1 writes', () => {
  test('every resource, period before quota, memory before memsw', () => {
    expect(v1Writes(FULL)).toEqual([
      { controller: 'cpu', file: 'cpu.shares', value: '512' },
      { controller: 'cpu', file: 'cpu.cfs_period_us', value: '100000' },
      { controller: 'cpu', file: 'cpu.cfs_quota_us', value: '50000' },
      { controller: 'cpuset', file: 'cpuset.cpus', value: '0-1' },
      { controller: 'cpuset', file: 'cpuset.mems', value: '0' },
      { controller: 'memory', file: 'memory.limit_in_bytes', value: '268435456' },
      { controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: '536870912', optional: true },
      { controller: 'pids', file: 'pids.max', value: '100' },
      { controller: 'hugetlb', file: 'hugetlb.2MB.limit_in_bytes', value: '4194304' },
    ]);
  });

  test('unset (0) writes nothing; -1 is unlimited; shares are clamped like the kernel', () => {
    expect(v1Writes({ cpu: { shares: 0, quota: 0, period: 0 }, memory: { limit: 0 } })).toEqual([]);
    expect(v1Writes({ cpu: { quota: -1 }, memory: { limit: -1 }, pids: { limit: 0 } })).toEqual([
      { controller: 'cpu', file: 'cpu.cfs_quota_us', value: '-1' },
      { controller: 'memory', file: 'memory.limit_in_bytes', value: '-1' },
      { controller: 'pids', file: 'pids.max', value: 'max' },
    ]);
    expect(v1Writes({ cpu: { shares: 1 } })[0].value).toBe('2');
    expect(v1Writes({ cpu: { shares: 10_000_000 } })[0].value).toBe('262144');
  });

  test('unified: pids.max is translated, other v2 files are refused', () => {
    expect(v1Writes({ unified: { 'pids.max': '42' } })).toEqual([
      { controller: 'pids', file: 'pids.max', value: '42' },
    ]);
    expect(() => v1Writes({ unified: { 'memory.high': '1G' } })).toThrow(InvalidArgumentError);
  });

  test('device rules', () => {
    expect(
      v1Writes({
        devices: [
          { allow: false, access: 'rwm' },
          { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
          { allow: true, type: 'c', major: 136, access: 'rw' },
        ],
      }).map((w) => `${w.file} ${w.value}`),
    ).toEqual(['devices.deny a *:* rwm', 'devices.allow c 1:3 rwm', 'devices.allow c 136:* rw']);
  });
});

describe('cgroup v2 writes', () => {
  test('every resource with v2 names and values', () => {
    expect(v2Writes(FULL)).toEqual([
      { controller: 'cpu', file: 'cpu.weight', value: '20' },
      { controller: 'cpu', file: 'cpu.max', value: '50000 100000' },
      { controller: 'cpuset', file: 'cpuset.cpus', value: '0-1' },
      { controller: 'cpuset', file: 'cpuset.mems', value: '0' },
      { controller: 'memory', file: 'memory.max', value: '268435456' },
      { controller: 'memory', file: 'memory.swap.max', value: '268435456', optional: true },
      { controller: 'pids', file: 'pids.max', value: '100' },
      { controller: 'hugetlb', file: 'hugetlb.2MB.max', value: '4194304' },
    ]);
  });

  test('cpu.max: unlimited quota is max; quota alone keeps the period', () => {
    expect(v2Writes({ cpu: { quota: -1, period: 100000 } })).toEqual([
      { controller: 'cpu', file: 'cpu.max', value: 'max 100000' },
    ]);
    expect(v2Writes({ cpu: { quota: 20000 } })).toEqual([{ controller: 'cpu', file: 'cpu.max', value: '20000' }]);
    expect(v2Writes({ cpu: { period: 50000 } })).toEqual([{ controller: 'cpu', file: 'cpu.max', value: 'max 50000' }]);
  });

  test('memory: -1 is max; swap is memsw minus memory, 0 when equal, max when unlimited', () => {
    const mib = 1024 * 1024;
    expect(v2Writes({ memory: { limit: -1 } })).toEqual([{ controller: 'memory', file: 'memory.max', value: 'max' }]);
    expect(v2Writes({ memory: { limit: 64 * mib, swap: 64 * mib } })[1].value).toBe('0');
    expect(v2Writes({ memory: { limit: 64 * mib, swap: -1 } })[1].value).toBe('max');
  });

  test('unified entries are written as given and win over derived values', () => {
    const w = v2Writes({ cpu: { shares: 1024 }, unified: { 'cpu.weight': '77', 'memory.high': '1073741824' } });
    expect(w).toEqual([
      { controller: 'cpu', file: 'cpu.weight', value: '77' },
      { controller: 'memory', file: 'memory.high', value: '1073741824' },
    ]);
    expect(v2ControllersFor(w)).toEqual(['cpu', 'memory']);
  });

  test.each([
    [2, 1],
    [1024, 39],
    [512, 20],
    [262144, 10000],
    [1, 1],
    [1_000_000, 10000],
    [0, 0],
  ])('shares %d → weight %d', (shares, weight) => {
    expect(sharesToWeight(shares)).toBe(weight);
  });
});

describe('validation names the field', () => {
  test.each<[CgroupResources, string]>([
    [{ cpu: { shares: -3 } }, 'r.cpu_shares'],
    [{ cpu: { period: 10_000_000 } }, 'r.cpu_period'],
    [{ cpu: { period: 5 } }, 'r.cpu_period'],
    [{ cpu: { quota: 5 } }, 'r.cpu_quota'],
    [{ cpu: { quota: -7 } }, 'r.cpu_quota'],
    [{ cpu: { cpus: 'abc' } }, 'r.cpuset_cpus'],
    [{ cpu: { cpus: '3-1' } }, 'r.cpuset_cpus'],
    [{ cpu: { mems: '0,,1' } }, 'r.cpuset_mems'],
    [{ memory: { limit: -5 } }, 'r.memory_limit_in_bytes'],
    [{ memory: { limit: 100 * 1024 * 1024, swap: 10 } }, 'r.memory_swap_limit_in_bytes'],
    [{ memory: { swap: 1024 } }, 'r.memory_swap_limit_in_bytes'],
    [{ hugepageLimits: [{ pageSize: '3XB', limit: 1 }] }, 'r.hugepage_limits[0].page_size'],
    [{ unified: { 'cgroup.procs': '1' } }, 'r.unified[cgroup.procs]'],
    [{ unified: { '../../etc/passwd': 'x' } }, 'r.unified[../../etc/passwd]'],
    [{ unified: { 'memory.high': 'a\nb' } }, 'r.unified[memory.high]'],
    [{ cpu: { shares: 1.5 } }, 'r.cpu_shares'],
    [{ unified: { 'pids.max': 'lots' } }, 'r.unified[pids.max]'],
  ])('%j → %s', (r, field) => {
    let err: unknown;
    try {
      validateResources(r, 'r');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).context.field).toBe(field);
  });

  test('sane values pass', () => {
    expect(() => validateResources(FULL, 'r')).not.toThrow();
    expect(() => validateResources({ cpu: { quota: -1 }, memory: { limit: -1, swap: -1 } }, 'r')).not.toThrow();
  });

  test('cpu lists', () => {
    expect(parseCpuList('0-2,5')).toEqual([0, 1, 2, 5]);
    expect(() => parseCpuList('99999')).toThrow();
  });
});

describe('CgroupManager on a fake v2 tree', () => {
  test('creates the path, enables controllers on every ancestor and writes v2 files', async () => {
    const mount = mkdtempSync(path.join(os.tmpdir(), 'cgv2-'));
    try {
      // A regular directory stands in for cgroup2: subtree_control files must exist to be read.
      await fs.writeFile(path.join(mount, 'cgroup.subtree_control'), '');
      await fs.mkdir(path.join(mount, 'kubepods'));
      await fs.writeFile(path.join(mount, 'kubepods', 'cgroup.subtree_control'), 'cpu memory pids');
      const pod = `/kubepods/capsa-${'c'.repeat(64)}`;
      await fs.mkdir(path.join(mount, pod));
      await fs.writeFile(path.join(mount, pod, 'cgroup.subtree_control'), '');
      const log = createLogger('fatal');
      const m = new CgroupManager(
        { version: 2, hierarchies: [{ mount, controllers: ['cpu', 'memory', 'pids', 'io'] }] },
        log,
      );
      const h = await m.create(
        pod,
        { cpu: { shares: 1024, quota: 25000, period: 100000 }, memory: { limit: 1 << 26 }, pids: { limit: 64 } },
        { delegate: true },
      );
      const read = (f: string): Promise<string> => fs.readFile(path.join(mount, pod, f), 'utf8');
      expect(await read('cpu.weight')).toBe('39');
      expect(await read('cpu.max')).toBe('25000 100000');
      expect(await read('memory.max')).toBe(String(1 << 26));
      expect(await read('pids.max')).toBe('64');
      // The root had nothing enabled: the last "+x" written is there (a real cgroup2 file accumulates them).
      expect(await fs.readFile(path.join(mount, 'cgroup.subtree_control'), 'utf8')).toMatch(/^\+(cpu|memory|pids|io)$/);
      expect(h).toEqual({
        version: 2,
        path: pod,
        dirs: {
          cpu: path.join(mount, pod),
          memory: path.join(mount, pod),
          pids: path.join(mount, pod),
          io: path.join(mount, pod),
        },
        procs: [path.join(mount, pod, 'cgroup.procs')],
        memory: path.join(mount, pod),
      });
    } finally {
      await fs.rm(mount, { recursive: true, force: true });
    }
  });
});
