// The hostile-layer corpus: layers that try to put something outside the
// layer root. Each case either must fail the layer (outcome 'reject', with
// an error naming `entry`) or is defined to be safely contained (outcome
// 'contained', with a check of where things landed).
//
// `outside` is a sentinel directory next to the layer store that the test
// snapshots before and after: nothing may appear or change there. Cases
// never aim at real host files for writing; /etc/passwd is only used as a
// hardlink *source*, which cannot modify it.
import { existsSync, lstatSync, readFileSync, readlinkSync } from 'fs';
import * as path from 'path';

import type { TarSpec } from './tar-writer';

export interface HostileCase {
  name: string;
  entries(outside: string): TarSpec[];
  outcome: 'reject' | 'contained';
  /** For 'reject': the entry name the error must mention. */
  entry?: string;
  /** For 'contained': assertions on the unpacked layer (throw on failure). */
  check?(fsRoot: string, outside: string): void;
}

function expect(cond: boolean, what: string): void {
  if (!cond) throw new Error(`hostile layer check failed: ${what}`);
}

export const UNIQUE = `capsa-hostile-${process.pid}`;

export const HOSTILE_LAYERS: HostileCase[] = [
  {
    name: 'dot-dot escape',
    entries: () => [{ name: '../escape', data: 'x' }],
    outcome: 'reject',
    entry: '../escape',
  },
  {
    name: 'nested dot-dot escape',
    entries: () => [
      { name: 'a/', type: 'dir' },
      { name: 'a/../../escape', data: 'x' },
    ],
    outcome: 'reject',
    entry: 'a/../../escape',
  },
  {
    name: 'deep dot-dot escape to the sentinel',
    entries: (outside) => [{ name: `../../../../../../../../../../..${outside}/deep`, data: 'x' }],
    outcome: 'reject',
  },
  {
    name: 'PAX path override escapes',
    entries: () => [{ name: 'innocent', data: 'x', pax: { path: '../../pax-escape' } }],
    outcome: 'reject',
    entry: '../../pax-escape',
  },
  {
    name: 'GNU long name escapes',
    entries: () => [{ name: `${'d/'.repeat(60)}${'../'.repeat(70)}gnu-escape`, data: 'x', longNames: 'gnu' }],
    outcome: 'reject',
  },
  {
    name: 'absolute path stays inside',
    entries: () => [{ name: `/etc/${UNIQUE}`, data: 'inside' }],
    outcome: 'contained',
    check: (fsRoot) => {
      expect(readFileSync(path.join(fsRoot, 'etc', UNIQUE), 'utf8') === 'inside', 'absolute entry landed in the layer');
      expect(!existsSync(`/etc/${UNIQUE}`), 'nothing written to the host /etc');
    },
  },
  {
    name: 'symlink to an absolute dir, then write through it',
    entries: (outside) => [
      { name: 'l', type: 'symlink', linkname: outside },
      { name: 'l/file', data: 'pwned' },
    ],
    outcome: 'reject',
    entry: 'l/file',
  },
  {
    name: 'symlink with relative escape, then write through it',
    entries: () => [
      { name: 'l', type: 'symlink', linkname: '../../..' },
      { name: 'l/escaped', data: 'pwned' },
    ],
    outcome: 'reject',
    entry: 'l/escaped',
  },
  {
    name: 'symlink chain, then write through it',
    entries: (outside) => [
      { name: 'b', type: 'symlink', linkname: outside },
      { name: 'a', type: 'symlink', linkname: 'b' },
      { name: 'a/file', data: 'pwned' },
    ],
    outcome: 'reject',
    entry: 'a/file',
  },
  {
    name: 'directory replaced by a symlink, then written through',
    entries: (outside) => [
      { name: 'd', type: 'dir' },
      { name: 'd/ok', data: 'fine' },
      { name: 'd', type: 'symlink', linkname: outside },
      { name: 'd/file', data: 'pwned' },
    ],
    outcome: 'reject',
    entry: 'd/file',
  },
  {
    name: 'symlink then a directory entry through it',
    entries: (outside) => [
      { name: 'l', type: 'symlink', linkname: outside },
      { name: 'l/sub', type: 'dir' },
    ],
    outcome: 'reject',
    entry: 'l/sub/',
  },
  {
    name: 'file replaced by a symlink, then the file again (no write through the link)',
    entries: (outside) => [
      { name: 'f', data: 'one' },
      { name: 'f', type: 'symlink', linkname: path.join(outside, 'target') },
      { name: 'f', data: 'two' },
    ],
    outcome: 'contained',
    check: (fsRoot, outside) => {
      expect(lstatSync(path.join(fsRoot, 'f')).isFile(), 'f is a regular file in the layer');
      expect(readFileSync(path.join(fsRoot, 'f'), 'utf8') === 'two', 'f holds the last content');
      expect(!existsSync(path.join(outside, 'target')), 'nothing written through the symlink');
    },
  },
  {
    name: 'hardlink to /etc/passwd',
    entries: () => [{ name: 'passwd', type: 'hardlink', linkname: '/etc/passwd' }],
    outcome: 'reject',
    entry: 'passwd',
  },
  {
    name: 'hardlink to ../x',
    entries: () => [{ name: 'x', type: 'hardlink', linkname: '../x' }],
    outcome: 'reject',
    entry: 'x',
  },
  {
    name: 'hardlink through a symlink',
    entries: () => [
      { name: 'etc', type: 'symlink', linkname: '/etc' },
      { name: 'stolen', type: 'hardlink', linkname: 'etc/passwd' },
    ],
    outcome: 'reject',
    entry: 'stolen',
  },
  {
    name: 'hardlink to a directory',
    entries: () => [
      { name: 'd', type: 'dir' },
      { name: 'h', type: 'hardlink', linkname: 'd' },
    ],
    outcome: 'reject',
    entry: 'h',
  },
  {
    name: 'hardlink to a symlink that escapes (links the symlink itself)',
    entries: () => [
      { name: 's', type: 'symlink', linkname: '/etc/passwd' },
      { name: 'h', type: 'hardlink', linkname: 's' },
    ],
    outcome: 'contained',
    check: (fsRoot) => {
      const st = lstatSync(path.join(fsRoot, 'h'));
      expect(st.isSymbolicLink(), 'h is the symlink inode, not /etc/passwd');
      expect(readlinkSync(path.join(fsRoot, 'h')) === '/etc/passwd', 'h keeps the link text');
      expect(st.ino !== lstatSync('/etc/passwd').ino, 'h is not /etc/passwd');
    },
  },
  {
    name: 'whiteout naming ..',
    entries: () => [{ name: '.wh...', data: '' }],
    outcome: 'reject',
    entry: '.wh...',
  },
  {
    name: 'whiteout above the root',
    entries: () => [{ name: '../.wh.victim', data: '' }],
    outcome: 'reject',
    entry: '../.wh.victim',
  },
  {
    name: 'whiteout through a symlink',
    entries: (outside) => [
      { name: 'l', type: 'symlink', linkname: outside },
      { name: 'l/.wh.victim', data: '' },
    ],
    outcome: 'reject',
    entry: 'l/.wh.victim',
  },
  {
    name: 'opaque marker through a symlink',
    entries: (outside) => [
      { name: 'l', type: 'symlink', linkname: outside },
      { name: 'l/.wh..wh..opq', data: '' },
    ],
    outcome: 'reject',
    entry: 'l/.wh..wh..opq',
  },
  {
    name: 'device node named with ..',
    entries: () => [{ name: '../null-escape', type: 'char', devmajor: 1, devminor: 3 }],
    outcome: 'reject',
    entry: '../null-escape',
  },
  {
    name: 'device node through a symlink',
    entries: (outside) => [
      { name: 'dev', type: 'symlink', linkname: outside },
      { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0 },
    ],
    outcome: 'reject',
    entry: 'dev/sda',
  },
  {
    name: 'fifo replacing a parent, then written into',
    entries: () => [
      { name: 'p', type: 'fifo' },
      { name: 'p/file', data: 'x' },
    ],
    outcome: 'reject',
    entry: 'p/file',
  },
  {
    name: 'layer sets trusted.overlay.* itself (dropped)',
    entries: () => [
      { name: 'd', type: 'dir', xattrs: { 'trusted.overlay.opaque': 'y', 'trusted.overlay.redirect': '/etc' } },
    ],
    outcome: 'contained',
    check: (fsRoot) => {
      // Checked by the test with lgetxattr (needs the addon); here: the dir exists.
      expect(lstatSync(path.join(fsRoot, 'd')).isDirectory(), 'd exists');
    },
  },
  {
    name: 'a regular file replacing the layer root',
    entries: () => [{ name: '.', data: 'x', typeflag: '0' }],
    outcome: 'reject',
  },
  {
    name: 'path component over 255 bytes',
    entries: () => [{ name: `${'n'.repeat(300)}`, data: 'x' }],
    outcome: 'reject',
  },
  {
    name: 'NUL byte in a PAX path',
    entries: () => [{ name: 'ok', data: 'x', pax: { path: 'a\0/../../b' } }],
    outcome: 'reject',
  },
];
