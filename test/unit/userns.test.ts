// The CRI user namespace checks (src/cri/userns.ts): what the kernel would
// refuse in uid_map/gid_map, and what capsa refuses on purpose, each naming
// its field; and the probe's output as the daemon reads it.
import { parseProbe } from '../../src/containerizer/isolators/namespaces/userns-probe';
import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  MAX_ID_MAPPINGS,
  checkSubIds,
  idMappings,
  parseSubIds,
  readKubeletSubIds,
  usernsFromCri,
  usernsToCri,
} from '../../src/cri/userns';
import { NamespaceMode, UserNamespace, type IDMapping } from '../../src/gen/runtime/v1/api';
import { fieldOf } from '../helpers/invalid';

const F = 'userns_options';
const m = (containerId: number, hostId: number, length: number): IDMapping => ({ containerId, hostId, length });
const MAP = [m(0, 100000, 65536)];

describe('idMappings', () => {
  test('kubelet mappings pass and become the launch spec shape', () => {
    expect(idMappings(MAP, `${F}.uids`)).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    // several ranges, in any order, root in one of them
    expect(idMappings([m(1000, 201000, 10), m(0, 200000, 1000)], `${F}.uids`)).toHaveLength(2);
    // the kernel's limit itself is fine
    const many = Array.from({ length: MAX_ID_MAPPINGS }, (_, i) => m(i, 100000 + i, 1));
    expect(idMappings(many, `${F}.uids`)).toHaveLength(MAX_ID_MAPPINGS);
    // up to 2^32 - 2 inclusive
    expect(idMappings([m(0, 4294967295 - 65536, 65536)], `${F}.uids`)).toHaveLength(1);
  });

  const bad: [string, IDMapping[], string][] = [
    ['empty', [], `${F}.uids`],
    ['zero length', [m(0, 100000, 0)], `${F}.uids[0].length`],
    ['container ids overlap', [m(0, 100000, 1000), m(999, 300000, 10)], `${F}.uids[1].container_id`],
    ['host ids overlap', [m(0, 100000, 1000), m(5000, 100999, 10)], `${F}.uids[1].host_id`],
    ['container root not mapped', [m(1, 100000, 10)], `${F}.uids`],
    ['host root mapped', [m(0, 0, 65536)], `${F}.uids[0].host_id`],
    ['host range past 2^32 - 1', [m(0, 4294967295 - 10, 65536)], `${F}.uids[0].length`],
    ['container range past 2^32 - 1', [m(0, 100000, 1), m(4294967290, 200000, 10)], `${F}.uids[1].length`],
    [
      'more lines than the kernel takes',
      Array.from({ length: MAX_ID_MAPPINGS + 1 }, (_, i) => m(i, 100000 + i, 1)),
      `${F}.uids`,
    ],
  ];
  test.each(bad)('%s: InvalidArgument naming the field', (_name, list, field) => {
    expect(fieldOf(() => idMappings(list, `${F}.uids`))).toBe(field);
  });
});

describe('usernsFromCri', () => {
  test('none and NODE: the host user namespace', () => {
    expect(usernsFromCri(undefined, F)).toBeUndefined();
    expect(usernsFromCri(UserNamespace.fromPartial({ mode: NamespaceMode.NODE }), F)).toBeUndefined();
  });
  test('POD: both lists, checked; round trip to the CRI shape', () => {
    const cri = UserNamespace.fromPartial({ mode: NamespaceMode.POD, uids: MAP, gids: MAP });
    const spec = usernsFromCri(cri, F)!;
    expect(spec.gids).toEqual([{ containerID: 0, hostID: 100000, size: 65536 }]);
    expect(usernsToCri(spec)).toEqual(cri);
    expect(usernsToCri(undefined)).toBeUndefined();
  });
  const bad: [string, Partial<UserNamespace>, string][] = [
    ['NODE with mappings', { mode: NamespaceMode.NODE, uids: MAP }, `${F}.uids`],
    ['CONTAINER', { mode: NamespaceMode.CONTAINER, uids: MAP, gids: MAP }, `${F}.mode`],
    ['TARGET', { mode: NamespaceMode.TARGET }, `${F}.mode`],
    ['POD without gids', { mode: NamespaceMode.POD, uids: MAP }, `${F}.gids`],
    ['POD with bad gids', { mode: NamespaceMode.POD, uids: MAP, gids: [m(0, 100000, 0)] }, `${F}.gids[0].length`],
  ];
  test.each(bad)('%s: InvalidArgument naming the field', (_name, opts, field) => {
    expect(fieldOf(() => usernsFromCri(UserNamespace.fromPartial(opts), F))).toBe(field);
  });
});

describe("the kubelet user's subordinate ids", () => {
  const subuid = 'alice:100000:65536\nkubelet:65536:65536\n999:131072:65536\nkubelet:1048576:65536\nbad line\n';
  test('by name or uid, merged where they touch', () => {
    expect(parseSubIds(subuid, 'kubelet', 999)).toEqual([
      { first: 65536, count: 131072 },
      { first: 1048576, count: 65536 },
    ]);
    expect(parseSubIds(subuid, 'kubelet', undefined)).toEqual([
      { first: 65536, count: 65536 },
      { first: 1048576, count: 65536 },
    ]);
  });
  test('a mapping outside them is InvalidArgument naming its host_id', () => {
    const ranges = parseSubIds(subuid, 'kubelet', 999);
    expect(() => checkSubIds(idMappings([m(0, 131072, 65536)], 'u'), ranges, 'u', '/etc/subuid')).not.toThrow();
    expect(fieldOf(() => checkSubIds(idMappings([m(0, 165536, 65536)], 'u'), ranges, 'u', '/etc/subuid'))).toBe(
      'u[0].host_id',
    );
  });
  test('read from <etc>: none without a kubelet user or ranges', async () => {
    const etc = mkdtempSync(path.join(os.tmpdir(), 'capsa-etc-'));
    try {
      await fs.writeFile(path.join(etc, 'subuid'), subuid);
      expect(await readKubeletSubIds(etc)).toBeUndefined();
      await fs.writeFile(path.join(etc, 'passwd'), 'root:x:0:0::/root:/bin/sh\nkubelet:x:999:999::/:/bin/false\n');
      await fs.writeFile(path.join(etc, 'subgid'), 'kubelet:65536:65536\n');
      expect(await readKubeletSubIds(etc)).toEqual({
        uids: [
          { first: 65536, count: 131072 },
          { first: 1048576, count: 65536 },
        ],
        gids: [{ first: 65536, count: 65536 }],
      });
      await fs.writeFile(path.join(etc, 'subuid'), '');
      await fs.writeFile(path.join(etc, 'subgid'), '');
      expect(await readKubeletSubIds(etc)).toBeUndefined();
    } finally {
      await fs.rm(etc, { recursive: true, force: true });
    }
  });
});

describe('parseProbe', () => {
  test('both ok: available', () => {
    expect(parseProbe('plain ok\noverlay ok\n')).toEqual({ ok: true, reason: '' });
  });
  test('a failure says which mount could not be idmapped and why', () => {
    expect(parseProbe('plain ok\noverlay error mount_setattr(MOUNT_ATTR_IDMAP): Invalid argument\n')).toEqual({
      ok: false,
      reason: 'overlay over idmapped layers: mount_setattr(MOUNT_ATTR_IDMAP): Invalid argument',
    });
    expect(parseProbe('plain error no user namespace\noverlay error no user namespace\n').reason).toBe(
      'idmapped bind: no user namespace',
    );
    expect(parseProbe('').ok).toBe(false);
  });
});
