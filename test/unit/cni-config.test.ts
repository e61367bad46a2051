import { mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CniConfigError, CniConfigSource, parseNetworkConfig } from '../../src/network/cni/config';
import { defaultConfList, ensureDefaultNetworkConfig, subnetsFor } from '../../src/network/cni/default-config';

describe('CNI config', () => {
  let dir: string;
  let bin: string;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capsa-cni-conf-'));
    bin = path.join(dir, 'bin');
    await fs.mkdir(bin);
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const plugin = (name: string): Promise<void> => fs.writeFile(path.join(bin, name), '#!/bin/sh\n', { mode: 0o755 });

  test('a conflist is validated; a single conf is wrapped into a list', () => {
    const list = parseNetworkConfig(
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'n',
        disableCheck: true,
        plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true } }],
      }),
    );
    expect(list).toMatchObject({ name: 'n', cniVersion: '1.0.0', disableCheck: true });
    expect(list.plugins.map((p) => p.type)).toEqual(['bridge', 'portmap']);

    const single = parseNetworkConfig(JSON.stringify({ cniVersion: '0.4.0', name: 's', type: 'ptp', ipMasq: true }));
    expect(single).toMatchObject({ name: 's', cniVersion: '0.4.0', disableCheck: false });
    expect(single.plugins).toEqual([{ cniVersion: '0.4.0', name: 's', type: 'ptp', ipMasq: true }]);
  });

  test.each([
    ['{', /not JSON/],
    ['[]', /not a JSON object/],
    [JSON.stringify({ cniVersion: '1.0.0', plugins: [{ type: 'a' }] }), /"name" is missing/],
    [JSON.stringify({ name: 'n', plugins: [{ type: 'a' }] }), /"cniVersion" is missing/],
    [JSON.stringify({ name: 'n', cniVersion: '9.9.9', plugins: [{ type: 'a' }] }), /9\.9\.9 is not supported/],
    [JSON.stringify({ name: 'bad name', cniVersion: '1.0.0', plugins: [{ type: 'a' }] }), /characters/],
    [JSON.stringify({ name: 'n', cniVersion: '1.0.0', plugins: [] }), /empty/],
    [JSON.stringify({ name: 'n', cniVersion: '1.0.0', plugins: [{ type: '' }] }), /plugins\[0\] needs a "type"/],
    [JSON.stringify({ name: 'n', cniVersion: '1.0.0', plugins: [{ type: '../sh' }] }), /invalid type/],
    [JSON.stringify({ name: 'n', cniVersion: '1.0.0', plugins: {} }), /must be a list/],
    [JSON.stringify({ name: 'n', cniVersion: '1.0.0' }), /neither "plugins" nor "type"/],
    [JSON.stringify({ name: 'n', cniVersion: '1.0.0', type: 'a', capabilities: [] }), /capabilities/],
  ])('rejects %s', (text, msg) => {
    expect(() => parseNetworkConfig(text)).toThrow(CniConfigError);
    expect(() => parseNetworkConfig(text)).toThrow(msg);
  });

  test('the lexically first file is chosen and changes are picked up without a restart', async () => {
    const src = new CniConfigSource(dir, [bin]);
    let s = await src.load();
    expect(s).toMatchObject({ ready: false, reason: 'NetworkPluginNotReady' });
    expect(s.message).toMatch(/no network config found/);

    const conf = (name: string, types: string[]): string =>
      JSON.stringify({ cniVersion: '1.0.0', name, plugins: types.map((type) => ({ type })) });
    await fs.writeFile(path.join(dir, '20-b.conflist'), conf('b', ['b']));
    await fs.writeFile(path.join(dir, 'README.txt'), 'not a config');
    s = await src.load();
    expect(s.ready).toBe(false);
    expect(s.message).toMatch(/20-b.conflist needs CNI plugin\(s\) b, not found in/);
    await plugin('b');
    s = await src.load();
    expect(s.ready).toBe(true);
    if (s.ready) expect(s.network.pluginPaths).toEqual([path.join(bin, 'b')]);

    // A lexically earlier file takes over.
    await fs.writeFile(path.join(dir, '10-a.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'a', type: 'a' }));
    s = await src.load();
    expect(s.file).toBe(path.join(dir, '10-a.conf'));
    expect(s.ready).toBe(false);
    await plugin('a');
    s = await src.load();
    expect(s.ready && s.network.list.name).toBe('a');

    // Rewritten in place with a different size: re-read.
    await fs.writeFile(
      path.join(dir, '10-a.conf'),
      JSON.stringify({ cniVersion: '0.4.0', name: 'a-renamed', type: 'a' }),
    );
    s = await src.load();
    expect(s.ready && s.network.list.name).toBe('a-renamed');
    // Broken: not ready, says why; fixed: ready again.
    await fs.writeFile(path.join(dir, '10-a.conf'), '{"name": ');
    s = await src.load();
    expect(s.ready).toBe(false);
    expect(s.message).toMatch(/invalid network config .*10-a.conf: not JSON/);
    await fs.rm(path.join(dir, '10-a.conf'));
    s = await src.load();
    expect(s.ready && s.network.list.name).toBe('b');
    // Hidden files and editor leftovers do not count.
    await fs.writeFile(path.join(dir, '.00-hidden.conf'), '{');
    expect((await src.load()).ready).toBe(true);
    // The plugin removed: not ready.
    await fs.rm(path.join(bin, 'b'));
    expect((await src.load()).ready).toBe(false);
  });

  test('plugins are searched in the bin dirs in order; non-executables do not count', async () => {
    const bin2 = path.join(dir, 'bin2');
    await fs.mkdir(bin2);
    await fs.writeFile(path.join(bin, 'x'), 'data', { mode: 0o644 });
    await fs.writeFile(path.join(bin2, 'x'), '#!/bin/sh\n', { mode: 0o755 });
    await fs.writeFile(
      path.join(dir, 'x.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [{ type: 'x' }] }),
    );
    const s = await new CniConfigSource(dir, [path.join(dir, 'nope'), bin, bin2]).load();
    expect(s.ready && s.network.pluginPaths).toEqual([path.join(bin2, 'x')]);
  });

  test('default config: bridge + host-local + portmap + loopback, pod CIDR when known', async () => {
    expect(subnetsFor('')).toEqual(['10.88.0.0/16']);
    expect(subnetsFor('10.244.1.0/24, fd00:10::/64')).toEqual(['10.244.1.0/24', 'fd00:10::/64']);
    const c = defaultConfList({ podCidr: '10.244.1.0/24,fd00:10::/64' });
    const list = parseNetworkConfig(JSON.stringify(c));
    expect(list.plugins.map((p) => p.type)).toEqual(['bridge', 'portmap', 'loopback']);
    expect(list.plugins[0]).toMatchObject({
      bridge: 'capsa0',
      isGateway: true,
      ipMasq: true,
      hairpinMode: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10::/64' }]],
        routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }],
      },
    });
    expect(list.plugins[1].capabilities).toEqual({ portMappings: true });

    const confDir = path.join(dir, 'net.d');
    // Plugins missing: nothing written.
    expect(await ensureDefaultNetworkConfig({ confDir, binDirs: [bin] })).toMatchObject({ written: false });
    // Fake plugins that speak only 0.4.0: the config says 0.4.0.
    for (const p of ['bridge', 'host-local', 'portmap', 'loopback']) {
      await fs.writeFile(
        path.join(bin, p),
        `#!/bin/sh\necho '{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}'\n`,
        { mode: 0o755 },
      );
    }
    const out = await ensureDefaultNetworkConfig({ confDir, binDirs: [bin] });
    expect(out).toMatchObject({ written: true, cniVersion: '0.4.0', subnets: ['10.88.0.0/16'] });
    const s = await new CniConfigSource(confDir, [bin]).load();
    expect(s.ready && s.network.list).toMatchObject({ name: 'capsa', cniVersion: '0.4.0' });
    // Existing config: left alone.
    expect(await ensureDefaultNetworkConfig({ confDir, binDirs: [bin], podCidr: '10.1.0.0/16' })).toMatchObject({
      written: false,
      reason: 'a network config exists',
    });
  });
});
