// The daemon's logger: pino writing to stderr, JSON lines for journald and
// log collectors, or one human-readable line per event on a terminal
// (`log_format`: auto picks text when stderr is a TTY). Two guarantees on
// top of pino, which by itself prints a key twice when a child rebinds it or
// a call passes a bound key again:
//   - a child's bindings replace the parent's of the same name;
//   - a call's fields replace the bindings of the same name, for that line;
//   - a call's `level`, `time` or `msg` field is renamed (`_level`, …):
//     those keys are the line's own.
// pino has no text output of its own (its docs point at pino-pretty, 13
// packages and multi-line objects by default): the text line is made here
// from pino's JSON, which costs a JSON.parse per line — only on a terminal.
import pino, { DestinationStream, LogFn, Logger } from 'pino';
import type { LogLevel } from '../log';

export type LogFormat = 'auto' | 'json' | 'text';
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'json', 'text'];

export interface DaemonLoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Where lines go; default stderr (fd 2). */
  destination?: DestinationStream;
  /** Whether the destination is a terminal (auto format, colours); default stderr's. */
  isTTY?: boolean;
}

/** text on a terminal, JSON anywhere else, unless forced. */
export function resolveFormat(format: LogFormat, isTTY: boolean): 'json' | 'text' {
  if (format === 'auto') return isTTY ? 'text' : 'json';
  return format;
}

export function createDaemonLogger(opts: DaemonLoggerOptions): Logger {
  const tty = opts.isTTY ?? process.stderr.isTTY === true;
  const out = opts.destination ?? pino.destination({ fd: 2, sync: false });
  const format = resolveFormat(opts.format, tty);
  const color = tty && format === 'text' && process.env.NO_COLOR === undefined;
  const dest = format === 'text' ? textDestination(out, color) : out;
  return pino(
    {
      level: opts.level,
      // journald and collectors know the pid; the start line says it once.
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      hooks: { logMethod },
      onChild: dedupeBindings,
    },
    dest,
  );
}

// ---- one key once --------------------------------------------------------

const chindingsSym = pino.symbols.chindingsSym;
type WithChindings = Logger & { [chindingsSym]: string };

const RESERVED = new Set(['level', 'time', 'msg']);

function parseChindings(chindings: string): Record<string, unknown> {
  // pino keeps bindings as the JSON text they print as: ',"a":1,"b":"x"'.
  return chindings === '' ? {} : (JSON.parse(`{${chindings.slice(1)}}`) as Record<string, unknown>);
}

function asChindings(bindings: Record<string, unknown>): string {
  const text = JSON.stringify(bindings);
  return text === '{}' ? '' : `,${text.slice(1, -1)}`;
}

/** Keys bound on a logger, cached by its chindings text. */
const boundCache = new WeakMap<object, { chindings: string; keys: ReadonlySet<string> }>();

function boundKeys(log: WithChindings): ReadonlySet<string> {
  const chindings = log[chindingsSym] ?? '';
  const hit = boundCache.get(log);
  if (hit && hit.chindings === chindings) return hit.keys;
  const keys = new Set(Object.keys(parseChindings(chindings)));
  boundCache.set(log, { chindings, keys });
  return keys;
}

/** onChild: a rebound key keeps its first place and the child's value (JSON.parse keeps the last). */
function dedupeBindings(child: Logger): void {
  const c = child as WithChindings;
  const chindings = c[chindingsSym] ?? '';
  if (chindings === '') return;
  const merged = parseChindings(chindings);
  const again = asChindings(merged);
  if (again.length !== chindings.length) c[chindingsSym] = again;
}

/** pino's logMethod hook: runs only for enabled levels, after pino's level check. */
function logMethod(this: Logger, args: Parameters<LogFn>, method: LogFn): void {
  const first: unknown = args[0];
  if (first === null || typeof first !== 'object' || first instanceof Error) {
    method.apply(this, args);
    return;
  }
  const obj = first as Record<string, unknown>;
  const bound = boundKeys(this as WithChindings);
  let clash: string[] | undefined;
  let reserved = false;
  for (const k in obj) {
    if (bound.has(k)) (clash ??= []).push(k);
    if (RESERVED.has(k)) reserved = true;
  }
  if (reserved) {
    const renamed: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) renamed[RESERVED.has(k) ? `_${k}` : k] = v;
    args = [renamed, ...args.slice(1)] as unknown as Parameters<LogFn>;
  }
  method.apply(clash ? withoutBindings(this as WithChindings, clash) : this, args);
}

/** The same logger without some of its bindings, for one line. */
function withoutBindings(log: WithChindings, keys: string[]): Logger {
  const bindings = parseChindings(log[chindingsSym]);
  for (const k of keys) delete bindings[k];
  const alt = Object.create(log) as WithChindings;
  alt[chindingsSym] = asChindings(bindings);
  return alt;
}

// ---- text lines ------------------------------------------------------------

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const LEVEL_COLORS: Record<number, string> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };

/** A string that reads unambiguously without quotes: no space, quote, `=`, backslash or control character. */
function isBare(v: string): boolean {
  if (v === '') return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || c === 0x22 || c === 0x3d || c === 0x5c) return false;
  }
  return !/\s/.test(v);
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return isBare(v) ? v : JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  return JSON.stringify(v);
}

/**
 * One pino JSON line as text:
 *   2026-01-02T03:04:05.678Z INFO  cri: rpc method=Version ms=0.2 code=OK
 * (component as the prefix of the message, then every other field as
 * key=value; strings with spaces, quotes or `=` are JSON-quoted).
 */
export function formatTextLine(json: string, color = false): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const { level, time, msg, component, ...fields } = rec;
  const num = typeof level === 'number' ? level : 30;
  let name = (LEVEL_NAMES[num] ?? String(level)).padEnd(5);
  if (color) name = `\x1b[${LEVEL_COLORS[num] ?? '0'}m${name}\x1b[0m`;
  let line = `${String(time ?? '')} ${name} `;
  if (component !== undefined) line += `${textValue(component)}: `;
  line += String(msg ?? '');
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    line += ` ${k}=${textValue(v)}`;
  }
  return `${line}\n`;
}

function textDestination(out: DestinationStream, color: boolean): DestinationStream {
  return {
    write(chunk: string): void {
      // pino writes whole lines, one per call.
      out.write(formatTextLine(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk, color));
    },
  };
}
