// Registry authentication: credentials (from the CRI request's AuthConfig or
// a docker config.json credentials file), WWW-Authenticate challenge
// parsing, and bearer tokens fetched from the challenge's realm, cached per
// realm/service/scope/credentials until they expire.
import { promises as fs } from 'fs';
import { CapsaError, ErrorContext, FailedPreconditionError, InvalidArgumentError } from '../../errors';
import { HttpRequestOptions, httpRequest, readBody, discardBody } from './http';

/** The CRI AuthConfig message (camelCase, as generated). Every field optional. */
export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64("username:password"). */
  auth?: string;
  serverAddress?: string;
  /** An OAuth2 refresh token for the registry's token realm. */
  identityToken?: string;
  /** A bearer token sent to the registry as is. */
  registryToken?: string;
}

/** Credentials for one registry host. */
export type Credentials =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'identity'; username?: string; identityToken: string }
  | { kind: 'registry-token'; token: string };

/** A registry failed to authorize us (401/403 after auth was tried). */
export class RegistryAuthError extends FailedPreconditionError {
  constructor(message: string, context: ErrorContext = {}) {
    super(message, context);
    this.name = 'RegistryAuthError';
  }
}

export interface Challenge {
  scheme: string; // lowercased, e.g. "bearer", "basic"
  params: Record<string, string>; // keys lowercased
}

/**
 * Parses a WWW-Authenticate header (RFC 7235): one or more challenges,
 * each a scheme followed by comma-separated auth-params (token or quoted
 * string values, with backslash escapes in quoted strings).
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = (): void => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i])) i++;
    return header.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipWs();
    if (header[i] === ',') {
      i++;
      continue;
    }
    const start = i;
    const tok = readToken();
    if (!tok) {
      i++; // skip garbage
      continue;
    }
    skipWs();
    if (header[i] === '=' && current) {
      // auth-param of the current challenge
      i++;
      skipWs();
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        const vs = i;
        while (i < n && header[i] !== ',' && header[i] !== ' ' && header[i] !== '\t') i++;
        value = header.slice(vs, i);
      }
      current.params[tok.toLowerCase()] = value;
    } else if (header[i] === '=' && !current) {
      // param without a scheme: malformed; skip it
      i = start + tok.length + 1;
    } else {
      // A new challenge's scheme (a token68 credential form is not used by registries).
      current = { scheme: tok.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}

/** The scopes a registry asks for in a bearer challenge (space-separated). */
export function challengeScopes(c: Challenge): string[] {
  return (c.params.scope ?? '').split(' ').filter(Boolean);
}

export function repositoryScope(repoPath: string, actions = 'pull'): string {
  return `repository:${repoPath}:${actions}`;
}

function decodeAuth(auth: string, context: ErrorContext): { username: string; password: string } {
  let decoded: string;
  try {
    decoded = Buffer.from(auth, 'base64').toString('utf8');
  } catch {
    throw new InvalidArgumentError('auth', 'auth is not base64', context);
  }
  const i = decoded.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError('auth', 'auth is not base64 of "username:password"', context);
  return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/** Host part of a server address as people write it: "https://index.docker.io/v1/" → "index.docker.io". */
export function normalizeServerAddress(addr: string): string {
  let s = addr.trim();
  s = s.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = s.indexOf('/');
  if (slash !== -1) s = s.slice(0, slash);
  return s.toLowerCase();
}

const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** True when two server addresses name the same registry (Docker Hub's aliases included). */
export function sameRegistry(a: string, b: string): boolean {
  const x = normalizeServerAddress(a);
  const y = normalizeServerAddress(b);
  if (x === y) return true;
  return DOCKER_HUB_ALIASES.has(x) && DOCKER_HUB_ALIASES.has(y);
}

/**
 * Credentials in a CRI AuthConfig, or undefined when it carries none.
 * `host` is the registry being contacted: when the AuthConfig names a
 * server_address for another registry, it does not apply.
 */
export function credentialsFromAuthConfig(
  auth: AuthConfig | undefined,
  host: string,
  context: ErrorContext = {},
): Credentials | undefined {
  if (!auth) return undefined;
  if (auth.serverAddress && !sameRegistry(auth.serverAddress, host)) return undefined;
  if (auth.registryToken) return { kind: 'registry-token', token: auth.registryToken };
  if (auth.identityToken)
    return { kind: 'identity', identityToken: auth.identityToken, username: auth.username || undefined };
  if (auth.username) return { kind: 'basic', username: auth.username, password: auth.password ?? '' };
  if (auth.auth) return { kind: 'basic', ...decodeAuth(auth.auth, context) };
  return undefined;
}

/** The docker config.json shape (only what we read). */
export interface DockerConfigFile {
  auths?: Record<
    string,
    { auth?: string; username?: string; password?: string; identitytoken?: string; registrytoken?: string }
  >;
}

/** Looks up credentials for `host` in a parsed docker config.json. */
export function lookupCredentials(
  file: DockerConfigFile | undefined,
  host: string,
  context: ErrorContext = {},
): Credentials | undefined {
  const auths = file?.auths;
  if (!auths) return undefined;
  const want = normalizeServerAddress(host);
  // Exact host match first, then Docker Hub aliases.
  const keys = Object.keys(auths);
  const key = keys.find((k) => normalizeServerAddress(k) === want) ?? keys.find((k) => sameRegistry(k, want));
  if (key === undefined) return undefined;
  const e = auths[key];
  return credentialsFromAuthConfig(
    {
      username: e.username,
      password: e.password,
      auth: e.auth,
      identityToken: e.identitytoken,
      registryToken: e.registrytoken,
    },
    want,
    { ...context, path: context.path },
  );
}

/** Reads a docker config.json; a missing file is no credentials, a broken one an error. */
export async function loadCredentialsFile(path: string): Promise<DockerConfigFile | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as DockerConfigFile;
  } catch {
    throw new InvalidArgumentError('credentialsFile', `${path} is not valid JSON`, { path });
  }
}

export function basicHeader(username: string, password: string): string {
  return 'Basic ' + Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
}

function credsKey(c: Credentials | undefined): string {
  if (!c) return 'anon';
  switch (c.kind) {
    case 'basic':
      return `basic:${c.username}:${c.password}`;
    case 'identity':
      return `identity:${c.identityToken}`;
    case 'registry-token':
      return `token:${c.token}`;
  }
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

export interface TokenFetchOptions {
  /** Options for the token request (stall timeout, TLS, agents, signal). */
  http: Omit<HttpRequestOptions, 'method' | 'headers' | 'body'>;
  context?: ErrorContext;
}

/** Seconds a token is assumed to live when the realm does not say (the distribution spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
const TOKEN_MAX_BYTES = 1024 * 1024;

/**
 * Bearer tokens per (realm, service, scopes, credentials), cached until a
 * little before they expire. Concurrent requests for one key share a fetch.
 */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  clear(): void {
    this.tokens.clear();
  }

  /** The cached token for a challenge if still fresh. */
  peek(challenge: Challenge, scopes: string[], creds: Credentials | undefined): string | undefined {
    const t = this.tokens.get(this.key(challenge, scopes, creds));
    return t && t.expiresAt > this.now() ? t.token : undefined;
  }

  /** Drops a token the registry refused. */
  invalidate(challenge: Challenge, scopes: string[], creds: Credentials | undefined): void {
    this.tokens.delete(this.key(challenge, scopes, creds));
  }

  async get(
    challenge: Challenge,
    scopes: string[],
    creds: Credentials | undefined,
    opts: TokenFetchOptions,
  ): Promise<string> {
    if (creds?.kind === 'registry-token') return creds.token;
    const key = this.key(challenge, scopes, creds);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > this.now()) return cached.token;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetch(challenge, scopes, creds, opts).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const t = await p;
    this.tokens.set(key, t);
    return t.token;
  }

  private key(c: Challenge, scopes: string[], creds: Credentials | undefined): string {
    return JSON.stringify([c.params.realm ?? '', c.params.service ?? '', [...scopes].sort(), credsKey(creds)]);
  }

  private async fetch(
    challenge: Challenge,
    scopes: string[],
    creds: Credentials | undefined,
    opts: TokenFetchOptions,
  ): Promise<CachedToken> {
    const context = opts.context ?? {};
    const realm = challenge.params.realm;
    if (!realm) throw new RegistryAuthError('bearer challenge without a realm', context);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryAuthError(`bearer challenge with invalid realm "${realm}"`, context);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new RegistryAuthError(`bearer realm must be http(s): "${realm}"`, context);
    const service = challenge.params.service;
    let res;
    if (creds?.kind === 'identity') {
      // OAuth2 refresh-token grant (docker's identity token).
      const form = new URLSearchParams();
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', creds.identityToken);
      form.set('client_id', 'capsa');
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      res = await httpRequest(url, {
        ...opts.http,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'capsa' },
        body: Buffer.from(form.toString()),
      });
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = { 'user-agent': 'capsa' };
      if (creds?.kind === 'basic') headers.authorization = basicHeader(creds.username, creds.password);
      res = await httpRequest(url, { ...opts.http, method: 'GET', headers });
    }
    if (res.status === 401 || res.status === 403) {
      const text = await discardBody(res.body);
      throw new RegistryAuthError(
        `token request to ${url.host} refused (${res.status})${creds ? '' : ' for anonymous access'}: ${text.slice(0, 200).trim()}`,
        context,
      );
    }
    if (res.status < 200 || res.status >= 300) {
      const text = await discardBody(res.body);
      throw new CapsaError(
        res.status >= 500 || res.status === 429 ? 'Unavailable' : 'FailedPrecondition',
        `token request to ${url.host} failed (${res.status}): ${text.slice(0, 200).trim()}`,
        context,
      );
    }
    const body = await readBody(res.body, TOKEN_MAX_BYTES, opts.http.stallTimeoutMs, opts.http.signal, context);
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      doc = JSON.parse(body.toString('utf8')) as typeof doc;
    } catch {
      throw new RegistryAuthError(`token response from ${url.host} is not JSON`, context);
    }
    const token = typeof doc.token === 'string' && doc.token ? doc.token : doc.access_token;
    if (typeof token !== 'string' || !token)
      throw new RegistryAuthError(`token response from ${url.host} has no token`, context);
    const seconds = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : DEFAULT_TOKEN_SECONDS;
    let issued = this.now();
    if (typeof doc.issued_at === 'string') {
      const t = Date.parse(doc.issued_at);
      // Trust issued_at only when the clocks roughly agree.
      if (Number.isFinite(t) && Math.abs(t - issued) < 5 * 60_000) issued = t;
    }
    // Renew a little early so a token never expires mid-request.
    const margin = Math.min(10, seconds / 4) * 1000;
    return { token, expiresAt: issued + seconds * 1000 - margin };
  }
}
