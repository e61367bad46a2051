// The exec/attach side of the streaming server over SPDY (the protocol of
// client-go's remotecommand, kubelet's pkg/kubelet/cri/streaming): the
// client opens one SPDY stream per channel, each with a `streamType`
// header — error, stdin, stdout, stderr, resize (v3+, with a tty) — and we
// answer every one. Once all the streams the request implies are there the
// command runs; its end is reported on the error stream: v4 writes a JSON
// metav1.Status (Success, or Failure with reason NonZeroExitCode and the
// exit code as a cause), older versions the error's text (nothing on
// success). Then every stream is closed and the session ends.
import { EventEmitter } from 'events';
import type { Readable, Writable } from 'stream';
import type { SpdySession, SpdyStream } from './spdy/session';

export const PROTOCOL_V4 = 'v4.channel.k8s.io';
/** WebSocket only: v4 plus a close signal per channel. */
export const PROTOCOL_V5 = 'v5.channel.k8s.io';
/** Ours, in preference order (the client's order decides, as kubelet's handshake does). */
export const REMOTECOMMAND_PROTOCOLS = [PROTOCOL_V4, 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];

/** How long the client has to open its streams. */
const STREAM_CREATION_TIMEOUT_MS = 30_000;

export interface CommandOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

export interface TerminalSize {
  width: number;
  height: number;
}

/** What a command runner gets: the client's channels (absent when not asked for). */
export interface CommandStreams {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Emits 'resize' with a TerminalSize (tty only). */
  resize: EventEmitter;
  /** The last size the client asked for (it may come before the runner listens). */
  size(): TerminalSize | undefined;
  /** Aborts when the client goes away before the command ends. */
  signal: AbortSignal;
}

/** The command's end: an exit code, or an error that kept it from running. */
export type CommandResult = { exitCode: number; description?: string } | { error: string };

export type CommandRunner = (streams: CommandStreams) => Promise<CommandResult>;

/** metav1.Status for the v4 error stream (undefined: nothing to write for older versions). */
export function statusOf(result: CommandResult, version: string): string | undefined {
  const v4 = version === PROTOCOL_V4 || version === PROTOCOL_V5;
  if ('error' in result) {
    if (!v4) return result.error;
    return JSON.stringify({
      metadata: {},
      status: 'Failure',
      message: `Internal error occurred: ${result.error}`,
      reason: 'InternalError',
      details: { causes: [{ message: result.error }] },
      code: 500,
    });
  }
  if (result.exitCode === 0) return v4 ? JSON.stringify({ metadata: {}, status: 'Success' }) : undefined;
  const message = `command terminated with non-zero exit code: ${result.description ?? 'command'} exited with ${result.exitCode}`;
  if (!v4) return message;
  return JSON.stringify({
    metadata: {},
    status: 'Failure',
    message,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(result.exitCode) }] },
  });
}

/** The stream types the client will open for these options under `version`. */
function expectedTypes(opts: CommandOptions, version: string): string[] {
  const types = ['error'];
  if (opts.stdin) types.push('stdin');
  if (opts.stdout) types.push('stdout');
  if (opts.stderr && !opts.tty) types.push('stderr');
  if (opts.tty && version !== 'v2.channel.k8s.io' && version !== 'channel.k8s.io') types.push('resize');
  return types;
}

export function parseResize(stream: Readable, out: EventEmitter): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    // json.Encoder writes one object per line.
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (line === '') continue;
      try {
        const v = JSON.parse(line) as { Width?: unknown; Height?: unknown };
        if (typeof v.Width === 'number' && typeof v.Height === 'number') {
          out.emit('resize', { width: v.Width, height: v.Height } satisfies TerminalSize);
        }
      } catch {
        // not a size: ignored, as kubelet does
      }
    }
    if (pending.length > 4096) pending = '';
  });
}

/**
 * Serves one exec/attach session: waits for the streams, runs the command,
 * reports its end. Resolves when the session is over.
 */
export async function serveRemoteCommand(
  session: SpdySession,
  version: string,
  opts: CommandOptions,
  run: CommandRunner,
): Promise<void> {
  const want = new Set(expectedTypes(opts, version));
  const got = new Map<string, SpdyStream>();
  const all: SpdyStream[] = [];
  const ready = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), STREAM_CREATION_TIMEOUT_MS);
    session.on('stream', (s: SpdyStream) => {
      session.reply(s);
      all.push(s);
      if (!got.has(s.type)) got.set(s.type, s);
      if ([...want].every((t) => got.has(t))) {
        clearTimeout(timer);
        resolve(true);
      }
    });
    session.once('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (!(await ready)) {
    session.end();
    return;
  }
  const abort = new AbortController();
  const onClose = (): void => abort.abort();
  session.once('close', onClose);
  const resize = new EventEmitter();
  let lastSize: TerminalSize | undefined;
  resize.on('resize', (size: TerminalSize) => (lastSize = size));
  const resizeStream = got.get('resize');
  if (resizeStream) parseResize(resizeStream, resize);
  const stdout = got.get('stdout');
  const stderr = got.get('stderr');
  const stdin = got.get('stdin');
  // The client may half-close channels it only reads: a write error there is not ours to report.
  for (const s of all) s.on('error', () => undefined);
  // Nothing is read from the channels we only write: what a client sends there is dropped.
  for (const s of all) if (s !== stdin && s !== resizeStream) s.resume();
  let result: CommandResult;
  try {
    result = await run({ stdin, stdout, stderr, resize, size: () => lastSize, signal: abort.signal });
  } catch (err) {
    result = { error: (err as Error).message };
  }
  session.removeListener('close', onClose);
  if (session.isClosed) return;
  await Promise.all([stdout, stderr].map((s) => (s ? endStream(s) : undefined)));
  const errorStream = got.get('error')!;
  const status = statusOf(result, version);
  if (status !== undefined) errorStream.write(status);
  await endStream(errorStream);
  for (const s of all) if (!s.writableEnded) s.end();
  session.end();
}

function endStream(s: SpdyStream): Promise<void> {
  return new Promise((resolve) => {
    if (s.writableFinished || s.destroyed) {
      resolve();
      return;
    }
    s.once('error', () => resolve());
    s.once('close', () => resolve());
    s.end(() => resolve());
  });
}
