// The lifecycle state machine, stage timeouts and cleanup, CRI states
// derived from persisted facts, and isolator ordering.
import { DeadlineExceededError, FailedPreconditionError, InternalError } from '../../src/errors';
import { AnyIsolator, orderIsolators } from '../../src/containerizer/isolator';
import { createLogger } from '../../src/log';
import {
  Lifecycle,
  LifecycleState,
  TRANSITIONS,
  canTransition,
  containerCriState,
  exitReason,
  isCreating,
  nowNs,
  runStage,
  sandboxCriState,
  transition,
} from '../../src/containerizer/state';

const log = createLogger('fatal');

function obj(state: LifecycleState = 'NEW'): Lifecycle {
  return { kind: 'sandbox', id: 'f'.repeat(64), state };
}

describe('transitions', () => {
  test('the happy path of a sandbox and of a container', () => {
    const o = obj();
    for (const s of ['PREPARING', 'ISOLATING', 'RUNNING', 'DESTROYING', 'STOPPED', 'DESTROYING', 'REMOVED'] as const) {
      transition(o, s, log);
    }
    const c = obj();
    for (const s of ['PREPARING', 'ISOLATING', 'RUNNING', 'DESTROYING', 'REMOVED'] as const) transition(c, s, log);
    expect(c.state).toBe('REMOVED');
  });

  test.each<[LifecycleState, LifecycleState]>([
    ['NEW', 'RUNNING'],
    ['PREPARING', 'RUNNING'],
    ['RUNNING', 'STOPPED'],
    ['RUNNING', 'PREPARING'],
    ['STOPPED', 'RUNNING'],
    ['REMOVED', 'DESTROYING'],
    ['RUNNING', 'ISOLATING'],
  ])('%s → %s is refused, naming both', (from, to) => {
    const o = obj(from);
    expect(() => transition(o, to, log)).toThrow(FailedPreconditionError);
    expect(() => transition(o, to, log)).toThrow(new RegExp(`${from} to ${to}`));
    expect(o.state).toBe(from);
  });

  test('REMOVED is the only terminal state; every state is reachable from NEW', () => {
    const terminal = (Object.keys(TRANSITIONS) as LifecycleState[]).filter((s) => TRANSITIONS[s].length === 0);
    expect(terminal).toEqual(['REMOVED']);
    const seen = new Set<LifecycleState>(['NEW']);
    const queue: LifecycleState[] = ['NEW'];
    while (queue.length) {
      for (const n of TRANSITIONS[queue.shift()!]) {
        if (!seen.has(n)) {
          seen.add(n);
          queue.push(n);
        }
      }
    }
    expect(seen.size).toBe(Object.keys(TRANSITIONS).length);
    expect(canTransition('RECOVERING', 'RUNNING')).toBe(true);
    expect(isCreating('ISOLATING')).toBe(true);
    expect(isCreating('RUNNING')).toBe(false);
  });
});

describe('runStage', () => {
  test('success enters the stage and returns its value', async () => {
    const o = obj();
    const cleanup = jest.fn(async () => undefined);
    await expect(runStage(o, 'PREPARING', log, { timeoutMs: 1000, run: async () => 42, cleanup })).resolves.toBe(42);
    expect(o.state).toBe('PREPARING');
    expect(cleanup).not.toHaveBeenCalled();
  });

  test('a failing stage cleans up and throws an error naming the stage', async () => {
    const o = obj('PREPARING');
    const cleanup = jest.fn(async () => undefined);
    const err = await runStage(o, 'ISOLATING', log, {
      timeoutMs: 1000,
      run: async () => {
        throw new InternalError('mount failed');
      },
      cleanup,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as InternalError).kind).toBe('Internal');
    expect((err as InternalError).message).toBe('isolating: mount failed');
    expect((err as InternalError).context).toMatchObject({ stage: 'isolating', sandboxId: o.id });
    expect(cleanup).toHaveBeenCalledTimes(1);
    expect(o.state).toBe('REMOVED');
  });

  test('a stage past its deadline is aborted, cleaned up and reported as DeadlineExceeded', async () => {
    const o = obj();
    let aborted = false;
    const cleanup = jest.fn(async (signal: AbortSignal) => {
      expect(signal.aborted).toBe(false); // a fresh signal for the cleanup
    });
    const err = await runStage(o, 'PREPARING', log, {
      timeoutMs: 50,
      run: (signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => {
            aborted = true;
            setTimeout(resolve, 10);
          });
        }),
      cleanup,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as DeadlineExceededError).kind).toBe('DeadlineExceeded');
    expect((err as Error).message).toMatch(/^preparing: /);
    expect(aborted).toBe(true);
    expect(cleanup).toHaveBeenCalledTimes(1);
  });

  test('a failing cleanup does not hide the stage error', async () => {
    const o = obj();
    const err = await runStage(o, 'PREPARING', log, {
      timeoutMs: 1000,
      run: async () => {
        throw new Error('disk full');
      },
      cleanup: async () => {
        throw new Error('also broken');
      },
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('preparing: disk full');
  });
});

describe('CRI states from persisted facts', () => {
  test('sandbox: READY only once ready and not stopped', () => {
    expect(sandboxCriState({ createdAt: 1n })).toBe('SANDBOX_NOTREADY');
    expect(sandboxCriState({ createdAt: 1n, readyAt: 2n })).toBe('SANDBOX_READY');
    expect(sandboxCriState({ createdAt: 1n, readyAt: 2n, stoppedAt: 3n })).toBe('SANDBOX_NOTREADY');
  });

  test('container: CREATED, RUNNING, EXITED, UNKNOWN', () => {
    expect(containerCriState({ createdAt: 0n })).toBe('CONTAINER_UNKNOWN');
    expect(containerCriState({ createdAt: 1n })).toBe('CONTAINER_CREATED');
    expect(containerCriState({ createdAt: 1n, startedAt: 2n })).toBe('CONTAINER_RUNNING');
    expect(containerCriState({ createdAt: 1n, startedAt: 2n, finishedAt: 3n, exitCode: 0 })).toBe('CONTAINER_EXITED');
    expect(containerCriState({ createdAt: 1n, finishedAt: 3n, exitCode: 137 })).toBe('CONTAINER_EXITED');
  });

  test('exit reasons', () => {
    expect(exitReason({ createdAt: 1n })).toBe('');
    expect(exitReason({ createdAt: 1n, finishedAt: 2n, exitCode: 0 })).toBe('Completed');
    expect(exitReason({ createdAt: 1n, finishedAt: 2n, exitCode: 1 })).toBe('Error');
    expect(exitReason({ createdAt: 1n, finishedAt: 2n, exitCode: 137, oomKilled: true })).toBe('OOMKilled');
    expect(exitReason({ createdAt: 1n, finishedAt: 2n, exitCode: 255, reason: 'Unknown' })).toBe('Unknown');
  });

  test('nowNs is nanoseconds and strictly increasing', () => {
    const a = nowNs();
    const b = nowNs();
    expect(b > a).toBe(true);
    expect(Number(a / 1_000_000n)).toBeGreaterThan(Date.now() - 10_000);
  });
});

describe('isolator ordering', () => {
  const iso = (name: string, needs: string[], provides: string[], after: string[] = []): AnyIsolator<unknown> => ({
    name,
    version: 1,
    needs,
    provides,
    after,
    prepare: async () => undefined,
    cleanup: async () => undefined,
    recover: async () => ({ status: 'alive', state: undefined }),
  });

  test('providers come before what needs them; soft "after" only when present', () => {
    const order = orderIsolators([
      iso('podfiles', [], ['pod-files'], ['network']),
      iso('pid-holder', ['namespaces', 'cgroup'], ['pidns']),
      iso('network', ['netns'], ['network']),
      iso('cgroups', [], ['cgroup']),
      iso('namespaces', [], ['namespaces', 'netns']),
    ]).map((i) => i.name);
    expect(order.indexOf('network')).toBeLessThan(order.indexOf('podfiles'));
    expect(order.indexOf('namespaces')).toBeLessThan(order.indexOf('network'));
    expect(order.indexOf('cgroups')).toBeLessThan(order.indexOf('pid-holder'));
    const without = orderIsolators([iso('podfiles', [], ['pod-files'], ['network']), iso('cgroups', [], ['cgroup'])]);
    expect(without.map((i) => i.name)).toEqual(['podfiles', 'cgroups']);
  });

  test('a missing provider or a cycle is refused', () => {
    expect(() => orderIsolators([iso('network', ['netns'], ['network'])])).toThrow(/needs netns/);
    expect(() => orderIsolators([iso('a', ['y'], ['x']), iso('b', ['x'], ['y'])])).toThrow(/cycle/);
    expect(() => orderIsolators([iso('a', [], ['x']), iso('b', [], ['x'])])).toThrow(/both provide x/);
  });
});
