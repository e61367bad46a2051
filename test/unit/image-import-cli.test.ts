// `capsa image import`: argument parsing and the progress output (terminal
// line throttled to ~10 redraws a second; a line per image elsewhere).
import { parseImportArgs } from '../../src/cli/image-import';
import { formatBytes, ImportProgressView, renderProgressLine } from '../../src/cli/progress';
import type { ImportProgress } from '../../src/provisioner/store/import';

function sink(columns?: number): { out: { write(s: string): boolean; columns?: number }; text: () => string } {
  let text = '';
  return {
    out: {
      write: (s: string) => {
        text += s;
        return true;
      },
      columns,
    },
    text: () => text,
  };
}

const MiB = 1024 * 1024;
const blob = (bytes: number, totalBytes = 100 * MiB): ImportProgress => ({
  stage: 'blob',
  bytes,
  totalBytes,
  message: 'copying 0123456789ab',
});

describe('parseImportArgs', () => {
  test('FILE and flags in any order, --flag=value too', () => {
    expect(parseImportArgs(['a.tar'])).toEqual({ file: 'a.tar' });
    expect(parseImportArgs(['--root', '/r', 'a.tar', '--config=/c.toml', '--name', 'busybox'])).toEqual({
      file: 'a.tar',
      root: '/r',
      configPath: '/c.toml',
      name: 'docker.io/library/busybox',
    });
    expect(parseImportArgs(['--name=registry.k8s.io/pause', '--', '--odd-file-name'])).toEqual({
      file: '--odd-file-name',
      name: 'registry.k8s.io/pause',
    });
  });

  test.each([
    [[], /needs a FILE/],
    [['a.tar', 'b.tar'], /unexpected argument "b.tar"/],
    [['a.tar', '--name'], /--name needs a value/],
    [['a.tar', '--state', '/s'], /unknown flag --state/],
    [['a.tar', '--name', 'busybox:1.36'], /--name takes a repository without tag or digest, not "busybox:1.36"/],
    [['a.tar', '--name', `busybox@sha256:${'a'.repeat(64)}`], /without tag or digest/],
    [['a.tar', '--name', 'Not/Valid'], /--name: invalid reference "Not\/Valid"/],
  ])('%j is a usage error', (args, message) => {
    expect(() => parseImportArgs(args as string[])).toThrow(message);
  });
});

describe('renderProgressLine', () => {
  test('bar, percentage, bytes of total, message', () => {
    expect(renderProgressLine(blob(25 * MiB))).toBe(
      '[######..................]  25%  25.0 MiB / 100.0 MiB  copying 0123456789ab',
    );
    expect(renderProgressLine(blob(0))).toMatch(/^\[\.{24}\] {3}0% {2}0 B \/ 100\.0 MiB/);
    expect(renderProgressLine(blob(100 * MiB))).toMatch(/^\[#{24}\] 100%/);
  });

  test('bytes past the total (a config counted on top) stay at 100%', () => {
    expect(renderProgressLine(blob(101 * MiB))).toMatch(/^\[#{24}\] 100% {2}100\.0 MiB \/ 100\.0 MiB/);
  });

  test('an unknown total shows the bytes only', () => {
    expect(renderProgressLine({ stage: 'open', bytes: 0, totalBytes: 0, message: 'reading x' })).toBe(
      `[${'.'.repeat(24)}]    ?  0 B  reading x`,
    );
  });

  test('never wider than the terminal', () => {
    expect(renderProgressLine(blob(MiB), 40)).toHaveLength(39);
  });

  test('formatBytes', () => {
    expect([formatBytes(87), formatBytes(4096), formatBytes((3 * MiB) / 2), formatBytes(5 * 1024 * MiB)]).toEqual([
      '87 B',
      '4 KiB',
      '1.5 MiB',
      '5.0 GiB',
    ]);
  });
});

describe('ImportProgressView', () => {
  afterEach(() => jest.useRealTimers());

  test('on a terminal: redraws at most once per interval, and the latest state when the interval is up', () => {
    jest.useFakeTimers();
    const s = sink(200);
    let now = 1000;
    const view = new ImportProgressView(s.out, { tty: true, intervalMs: 100, now: () => now });
    // 1000 updates over one second, one per millisecond.
    for (let i = 0; i < 1000; i++) {
      view.update(blob(i * 1024));
      now++;
      jest.advanceTimersByTime(1);
    }
    const draws = s
      .text()
      .split('\r')
      .filter((x) => x !== '');
    expect(draws.length).toBeGreaterThanOrEqual(9);
    expect(draws.length).toBeLessThanOrEqual(11);
    // Updates stop: within one interval the last state is on screen.
    view.update(blob(5 * MiB));
    now += 100;
    jest.advanceTimersByTime(100);
    expect(s.text().endsWith(`\r${renderProgressLine(blob(5 * MiB), 200)}\x1b[K`)).toBe(true);
    view.finish();
    expect(s.text().endsWith('\r\x1b[K')).toBe(true);
  });

  test('on a terminal: a finished image is a permanent line; the bar returns with the next update', () => {
    jest.useFakeTimers();
    const s = sink(200);
    let now = 0;
    const view = new ImportProgressView(s.out, { tty: true, now: () => now });
    view.update(blob(MiB));
    view.update({ stage: 'image', bytes: MiB, totalBytes: MiB, message: 'imported docker.io/library/a:1' });
    expect(s.text()).toBe(`\r${renderProgressLine(blob(MiB), 200)}\x1b[K\r\x1b[Kimported docker.io/library/a:1\n`);
    jest.advanceTimersByTime(1000); // nothing stale is redrawn
    expect(s.text().endsWith('imported docker.io/library/a:1\n')).toBe(true);
    now += 1000;
    view.update(blob(2 * MiB));
    expect(s.text().endsWith(`\r${renderProgressLine(blob(2 * MiB), 200)}\x1b[K`)).toBe(true);
    view.finish();
  });

  test('not a terminal: one line per image and nothing else', () => {
    const s = sink();
    const view = new ImportProgressView(s.out, { tty: false });
    view.update({ stage: 'open', bytes: 0, totalBytes: 0, message: 'reading f' });
    for (let i = 0; i < 50; i++) view.update(blob(i * MiB));
    view.update({ stage: 'unpack', bytes: 0, totalBytes: 0, message: 'unpacking layer 1/1' });
    view.update({ stage: 'image', bytes: 0, totalBytes: 0, message: 'imported a' });
    view.update({ stage: 'image', bytes: 0, totalBytes: 0, message: 'imported b' });
    view.finish();
    expect(s.text()).toBe('imported a\nimported b\n');
  });
});
