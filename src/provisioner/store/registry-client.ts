// OCI distribution client: manifests and blobs from a registry, through its
// configured mirrors (in order, then the registry itself), with bearer or
// basic auth, retries with backoff, a no-progress watchdog, and every byte
// verified against its digest before it enters the content store.
import { promises as fs } from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as tls from 'tls';
import type { Logger } from '../../log';
import { CapsaError, ErrorContext, FailedPreconditionError, NotFoundError, UnavailableError } from '../../errors';
import { sleep } from '../../util/timeout';
import {
  AuthConfig,
  basicHeader,
  Challenge,
  Credentials,
  credentialsFromAuthConfig,
  DockerConfigFile,
  loadCredentialsFile,
  lookupCredentials,
  parseWwwAuthenticate,
  RegistryAuthError,
  repositoryScope,
  TokenCache,
} from './auth';
import { ContentStore, DigestMismatchError, IngestTee } from './content-store';
import { isDigest, sha256Of } from './digest';
import {
  bodyChunks,
  discardBody,
  getHeader,
  httpRequest,
  HttpResponse,
  NetworkError,
  readBody,
  StallError,
  TlsOptions,
} from './http';
import { DEFAULT_MANIFEST_MAX_BYTES, Descriptor, MANIFEST_ACCEPT } from './manifest';
import { DEFAULT_DOMAIN, ImageReference, formatReference } from './reference';

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

export interface SessionOptions {
  auth?: AuthConfig;
  signal?: AbortSignal;
  context?: ErrorContext;
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

function registryErrorMessage(body: string): string {
  try {
    const doc = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
    if (Array.isArray(doc.errors) && doc.errors.length)
      return doc.errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
  } catch {
    // not JSON: use the text
  }
  return body.trim().slice(0, 200);
}

function retryAfterMs(res: HttpResponse): number | undefined {
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

function isCertificateError(err: NetworkError): boolean {
  return err.code !== undefined && CERT_ERROR_CODES.has(err.code);
}

function isRetryable(err: unknown): boolean {
  if (err instanceof NetworkError && isCertificateError(err)) return false;
  return err instanceof NetworkError || err instanceof StallError || err instanceof RetryableHttpError;
}

export class RegistryClient {
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
  get settings(): RegistryClient['opts'] {
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
  httpOptions(
    signal: AbortSignal | undefined,
    context: ErrorContext,
  ): {
    stallTimeoutMs: number;
    signal?: AbortSignal;
    agents: { http: http.Agent; https: https.Agent };
    context: ErrorContext;
  } {
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

/** One repository on one registry (and its mirrors), for the length of a pull. */
export class RepositorySession {
  readonly ref: ImageReference;
  readonly endpoints: Endpoint[];
  private readonly client: RegistryClient;
  private readonly auth?: AuthConfig;
  private readonly file?: DockerConfigFile;
  private readonly context: ErrorContext;
  /** Index of the endpoint that answered last: tried first next time. */
  private preferred = 0;
  private readonly tlsCache = new Map<string, TlsOptions>();

  constructor(
    client: RegistryClient,
    ref: ImageReference,
    endpoints: Endpoint[],
    auth: AuthConfig | undefined,
    file: DockerConfigFile | undefined,
    context: ErrorContext,
  ) {
    this.client = client;
    this.ref = ref;
    this.endpoints = endpoints;
    this.auth = auth;
    this.file = file;
    this.context = context;
  }

  /** Credentials for an endpoint: the request's AuthConfig for the image's own registry, then the credentials file. */
  credentialsFor(ep: Endpoint): Credentials | undefined {
    const host = ep.mirror ? ep.base.host : this.ref.domain;
    let creds: Credentials | undefined;
    if (this.auth) {
      const applies = ep.mirror ? Boolean(this.auth.serverAddress) : true;
      if (applies) creds = credentialsFromAuthConfig(this.auth, host, this.context);
    }
    return creds ?? lookupCredentials(this.file, host, this.context);
  }

  /**
   * Fetches a manifest by tag or digest, trying each endpoint in order.
   * Its digest is computed from the bytes; when fetched by digest it must
   * match, and a Docker-Content-Digest header must agree with it.
   */
  async getManifest(reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const byDigest = isDigest(reference);
    const max = this.client.settings.manifestMaxBytes;
    return this.overEndpoints(`manifest ${reference}`, signal, async (ep) =>
      this.client.withRetries(`manifest ${reference}`, signal, async () => {
        this.client.stats.manifestRequests++;
        const res = await this.send(ep, `${this.ref.path}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal);
        await this.checkStatus(res, `manifest ${reference}`);
        const bytes = await readBody(res.body, max, this.client.settings.stallTimeoutMs, signal, this.context);
        const digest = sha256Of(bytes);
        if (byDigest && digest !== reference)
          throw new DigestMismatchError(`manifest digest mismatch: expected ${reference}, got ${digest}`, this.context);
        const header = getHeader(res.headers, 'docker-content-digest');
        if (header && header.startsWith('sha256:') && header !== digest)
          throw new DigestMismatchError(
            `manifest digest mismatch: registry says ${header}, content is ${digest}`,
            this.context,
          );
        return { bytes, digest, contentType: getHeader(res.headers, 'content-type'), endpoint: ep };
      }),
    );
  }

  /**
   * Downloads a blob into the content store (unless it is already there or
   * being downloaded), verified against `desc.digest` and `desc.size`.
   * Interrupted downloads resume with a Range request when the server
   * supports it. Returns the blob's path. `tee` sees the bytes as they are
   * written (see IngestOptions.tee).
   */
  async fetchBlob(
    desc: Pick<Descriptor, 'digest' | 'size'>,
    store: ContentStore,
    opts: { signal?: AbortSignal; onProgress?: (p: BlobProgress) => void; tee?: IngestTee } = {},
  ): Promise<string> {
    const { signal, onProgress, tee } = opts;
    if (await store.has(desc.digest)) return store.path(desc.digest);
    return this.overEndpoints(`blob ${desc.digest}`, signal, (ep) =>
      store.ingest(
        { digest: desc.digest, size: desc.size },
        async (w) => {
          await this.client.withRetries(`blob ${desc.digest}`, w.signal, async () => {
            const headers: Record<string, string> = { accept: '*/*' };
            if (w.offset > 0) headers.range = `bytes=${w.offset}-`;
            this.client.stats.blobRequests++;
            const res = await this.send(ep, `${this.ref.path}/blobs/${desc.digest}`, headers, w.signal);
            if (res.status === 416 && w.offset > 0) {
              await discardBody(res.body);
              await w.reset();
              throw new RetryableHttpError('range not satisfiable; restarting download', this.context);
            }
            await this.checkStatus(res, `blob ${desc.digest}`);
            if (w.offset > 0) {
              const range = /^bytes (\d+)-/.exec(getHeader(res.headers, 'content-range') ?? '');
              if (res.status !== 206 || !range || Number(range[1]) !== w.offset) await w.reset();
            }
            for await (const chunk of bodyChunks(
              res.body,
              this.client.settings.stallTimeoutMs,
              w.signal,
              this.context,
            )) {
              await w.write(chunk);
              this.client.stats.blobBytes += chunk.length;
              onProgress?.({ digest: desc.digest, bytes: w.offset, total: desc.size });
            }
          });
        },
        { signal, context: this.context, tee },
      ),
    );
  }

  /** Tries `fn` on each endpoint, the last one that worked first; combines the errors when all fail. */
  private async overEndpoints<T>(
    what: string,
    signal: AbortSignal | undefined,
    fn: (ep: Endpoint) => Promise<T>,
  ): Promise<T> {
    const order = [this.preferred, ...this.endpoints.map((_, i) => i).filter((i) => i !== this.preferred)];
    const errors: { ep: Endpoint; err: unknown }[] = [];
    for (const i of order) {
      const ep = this.endpoints[i];
      try {
        const out = await fn(ep);
        this.preferred = i;
        return out;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        errors.push({ ep, err });
        if (this.endpoints.length > 1)
          this.client.logger?.info(
            { endpoint: ep.base.origin, err: (err as Error).message },
            `fetching ${what} failed; trying the next endpoint`,
          );
      }
    }
    // Report the most telling error: one that is not a plain connection failure, preferring the registry's own.
    const pick =
      [...errors].reverse().find((e) => !(e.err instanceof NetworkError) && !(e.err instanceof NotFoundError)) ??
      [...errors].reverse().find((e) => !(e.err instanceof NetworkError)) ??
      errors[errors.length - 1];
    const err =
      pick.err instanceof CapsaError
        ? pick.err
        : new UnavailableError(String(pick.err), this.context, { cause: pick.err });
    if (errors.length > 1) {
      const others = errors.filter((e) => e !== pick).map((e) => `${e.ep.base.origin}: ${(e.err as Error).message}`);
      err.message = `${err.message} (also tried ${others.join('; ')})`;
    }
    if (!err.context.image) Object.assign(err.context, this.context);
    throw err;
  }

  /** One request with auth: authorizes from a known challenge, answers a 401 challenge once. */
  private async send(
    ep: Endpoint,
    path: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<HttpResponse> {
    const creds = this.credentialsFor(ep);
    const scope = repositoryScope(this.ref.path);
    for (let authRound = 0; ; authRound++) {
      const h: Record<string, string> = { ...headers, 'user-agent': this.client.settings.userAgent };
      const authz = await this.authorization(ep, scope, creds, signal);
      if (authz) h.authorization = authz;
      const res = await this.request(ep, path, h, signal);
      if (res.status !== 401) return res;
      const text = await discardBody(res.body);
      const challenges = parseWwwAuthenticate(getHeader(res.headers, 'www-authenticate') ?? '');
      const bearer = challenges.find((c) => c.scheme === 'bearer');
      const basic = challenges.find((c) => c.scheme === 'basic');
      const origin = res.url.origin;
      const previous = this.client.challengeFor(origin);
      if (bearer && previous?.scheme === 'bearer') this.client.tokens.invalidate(previous, [scope], creds);
      if (authRound === 0 && (bearer || (basic && creds?.kind === 'basic'))) {
        this.client.setChallenge(origin, (bearer ?? basic) as Challenge);
        continue;
      }
      if (basic && !creds)
        throw new RegistryAuthError(
          `${ep.base.host} requires authentication and no credentials were given`,
          this.context,
        );
      throw new RegistryAuthError(
        `${ep.base.host} refused the credentials${creds ? '' : ' (anonymous)'}: ${registryErrorMessage(text) || 'unauthorized'}`,
        this.context,
      );
    }
  }

  private async authorization(
    ep: Endpoint,
    scope: string,
    creds: Credentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    if (creds?.kind === 'registry-token') return `Bearer ${creds.token}`;
    const origin = this.client.urlFor(ep, '').origin;
    const c = this.client.challengeFor(origin);
    if (!c) return undefined;
    if (c.scheme === 'basic') return creds?.kind === 'basic' ? basicHeader(creds.username, creds.password) : undefined;
    if (c.scheme !== 'bearer') return undefined;
    const cached = this.client.tokens.peek(c, [scope], creds);
    if (cached) return `Bearer ${cached}`;
    this.client.stats.tokenRequests++;
    const realmHost = (() => {
      try {
        return new URL(c.params.realm ?? '').host;
      } catch {
        return '';
      }
    })();
    if (realmHost) await this.prepareTls(realmHost, realmHost === ep.base.host && ep.insecure);
    const token = await this.client.tokens.get(c, [scope], creds, {
      http: {
        ...this.client.httpOptions(signal, this.context),
        tlsFor: (u) => this.tlsSync(u.host),
      },
      context: this.context,
    });
    return `Bearer ${token}`;
  }

  /** TLS options for a host; hosts not prepared get the default (system CAs, verified). */
  private tlsSync(host: string): TlsOptions {
    return this.tlsCache.get(host) ?? this.tlsCache.get('') ?? {};
  }

  private async prepareTls(host: string, insecure = false): Promise<void> {
    if (this.tlsCache.has(host)) return;
    // Certificates are not verified for an insecure host, so it needs no CA list
    // (a TLS context with the system CAs costs ~45 ms of CPU to build).
    const t = insecure ? { rejectUnauthorized: false } : await this.client.tlsOptions(host);
    this.tlsCache.set(host, t);
  }

  /** GET with the endpoint's scheme (probing https then http for insecure hosts) and TLS settings. */
  private async request(
    ep: Endpoint,
    path: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<HttpResponse> {
    await this.prepareTls('');
    await this.prepareTls(ep.base.host, ep.insecure);
    const known = ep.probe ? this.client.knownScheme(ep.base.host) : undefined;
    const tlsFor = (u: URL): TlsOptions => this.tlsSync(u.host);
    const opts = { ...this.client.httpOptions(signal, this.context), headers, tlsFor, method: 'GET' as const };
    if (!ep.probe || known) {
      return httpRequest(this.client.urlFor(ep, path), opts);
    }
    try {
      const res = await httpRequest(this.client.urlFor(ep, path, 'https:'), opts);
      this.client.learnScheme(ep.base.host, 'https:');
      return res;
    } catch (err) {
      // A certificate problem means the server does speak TLS: no plain-HTTP retry.
      if (!(err instanceof NetworkError) || isCertificateError(err)) throw err;
      this.client.logger?.debug(
        { host: ep.base.host, err: err.message },
        'https failed for insecure registry; trying http',
      );
      const res = await httpRequest(this.client.urlFor(ep, path, 'http:'), opts);
      this.client.learnScheme(ep.base.host, 'http:');
      return res;
    }
  }

  private async checkStatus(res: HttpResponse, what: string): Promise<void> {
    if (res.status >= 200 && res.status < 300) return;
    const text = await discardBody(res.body);
    const msg = registryErrorMessage(text);
    if (res.status === 404)
      throw new NotFoundError(`${what} not found at ${res.url.host}${msg ? `: ${msg}` : ''}`, this.context);
    if (res.status === 403)
      throw new RegistryAuthError(`${res.url.host} denied access to ${what}${msg ? `: ${msg}` : ''}`, this.context);
    if (res.status === 429 || res.status >= 500)
      throw new RetryableHttpError(
        `${res.url.host} answered ${res.status} for ${what}${msg ? `: ${msg}` : ''}`,
        this.context,
        retryAfterMs(res),
      );
    throw new CapsaError(
      'FailedPrecondition',
      `${res.url.host} answered ${res.status} for ${what}${msg ? `: ${msg}` : ''}`,
      this.context,
    );
  }
}
