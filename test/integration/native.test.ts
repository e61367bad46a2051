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
