// The stats hot path's cgroup files (src/containerizer/isolators/cgroups/stat-files.ts):
// kept open per cgroup and read from offset 0 each time, closed with their
// cgroup (and those below it), by a sweep once their directory is gone, and
// opened per read beyond the cap. Regular files stand in for cgroup files.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { StatFiles, readSmall } from '../../src/containerizer/isolators/cgroups/stat-files';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-stat-files-'));
  for (const d of ['pod', 'pod/c1', 'pod/c2', 'other']) mkdirSync(path.join(dir, d));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const f = (p: string): string => path.join(dir, p);

test('a kept file reads its current text each time; absent files are undefined and not kept', () => {
  const sf = new StatFiles();
  writeFileSync(f('pod/c1/memory.stat'), 'rss 1\n');
  expect(sf.read('/pod/c1', 'pod/c1/memory.stat', () => f('pod/c1/memory.stat'))).toBe('rss 1\n');
  writeFileSync(f('pod/c1/memory.stat'), 'rss 22\ncache 3\n');
  expect(sf.read('/pod/c1', 'pod/c1/memory.stat', () => f('pod/c1/memory.stat'))).toBe('rss 22\ncache 3\n');
  writeFileSync(f('pod/c1/memory.stat'), 'x\n');
  expect(sf.read('/pod/c1', 'pod/c1/memory.stat', () => f('pod/c1/memory.stat'))).toBe('x\n');
  expect(sf.size).toBe(1);
  expect(sf.read('/pod/c1', 'pod/c1/nothing', () => f('pod/c1/nothing'))).toBeUndefined();
  expect(sf.size).toBe(1);
  expect(readSmall(f('pod/c1/memory.stat'))).toBe('x\n');
  expect(readSmall(f('pod/c1/nothing'))).toBeUndefined();
  // Larger than the read buffer: whole.
  writeFileSync(f('pod/c1/cgroup.procs'), '1\n'.repeat(50_000));
  expect(sf.read('/pod/c1', 'pod/c1/cgroup.procs', () => f('pod/c1/cgroup.procs'))).toHaveLength(100_000);
  expect(readSmall(f('pod/c1/cgroup.procs'))).toHaveLength(100_000);
});

test('closing a cgroup closes the ones below it, not its namesakes', () => {
  const sf = new StatFiles();
  for (const p of ['pod', 'pod/c1', 'pod/c2', 'other']) {
    writeFileSync(f(`${p}/cpu.stat`), p);
    expect(sf.read(`/${p}`, `${p}/cpu.stat`, () => f(`${p}/cpu.stat`))).toBe(p);
  }
  writeFileSync(f('pod/c1/memory.stat'), 'm');
  sf.read('/pod/c1', 'pod/c1/memory.stat', () => f('pod/c1/memory.stat'));
  expect(sf.size).toBe(5);
  sf.close('/pod/c1');
  expect(sf.size).toBe(3);
  sf.close('/po'); // a prefix of a name is not a parent
  expect(sf.size).toBe(3);
  sf.close('/pod');
  expect(sf.size).toBe(1);
  sf.close('/');
  expect(sf.size).toBe(0);
});

test('beyond the cap reads open and close; a sweep closes cgroups whose directory went away', () => {
  let now = 0;
  const sf = new StatFiles(2, () => now);
  for (const p of ['pod', 'pod/c1', 'pod/c2']) writeFileSync(f(`${p}/cpu.stat`), p);
  sf.read('/pod', 'pod/cpu.stat', () => f('pod/cpu.stat'));
  sf.read('/pod/c1', 'pod/c1/cpu.stat', () => f('pod/c1/cpu.stat'));
  expect(sf.read('/pod/c2', 'pod/c2/cpu.stat', () => f('pod/c2/cpu.stat'))).toBe('pod/c2');
  expect(sf.size).toBe(2);
  rmSync(f('pod/c1'), { recursive: true });
  now += 29_000;
  sf.read('/pod', 'pod/cpu.stat', () => f('pod/cpu.stat'));
  expect(sf.size).toBe(2);
  now += 2_000;
  sf.read('/pod', 'pod/cpu.stat', () => f('pod/cpu.stat'));
  expect(sf.size).toBe(1);
});

test('the path is asked for only when the file is not open yet; none means no such file', () => {
  const sf = new StatFiles();
  writeFileSync(f('pod/cpu.stat'), 'usage_usec 5\n');
  let asked = 0;
  const where = (): string => {
    asked++;
    return f('pod/cpu.stat');
  };
  for (let i = 0; i < 3; i++) expect(sf.read('/pod', 'cpu.stat', where)).toBe('usage_usec 5\n');
  expect(asked).toBe(1);
  expect(sf.read('/pod', 'memory.stat', () => undefined)).toBeUndefined();
  expect(sf.size).toBe(1);
});
