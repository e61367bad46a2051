// UpdatePodSandboxResources and the pod's usage (PodSandboxStats): both go
// through the isolator chain, each on its own deadline.
import { CapsaError } from '../../errors';
import { raceAbort, withTimeout } from '../../util/timeout';
import type { Usage, UsageScope } from '../isolator';
import type { CgroupResources } from '../isolators/cgroups/values';
import { errorContext } from '../state';
import type { SandboxHost } from './host';

export async function updateSandbox(
  host: SandboxHost,
  idOrPrefix: string,
  resources: CgroupResources,
  signal: AbortSignal,
): Promise<void> {
  const sb = host.get(idOrPrefix);
  await raceAbort(
    sb.exclusive(async () => {
      if (sb.state !== 'RUNNING') {
        throw new CapsaError('FailedPrecondition', `sandbox ${sb.id} is not ready`, { sandboxId: sb.id });
      }
      await withTimeout(
        'sandbox update',
        host.timeouts.isolating,
        (s) => host.chain.update(sb.ctx, sb.isolatorStates, resources, s),
        errorContext(sb, 'update'),
      );
      sb.spec.resources = resources;
      await host.persist(sb);
    }),
    signal,
  );
}

export async function sandboxUsage(
  host: SandboxHost,
  idOrPrefix: string,
  signal: AbortSignal,
  scope: UsageScope,
): Promise<Usage> {
  const sb = host.get(idOrPrefix);
  if (sb.state !== 'RUNNING') return {};
  return withTimeout(
    'sandbox usage',
    10_000,
    (s) => host.chain.usage(sb.ctx, sb.isolatorStates, s, scope),
    errorContext(sb),
    signal,
  );
}
