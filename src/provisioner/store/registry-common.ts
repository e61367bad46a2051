// What the registry client and its repository sessions share: endpoints,
// the retry rules, registry error bodies, and the transport a session uses.
import type * as http from 'http';
import type * as https from 'https';
import { ErrorContext, UnavailableError } from '../../errors';
import type { Logger } from '../../log';
import type { Challenge, TokenCache } from './auth';
import { HttpResponse, NetworkError, StallError, TlsOptions, getHeader } from './http';

/** One place a repository can be fetched from. */
export interface Endpoint {
  /** Base URL ending in "/v2/". */
  base: URL;
  mirror: boolean;
  /** Configured insecure: TLS certificates are not verified. */
  insecure: boolean;
  /** Plain HTTP allowed (insecure or loopback host given without a scheme): try https first, then http. */
  probe: boolean;
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  /** Content-Type of the response (the JSON's own mediaType is authoritative; see parseManifest). */
  contentType: string | undefined;
  endpoint: Endpoint;
}

export interface BlobProgress {
  digest: string;
  /** Bytes received so far for this blob. */
  bytes: number;
  total: number;
}

/** A 5xx / 429 answer: retried with backoff. */
export class RetryableHttpError extends UnavailableError {
  readonly retryAfterMs?: number;
  constructor(message: string, context: ErrorContext, retryAfterMs?: number) {
    super(message, context);
    this.name = 'RetryableHttpError';
    this.retryAfterMs = retryAfterMs;
  }
}

export function registryErrorMessage(body: string): string {
  try {
    const doc = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(doc.errors) && doc.errors.length)
      return doc.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
  } catch {
    // not JSON: use the text
  }
  return body.trim().slice(0, 200);
}

export function retryAfterMs(res: HttpResponse): number | undefined {
  const v = getHeader(res.headers, 'retry-after');
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s)) return s * 1000;
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - Date.now()) : undefined;
}

const CERT_ERROR_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function isCertificateError(err: NetworkError): boolean {
  return err.code !== undefined && CERT_ERROR_CODES.has(err.code);
}

export function isRetryable(err: unknown): boolean {
  if (err instanceof NetworkError && isCertificateError(err)) return false;
  return err instanceof NetworkError || err instanceof StallError || err instanceof RetryableHttpError;
}

/** What every registry request is made with. */
export interface RegistryHttpOptions {
  stallTimeoutMs: number;
  signal?: AbortSignal;
  agents: { http: http.Agent; https: https.Agent };
  context: ErrorContext;
}

/** The settings a session reads from its client. */
export interface RegistrySettings {
  stallTimeoutMs: number;
  retries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  manifestMaxBytes: number;
  userAgent: string;
}

/**
 * What a RepositorySession asks of its RegistryClient (the client's
 * internals, named here so the two files do not import each other).
 */
export interface RegistryTransport {
  readonly tokens: TokenCache;
  readonly stats: { manifestRequests: number; blobRequests: number; blobBytes: number; tokenRequests: number };
  readonly settings: RegistrySettings;
  readonly logger: Logger | undefined;
  tlsOptions(host: string): Promise<TlsOptions>;
  urlFor(ep: Endpoint, path: string, scheme?: 'https:' | 'http:'): URL;
  learnScheme(host: string, scheme: 'https:' | 'http:'): void;
  knownScheme(host: string): 'https:' | 'http:' | undefined;
  challengeFor(origin: string): Challenge | undefined;
  setChallenge(origin: string, c: Challenge): void;
  httpOptions(signal: AbortSignal | undefined, context: ErrorContext): RegistryHttpOptions;
  withRetries<T>(what: string, signal: AbortSignal | undefined, fn: (attempt: number) => Promise<T>): Promise<T>;
}
