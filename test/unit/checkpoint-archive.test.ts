// The checkpoint archive (src/containerizer/criu/archive.ts): CRIU's dump
// arguments and the metadata as tables; the writable layer's walk, the diff
// tar, packing and reading with real tar on real files (an overlay whiteout
// is a 0/0 character device made with mknod); archives that are not ours,
// truncated or escaping are refused naming the field. And the CRIU probe on
// binaries that are missing or fail their check.
import { execFileSync } from 'child_process';
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ContainerRecord } from '../../src/containerizer/container-spec';
import {
  ARCHIVE,
  ARCHIVE_FORMAT,
  configDumpOf,
  criuDumpArgs,
  externalMountsOf,
  listingProblem,
  packArchive,
  readArchive,
  recordJson,
  walkWritableLayer,
  writeRootfsDiff,
} from '../../src/containerizer/criu/archive';
import { CriuProbe, criuErrors, parseCriuVersion, tail } from '../../src/containerizer/criu/criu';
import type { LaunchSpec } from '../../src/containerizer/launcher/spec';
import { CapsaError } from '../../src/errors';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'capsa-checkpoint-archive-'));
afterAll(() => fs.rm(tmp, { recursive: true, force: true }));

const signal = (): AbortSignal => AbortSignal.timeout(30_000);

const record = {
  id: 'c0ffee'.padEnd(64, '0'),
  sandboxId: 'abba'.padEnd(64, '0'),
  metadata: { name: 'counter', attempt: 2 },
  image: {
    requested: 'busybox',
    userSpecified: 'docker.io/library/busybox:1.36',
    annotations: {},
    id: 'sha256:' + 'a'.repeat(64),
    ref: 'docker.io/library/busybox@sha256:' + 'b'.repeat(64),
    repoTags: ['docker.io/library/busybox:1.36'],
  },
  beganAt: 1_700_000_000_000_000_000n,
  createdAt: 1_700_000_001_000_000_000n,
  rootfs: '/run/capsa/containers/c0ffee/rootfs',
} as unknown as ContainerRecord;

const spec = {
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc', options: [] },
    { destination: '/etc/hosts', type: 'bind', source: '/var/lib/capsa/sandboxes/x/hosts', options: ['rbind', 'ro'] },
    { destination: '/data', type: 'none', source: '/srv/data', options: ['rbind'] },
  ],
  linux: { maskedPaths: ['/proc/kcore'], namespaces: [] },
} as unknown as LaunchSpec;

test('criu dump arguments: the tree, leave-running, external net namespace and bind mounts', () => {
  const args = criuDumpArgs({
    pid: 4242,
    imagesDir: '/w/archive/checkpoint',
    workDir: '/w/archive',
    rootfs: '/run/capsa/containers/c/rootfs',
    netnsInode: 4026532300,
    externalMounts: externalMountsOf(spec),
  });
  expect(args.slice(0, 3)).toEqual(['dump', '--tree', '4242']);
  expect(args).toEqual(expect.arrayContaining(['--leave-running', '--tcp-established', '--file-locks']));
  const pairs = (flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
  expect(pairs('--images-dir')).toEqual(['/w/archive/checkpoint']);
  expect(pairs('--root')).toEqual(['/run/capsa/containers/c/rootfs']);
  expect(pairs('--log-file')).toEqual([ARCHIVE.dumpLog]);
  expect(pairs('--external')).toEqual(['net[4026532300]:extRootNetNS']);
  expect(pairs('--ext-mount-map')).toEqual(['/data:/data', '/etc/hosts:/etc/hosts', '/proc/kcore:/proc/kcore']);
  // A terminal: the pty's slave, rdev and dev in hex, as runc names it.
  const tty = criuDumpArgs({
    pid: 1,
    imagesDir: 'i',
    workDir: 'w',
    rootfs: 'r',
    externalMounts: [],
    tty: { rdev: 0x8803, dev: 0x16 },
  });
  expect(tty.slice(tty.indexOf('--external'))).toEqual(['--external', 'tty[8803:16]']);
  // A pod-wide cut: the cgroup the caller froze.
  const cut = criuDumpArgs({
    pid: 1,
    imagesDir: 'i',
    workDir: 'w',
    rootfs: 'r',
    externalMounts: [],
    freezeCgroup: '/f',
  });
  expect(cut.slice(cut.indexOf('--freeze-cgroup'))).toEqual(['--freeze-cgroup', '/f']);
  // The monitor's /dev/null as stdin: a file of a host mount, named by mount id and inode.
  const dn = criuDumpArgs({
    pid: 1,
    imagesDir: 'i',
    workDir: 'w',
    rootfs: 'r',
    externalMounts: [],
    externalFiles: ['file[18:5]', 'file[18:5]'],
  });
  expect(dn.slice(dn.indexOf('--external'))).toEqual(['--external', 'file[18:5]']);
  // Host network: nothing external to name.
  const host = criuDumpArgs({ pid: 1, imagesDir: 'i', workDir: 'w', rootfs: 'r', externalMounts: [] });
  expect(host).not.toContain('--external');
  expect(host).not.toContain('--ext-mount-map');
});

test('config.dump carries checkpointctl fields and our format; the record keeps its bigints as strings', () => {
  const at = new Date('2026-12-07T00:00:00.000Z');
  expect(configDumpOf(record, at)).toEqual({
    id: record.id,
    name: 'counter',
    rootfsImage: 'docker.io/library/busybox:1.36',
    rootfsImageRef: record.image.id,
    rootfsImageName: 'docker.io/library/busybox:1.36',
    runtime: 'capsa',
    createdTime: '2023-11-14T22:13:21.000Z',
    checkpointedTime: '2026-12-07T00:00:00.000Z',
    capsa: { format: ARCHIVE_FORMAT, sandboxId: record.sandboxId, attempt: 2 },
  });
  expect(JSON.parse(recordJson(record)).createdAt).toBe('1700000001000000000');
});

test('listing checks: ours, missing files, escaping entries', () => {
  const ours = ['./', './checkpoint/', './checkpoint/core-1.img', ...Object.values(ARCHIVE).map((f) => `./${f}`)];
  expect(listingProblem(ours)).toBeUndefined();
  expect(listingProblem(['./config.dump', './spec.dump'])).toMatch(
    /not a capsa checkpoint archive: no checkpoint\/, rootfs-diff\.tar, deleted\.files, capsa\.container/,
  );
  expect(listingProblem([...ours, '../etc/passwd'])).toMatch(/leaves the archive/);
  expect(listingProblem([...ours, './checkpoint/../../x'])).toMatch(/leaves the archive/);
  expect(listingProblem([...ours, '/etc/shadow'])).toMatch(/leaves the archive/);
});

/** A staging dir laid out as the checkpointer lays it out, from a real upper dir. */
async function stage(name: string): Promise<{ staging: string; upper: string }> {
  const base = path.join(tmp, name);
  const upper = path.join(base, 'upper');
  const staging = path.join(base, 'staging');
  await fs.mkdir(path.join(upper, 'etc/app'), { recursive: true });
  await fs.mkdir(path.join(staging, ARCHIVE.checkpointDir), { recursive: true });
  await fs.writeFile(path.join(upper, 'etc/app/state'), 'counter=41\n');
  await fs.chown(path.join(upper, 'etc/app/state'), 1234, 5678);
  execFileSync('mknod', [path.join(upper, 'etc/removed.conf'), 'c', '0', '0']);
  await fs.writeFile(path.join(staging, ARCHIVE.checkpointDir, 'inventory.img'), Buffer.from([1, 2, 3]));
  const walk = await walkWritableLayer(upper);
  expect(walk).toEqual({ include: ['etc', 'etc/app', 'etc/app/state'], deleted: ['etc/removed.conf'] });
  await writeRootfsDiff(upper, walk, path.join(staging, ARCHIVE.rootfsDiff), signal());
  await fs.writeFile(path.join(staging, ARCHIVE.deletedFiles), JSON.stringify(walk.deleted));
  await fs.writeFile(path.join(staging, ARCHIVE.configDump), JSON.stringify(configDumpOf(record, new Date())));
  await fs.writeFile(path.join(staging, ARCHIVE.specDump), JSON.stringify(spec));
  await fs.writeFile(path.join(staging, ARCHIVE.record), recordJson(record));
  await fs.writeFile(path.join(staging, ARCHIVE.dumpLog), 'dump log\n');
  return { staging, upper };
}

async function refusal(file: string): Promise<CapsaError> {
  const dest = mkdtempSync(path.join(tmp, 'read-'));
  const err = await readArchive(file, dest, 'config.image.image', signal()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CapsaError);
  return err as CapsaError;
}

test('an archive packed and read back: the layout, the diff (owners kept, no whiteouts), the metadata', async () => {
  const { staging } = await stage('roundtrip');
  const location = path.join(tmp, 'checkpoint-counter.tar');
  await packArchive(staging, location, signal());
  // Only the archive appears beside it: the temp name is gone.
  expect((await fs.readdir(tmp)).filter((f) => f.includes('checkpoint-counter'))).toEqual(['checkpoint-counter.tar']);
  expect((await fs.stat(location)).mode & 0o777).toBe(0o600);
  const names = execFileSync('tar', ['-tf', location]).toString().split('\n').filter(Boolean).sort();
  expect(names).toEqual(
    [
      './',
      './capsa.container',
      './checkpoint/',
      './checkpoint/inventory.img',
      './config.dump',
      './deleted.files',
      './dump.log',
      './rootfs-diff.tar',
      './spec.dump',
    ].sort(),
  );
  const dest = mkdtempSync(path.join(tmp, 'read-'));
  const got = await readArchive(location, dest, 'config.image.image', signal());
  expect(got.config.id).toBe(record.id);
  expect(got.config.capsa.format).toBe(ARCHIVE_FORMAT);
  expect(got.deleted).toEqual(['etc/removed.conf']);
  expect(got.spec.mounts).toHaveLength(3);
  expect(got.record.id).toBe(record.id);
  const diff = execFileSync('tar', ['-tvf', path.join(dest, ARCHIVE.rootfsDiff), '--numeric-owner']).toString();
  expect(diff).toMatch(/1234\/5678 +11 .* etc\/app\/state/);
  expect(diff).not.toMatch(/removed\.conf/);
});

test('not a tar, truncated, not ours (another runtime), escaping entries: InvalidArgument naming the field', async () => {
  const { staging } = await stage('bad');
  const good = path.join(tmp, 'good.tar');
  await packArchive(staging, good, signal());

  const junk = path.join(tmp, 'junk.tar');
  await fs.writeFile(junk, 'this is not a tar archive at all'.repeat(40));
  let err = await refusal(junk);
  expect([err.kind, err.message]).toEqual([
    'InvalidArgument',
    expect.stringMatching(/^config\.image\.image: .*not a readable tar/),
  ]);

  const bytes = await fs.readFile(good);
  const truncated = path.join(tmp, 'truncated.tar');
  await fs.writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2) + 100));
  err = await refusal(truncated);
  expect([err.kind, err.message]).toEqual(['InvalidArgument', expect.stringMatching(/^config\.image\.image: /)]);

  // CRI-O's archive has the same file names; its config.dump is not ours.
  await fs.writeFile(path.join(staging, ARCHIVE.configDump), JSON.stringify({ id: 'x', name: 'y', runtime: 'crun' }));
  const crio = path.join(tmp, 'crio.tar');
  await packArchive(staging, crio, signal());
  err = await refusal(crio);
  expect(err.message).toMatch(/^config\.image\.image: .* is not a capsa-checkpoint\/v1 archive \(runtime crun\)/);

  const partial = path.join(tmp, 'partial.tar');
  execFileSync('tar', ['-C', staging, '-cf', partial, ARCHIVE.configDump, ARCHIVE.specDump]);
  err = await refusal(partial);
  expect(err.message).toMatch(/not a capsa checkpoint archive: no checkpoint\//);

  const escaping = path.join(tmp, 'escaping.tar');
  execFileSync('tar', ['-C', staging, '-cf', escaping, '.', '-P', '--transform', 's,^\\./dump.log,../dump.log,']);
  err = await refusal(escaping);
  expect(err.message).toMatch(/leaves the archive/);
});

test('CRIU probe: a missing binary and a failing check are not usable, with the evidence', async () => {
  const missing = await new CriuProbe('/nonexistent/criu').status();
  expect(missing).toEqual({ usable: false, evidence: expect.stringMatching(/no \/nonexistent\/criu/) });
  const script = path.join(tmp, 'fake-criu');
  await fs.writeFile(
    script,
    '#!/bin/sh\n[ "$1" = --version ] && { echo "Version: 9.9"; exit 0; }\necho "Error: no kernel" >&2\nexit 1\n',
    {
      mode: 0o755,
    },
  );
  const failing = await new CriuProbe(script).status();
  expect(failing).toEqual({ path: script, version: '9.9', usable: false, evidence: 'Error: no kernel' });
  await expect(new CriuProbe(script).require('CheckpointContainer', {})).rejects.toMatchObject({
    kind: 'FailedPrecondition',
    message: expect.stringMatching(/criu 9\.9 check failed: Error: no kernel/),
  });
  expect(parseCriuVersion('Version: 3.17.1\n')).toBe('3.17.1');
  expect(tail('a\n\nb\nc\n', 2)).toBe('b; c');
});

test("criuErrors: a CRIU log's Error lines (the cause first), without timestamps; the tail without any", () => {
  const log = [
    '(00.001) Dumping processes',
    "(00.037) Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=0 path=/dev/null",
    '(00.100) Unfreezing tasks into 1',
    '(00.100) Error (criu/cr-dump.c:2128): Dumping FAILED.',
  ].join('\n');
  expect(criuErrors(log)).toBe(
    "Error (criu/files-reg.c:1790): Can't lookup mount=24 for fd=0 path=/dev/null; Error (criu/cr-dump.c:2128): Dumping FAILED.",
  );
  expect(criuErrors('a\nb\n')).toBe('a; b');
});
