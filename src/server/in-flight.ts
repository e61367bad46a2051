// The CRI calls being answered right now, counted by the instrumentation
// (instrument.ts) and awaited by the daemon's graceful shutdown. grpc-js's
// tryShutdown waits for them itself on Node 20, but not for connections
// handed to it through a connection injector (as capsa's are) on Node 24:
// there it returns at once, the daemon went on closing, and the calls in
// flight were dropped ("Connection dropped"). Counting them here keeps
// shutdown_timeout's promise on every Node version.
export class InFlightCalls {
  private count = 0;
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.count;
  }

  begin(): void {
    this.count++;
  }

  end(): void {
    this.count--;
    if (this.count === 0) for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once no call is in flight. */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** The daemon's calls (one daemon per process). */
export const inFlightCalls = new InFlightCalls();
