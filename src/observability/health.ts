// What GET /healthz on the metrics listener answers: 200 once recovery is
// done and the CRI socket serves, 503 with the reason otherwise. The daemon
// says which start-up step it is in; once it serves, every request checks
// again that the socket file is still the one we listen on (a removed or
// replaced socket leaves a live daemon that kubelet cannot reach).
import { promises as fs } from 'fs';

export interface HealthReport {
  ok: boolean;
  /** "ok", or why not, e.g. "starting: recovering containers". */
  reason: string;
}

interface Serving {
  socket: string;
  /** Inode of the socket file as bound. */
  ino: number;
  dev: number;
  listening: () => boolean;
}

export class Health {
  private step = 'starting';
  private serving: Serving | undefined;
  private stopping = false;

  /** A start-up step (the reason /healthz gives until serving()). */
  starting(step: string): void {
    this.step = step;
  }

  /** The CRI socket is bound and listening: healthy from now on while it stays so. */
  async servingOn(socket: string, listening: () => boolean): Promise<void> {
    const st = await fs.stat(socket);
    this.serving = { socket, ino: st.ino, dev: st.dev, listening };
  }

  /** Shutdown began: unhealthy for good. */
  shuttingDown(): void {
    this.stopping = true;
  }

  async check(): Promise<HealthReport> {
    if (this.stopping) return { ok: false, reason: 'shutting down' };
    const s = this.serving;
    if (!s) return { ok: false, reason: `starting: ${this.step}` };
    if (!s.listening()) return { ok: false, reason: `CRI socket ${s.socket} is not listening` };
    let st;
    try {
      st = await fs.stat(s.socket);
    } catch (err) {
      return { ok: false, reason: `CRI socket ${s.socket}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
    }
    if (st.ino !== s.ino || st.dev !== s.dev) {
      return { ok: false, reason: `CRI socket ${s.socket} was replaced by another file` };
    }
    return { ok: true, reason: 'ok' };
  }
}
