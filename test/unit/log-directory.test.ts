import { checkLogDirectory } from '../../src/cri/log-directory';
import { containerLogPath } from '../../src/cri/container-spec';
import { ContainerConfig, PodSandboxConfig } from '../../src/gen/runtime/v1/api';
import { fieldOf } from '../helpers/invalid';

describe('log_directory', () => {
  it.each(['/var/log/pods/ns_p_u', '/', '/a/./b', '/a//b/', '/a/..b/c..', '/a/.../b'])('accepts %j', (dir) => {
    expect(() => checkLogDirectory('config.log_directory', dir)).not.toThrow();
  });

  it.each(['/var/log/pods/../../etc', '/..', '/a/b/..', '/a/../b/', 'relative', '../etc', ''])(
    'refuses %j naming the field',
    (dir) => {
      expect(fieldOf(() => checkLogDirectory('config.log_directory', dir))).toBe('config.log_directory');
    },
  );

  it("CreateContainer's sandbox_config.log_directory with '..' is refused before any path is built", () => {
    const sb = PodSandboxConfig.fromPartial({ logDirectory: '/var/log/pods/x/../../../etc/cron.d' });
    const cfg = ContainerConfig.fromPartial({ logPath: 'c.log' });
    expect(fieldOf(() => containerLogPath(cfg, sb))).toBe('sandbox_config.log_directory');
    const ok = PodSandboxConfig.fromPartial({ logDirectory: '/var/log/pods/x/' });
    expect(containerLogPath(cfg, ok)).toBe('/var/log/pods/x/c.log');
  });
});
