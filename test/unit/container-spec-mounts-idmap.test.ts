// CRI mounts of a pod with a user namespace (src/cri/container-spec/cri-mounts.ts):
// kubelet puts the pod's mappings on every mount; those become the monitor's
// "idmap" option, anything else is refused naming the field.
import { Mount, MountPropagation } from '../../src/gen/runtime/v1/api';
import { criMounts } from '../../src/cri/container-spec/cri-mounts';
import { fieldOfAsync as fieldOf } from '../helpers/invalid';

const MAP = [{ containerId: 0, hostId: 100000, length: 65536 }];
const USERNS = {
  uids: [{ containerID: 0, hostID: 100000, size: 65536 }],
  gids: [{ containerID: 0, hostID: 100000, size: 65536 }],
};
const exists = (): Promise<boolean> => Promise.resolve(true);
const m = (over: Partial<Mount>): Mount =>
  Mount.fromPartial({ containerPath: '/data', hostPath: '/host/data', ...over });
const run = (mounts: Mount[], userns: typeof USERNS | undefined = USERNS) =>
  criMounts(mounts, exists, undefined, true, undefined, userns);

describe('CRI mounts in a pod with a user namespace', () => {
  test("the pod's mappings: an idmapped bind; none: a plain bind", async () => {
    const [idm, plain] = await run([
      m({ uidMappings: MAP, gidMappings: MAP, readonly: true }),
      m({ containerPath: '/plain' }),
    ]);
    expect(idm.options).toEqual(['rbind', 'rprivate', 'ro', 'idmap']);
    expect(plain.options).not.toContain('idmap');
  });

  const F = 'config.mounts[0]';
  const bad: [string, Partial<Mount>, typeof USERNS | undefined, string][] = [
    ['mappings without a pod user namespace', { uidMappings: MAP, gidMappings: MAP }, undefined, `${F}.uid_mappings`],
    ['gid mappings alone without one', { gidMappings: MAP }, undefined, `${F}.gid_mappings`],
    [
      'other uid mappings than the pod',
      { uidMappings: [{ containerId: 0, hostId: 200000, length: 65536 }], gidMappings: MAP },
      USERNS,
      `${F}.uid_mappings`,
    ],
    ['uid mappings without gid mappings', { uidMappings: MAP }, USERNS, `${F}.gid_mappings`],
    [
      'bad mappings',
      { uidMappings: [{ containerId: 0, hostId: 100000, length: 0 }], gidMappings: MAP },
      USERNS,
      `${F}.uid_mappings[0].length`,
    ],
    [
      'bidirectional propagation',
      { propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL },
      USERNS,
      `${F}.propagation`,
    ],
  ];
  test.each(bad)('%s: InvalidArgument naming the field', async (_name, over, userns, field) => {
    // criMounts itself: a default parameter would turn an undefined userns into USERNS
    expect(await fieldOf(criMounts([m(over)], exists, undefined, true, undefined, userns))).toBe(field);
  });
});
