// RunPodSandbox: PREPARING (checkpoint, dirs) → ISOLATING (isolators in
// dependency order) → RUNNING. Creation runs independently of the calling
// RPC: kubelet retrying an identical RunPodSandbox after its own timeout gets
// the same sandbox.
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import type { SandboxSpec } from '../sandbox-spec';
import { Sandbox } from '../sandbox';
import { errorContext, nowNs, runStage, transition } from '../state';
import type { SandboxHost } from './host';

/**
 * Makes a sandbox and resolves to its id. `fingerprint` identifies the
 * request: an identical one for a name in use waits for (or gets) the
 * sandbox the first made; a different one is AlreadyExists.
 */
export async function runSandbox(
  host: SandboxHost,
  spec: SandboxSpec,
  fingerprint: string,
  signal: AbortSignal,
): Promise<string> {
  const existing = host.registry.named(spec.key);
  if (existing) {
    return host.registry.retried({
      existing,
      key: spec.key,
      sameRequest: existing.fingerprint === fingerprint,
      madeUnclaimed: existing.state === 'RUNNING' && existing.creatorGone,
      rpc: 'RunPodSandbox',
      timeoutMs: host.timeouts.retryWait,
      signal,
      redo: () => runSandbox(host, spec, fingerprint, signal),
      log: host.log,
    });
  }

  const id = randomBytes(32).toString('hex');
  const sb = new Sandbox(id, host.makeContext(id, spec), fingerprint, { createdAt: nowNs() });
  return host.registry.createDetached(sb, () => create(host, sb), signal, host.log, 'RunPodSandbox');
}

async function create(host: SandboxHost, sb: Sandbox): Promise<void> {
  const t = host.timeouts;
  // Either stage failing undoes all of it, on the teardown's own deadline.
  const undo = { cleanupTimeoutMs: t.destroying, cleanup: (signal: AbortSignal) => discard(host, sb, signal) };
  await runStage(sb, 'PREPARING', host.log, {
    ...undo,
    timeoutMs: t.preparing,
    run: async () => {
      // Disk before host objects: recovery finds whatever this sandbox makes from here on.
      await host.store.create('sandbox', sb.id);
      await host.persist(sb);
      await fs.mkdir(host.nsDir, { recursive: true, mode: 0o711 });
      await fs.mkdir(host.shmDir, { recursive: true, mode: 0o711 });
    },
  });
  await runStage(sb, 'ISOLATING', host.log, {
    ...undo,
    timeoutMs: t.isolating,
    run: async (signal) => {
      await host.chain.prepare(sb.ctx, host.isolatorStore(sb.id), sb.isolatorStates, signal, sb.ctx.log);
      sb.facts.readyAt = nowNs();
      await host.persist(sb);
    },
  });
  transition(sb, 'RUNNING', host.log, 'ready');
  sb.ctx.log.info(
    {
      key: sb.spec.key,
      ns: sb.ctx.namespaces,
      cgroup: sb.ctx.cgroup?.path,
      ms: Number((nowNs() - sb.facts.createdAt) / 1_000_000n),
    },
    'sandbox ready',
  );
}

/** Undoes a failed creation: every isolator, then the checkpoint, then the name. */
async function discard(host: SandboxHost, sb: Sandbox, signal: AbortSignal): Promise<void> {
  try {
    await host.chain.cleanup(
      sb.ctx,
      host.isolatorStore(sb.id),
      sb.isolatorStates,
      signal,
      sb.ctx.log,
      errorContext(sb),
    );
    await host.store.remove('sandbox', sb.id);
  } finally {
    // Whatever is left on the host is the checkpoint's to recover; the name is free again.
    host.registry.forget(sb);
  }
}
