// A tracing decorator around the containerizer's launcher (Mesos'
// "trackers"): capsa-monitor's launch (create: the monitor up, the init
// waiting before execve), the init's release (start) and ExecSync each get
// a span under the call's. Off, the launcher itself is returned untouched.
import type { Launcher } from '../containerizer';
import { tracingEnabled, withSpan } from './tracing';

export function traceLauncher<L extends Launcher>(launcher: L): L {
  if (!tracingEnabled()) return launcher;
  const spans: Partial<Record<keyof Launcher, string>> = {
    create: 'monitor launch',
    start: 'monitor start',
    exec: 'monitor exec',
  };
  return new Proxy(launcher, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      const name = typeof prop === 'string' ? spans[prop as keyof Launcher] : undefined;
      if (!name || typeof value !== 'function') return value;
      return (runDir: string, ...rest: unknown[]) =>
        withSpan(name, { 'capsa.run_dir': runDir }, () =>
          (value as (...a: unknown[]) => Promise<unknown>).call(receiver, runDir, ...rest),
        );
    },
  });
}
