import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { findNetworkConfig, networkReadiness, pluginTypes } from '../../src/network/cni-status';
import { isCidr } from '../../src/cri/services/runtime';

describe('CNI readiness', () => {
  test('plugin types of conflists and single confs', () => {
    expect(pluginTypes({ plugins: [{ type: 'bridge' }, { type: 'portmap' }] })).toEqual(['bridge', 'portmap']);
    expect(pluginTypes({ type: 'bridge' })).toEqual(['bridge']);
    expect(() => pluginTypes({ plugins: [] })).toThrow();
    expect(() => pluginTypes({ plugins: [{}] })).toThrow();
    expect(() => pluginTypes([])).toThrow();
  });

  test('the lexically first config wins; readiness names what is missing', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-cni-'));
    try {
      expect(await findNetworkConfig(path.join(dir, 'absent'))).toBeUndefined();
      await fs.writeFile(path.join(dir, '20-b.conflist'), JSON.stringify({ plugins: [{ type: 'b' }] }));
      await fs.writeFile(
        path.join(dir, '10-a.conf'),
        JSON.stringify({ cniVersion: '1.0.0', name: 'net-a', type: 'a' }),
      );
      await fs.writeFile(path.join(dir, '05-ignored.txt'), 'x');
      expect(await findNetworkConfig(dir)).toBe(path.join(dir, '10-a.conf'));
      const r = await networkReadiness(dir, [path.join(dir, 'bin')]);
      expect(r).toMatchObject({ ready: false, reason: 'NetworkPluginNotReady' });
      expect(r.message).toMatch(/needs CNI plugin\(s\) a/);
      await fs.mkdir(path.join(dir, 'bin'));
      await fs.writeFile(path.join(dir, 'bin', 'a'), '#!/bin/sh\n', { mode: 0o755 });
      expect((await networkReadiness(dir, [path.join(dir, 'bin')])).ready).toBe(true);
      await fs.writeFile(path.join(dir, '01-broken.conflist'), '{');
      const broken = await networkReadiness(dir, [path.join(dir, 'bin')]);
      expect(broken.ready).toBe(false);
      expect(broken.message).toMatch(/invalid network config .*01-broken/);
      await fs.writeFile(
        path.join(dir, '01-broken.conflist'),
        JSON.stringify({ cniVersion: '1.0.0', plugins: [{ type: 'a' }] }),
      );
      expect((await networkReadiness(dir, [path.join(dir, 'bin')])).message).toMatch(
        /01-broken.conflist: "name" is missing/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test.each([
    ['10.88.0.0/16', true],
    ['fd00::/64', true],
    ['10.0.0.0/33', false],
    ['10.0.0.0', false],
    ['x/8', false],
  ])('isCidr(%s) = %s', (s, ok) => expect(isCidr(s)).toBe(ok));
});
