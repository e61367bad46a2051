// A pod's hostname through the real socket, as kubelet sends it for
// setHostnameAsFQDN: "<pod>.<subdomain>.<namespace>.svc.<cluster domain>",
// which ends in a dot when the cluster domain is empty (node e2e's setup).
// The name must reach the pod's UTS namespace unchanged.
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'child_process';
import { defaultCgroupParent } from '../../src/containerizer/isolators/cgroups/paths';
import { TestDaemon, call, expectRpcError, runp, startDaemon } from '../helpers/daemon';
import { rmCgroupTree } from '../helpers/cgroups';
import { assertNoCapsaLeaks } from '../helpers/leaks';

jest.setTimeout(60_000);

let d: TestDaemon;

beforeAll(async () => {
  d = await startDaemon();
});

afterAll(async () => {
  await d.stop();
  await rmCgroupTree(defaultCgroupParent('cgroupfs', d.root));
  await d.cleanup();
});

function podConfig(name: string, hostname: string): Record<string, unknown> {
  return { metadata: { name, uid: `uid-${process.pid}-${name}`, namespace: 'capsa-tests', attempt: 0 }, hostname };
}

test('an FQDN hostname with a trailing dot is the pod UTS namespace hostname', async () => {
  const fqdn = 'hostfqdn-1.t.hostfqdn-2.svc.';
  const id = await runp(d, podConfig('fqdn', fqdn));
  const st = await call<{ info: { info: string } }>(d.runtime, 'podSandboxStatus', { podSandboxId: id, verbose: true });
  const uts = (JSON.parse(st.info.info) as { namespaces: { uts: string } }).namespaces.uts;
  expect(execFileSync('nsenter', [`--uts=${uts}`, 'hostname'], { encoding: 'utf8' }).trim()).toBe(fqdn);
  await call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
  await call(d.runtime, 'removePodSandbox', { podSandboxId: id });
  await assertNoCapsaLeaks([d.dir], { cgroupParents: [defaultCgroupParent('cgroupfs', d.root)] });
});

test('a hostname over 64 bytes, or a dot alone, is still InvalidArgument naming config.hostname', async () => {
  for (const bad of [`${'h'.repeat(64)}.`, '.', 'a b']) {
    await expectRpcError(
      call(d.runtime, 'runPodSandbox', { config: podConfig('bad', bad) }),
      grpc.status.INVALID_ARGUMENT,
      /^config\.hostname: /,
    );
  }
});
