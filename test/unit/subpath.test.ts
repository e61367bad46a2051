// An image volume's sub path resolved inside the image's tree: real
// directories and symlinks in a temp dir, the rules containerd's
// os.OpenInRoot applies (no escape by ".." or an absolute symlink, a
// directory at the end).
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { resolveSubPath } from '../../src/provisioner/backends/subpath';

let root: string;
let outside: string;

beforeAll(async () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-subpath-'));
  root = path.join(tmp, 'image');
  outside = path.join(tmp, 'outside');
  await fs.mkdir(path.join(root, 'etc', 'ssl'), { recursive: true });
  await fs.mkdir(outside);
  await fs.writeFile(path.join(root, 'etc', 'passwd'), 'root:x:0:0::/:/bin/sh\n');
  await fs.symlink('etc/ssl', path.join(root, 'ssl-rel'));
  await fs.symlink('../../etc', path.join(root, 'etc', 'ssl', 'up'));
  await fs.symlink('../../outside', path.join(root, 'etc', 'escape'));
  await fs.symlink('/etc', path.join(root, 'abs'));
  await fs.symlink('loop-b', path.join(root, 'loop-a'));
  await fs.symlink('loop-a', path.join(root, 'loop-b'));
});

afterAll(() => fs.rm(path.dirname(root), { recursive: true, force: true }));

const F = 'config.mounts[0].image_sub_path';

test.each([
  ['', ''],
  ['.', ''],
  ['etc', 'etc'],
  ['etc/', 'etc'],
  ['./etc//ssl', 'etc/ssl'],
  ['ssl-rel', 'etc/ssl'],
  ['etc/ssl/up/ssl', 'etc/ssl'],
])('"%s" resolves to <root>/%s', async (sub, want) => {
  expect(await resolveSubPath(root, sub, F)).toBe(path.join(root, want));
});

test.each([
  ['../outside', /must not contain "\.\."/],
  ['etc/../..', /must not contain "\.\."/],
  ['/etc', /must be a relative path/],
  ['etc/escape', /leaves the image through a symlink/],
  ['abs', /leaves the image through the absolute symlink abs -> \/etc/],
  ['loop-a', /more than 40 symlinks/],
  ['nope', /does not exist in the image \(no nope\)/],
  ['etc/passwd', /is not a directory in the image \(etc\/passwd\)/],
  ['etc/passwd/x', /is not a directory in the image \(etc\/passwd\)/],
])('"%s" is refused, naming the field', async (sub, why) => {
  const err = await resolveSubPath(root, sub, F).then(
    () => undefined,
    (e: unknown) => e as { kind: string; message: string },
  );
  expect(err).toMatchObject({ kind: 'InvalidArgument', message: expect.stringContaining(`${F}: "${sub}"`) });
  expect(err!.message).toMatch(why);
});
