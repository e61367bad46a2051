// Recovery on start, before the daemon serves (Mesos containerizer recover,
// containerd's restart.go). The invariants it relies on:
//
// 1. A sandbox's checkpoint is written before any of its host objects exist
//    (PREPARING), and removed only after all of them are gone (remove).
//    So every capsa object of a sandbox has a checkpoint, except in a crash
//    window that the sweep below covers.
// 2. Every host object is named from its sandbox id with the capsa- prefix:
//    <state>/ns/capsa-<id>-{net,uts,ipc,pid}, <state>/shm/capsa-<id>-shm,
//    <cgroup parent>/capsa-<id>, capsa-pause --pin <state>/ns/capsa-<id>-pid.
// 3. readyAt is written only once every isolator finished; stoppedAt before
//    a stop starts tearing down.
//
// Per checkpoint:
//   no readyAt         creation never finished: undo it, drop the checkpoint
//   stoppedAt          NOTREADY; clean up again (a crash may have interrupted the stop)
//   otherwise          each isolator re-adopts its objects: all alive → READY;
//                      any lost (a reboot wiped the state dir) → stoppedAt now,
//                      clean up the rest → NOTREADY
// Then every prefixed object whose id has no checkpoint is destroyed.
import { promises as fs } from 'fs';
import { asCapsaError } from '../../errors';
import type { Logger } from '../../log';
import { withTimeout } from '../../util/timeout';
import type { CheckpointStore, IsolatorCheckpoint } from '../checkpoint';
import type { IsolatorChain, IsolatorStore } from '../isolator';
import type { SandboxContext, SandboxSpec } from '../sandbox-spec';
import type { Sandbox, SandboxRecord, SandboxTimeouts } from '../sandbox';
import { errorContext, nowNs, transition } from '../state';

/** What recovery needs from the sandbox manager. */
export interface RecoveryHost {
  readonly store: CheckpointStore;
  readonly chain: IsolatorChain<SandboxContext>;
  readonly log: Logger;
  readonly timeouts: SandboxTimeouts;
  makeContext(id: string, spec: SandboxSpec): SandboxContext;
  isolatorStore(id: string): IsolatorStore;
  fromRecord(r: SandboxRecord): Sandbox;
  persist(sb: Sandbox): Promise<void>;
  recovered(sb: Sandbox): void;
}

export interface RecoverySummary {
  ready: string[];
  notReady: string[];
  discarded: string[];
  unreadable: string[];
  swept: string[];
}

const VERSION = 1;

export async function recoverSandboxes(host: RecoveryHost): Promise<RecoverySummary> {
  const log = host.log.child({ part: 'recovery' });
  const summary: RecoverySummary = { ready: [], notReady: [], discarded: [], unreadable: [], swept: [] };
  const ids = await host.store.list('sandbox');
  // Ids whose objects must survive the sweep: every checkpoint dir, readable or not.
  const known = new Set(ids);
  for (const id of ids) {
    try {
      await withTimeout(
        `recover sandbox ${id}`,
        host.timeouts.recover,
        (signal) => recoverOne(host, id, signal, summary, log),
        { sandboxId: id, stage: 'recover' },
      );
    } catch (err) {
      summary.unreadable.push(id);
      log.error({ sandboxId: id, err: asCapsaError(err).message }, 'cannot recover sandbox; leaving its objects alone');
    }
  }
  for (const id of summary.discarded) known.delete(id);
  const signal = AbortSignal.timeout(host.timeouts.recover);
  summary.swept = await host.chain.sweep(known, signal, log);
  log.info(
    {
      ready: summary.ready.length,
      notReady: summary.notReady.length,
      discarded: summary.discarded.length,
      unreadable: summary.unreadable.length,
      swept: summary.swept.length,
    },
    'sandbox recovery done',
  );
  return summary;
}

async function recoverOne(
  host: RecoveryHost,
  id: string,
  signal: AbortSignal,
  summary: RecoverySummary,
  log: Logger,
): Promise<void> {
  const raw = await host.store.read<SandboxRecord>('sandbox', id, VERSION);
  if (!raw) {
    // Crashed between creating the directory and the first checkpoint: nothing of it
    // can exist on the host under a name the sweep would not find.
    await fs.rm(host.store.dir('sandbox', id), { recursive: true, force: true });
    summary.discarded.push(id);
    log.info({ sandboxId: id }, 'discarded an empty sandbox directory');
    return;
  }
  const sb = host.fromRecord({ ...raw.data, id });
  const saved = await host.store.readIsolators('sandbox', id);
  transition(sb, 'RECOVERING', log);
  const iso = host.isolatorStore(id);

  if (sb.facts.readyAt === undefined) {
    transition(sb, 'DESTROYING', log, 'creation never finished');
    await host.chain.cleanup(sb.ctx, iso, savedStates(saved), signal, log, errorContext(sb, 'recover'));
    await host.store.remove('sandbox', id);
    transition(sb, 'REMOVED', log);
    summary.discarded.push(id);
    log.info({ sandboxId: id }, 'undid a sandbox whose creation never finished');
    return;
  }

  if (sb.facts.stoppedAt === undefined) {
    const lost = await host.chain.recover(sb.ctx, saved, sb.isolatorStates, signal, log);
    if (lost.length === 0) {
      transition(sb, 'RUNNING', log, 'recovered');
      host.recovered(sb);
      summary.ready.push(id);
      return;
    }
    sb.facts.stoppedAt = nowNs();
    sb.facts.stopReason = `lost while capsa was down: ${lost.join('; ')}`;
    await host.persist(sb);
    log.warn({ sandboxId: id, lost }, 'sandbox lost its isolation while capsa was down; now NOTREADY');
  }

  // Stopped (now or before): make sure nothing of it is left.
  transition(sb, 'DESTROYING', log, 'recover stopped sandbox');
  const states = sb.isolatorStates.size > 0 ? sb.isolatorStates : savedStates(saved);
  try {
    await host.chain.cleanup(sb.ctx, iso, states, signal, log, errorContext(sb, 'recover'));
  } catch (err) {
    sb.cleanupPending = true;
    log.warn({ sandboxId: id, err: asCapsaError(err).message }, 'cleanup of a stopped sandbox incomplete');
  }
  transition(sb, 'STOPPED', log, 'recovered');
  host.recovered(sb);
  summary.notReady.push(id);
}

function savedStates(saved: Map<string, IsolatorCheckpoint>): Map<string, unknown> {
  return new Map([...saved].map(([name, c]) => [name, c.state]));
}
