import * as http from 'http';
import { AddressInfo } from 'net';
import { CapsaError } from '../../src/errors';
import {
  challengeScopes,
  credentialsFromAuthConfig,
  lookupCredentials,
  normalizeServerAddress,
  parseWwwAuthenticate,
  RegistryAuthError,
  TokenCache,
} from '../../src/provisioner/store/auth';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('WWW-Authenticate parsing', () => {
  test('Docker Hub bearer challenge', () => {
    const c = parseWwwAuthenticate(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
    );
    expect(c).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/busybox:pull',
        },
      },
    ]);
  });

  test('basic, several challenges, unquoted and escaped values, odd spacing', () => {
    expect(parseWwwAuthenticate('Basic realm="Registry Realm"')).toEqual([
      { scheme: 'basic', params: { realm: 'Registry Realm' } },
    ]);
    expect(parseWwwAuthenticate('Basic realm="x", Bearer realm="https://t/token",service=reg')).toEqual([
      { scheme: 'basic', params: { realm: 'x' } },
      { scheme: 'bearer', params: { realm: 'https://t/token', service: 'reg' } },
    ]);
    expect(parseWwwAuthenticate('BEARER Realm = "a\\"b" ,  Service="s"')).toEqual([
      { scheme: 'bearer', params: { realm: 'a"b', service: 's' } },
    ]);
    expect(parseWwwAuthenticate('')).toEqual([]);
  });

  test('scopes are space separated', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="r",scope="repository:a:pull repository:b:pull,push"');
    expect(challengeScopes(c)).toEqual(['repository:a:pull', 'repository:b:pull,push']);
  });
});

describe('credentials', () => {
  test('from a CRI AuthConfig', () => {
    expect(credentialsFromAuthConfig({ username: 'u', password: 'p' }, 'x.io')).toEqual({
      kind: 'basic',
      username: 'u',
      password: 'p',
    });
    expect(credentialsFromAuthConfig({ auth: b64('u:p:w') }, 'x.io')).toEqual({
      kind: 'basic',
      username: 'u',
      password: 'p:w',
    });
    expect(credentialsFromAuthConfig({ identityToken: 'rt', username: 'u' }, 'x.io')).toEqual({
      kind: 'identity',
      identityToken: 'rt',
      username: 'u',
    });
    expect(credentialsFromAuthConfig({ registryToken: 'tok' }, 'x.io')).toEqual({
      kind: 'registry-token',
      token: 'tok',
    });
    expect(credentialsFromAuthConfig({}, 'x.io')).toBeUndefined();
    expect(credentialsFromAuthConfig(undefined, 'x.io')).toBeUndefined();
  });

  test('server_address must name the registry being contacted', () => {
    expect(credentialsFromAuthConfig({ username: 'u', password: 'p', serverAddress: 'y.io' }, 'x.io')).toBeUndefined();
    expect(
      credentialsFromAuthConfig({ username: 'u', password: 'p', serverAddress: 'https://x.io/' }, 'x.io'),
    ).toBeDefined();
    expect(
      credentialsFromAuthConfig(
        { username: 'u', password: 'p', serverAddress: 'https://index.docker.io/v1/' },
        'docker.io',
      ),
    ).toBeDefined();
  });

  test('a malformed auth field is InvalidArgument', () => {
    let err: unknown;
    try {
      credentialsFromAuthConfig({ auth: b64('no-colon') }, 'x.io');
    } catch (e) {
      err = e;
    }
    expect((err as CapsaError).kind).toBe('InvalidArgument');
  });

  test('docker config.json lookup', () => {
    const file = {
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hub:pw') },
        '127.0.0.1:5000': { username: 'loc', password: 'al' },
        'http://localhost:5001': { auth: b64('l2:pw2') },
        'quay.io': { identitytoken: 'refresh' },
        'empty.io': {},
      },
    };
    expect(lookupCredentials(file, 'docker.io')).toEqual({ kind: 'basic', username: 'hub', password: 'pw' });
    expect(lookupCredentials(file, 'registry-1.docker.io')).toMatchObject({ username: 'hub' });
    expect(lookupCredentials(file, '127.0.0.1:5000')).toMatchObject({ username: 'loc', password: 'al' });
    expect(lookupCredentials(file, 'localhost:5001')).toMatchObject({ username: 'l2' });
    expect(lookupCredentials(file, 'quay.io')).toEqual({ kind: 'identity', identityToken: 'refresh' });
    expect(lookupCredentials(file, 'empty.io')).toBeUndefined();
    expect(lookupCredentials(file, 'other.io')).toBeUndefined();
    expect(lookupCredentials(undefined, 'docker.io')).toBeUndefined();
    expect(normalizeServerAddress('HTTPS://Index.Docker.io/v1/')).toBe('index.docker.io');
  });
});

describe('token cache', () => {
  let server: http.Server;
  let realm: string;
  const seen: { auth?: string; query: string; method: string; body: string }[] = [];
  let answer: { status: number; body: unknown } = { status: 200, body: {} };
  let n = 0;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ auth: req.headers.authorization, query: req.url ?? '', method: req.method ?? '', body });
        n++;
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer.status === 200 ? { ...(answer.body as object), token: `t${n}` } : answer.body));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  beforeEach(() => {
    seen.length = 0;
    answer = { status: 200, body: { expires_in: 60 } };
  });

  const opts = { http: { stallTimeoutMs: 5000 } };

  test('fetches with service, scope and basic credentials, and caches until expiry', async () => {
    let now = 1_000_000;
    const cache = new TokenCache(() => now);
    const [c] = parseWwwAuthenticate(`Bearer realm="${realm}",service="svc"`);
    const creds = { kind: 'basic' as const, username: 'u', password: 'p' };
    const t1 = await cache.get(c, ['repository:a:pull'], creds, opts);
    expect(seen).toHaveLength(1);
    expect(seen[0].query).toBe('/token?service=svc&scope=repository%3Aa%3Apull');
    expect(seen[0].auth).toBe(`Basic ${b64('u:p')}`);
    expect(await cache.get(c, ['repository:a:pull'], creds, opts)).toBe(t1);
    expect(seen).toHaveLength(1);
    // another scope or other credentials: another token
    await cache.get(c, ['repository:b:pull'], creds, opts);
    await cache.get(c, ['repository:a:pull'], undefined, opts);
    expect(seen).toHaveLength(3);
    expect(seen[2].auth).toBeUndefined();
    // expired (60 s minus the early-renewal margin)
    now += 51_000;
    const t2 = await cache.get(c, ['repository:a:pull'], creds, opts);
    expect(t2).not.toBe(t1);
    expect(seen).toHaveLength(4);
  });

  test('concurrent requests for one token share a fetch', async () => {
    const cache = new TokenCache();
    const [c] = parseWwwAuthenticate(`Bearer realm="${realm}"`);
    const ts = await Promise.all([1, 2, 3].map(() => cache.get(c, ['s'], undefined, opts)));
    expect(new Set(ts).size).toBe(1);
    expect(seen).toHaveLength(1);
  });

  test('identity tokens use the OAuth2 refresh-token grant', async () => {
    const cache = new TokenCache();
    answer = { status: 200, body: { access_token: 'ignored-because-token-wins' } };
    const [c] = parseWwwAuthenticate(`Bearer realm="${realm}",service="svc"`);
    await cache.get(c, ['repository:a:pull'], { kind: 'identity', identityToken: 'RT' }, opts);
    expect(seen[0].method).toBe('POST');
    expect(new URLSearchParams(seen[0].body).get('grant_type')).toBe('refresh_token');
    expect(new URLSearchParams(seen[0].body).get('refresh_token')).toBe('RT');
    expect(new URLSearchParams(seen[0].body).get('scope')).toBe('repository:a:pull');
  });

  test('a refused token request is a RegistryAuthError', async () => {
    const cache = new TokenCache();
    answer = { status: 401, body: { details: 'nope' } };
    const [c] = parseWwwAuthenticate(`Bearer realm="${realm}"`);
    await expect(cache.get(c, ['s'], { kind: 'basic', username: 'u', password: 'bad' }, opts)).rejects.toBeInstanceOf(
      RegistryAuthError,
    );
  });

  test('registry tokens are used as they are', async () => {
    const cache = new TokenCache();
    const [c] = parseWwwAuthenticate(`Bearer realm="${realm}"`);
    expect(await cache.get(c, ['s'], { kind: 'registry-token', token: 'direct' }, opts)).toBe('direct');
    expect(seen).toHaveLength(0);
  });
});
