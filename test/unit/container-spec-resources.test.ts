import { InvalidArgumentError } from '../../src/errors';
import { LinuxContainerResources } from '../../src/gen/runtime/v1/api';
import { buildResources, MIN_MEMORY_LIMIT } from '../../src/cri/container-spec/resources';

const res = (over: Partial<LinuxContainerResources>): LinuxContainerResources =>
  LinuxContainerResources.fromPartial(over);
const F = 'config.linux.resources';
const MiB = 1024n * 1024n;

describe('buildResources', () => {
  const cases: [string, LinuxContainerResources | undefined, number | undefined, object][] = [
    ['nothing', undefined, undefined, {}],
    ['all zero: nothing set', res({}), undefined, {}],
    [
      'kubelet-like burstable container',
      res({ cpuPeriod: 100000n, cpuQuota: 50000n, cpuShares: 512n, memoryLimitInBytes: 256n * MiB, oomScoreAdj: 900n }),
      undefined,
      { cpu: { shares: 512, quota: 50000, period: 100000 }, memory: { limit: 268435456 } },
    ],
    ['quota -1 (unlimited)', res({ cpuQuota: -1n }), undefined, { cpu: { quota: -1 } }],
    ['cpuset', res({ cpusetCpus: '0-3,7', cpusetMems: '0' }), undefined, { cpu: { cpus: '0-3,7', mems: '0' } }],
    ['shares bounds', res({ cpuShares: 2n }), undefined, { cpu: { shares: 2 } }],
    ['shares max', res({ cpuShares: 262144n }), undefined, { cpu: { shares: 262144 } }],
    [
      'memory at the floor',
      res({ memoryLimitInBytes: BigInt(MIN_MEMORY_LIMIT) }),
      undefined,
      { memory: { limit: MIN_MEMORY_LIMIT } },
    ],
    [
      'swap = memory (no swap)',
      res({ memoryLimitInBytes: 64n * MiB, memorySwapLimitInBytes: 64n * MiB }),
      undefined,
      { memory: { limit: 67108864, swap: 67108864 } },
    ],
    ['swap -1 (unlimited)', res({ memorySwapLimitInBytes: -1n }), undefined, { memory: { swap: -1 } }],
    [
      'hugepages',
      res({
        hugepageLimits: [
          { pageSize: '2MB', limit: 4n * MiB },
          { pageSize: '1GB', limit: 0n },
        ],
      }),
      undefined,
      {
        hugepageLimits: [
          { pageSize: '2MB', limit: 4194304 },
          { pageSize: '1GB', limit: 0 },
        ],
      },
    ],
    [
      'unified',
      res({ unified: { 'memory.high': '1073741824', 'hugetlb.2MB.max': 'max' } }),
      undefined,
      { unified: { 'memory.high': '1073741824', 'hugetlb.2MB.max': 'max' } },
    ],
    ['daemon pids limit', res({}), 4096, { pids: { limit: 4096 } }],
    [
      'unified pids.max overrides it',
      res({ unified: { 'pids.max': '100' } }),
      4096,
      { pids: { limit: 100 }, unified: { 'pids.max': '100' } },
    ],
    [
      'pids.max "max"',
      res({ unified: { 'pids.max': 'max' } }),
      undefined,
      { pids: { limit: -1 }, unified: { 'pids.max': 'max' } },
    ],
  ];
  test.each(cases)('%s', (_name, r, pids, want) => {
    expect(buildResources({ resources: r, pidsLimit: pids })).toEqual(want);
  });

  const errors: [string, Partial<LinuxContainerResources>, string][] = [
    ['negative period', { cpuPeriod: -1n }, `${F}.cpu_period`],
    ['period below 1ms', { cpuPeriod: 999n }, `${F}.cpu_period`],
    ['period above 1s', { cpuPeriod: 1000001n }, `${F}.cpu_period`],
    ['quota below 1ms', { cpuQuota: 500n }, `${F}.cpu_quota`],
    ['quota -2', { cpuQuota: -2n }, `${F}.cpu_quota`],
    ['quota absurd', { cpuQuota: 1n << 50n }, `${F}.cpu_quota`],
    ['shares 1', { cpuShares: 1n }, `${F}.cpu_shares`],
    ['shares negative', { cpuShares: -5n }, `${F}.cpu_shares`],
    ['shares too big', { cpuShares: 262145n }, `${F}.cpu_shares`],
    ['memory negative', { memoryLimitInBytes: -1n }, `${F}.memory_limit_in_bytes`],
    ['memory 1 byte', { memoryLimitInBytes: 1n }, `${F}.memory_limit_in_bytes`],
    ['memory under the floor', { memoryLimitInBytes: 4n * MiB }, `${F}.memory_limit_in_bytes`],
    ['memory beyond 2^53', { memoryLimitInBytes: 1n << 62n }, `${F}.memory_limit_in_bytes`],
    [
      'swap below memory',
      { memoryLimitInBytes: 64n * MiB, memorySwapLimitInBytes: 32n * MiB },
      `${F}.memory_swap_limit_in_bytes`,
    ],
    ['swap without memory', { memorySwapLimitInBytes: 64n * MiB }, `${F}.memory_swap_limit_in_bytes`],
    ['swap -2', { memorySwapLimitInBytes: -2n }, `${F}.memory_swap_limit_in_bytes`],
    ['cpuset garbage', { cpusetCpus: 'all' }, `${F}.cpuset_cpus`],
    ['cpuset backwards', { cpusetCpus: '3-1' }, `${F}.cpuset_cpus`],
    ['cpuset huge cpu', { cpusetCpus: '0-99999' }, `${F}.cpuset_cpus`],
    ['cpuset trailing comma', { cpusetCpus: '0,' }, `${F}.cpuset_cpus`],
    ['mems out of range', { cpusetMems: '2048' }, `${F}.cpuset_mems`],
    ['hugepage size', { hugepageLimits: [{ pageSize: '2M', limit: 1n }] }, `${F}.hugepage_limits[0].page_size`],
    [
      'hugepage twice',
      {
        hugepageLimits: [
          { pageSize: '2MB', limit: 1n },
          { pageSize: '2MB', limit: 2n },
        ],
      },
      `${F}.hugepage_limits[1].page_size`,
    ],
    ['hugepage negative', { hugepageLimits: [{ pageSize: '2MB', limit: -1n }] }, `${F}.hugepage_limits[0].limit`],
    ['unified path traversal', { unified: { '../../etc/passwd': 'x' } }, `${F}.unified[../../etc/passwd]`],
    ['unified slash', { unified: { 'memory/high': 'x' } }, `${F}.unified[memory/high]`],
    ['unified cgroup.procs', { unified: { 'cgroup.procs': '1' } }, `${F}.unified[cgroup.procs]`],
    ['unified newline', { unified: { 'memory.high': '1\n2' } }, `${F}.unified[memory.high]`],
    ['unified pids.max bad', { unified: { 'pids.max': '-3' } }, `${F}.unified[pids.max]`],
  ];
  test.each(errors)('error: %s', (_name, over, field) => {
    try {
      buildResources({ resources: res(over) });
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).context.field).toBe(field);
      return;
    }
    throw new Error('expected an InvalidArgumentError');
  });

  test('an invalid daemon pids limit is refused', () => {
    expect(() => buildResources({ resources: undefined, pidsLimit: -7 })).toThrow(InvalidArgumentError);
  });
});
