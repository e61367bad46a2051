// One repository on one registry (RegistryClient.session): manifests and
// blobs through the endpoints in order, auth challenges answered, every blob
// verified before it enters the content store.
import { CapsaError, ErrorContext, NotFoundError, UnavailableError } from '../../errors';
import {
  AuthConfig,
  basicHeader,
  Challenge,
  Credentials,
  credentialsFromAuthConfig,
  DockerConfigFile,
  lookupCredentials,
  parseWwwAuthenticate,
  RegistryAuthError,
  repositoryScope,
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
  TlsOptions,
} from './http';
import { Descriptor, MANIFEST_ACCEPT } from './manifest';
import { ImageReference } from './reference';

import {
  BlobProgress,
  Endpoint,
  FetchedManifest,
  RegistryTransport,
  RetryableHttpError,
  isCertificateError,
  registryErrorMessage,
  retryAfterMs,
} from './registry-common';

/** One repository on one registry (and its mirrors), for the length of a pull. */
export class RepositorySession {
  readonly ref: ImageReference;
  readonly endpoints: Endpoint[];
  private readonly client: RegistryTransport;
  private readonly auth?: AuthConfig;
  private readonly file?: DockerConfigFile;
  private readonly context: ErrorContext;
  /** Index of the endpoint that answered last: tried first next time. */
  private preferred = 0;
  private readonly tlsCache = new Map<string, TlsOptions>();

  constructor(
    client: RegistryTransport,
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
