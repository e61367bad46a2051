// StopPodSandbox: the pod's containers, then every isolator (DESTROYING →
// STOPPED, the record kept: NOTREADY). A cleanup that failed earlier is
// retried by the next stop or remove.
import { asCapsaError } from '../../errors';
import { raceAbort, withTimeout } from '../../util/timeout';
import type { Sandbox } from '../sandbox';
import { errorContext, nowNs, stageError, transition } from '../state';
import type { SandboxHost } from './host';

/** Stops the sandbox: its containers, then every isolator. Unknown ids succeed. */
export async function stopSandbox(host: SandboxHost, idOrPrefix: string, signal: AbortSignal): Promise<void> {
  const sb = host.find(idOrPrefix);
  if (!sb) return;
  await raceAbort(
    sb.exclusive(() => stopLocked(host, sb, 'stopped by request')),
    signal,
  );
}

/** The stop itself, under the sandbox's lock (remove.ts stops through it too). */
export async function stopLocked(host: SandboxHost, sb: Sandbox, reason: string): Promise<void> {
  if (sb.state === 'REMOVED') return;
  if (sb.state === 'STOPPED' && !sb.cleanupPending) return;
  const errCtx = errorContext(sb, 'destroying');
  sb.stopping = true;
  // Teardown runs on its own deadline, not the caller's: a cancelled call still cleans up.
  await withTimeout(
    'sandbox stop',
    host.timeouts.destroying,
    async (signal) => {
      if (host.hooks) await host.hooks.stopAll(sb.id, signal);
      if (sb.facts.stoppedAt === undefined) {
        // Disk before memory: from here on the sandbox is NOTREADY, even after a crash.
        sb.facts.stoppedAt = nowNs();
        sb.facts.stopReason = reason;
        await host.persist(sb);
      }
      transition(sb, 'DESTROYING', host.log, reason);
      try {
        await host.chain.cleanup(sb.ctx, host.isolatorStore(sb.id), sb.isolatorStates, signal, sb.ctx.log, errCtx);
        sb.cleanupPending = false;
      } catch (err) {
        sb.cleanupPending = true;
        throw err;
      } finally {
        if (sb.state === 'DESTROYING') {
          transition(sb, 'STOPPED', host.log, sb.cleanupPending ? 'cleanup incomplete' : reason);
        }
      }
    },
    errCtx,
  )
    .catch((err: unknown) => {
      if (sb.state === 'DESTROYING') {
        sb.cleanupPending = true;
        transition(sb, 'STOPPED', host.log, 'stop timed out');
      }
      throw stageError('DESTROYING', asCapsaError(err, errCtx), errCtx);
    })
    .finally(() => {
      // A stop that failed before the pod became NOTREADY leaves it usable.
      if (sb.facts.stoppedAt === undefined) sb.stopping = false;
    });
  sb.ctx.log.info('sandbox stopped');
}
