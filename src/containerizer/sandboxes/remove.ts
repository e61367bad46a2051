// RemovePodSandbox: a stop first when the pod is not cleanly stopped, the
// pod's containers, then the checkpoint (DESTROYING → REMOVED).
import { raceAbort, withTimeout } from '../../util/timeout';
import { errorContext, transition } from '../state';
import type { SandboxHost } from './host';
import { stopLocked } from './stop';

/** Removes the sandbox (stopping it first if needed). Unknown ids succeed. */
export async function removeSandbox(host: SandboxHost, idOrPrefix: string, signal: AbortSignal): Promise<void> {
  const sb = host.find(idOrPrefix);
  if (!sb) return;
  await raceAbort(
    sb.exclusive(async () => {
      if (sb.state === 'REMOVED') return;
      if (sb.state !== 'STOPPED' || sb.cleanupPending) await stopLocked(host, sb, 'removed');
      const errCtx = errorContext(sb, 'destroying');
      await withTimeout(
        'sandbox remove',
        host.timeouts.destroying,
        async (s) => {
          if (host.hooks) await host.hooks.removeAll(sb.id, s);
          transition(sb, 'DESTROYING', host.log, 'remove');
          try {
            await host.store.remove('sandbox', sb.id);
          } catch (err) {
            transition(sb, 'STOPPED', host.log, 'remove failed');
            throw err;
          }
        },
        errCtx,
      );
      host.registry.forget(sb);
      transition(sb, 'REMOVED', host.log, 'removed');
      sb.ctx.log.info('sandbox removed');
    }),
    signal,
  );
}
