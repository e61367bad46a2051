// A small HTTP(S) client on node:http/https for the registry client: one
// request with redirects, a no-progress (stall) watchdog on the headers and
// on every body chunk, and AbortSignal support. No retries here.
import * as http from 'http';
import * as https from 'https';
import { IncomingHttpHeaders, IncomingMessage } from 'http';
import { createSecureContext, SecureContext } from 'tls';
import { CapsaError, DeadlineExceededError, ErrorContext, UnavailableError } from '../../errors';

export interface TlsOptions {
  /** CA certificates to trust (PEM). Undefined: Node's default roots. */
  ca?: string[];
  /** False only for registries configured insecure. */
  rejectUnauthorized?: boolean;
}

export interface HttpRequestOptions {
  method?: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal;
  /** Abort when no byte arrives for this long (headers included). */
  stallTimeoutMs: number;
  /** TLS options for a URL (the request's and each redirect target's). */
  tlsFor?: (url: URL) => TlsOptions;
  /** Redirects followed (default 5); Authorization is dropped on a cross-host hop. */
  maxRedirects?: number;
  agents?: { http: http.Agent; https: https.Agent };
  context?: ErrorContext;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The URL that answered, after redirects. */
  url: URL;
  body: IncomingMessage;
}

/** An HTTP exchange failed below the HTTP layer (connection refused, reset, TLS…). */
export class NetworkError extends UnavailableError {
  readonly code?: string;
  constructor(message: string, context: ErrorContext, cause: unknown) {
    super(message, context, { cause });
    this.name = 'NetworkError';
    this.code = (cause as NodeJS.ErrnoException | undefined)?.code;
  }
}

/** No progress for stallTimeoutMs: retryable, reported as DeadlineExceeded when retries run out. */
export class StallError extends DeadlineExceededError {
  constructor(message: string, context: ErrorContext) {
    super(message, context);
    this.name = 'StallError';
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export { header as getHeader };

/** Sends one request, following redirects. The caller must consume or destroy `body`. */
export async function httpRequest(url: URL, opts: HttpRequestOptions): Promise<HttpResponse> {
  const maxRedirects = opts.maxRedirects ?? 5;
  let current = url;
  let headers = { ...(opts.headers ?? {}) };
  let method = opts.method ?? 'GET';
  let body = opts.body;
  for (let hop = 0; ; hop++) {
    const res = await sendOnce(current, method, headers, body, opts);
    if (!REDIRECTS.has(res.statusCode ?? 0)) {
      return { status: res.statusCode ?? 0, headers: res.headers, url: current, body: res };
    }
    res.resume();
    const location = header(res.headers, 'location');
    if (!location) return { status: res.statusCode ?? 0, headers: res.headers, url: current, body: res };
    if (hop >= maxRedirects) throw new UnavailableError(`too many redirects fetching ${url.href}`, opts.context ?? {});
    const next = new URL(location, current);
    if (next.protocol !== 'http:' && next.protocol !== 'https:')
      throw new UnavailableError(`refusing redirect to ${next.protocol} URL`, opts.context ?? {});
    if (next.host !== current.host) {
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
    }
    if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
    }
    current = next;
  }
}

/**
 * One TLS context per CA list (the lists are cached per host): Node would
 * otherwise build a new context, parsing every CA certificate (~45 ms of
 * CPU for the system bundle), for each new connection.
 */
const secureContexts = new WeakMap<string[], SecureContext>();
function secureContextFor(ca: string[]): SecureContext {
  let c = secureContexts.get(ca);
  if (!c) {
    c = createSecureContext({ ca });
    secureContexts.set(ca, c);
  }
  return c;
}

function sendOnce(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
  opts: HttpRequestOptions,
): Promise<IncomingMessage> {
  const context = opts.context ?? {};
  return new Promise<IncomingMessage>((resolve, reject) => {
    const signal = opts.signal;
    if (signal?.aborted) return reject(signal.reason);
    const isHttps = url.protocol === 'https:';
    const tls = isHttps ? (opts.tlsFor?.(url) ?? {}) : {};
    const reqOpts: https.RequestOptions & { secureContext?: SecureContext } = {
      method,
      headers: body ? { ...headers, 'content-length': String(body.length) } : headers,
      agent: opts.agents ? (isHttps ? opts.agents.https : opts.agents.http) : undefined,
    };
    if (isHttps) {
      if (tls.ca) {
        reqOpts.ca = tls.ca; // still part of the agent's pool key
        reqOpts.secureContext = secureContextFor(tls.ca);
      }
      if (tls.rejectUnauthorized === false) reqOpts.rejectUnauthorized = false;
    }
    const req = (isHttps ? https : http).request(url, reqOpts);
    let settled = false;
    const cleanup = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    const onAbort = (): void => {
      req.destroy();
      fail(signal?.reason);
    };
    const timer = setTimeout(() => {
      const err = new StallError(`no response from ${url.host} for ${opts.stallTimeoutMs} ms`, context);
      req.destroy(err);
      fail(err);
    }, opts.stallTimeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => {
      if (err instanceof CapsaError) fail(err);
      else fail(new NetworkError(`${method} ${url.origin}${url.pathname}: ${err.message}`, context, err));
    });
    req.on('response', (res) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      cleanup();
      resolve(res);
    });
    req.end(body);
  });
}

/**
 * Iterates a response body, aborting it with a StallError when no chunk
 * arrives for `stallTimeoutMs`. The clock stops while the consumer works
 * on a chunk, so slow disk writes or unpacking never count as a stall.
 */
export async function* bodyChunks(
  res: IncomingMessage,
  stallTimeoutMs: number,
  signal: AbortSignal | undefined,
  context: ErrorContext = {},
): AsyncGenerator<Buffer> {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    timer = setTimeout(() => {
      res.destroy(new StallError(`download stalled: no data for ${stallTimeoutMs} ms`, context));
    }, stallTimeoutMs);
  };
  const onAbort = (): void => {
    res.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    arm();
    for await (const chunk of res) {
      clearTimeout(timer);
      yield chunk as Buffer;
      arm();
    }
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof CapsaError) throw err;
    throw new NetworkError(`reading response body: ${(err as Error).message}`, context, err);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    if (!res.complete) res.destroy();
  }
}

/** Reads a whole body up to `maxBytes` (more → error), with the stall watchdog. */
export async function readBody(
  res: IncomingMessage,
  maxBytes: number,
  stallTimeoutMs: number,
  signal: AbortSignal | undefined,
  context: ErrorContext = {},
): Promise<Buffer> {
  const declared = Number(header(res.headers, 'content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    res.destroy();
    throw new CapsaError(
      'ResourceExhausted',
      `response of ${declared} bytes exceeds the ${maxBytes} byte limit`,
      context,
    );
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of bodyChunks(res, stallTimeoutMs, signal, context)) {
    total += chunk.length;
    if (total > maxBytes)
      throw new CapsaError('ResourceExhausted', `response exceeds the ${maxBytes} byte limit`, context);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** Drains and discards a body (to reuse the connection), bounded in size and time. */
export async function discardBody(res: IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise<string>((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const timer = setTimeout(() => {
      res.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    }, 5000);
    res.on('data', (c: Buffer) => {
      total += c.length;
      if (total <= limit) chunks.push(c);
      else res.destroy();
    });
    const done = (): void => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    res.on('end', done);
    res.on('close', done);
    res.on('error', done);
  });
}
