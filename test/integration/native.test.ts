// The addon's syscalls against the real kernel.
import { closeSync, mkdirSync, mkdtempSync, openSync, promises as fs, readFileSync, statSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../../src/native';

describe('native addon', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-native-'));
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  test('mknod makes a fifo and a 0/0 char device; errors carry code and path', () => {
    native().mknod(path.join(dir, 'fifo'), 0o010644, 0, 0);
    expect(statSync(path.join(dir, 'fifo')).isFIFO()).toBe(true);
    native().mknod(path.join(dir, 'wh'), 0o020000, 0, 0);
    const st = statSync(path.join(dir, 'wh'));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0);
    expect(() => native().mknod(path.join(dir, 'no', 'x'), 0o010644, 0, 0)).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'mknod', path: path.join(dir, 'no', 'x') }),
    );
  });

  test('spawnDetached: pipes for stdout and stderr, /dev/null stdin, own session, default signals; waitPid reaps', async () => {
    const a = native();
    const wait = async (pid: number): Promise<{ code: number | null; signal: number | null }> => {
      for (let i = 0; i < 500; i++) {
        const st = a.waitPid!(pid);
        if (st) return st;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`child ${pid} did not end`);
    };
    const sh = (script: string): { pid: number; stdout: number; stderr: number } =>
      a.spawnDetached!('/bin/sh', ['sh', '-c', script]);
    // Node ignores SIGPIPE; the child must get the default disposition back (13 in SigIgn's mask: bit 12).
    const c = sh('echo out; echo err >&2; cat; ps -o sid= -p $$ | tr -d " "; grep SigIgn /proc/self/status; exit 3');
    const st = await wait(c.pid);
    const out = readFileSync(c.stdout, 'utf8').split('\n');
    expect(readFileSync(c.stderr, 'utf8')).toBe('err\n');
    closeSync(c.stdout);
    closeSync(c.stderr);
    expect(st).toEqual({ code: 3, signal: null });
    expect(out[0]).toBe('out');
    expect(Number(out[1])).toBe(c.pid); // a session of its own
    expect(BigInt('0x' + out[2].split(/\s+/)[1]) & (1n << 12n)).toBe(0n);
    const k = sh('kill -TERM $$');
    expect(await wait(k.pid)).toEqual({ code: null, signal: 15 });
    closeSync(k.stdout);
    closeSync(k.stderr);
    expect(() => a.spawnDetached!(path.join(dir, 'nope'), ['nope'])).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'posix_spawn' }),
    );
  });

  test('xattrs set, read, listed; absent reads as null', () => {
    const f = path.join(dir, 'x');
    closeSync(openSync(f, 'w'));
    native().lsetxattr(f, 'trusted.capsa-test', Buffer.from('y'));
    expect(native().lgetxattr(f, 'trusted.capsa-test')?.toString()).toBe('y');
    expect(native().llistxattr(f)).toContain('trusted.capsa-test');
    expect(native().lgetxattr(f, 'trusted.absent')).toBeNull();
  });

  test('mount and umount2 a tmpfs', () => {
    const m = path.join(dir, 'mnt');
    closeSync(openSync(path.join(dir, 'marker'), 'w'));
    mkdirSync(m);
    native().mount('capsa-test', m, 'tmpfs', native().constants.MS_NOSUID, 'size=1m');
    try {
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).toContain(m);
    } finally {
      native().umount2(m, 0);
    }
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(m);
  });

  test('flock is exclusive across open file descriptions', () => {
    const f = path.join(dir, 'lock');
    const a = openSync(f, 'a+');
    const b = openSync(f, 'a+');
    try {
      expect(native().flock(a, true, true)).toBe(true);
      expect(native().flock(b, true, true)).toBe(false);
    } finally {
      closeSync(a);
    }
    expect(native().flock(b, true, true)).toBe(true);
    closeSync(b);
  });
});
