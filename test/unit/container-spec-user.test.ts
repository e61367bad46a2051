import { mkdirSync, mkdtempSync, promises as fs, symlinkSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readRootfsFile, resolveInRoot } from '../../src/cri/container-spec/rootfs-file';
import {
  MAX_ACCOUNT_FILE_BYTES,
  parseGroup,
  parsePasswd,
  resolveUser,
  type UserRequest,
} from '../../src/cri/container-spec/user';
import { fieldOfAsync as fieldOf } from '../helpers/invalid';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  '# a comment',
  '',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  'app:x:1000:1000:App:/home/app:/bin/sh',
  'nohome:x:1001:1001',
  'relhome:x:1002:1002::home/rel:/bin/sh',
  'broken:x:notanumber:1:::',
  'huge:x:4294967295:1:::',
  '+nisuser:x:2000:2000:::',
  'dup:x:3000:3000::/first:',
  'dup:x:3001:3001::/second:',
  'crlf:x:1003:1003::/home/crlf:/bin/sh\r',
].join('\n');

const GROUP = [
  'root:x:0:',
  'wheel:x:10:app,other',
  'audio:x:29: app ',
  'app:x:1000:',
  'staff:x:50:other',
  'bad:x:x:app',
  'devs:x:2000:app',
].join('\n');

const req = (over: Partial<UserRequest> = {}): UserRequest => ({
  runAsUsername: '',
  supplementalGroups: [],
  strictGroups: false,
  imageUser: undefined,
  ...over,
});

describe('user resolution against a rootfs', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-user-'));
  afterAll(() => fs.rm(tmp, { recursive: true, force: true }));
  let n = 0;
  const rootfs = (files: Record<string, string>): string => {
    const dir = path.join(tmp, `r${n++}`);
    for (const [p, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
      writeFileSync(path.join(dir, p), text);
    }
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  const good = rootfs({ '/etc/passwd': PASSWD, '/etc/group': GROUP });
  const empty = rootfs({});

  const cases: [string, string, Partial<UserRequest>, object][] = [
    ['no user at all: root', good, {}, { uid: 0, gid: 0, additionalGids: [0], home: '/root' }],
    [
      'image user by name',
      good,
      { imageUser: 'app' },
      { uid: 1000, gid: 1000, additionalGids: [1000, 10, 29, 2000], home: '/home/app' },
    ],
    ['image user uid', good, { imageUser: '1000' }, { uid: 1000, gid: 1000, additionalGids: [1000, 10, 29, 2000] }],
    ['image user uid:gid', good, { imageUser: '1000:50' }, { uid: 1000, gid: 50, additionalGids: [50, 10, 29, 2000] }],
    ['image user name:group', good, { imageUser: 'app:staff' }, { uid: 1000, gid: 50 }],
    [
      'image user uid:group',
      good,
      { imageUser: '1:wheel' },
      { uid: 1, gid: 10, additionalGids: [10], home: '/usr/sbin' },
    ],
    ['image user "name:" (empty group)', good, { imageUser: 'app:' }, { uid: 1000, gid: 1000 }],
    ['unknown uid: gid 0, home /', good, { imageUser: '4242' }, { uid: 4242, gid: 0, additionalGids: [0], home: '/' }],
    ['unknown uid with gid', good, { imageUser: '4242:7' }, { uid: 4242, gid: 7, additionalGids: [7] }],
    ['no passwd file: numeric ok', empty, { imageUser: '5:6' }, { uid: 5, gid: 6, home: '/' }],
    [
      'run_as_user overrides the image user',
      good,
      { runAsUser: 1000n, imageUser: 'daemon' },
      { uid: 1000, gid: 1000, home: '/home/app' },
    ],
    ['run_as_user 0', good, { runAsUser: 0n, imageUser: 'app' }, { uid: 0, gid: 0, home: '/root' }],
    ['run_as_username', good, { runAsUsername: 'daemon' }, { uid: 1, gid: 1, additionalGids: [1] }],
    [
      'run_as_group overrides the primary gid',
      good,
      { runAsUser: 1000n, runAsGroup: 29n },
      { uid: 1000, gid: 29, additionalGids: [29, 10, 2000] },
    ],
    ['run_as_group with username', good, { runAsUsername: 'app', runAsGroup: 5n }, { uid: 1000, gid: 5 }],
    [
      'supplemental groups appended, deduplicated',
      good,
      { runAsUser: 1000n, supplementalGroups: [10n, 77n, 77n, 1000n] },
      { additionalGids: [1000, 10, 29, 2000, 77] },
    ],
    [
      'Strict policy: no image groups',
      good,
      { runAsUser: 1000n, supplementalGroups: [77n], strictGroups: true },
      { additionalGids: [1000, 77] },
    ],
    ['first passwd match wins', good, { imageUser: 'dup' }, { uid: 3000, home: '/first' }],
    ['no home field', good, { imageUser: 'nohome' }, { uid: 1001, home: '/' }],
    ['relative home ignored', good, { imageUser: 'relhome' }, { uid: 1002, home: '/' }],
    ['CRLF line endings', good, { imageUser: 'crlf' }, { uid: 1003, home: '/home/crlf' }],
  ];
  test.each(cases)('%s', async (_name, root, over, want) => {
    expect(await resolveUser(root, req(over))).toMatchObject(want);
  });

  const SC = 'config.linux.security_context';
  const errors: [string, Partial<UserRequest>, string][] = [
    ['unknown run_as_username', { runAsUsername: 'ghost' }, `${SC}.run_as_username`],
    ['numeric run_as_username', { runAsUsername: '1000' }, `${SC}.run_as_username`],
    ['both user fields', { runAsUser: 1n, runAsUsername: 'app' }, `${SC}.run_as_username`],
    ['run_as_group alone', { runAsGroup: 1n }, `${SC}.run_as_group`],
    ['negative run_as_user', { runAsUser: -1n }, `${SC}.run_as_user`],
    ['run_as_user 2^32-1', { runAsUser: 4294967295n }, `${SC}.run_as_user`],
    ['run_as_user huge', { runAsUser: 1n << 40n }, `${SC}.run_as_user`],
    ['negative run_as_group', { runAsUser: 1n, runAsGroup: -5n }, `${SC}.run_as_group`],
    ['bad supplemental group', { supplementalGroups: [1n, -1n] }, `${SC}.supplemental_groups[1]`],
    ['unknown image user', { imageUser: 'ghost' }, 'config.image'],
    ['unknown image group', { imageUser: 'app:ghosts' }, 'config.image'],
    ['image user ":5"', { imageUser: ':5' }, 'config.image'],
    ['image user not a string', { imageUser: 42 }, 'config.image'],
    ['NIS entries are not users', { imageUser: 'nisuser' }, 'config.image'],
    ['out-of-range uid lines are skipped', { imageUser: 'huge' }, 'config.image'],
  ];
  test.each(errors)('error: %s', async (_name, over, field) => {
    expect(await fieldOf(resolveUser(good, req(over)))).toBe(field);
  });

  test('the error names the missing user', async () => {
    await expect(resolveUser(good, req({ runAsUsername: 'ghost' }))).rejects.toThrow(/"ghost"/);
  });

  test('hostile: /etc/passwd is an absolute symlink to the host /etc/shadow', async () => {
    const dir = rootfs({ '/etc/group': GROUP });
    symlinkSync('/etc/shadow', path.join(dir, 'etc/passwd'));
    // Resolved inside the rootfs: <rootfs>/etc/shadow, which does not exist.
    expect(await resolveInRoot(dir, '/etc/passwd')).toBeUndefined();
    expect(await fieldOf(resolveUser(dir, req({ runAsUsername: 'root' })))).toBe(`${SC}.run_as_username`);
    // Numeric users still work: no passwd is fine.
    expect(await resolveUser(dir, req({ runAsUser: 0n }))).toMatchObject({ uid: 0, gid: 0, home: '/' });
  });

  test('hostile: a symlink to a host file is read inside the rootfs, never outside', async () => {
    const outside = path.join(tmp, 'outside-passwd');
    writeFileSync(outside, 'evil:x:0:0::/evil:/bin/sh\n');
    const dir = rootfs({ [outside]: 'inner:x:7:7::/inner:/bin/sh\n' });
    symlinkSync(outside, path.join(dir, 'etc-passwd-link'));
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
    symlinkSync('/etc-passwd-link', path.join(dir, 'etc/passwd'));
    const u = await resolveUser(dir, req({ imageUser: 'inner' }));
    expect(u).toMatchObject({ uid: 7, home: '/inner' });
    expect(await fieldOf(resolveUser(dir, req({ imageUser: 'evil' })))).toBe('config.image');
  });

  test('hostile: relative ".." symlinks stop at the rootfs', async () => {
    const dir = rootfs({ '/real/passwd': 'r:x:9:9::/r:/bin/sh\n' });
    mkdirSync(path.join(dir, 'etc'));
    symlinkSync('../../../../../../../../real/passwd', path.join(dir, 'etc/passwd'));
    expect(await resolveUser(dir, req({ imageUser: 'r' }))).toMatchObject({ uid: 9 });
  });

  test('hostile: /etc itself is a symlink out of the rootfs', async () => {
    const dir = rootfs({});
    symlinkSync('/etc', path.join(dir, 'etc'));
    // <rootfs>/etc -> "/etc" -> <rootfs>/etc again: a loop, so no file.
    expect(await resolveInRoot(dir, '/etc/passwd')).toBeUndefined();
    expect(await fieldOf(resolveUser(dir, req({ imageUser: 'root' })))).toBe('config.image');
  });

  test('hostile: symlink loops end', async () => {
    const dir = rootfs({});
    mkdirSync(path.join(dir, 'etc'));
    symlinkSync('group', path.join(dir, 'etc/passwd'));
    symlinkSync('passwd', path.join(dir, 'etc/group'));
    expect(await resolveUser(dir, req({ imageUser: '3' }))).toMatchObject({ uid: 3, gid: 0 });
  });

  test('hostile: /etc/passwd is a directory or a FIFO: treated as absent, no hang', async () => {
    const dir = rootfs({});
    mkdirSync(path.join(dir, 'etc/passwd'), { recursive: true });
    expect(await readRootfsFile(dir, '/etc/passwd', 1024)).toBeUndefined();
    const fifoRoot = rootfs({});
    mkdirSync(path.join(fifoRoot, 'etc'));
    const { execFileSync } = await import('child_process');
    execFileSync('mkfifo', [path.join(fifoRoot, 'etc/passwd')]);
    expect(await readRootfsFile(fifoRoot, '/etc/passwd', 1024)).toBeUndefined();
    expect(await resolveUser(fifoRoot, req({ runAsUser: 12n }))).toMatchObject({ uid: 12 });
  });

  test('hostile: an oversized /etc/passwd is refused, not half-read', async () => {
    const big = 'x:x:1:1::/:/bin/sh\n'.repeat(Math.ceil((MAX_ACCOUNT_FILE_BYTES + 10) / 19));
    const dir = rootfs({ '/etc/passwd': big });
    await expect(resolveUser(dir, req({ imageUser: 'x' }))).rejects.toThrow(/larger than/);
  });

  test('a path component that is a file ends resolution', async () => {
    const dir = rootfs({ '/etc': 'not a dir' });
    expect(await resolveInRoot(dir, '/etc/passwd')).toBeUndefined();
  });

  test('parsers skip malformed lines', () => {
    expect(parsePasswd('a:x:1\n:x:1:1\nb:x:2:3\n')).toEqual([{ name: 'b', uid: 2, gid: 3, home: '' }]);
    expect(parseGroup('g:x:5:a,,b\nh:x\ni:x:-1:\n')).toEqual([{ name: 'g', gid: 5, members: ['a', 'b'] }]);
  });
});
