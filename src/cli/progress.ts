// Progress output for `capsa image import` on stderr. On a terminal: one
// line redrawn in place (bar, bytes/total, what is happening), at most
// ~10 times a second, with a permanent line per finished image. Anywhere
// else (a log, a pipe): just the line per image.
import type { ImportProgress } from '../provisioner/store/import';

export interface ProgressOutput {
  write(s: string): unknown;
  /** Terminal width; absent or 0 when unknown. */
  columns?: number;
}

export interface ProgressOptions {
  /** Draw the updating line (stderr is a terminal). */
  tty: boolean;
  /** Minimum milliseconds between redraws (default 100: ~10 per second). */
  intervalMs?: number;
  now?: () => number;
}

const BAR_WIDTH = 24;

/** "12.3 MiB", "512 KiB", "87 B". */
export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 * 1024) return `${(n / (1024 * 1024 * 1024)).toFixed(1)} GiB`;
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} B`;
}

/** The terminal line for one progress state, cut to `columns - 1` characters (no wrap). */
export function renderProgressLine(p: ImportProgress, columns?: number): string {
  const total = Math.max(p.totalBytes, 0);
  const done = total > 0 ? Math.min(p.bytes, total) : p.bytes;
  const frac = total > 0 ? done / total : 0;
  const filled = Math.round(frac * BAR_WIDTH);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`;
  const pct = total > 0 ? `${String(Math.floor(frac * 100)).padStart(3)}%` : '   ?';
  const amount = total > 0 ? `${formatBytes(done)} / ${formatBytes(total)}` : formatBytes(done);
  const line = `${bar} ${pct}  ${amount}  ${p.message}`;
  const width = columns && columns > 1 ? columns - 1 : 0;
  return width && line.length > width ? line.slice(0, width) : line;
}

export class ImportProgressView {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastDraw = -Infinity;
  private latest?: ImportProgress;
  private drawn = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly out: ProgressOutput,
    private readonly opts: ProgressOptions,
  ) {
    this.intervalMs = opts.intervalMs ?? 100;
    this.now = opts.now ?? Date.now;
  }

  /** Feed for Store.import's onProgress. */
  update(p: ImportProgress): void {
    if (p.stage === 'image') {
      this.line(p.message);
      return;
    }
    if (!this.opts.tty) return;
    this.latest = p;
    const wait = this.lastDraw + this.intervalMs - this.now();
    if (wait <= 0) {
      this.draw();
    } else if (!this.timer) {
      // Draw the latest state when the interval is up, even if nothing else arrives (a long unpack).
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.draw();
      }, wait);
      this.timer.unref();
    }
  }

  /** A permanent line; on a terminal the progress line comes back with the next update. */
  line(text: string): void {
    this.cancelTimer();
    this.latest = undefined;
    this.clear();
    this.out.write(`${text}\n`);
  }

  /** Removes the progress line; call once at the end, whatever the outcome. */
  finish(): void {
    this.cancelTimer();
    this.latest = undefined;
    this.clear();
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private draw(): void {
    this.cancelTimer();
    if (!this.latest) return;
    this.out.write(`\r${renderProgressLine(this.latest, this.out.columns)}\x1b[K`);
    this.drawn = true;
    this.lastDraw = this.now();
  }

  private clear(): void {
    if (!this.drawn) return;
    this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}
