import {
  classifyEntry,
  cleanEntryPath,
  MAX_PATH_BYTES,
  parentDirs,
  xattrDecision,
} from '../../src/provisioner/layers/paths';

const ok = (name: string): string => {
  const r = cleanEntryPath(name);
  if (!r.ok) throw new Error(`${name}: ${r.reason}`);
  return r.path;
};
const bad = (name: string): string => {
  const r = cleanEntryPath(name);
  if (r.ok) throw new Error(`${name} accepted as ${r.path}`);
  return r.reason;
};

describe('cleanEntryPath', () => {
  it('normalizes ordinary names', () => {
    expect(ok('a/b/c')).toBe('a/b/c');
    expect(ok('./a/b/')).toBe('a/b');
    expect(ok('a//b/./c')).toBe('a/b/c');
    expect(ok('./')).toBe('');
    expect(ok('.')).toBe('');
  });

  it('takes absolute names relative to the layer root (Docker rule)', () => {
    expect(ok('/etc/passwd')).toBe('etc/passwd');
    expect(ok('///etc//x')).toBe('etc/x');
    expect(ok('/')).toBe('');
  });

  it('folds .. that stays inside, rejects .. that escapes', () => {
    expect(ok('a/../b')).toBe('b');
    expect(ok('a/b/../../c')).toBe('c');
    expect(bad('../x')).toMatch(/escapes/);
    expect(bad('a/../../x')).toMatch(/escapes/);
    expect(bad('/../x')).toMatch(/escapes/);
    expect(bad('..')).toMatch(/escapes/);
    expect(bad('a/b/../../../etc')).toMatch(/escapes/);
  });

  it('caps lengths and refuses NUL', () => {
    expect(bad('a\0b')).toMatch(/NUL/);
    expect(bad('x'.repeat(256))).toMatch(/255/);
    expect(ok('x'.repeat(255))).toHaveLength(255);
    const long = Array.from({ length: 40 }, () => 'y'.repeat(120)).join('/');
    expect(bad(long)).toMatch(new RegExp(String(MAX_PATH_BYTES)));
  });
});

describe('classifyEntry', () => {
  it('recognizes whiteouts and opaque markers', () => {
    expect(classifyEntry('a/b')).toEqual({ kind: 'normal' });
    expect(classifyEntry('a/.wh.b')).toEqual({ kind: 'whiteout', dir: 'a', name: 'b', target: 'a/b' });
    expect(classifyEntry('.wh.b')).toEqual({ kind: 'whiteout', dir: '', name: 'b', target: 'b' });
    expect(classifyEntry('a/.wh..wh..opq')).toEqual({ kind: 'opaque', dir: 'a' });
    expect(classifyEntry('.wh..wh..opq')).toEqual({ kind: 'opaque', dir: '' });
    expect(classifyEntry('a/.wh..wh.plnk')).toEqual({ kind: 'meta' });
  });

  it('rejects whiteouts of . and ..', () => {
    expect(classifyEntry('.wh.').kind).toBe('invalid');
    expect(classifyEntry('a/.wh..').kind).toBe('invalid');
    expect(classifyEntry('a/.wh...').kind).toBe('invalid');
  });

  it('lists parents outermost first', () => {
    expect(parentDirs('a/b/c')).toEqual(['a', 'a/b']);
    expect(parentDirs('a')).toEqual([]);
  });
});

describe('xattr policy', () => {
  it('keeps user data, file capabilities and ACLs', () => {
    expect(xattrDecision('user.mime_type')).toBe('keep');
    expect(xattrDecision('security.capability')).toBe('keep');
    expect(xattrDecision('system.posix_acl_access')).toBe('keep');
    expect(xattrDecision('system.posix_acl_default')).toBe('keep');
  });

  it('drops trusted.* (overlay included) and host security labels', () => {
    expect(xattrDecision('trusted.overlay.opaque')).toBe('drop');
    expect(xattrDecision('trusted.overlay.redirect')).toBe('drop');
    expect(xattrDecision('trusted.foo')).toBe('drop');
    expect(xattrDecision('security.selinux')).toBe('drop');
    expect(xattrDecision('security.ima')).toBe('drop');
    expect(xattrDecision('user.')).toBe('drop');
    expect(xattrDecision('bogus')).toBe('drop');
  });
});
