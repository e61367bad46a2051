// Named runtime handlers (runtime_handlers) through the real socket: Status
// lists them (kubelet copies the list into the Node), RunPodSandbox accepts a
// configured name and reports it back, and anything else is InvalidArgument
// naming the field. Kubernetes' node conformance suite runs its PodOverhead
// spec on a RuntimeClass whose handler, "test-handler", it expects the runtime
// to have.
import * as grpc from '@grpc/grpc-js';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { usernsSupport } from '../../src/containerizer/isolators/namespaces/userns-probe';
import { kernelHasMountSetattr } from '../../src/cri/container-spec/host-io';
import { PodSandboxState } from '../../src/gen/runtime/v1/api';
import { TestDaemon, call, expectRpcError, startDaemon } from '../helpers/daemon';
import { rmCgroupTree } from '../helpers/cgroups';
import { assertNoCapsaLeaks } from '../helpers/leaks';

jest.setTimeout(60_000);

interface HandlerReply {
  name: string;
  features?: { recursiveReadOnlyMounts: boolean; userNamespaces: boolean };
}

function podConfig(name: string): Record<string, unknown> {
  return {
    metadata: { name, uid: `uid-${process.pid}-${name}`, namespace: 'capsa-tests', attempt: 0 },
    hostname: name,
  };
}

describe('runtime handlers', () => {
  let d: TestDaemon;

  beforeAll(async () => {
    d = await startDaemon({ toml: 'runtime_handlers = ["test-handler", "runc"]\n' });
  });

  afterAll(async () => {
    await d.stop();
    await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
    await d.cleanup();
  });

  test('Status lists the default handler and the configured ones, with what this host can do', async () => {
    const r = await call<{ runtimeHandlers: HandlerReply[] }>(d.runtime, 'status', {});
    const userns = (await usernsSupport(d.root)).ok;
    expect(r.runtimeHandlers).toEqual(
      ['', 'test-handler', 'runc'].map((name) => ({
        name,
        // recursive read-only binds need mount_setattr; user namespaces idmapped mounts (the probe)
        features: { recursiveReadOnlyMounts: kernelHasMountSetattr(), userNamespaces: userns },
      })),
    );
  });

  test('a pod on a configured handler runs, and its status and listing name the handler', async () => {
    const id = (
      await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', {
        config: podConfig('handler-pod'),
        runtimeHandler: 'test-handler',
      })
    ).podSandboxId;
    const st = await call<{ status: { state: number; runtimeHandler: string } }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: id,
    });
    expect(st.status).toMatchObject({ state: PodSandboxState.SANDBOX_READY, runtimeHandler: 'test-handler' });
    const items = (await call<{ items: { id: string; runtimeHandler: string }[] }>(d.runtime, 'listPodSandbox', {}))
      .items;
    expect(items.find((p) => p.id === id)?.runtimeHandler).toBe('test-handler');
    // The same name on another pod of the default handler does not collide with it.
    const other = (
      await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config: podConfig('default-pod') })
    ).podSandboxId;
    const st2 = await call<{ status: { runtimeHandler: string } }>(d.runtime, 'podSandboxStatus', {
      podSandboxId: other,
    });
    expect(st2.status.runtimeHandler).toBe('');
    for (const p of [id, other]) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: p });
      await call(d.runtime, 'removePodSandbox', { podSandboxId: p });
    }
    await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
  });

  test('a handler that is not configured is InvalidArgument naming runtime_handler and what is served', async () => {
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: podConfig('kata-pod'), runtimeHandler: 'kata' }),
      grpc.status.INVALID_ARGUMENT,
      /^runtime_handler: unknown runtime handler "kata" \(capsa serves "", "test-handler", "runc"/,
    );
    const items = (await call<{ items: unknown[] }>(d.runtime, 'listPodSandbox', {})).items;
    expect(items).toEqual([]);
  });
});
