// OCI distribution client: manifests and blobs from a registry, through its
// configured mirrors (in order, then the registry itself), with bearer or
// basic auth, retries with backoff, a no-progress watchdog, and every byte
// verified against its digest before it enters the content store.
import { promises as fs } from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as tls from 'tls';
import type { Logger } from '../../log';
import { ErrorContext, FailedPreconditionError } from '../../errors';
import { sleep } from '../../util/timeout';
import { AuthConfig, Challenge, DockerConfigFile, loadCredentialsFile, TokenCache } from './auth';
import { TlsOptions } from './http';
import { DEFAULT_MANIFEST_MAX_BYTES } from './manifest';
import { DEFAULT_DOMAIN, ImageReference, formatReference } from './reference';
import {
  Endpoint,
  RegistryHttpOptions,
  RegistrySettings,
  RegistryTransport,
  RetryableHttpError,
  isRetryable,
} from './registry-common';
import { RepositorySession } from './registry-session';

export { type BlobProgress, type Endpoint, type FetchedManifest, RetryableHttpError } from './registry-common';
export { RepositorySession } from './registry-session';

/** Per-registry settings from the daemon config. */
export interface RegistryHostConfig {
  /** Mirror URLs tried in order before the registry itself, e.g. "http://127.0.0.1:5000". */
  mirrors?: string[];
  /** Allow plain HTTP and unverified TLS for this host. */
  insecure?: boolean;
  /** Extra CA certificate (PEM file) trusted for this host. */
  ca_file?: string;
}

export interface RegistryConfig {
  registries?: Record<string, RegistryHostConfig>;
  /** A docker config.json with `auths` (read on every pull, so edits apply). */
  credentialsFile?: string;
}

export interface RegistryClientOptions extends RegistryConfig {
  /** Abort a request whose response makes no progress for this long (default 60 s). */
  stallTimeoutMs?: number;
  /** Retries per endpoint after the first attempt, on network errors, stalls, 5xx and 429 (default 3). */
  retries?: number;
  /** First backoff delay (default 250 ms), doubled on each retry up to retryMaxMs (default 8 s). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Manifest size cap (default 4 MiB). */
  manifestMaxBytes?: number;
  /** Extra CA bundle files tried for the system trust store (default: Debian/RHEL locations). */
  systemCaFiles?: string[];
  logger?: Logger;
  userAgent?: string;
}

export interface SessionOptions {
  auth?: AuthConfig;
  signal?: AbortSignal;
  context?: ErrorContext;
}

const DEFAULT_SYSTEM_CA_FILES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
];

/** "localhost", "127.x.y.z", "::1" (with or without port / brackets). */
export function isLoopbackHost(host: string): boolean {
  let h = host.toLowerCase();
  if (h.startsWith('[')) h = h.slice(1, h.indexOf(']'));
  else if (h.split(':').length === 2) h = h.split(':')[0];
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** "docker.io" is served at registry-1.docker.io. */
export function registryApiHost(domain: string): string {
  return domain === DEFAULT_DOMAIN ? 'registry-1.docker.io' : domain;
}

/**
 * The endpoints for a registry domain, in the order they are tried: each
 * configured mirror, then the registry itself. Pure; exported for tests.
 */
export function endpointsFor(domain: string, config: RegistryConfig): Endpoint[] {
  const regs = config.registries ?? {};
  const hostCfg = regs[domain] ?? (domain === DEFAULT_DOMAIN ? regs['registry-1.docker.io'] : undefined) ?? {};
  const out: Endpoint[] = [];
  for (const m of hostCfg.mirrors ?? []) {
    const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(m);
    let url: URL;
    try {
      url = new URL(hasScheme ? m : `https://${m}`);
    } catch {
      throw new FailedPreconditionError(`registry mirror "${m}" for ${domain} is not a valid URL`, {});
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new FailedPreconditionError(`registry mirror "${m}" for ${domain} must be http or https`, {});
    const mcfg = regs[url.host] ?? {};
    // An http:// mirror URL is an explicit choice of plain HTTP; a scheme-less one may fall back to
    // it when the mirror is configured insecure or on loopback.
    const insecure = mcfg.insecure === true;
    const plainOk = insecure || isLoopbackHost(url.host);
    let p = url.pathname.replace(/\/+$/, '');
    if (!p.endsWith('/v2')) p += '/v2';
    const base = new URL(`${url.protocol}//${url.host}${p}/`);
    out.push({ base, mirror: true, insecure, probe: !hasScheme && plainOk });
  }
  const apiHost = registryApiHost(domain);
  const insecure = hostCfg.insecure === true;
  out.push({
    base: new URL(`https://${apiHost}/v2/`),
    mirror: false,
    insecure,
    probe: insecure || isLoopbackHost(apiHost),
  });
  return out;
}

export class RegistryClient implements RegistryTransport {
  readonly tokens = new TokenCache();
  /** Counters for tests and metrics. */
  readonly stats = { manifestRequests: 0, blobRequests: 0, blobBytes: 0, tokenRequests: 0 };
  private readonly opts: Required<
    Pick<
      RegistryClientOptions,
      'stallTimeoutMs' | 'retries' | 'retryBaseMs' | 'retryMaxMs' | 'manifestMaxBytes' | 'userAgent'
    >
  >;
  private readonly config: RegistryConfig;
  private readonly log?: Logger;
  private readonly agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 32 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 32 }),
  };
  /** Challenge last seen per endpoint origin, so later requests authorize up front. */
  private readonly challenges = new Map<string, Challenge>();
  /** Scheme that worked for a probed insecure host. */
  private readonly schemes = new Map<string, 'https:' | 'http:'>();
  private caCache = new Map<string, Promise<string[] | undefined>>();
  private readonly systemCaFiles: string[];

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = {
      stallTimeoutMs: opts.stallTimeoutMs ?? 60_000,
      retries: opts.retries ?? 3,
      retryBaseMs: opts.retryBaseMs ?? 250,
      retryMaxMs: opts.retryMaxMs ?? 8000,
      manifestMaxBytes: opts.manifestMaxBytes ?? DEFAULT_MANIFEST_MAX_BYTES,
      userAgent: opts.userAgent ?? 'capsa/0.1',
    };
    this.config = { registries: opts.registries ?? {}, credentialsFile: opts.credentialsFile };
    this.log = opts.logger;
    const env = process.env.SSL_CERT_FILE;
    this.systemCaFiles = opts.systemCaFiles ?? (env ? [env, ...DEFAULT_SYSTEM_CA_FILES] : DEFAULT_SYSTEM_CA_FILES);
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /** Opens a session for one repository (one pull): endpoints, credentials and the endpoint that answered last. */
  async session(ref: ImageReference, opts: SessionOptions = {}): Promise<RepositorySession> {
    const context: ErrorContext = { stage: 'pull', image: formatReference(ref), ...opts.context };
    const endpoints = endpointsFor(ref.domain, this.config);
    let file: DockerConfigFile | undefined;
    if (this.config.credentialsFile) file = await loadCredentialsFile(this.config.credentialsFile);
    return new RepositorySession(this, ref, endpoints, opts.auth, file, context);
  }

  /** @internal TLS options for a host: system CAs + per-registry CA; verification off for insecure hosts. */
  async tlsOptions(host: string): Promise<TlsOptions> {
    const cfg = this.config.registries?.[host] ?? {};
    let p = this.caCache.get(host);
    if (!p) {
      p = this.loadCas(cfg.ca_file);
      this.caCache.set(host, p);
    }
    const ca = await p;
    return { ca, rejectUnauthorized: cfg.insecure !== true };
  }

  private async loadCas(caFile: string | undefined): Promise<string[] | undefined> {
    const system = await this.systemBundle();
    if (!caFile && !system) return undefined;
    const out = [...tls.rootCertificates];
    if (system) out.push(system);
    if (caFile) {
      try {
        out.push(await fs.readFile(caFile, 'utf8'));
      } catch (err) {
        throw new FailedPreconditionError(`cannot read registry CA file ${caFile}: ${(err as Error).message}`, {
          path: caFile,
        });
      }
    }
    return out;
  }

  private systemBundleP?: Promise<string | undefined>;
  private systemBundle(): Promise<string | undefined> {
    this.systemBundleP ??= (async () => {
      for (const f of this.systemCaFiles) {
        try {
          return await fs.readFile(f, 'utf8');
        } catch {
          // try the next location
        }
      }
      return undefined;
    })();
    return this.systemBundleP;
  }

  /** @internal */
  get settings(): RegistrySettings {
    return this.opts;
  }

  /** @internal */
  get logger(): Logger | undefined {
    return this.log;
  }

  /** @internal Resolves the scheme of a probing endpoint (https first, learned per host). */
  urlFor(ep: Endpoint, path: string, scheme?: 'https:' | 'http:'): URL {
    const u = new URL(path, ep.base);
    const s = scheme ?? (ep.probe ? this.schemes.get(ep.base.host) : undefined);
    if (s) u.protocol = s;
    return u;
  }

  /** @internal */
  learnScheme(host: string, scheme: 'https:' | 'http:'): void {
    this.schemes.set(host, scheme);
  }

  /** @internal */
  knownScheme(host: string): 'https:' | 'http:' | undefined {
    return this.schemes.get(host);
  }

  /** @internal */
  challengeFor(origin: string): Challenge | undefined {
    return this.challenges.get(origin);
  }

  /** @internal */
  setChallenge(origin: string, c: Challenge): void {
    this.challenges.set(origin, c);
  }

  /** @internal Common HTTP options. */
  httpOptions(signal: AbortSignal | undefined, context: ErrorContext): RegistryHttpOptions {
    return { stallTimeoutMs: this.opts.stallTimeoutMs, signal, agents: this.agents, context };
  }

  /** @internal Runs `fn` with retries and exponential backoff on retryable failures. */
  async withRetries<T>(what: string, signal: AbortSignal | undefined, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!isRetryable(err) || attempt >= this.opts.retries) throw err;
        const backoff = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** attempt);
        const hinted =
          err instanceof RetryableHttpError && err.retryAfterMs !== undefined
            ? Math.min(err.retryAfterMs, this.opts.retryMaxMs)
            : 0;
        const delay = Math.max(hinted, backoff * (0.5 + Math.random() / 2));
        this.log?.debug({ err: (err as Error).message, attempt, delay }, `retrying ${what}`);
        await sleep(delay, signal);
      }
    }
  }
}
