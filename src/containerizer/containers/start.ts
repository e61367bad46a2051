// StartContainer: releases the held init; a start that fails inside the
// container (execve) ends it as EXITED/StartError.
import { ErrorContext, FailedPreconditionError, asCapsaError } from '../../errors';
import { withTimeout } from '../../util/timeout';
import { isStartFailure } from '../launcher/monitor-launcher';
import { nowNs } from '../state';
import { Container } from './container';
import { ContainerHost } from './host';
import { recordEnd } from './observe';

export async function startLocked(cs: ContainerHost, c: Container): Promise<void> {
  const ctx: ErrorContext = { containerId: c.id, stage: 'start' };
  const state = c.criState();
  if (state !== 'CONTAINER_CREATED' || c.state !== 'RUNNING') {
    throw new FailedPreconditionError(
      `container ${c.id} is ${state.replace('CONTAINER_', '').toLowerCase()}, not created`,
      ctx,
    );
  }
  const r = c.record;
  try {
    const started = await withTimeout(
      'container start',
      cs.timeouts.start,
      (s) => cs.launcher.start(r.runDir, cs.timeouts.start - 1000, s),
      ctx,
    );
    r.startedAt = started.startedAt;
    r.init = started.init;
    await cs.persist(c);
    cs.publish('started', c, r.startedAt);
    cs.log.info({ containerId: c.id, pid: started.init.pid }, 'container started');
    return;
  } catch (err) {
    const e = asCapsaError(err, ctx);
    const st = await cs.launcher.status(r.runDir);
    if (st.state === 'running') {
      // The verdict came late, but the container runs.
      r.startedAt = st.startedAt ?? nowNs();
      if (st.init) r.init = st.init;
      await cs.persist(c);
      cs.publish('started', c, r.startedAt);
      return;
    }
    if (st.state === 'created') {
      // No verdict: the init must not run later on its own.
      await cs.cgroups.destroy(r.cgroupPath, cs.timeouts.destroying, AbortSignal.timeout(cs.timeouts.destroying));
      await recordEnd(cs, c, { state: 'start-failed', reason: e.message, at: nowNs() });
      throw e;
    }
    await recordEnd(cs, c, st);
    if (st.state === 'start-failed') throw new FailedPreconditionError(`start: ${st.reason}`, ctx);
    if (isStartFailure(e)) throw new FailedPreconditionError(`start: ${e.message}`, ctx);
    throw e;
  }
}
