// log_directory with '..' components: RunPodSandbox and CreateContainer answer
// InvalidArgument naming the field, and no directory appears where the '..'
// walk would have landed (capsa creates the log directory as root).
import * as grpc from '@grpc/grpc-js';
import { existsSync } from 'fs';
import * as path from 'path';
import { TestDaemon, call, expectRpcError, runp, startDaemon } from '../helpers/daemon';
import { removePodsCheckLeaksAndStop } from '../helpers/leaks';
import { TestRegistry, ensureTestImages, startRegistry } from '../helpers/registry';

const IMAGE = 'registry.example.test/capsa-test/busybox:latest';
const suite = process.getuid?.() === 0 ? describe : describe.skip;

suite("log_directory with '..'", () => {
  let reg: TestRegistry;
  let d: TestDaemon;

  beforeAll(async () => {
    const images = await ensureTestImages();
    reg = await startRegistry();
    await reg.push(images.busybox.layout, 'capsa-test/busybox:latest');
    d = await startDaemon({ toml: `[registries."registry.example.test"]\nmirrors = ["${reg.url}"]\n` });
    await call(d.image, 'pullImage', { image: { image: IMAGE } }, 120_000);
  }, 180_000);

  afterAll(async () => {
    if (d && d.proc.exitCode === null) await removePodsCheckLeaksAndStop(d);
    await d?.cleanup();
    await reg?.stop();
  }, 120_000);

  const meta = (name: string): Record<string, unknown> => ({ name, uid: `uid-${name}`, namespace: 'capsa-logdir' });
  const hostNet = { securityContext: { namespaceOptions: { network: 2 } } };

  it('RunPodSandbox refuses it and creates nothing', async () => {
    const landing = path.join(d.dir, 'escaped-pod');
    const logDirectory = `${d.dir}/logs/a/../../escaped-pod`;
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: { metadata: meta('p1'), logDirectory, linux: hostNet } }, 60_000),
      grpc.status.INVALID_ARGUMENT,
      /config\.log_directory.*'\.\.'/,
    );
    expect(existsSync(landing)).toBe(false);
    const pods = await call<{ items: unknown[] }>(d.runtime, 'listPodSandbox', {});
    expect(pods.items).toHaveLength(0);
  });

  it("CreateContainer refuses a sandbox_config whose log_directory has '..' and creates nothing", async () => {
    const podCfg = { metadata: meta('p2'), logDirectory: path.join(d.dir, 'logs', 'p2'), linux: hostNet };
    const pod = await runp(d, podCfg, 60_000);
    const landing = path.join(d.dir, 'escaped-ctr');
    const bad = { ...podCfg, logDirectory: `${d.dir}/logs/p2/../../escaped-ctr` };
    await expectRpcError(
      call(
        d.runtime,
        'createContainer',
        {
          podSandboxId: pod,
          sandboxConfig: bad,
          config: { metadata: { name: 'c' }, image: { image: IMAGE }, command: ['true'], logPath: 'c.log' },
        },
        60_000,
      ),
      grpc.status.INVALID_ARGUMENT,
      /sandbox_config\.log_directory.*'\.\.'/,
    );
    expect(existsSync(landing)).toBe(false);
    const ctrs = await call<{ containers: unknown[] }>(d.runtime, 'listContainers', {});
    expect(ctrs.containers).toHaveLength(0);
  });
});
