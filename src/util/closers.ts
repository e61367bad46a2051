// What a start-up opened, closed in reverse on a failed start and at
// shutdown; one failing close is logged and the rest still run.
import type { Logger } from '../log';

export class Closers {
  private readonly fns: (() => Promise<void>)[] = [];

  constructor(private readonly log: Logger) {}

  push(close: () => Promise<void>): void {
    this.fns.push(close);
  }

  /** Runs every close, last pushed first, each once. */
  async closeAll(): Promise<void> {
    for (let close = this.fns.pop(); close; close = this.fns.pop()) {
      try {
        await close();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'cleanup at shutdown failed');
      }
    }
  }
}
