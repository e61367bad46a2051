// A small bearer-token server for tests (the docker "token authentication"
// spec): docker-registry sends clients to its realm, which answers
// GET /token?service=S&scope=repository:NAME:ACTIONS (Basic credentials
// optional) and the OAuth2 POST form (grant_type=password or
// refresh_token) with a JWT signed by an RSA key whose self-signed
// certificate (made by `openssl`) is the registry's `rootcertbundle`.
import { execFile } from 'child_process';
import { createPrivateKey, createSign, KeyObject, randomUUID, X509Certificate } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as path from 'path';
import { promisify } from 'util';

const execFileP = promisify(execFile);

export interface TokenServerOptions {
  /** Directory for the key and certificate (must exist). */
  dir: string;
  /** The registry's `auth.token.service`; tokens carry it as their audience. */
  service: string;
  /** `iss` of the tokens and the registry's `auth.token.issuer`. */
  issuer?: string;
  /** The one account accepted (Basic on GET, grant_type=password on POST). */
  username: string;
  password: string;
  /** Give anonymous requests pull access (default: tokens without access). */
  anonymousPull?: boolean;
  /** Lifetime of issued tokens in seconds (default 300; the registry allows 60 s of clock skew). */
  expiresIn?: number;
}

/** One request the server answered, for assertions. */
export interface TokenRequest {
  method: string;
  /** Who asked: the username, `refresh-token`, or undefined for anonymous. */
  subject?: string;
  scopes: string[];
  status: number;
}

interface Access {
  type: string;
  name: string;
  actions: string[];
}

/** The refresh token handed out for grant_type=password with access_type=offline. */
const REFRESH_PREFIX = 'capsa-test-refresh-';

export class TokenServer {
  readonly requests: TokenRequest[] = [];
  readonly issuer: string;
  /** The OAuth2 refresh token ("identity token") accepted by POST grant_type=refresh_token. */
  readonly refreshToken = REFRESH_PREFIX + randomUUID();
  private server?: http.Server;
  private port = 0;

  private constructor(
    private readonly opts: TokenServerOptions,
    private readonly key: KeyObject,
    private readonly certDer: Buffer,
    /** PEM path to give the registry as `rootcertbundle`. */
    readonly certFile: string,
  ) {
    this.issuer = opts.issuer ?? 'capsa-test-token-server';
  }

  /** Generates a key + self-signed certificate with openssl and listens on 127.0.0.1:<free port>. */
  static async start(opts: TokenServerOptions): Promise<TokenServer> {
    const keyFile = path.join(opts.dir, 'token.key');
    const certFile = path.join(opts.dir, 'token.crt');
    await execFileP('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=capsa-test-token-server',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ]);
    const key = createPrivateKey(await fs.readFile(keyFile));
    const cert = new X509Certificate(await fs.readFile(certFile));
    const ts = new TokenServer(opts, key, cert.raw, certFile);
    await ts.listen();
    return ts;
  }

  /** The realm to configure in the registry. */
  get realm(): string {
    return `http://127.0.0.1:${this.port}/token`;
  }

  /** Signs a token for `subject` with exactly `access` (also useful to forge test tokens). */
  sign(subject: string | undefined, access: Access[], expiresIn = this.opts.expiresIn ?? 300): string {
    const now = Math.floor(Date.now() / 1000);
    // x5c carries our certificate; the registry verifies it against rootcertbundle.
    const header = { typ: 'JWT', alg: 'RS256', x5c: [this.certDer.toString('base64')] };
    const claims = {
      iss: this.issuer,
      sub: subject ?? '',
      aud: this.opts.service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${b64(header)}.${b64(claims)}`;
    const sig = createSign('RSA-SHA256').update(input).sign(this.key).toString('base64url');
    return `${input}.${sig}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private listen(): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String(err));
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        this.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = req.method ?? 'GET';
    if (url.pathname !== '/token' || (method !== 'GET' && method !== 'POST')) {
      res.writeHead(404).end();
      return;
    }
    let scopes = url.searchParams.getAll('scope');
    let service = url.searchParams.get('service');
    let subject: string | undefined;
    let authenticated = false;
    let refresh: string | undefined;
    let denied = false;

    if (method === 'GET') {
      const auth = req.headers.authorization;
      if (auth?.startsWith('Basic ')) {
        const [user, ...rest] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
        subject = user;
        authenticated = user === this.opts.username && rest.join(':') === this.opts.password;
        denied = !authenticated;
      }
    } else {
      const form = new URLSearchParams(await readAll(req));
      service = form.get('service') ?? service;
      scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      const grant = form.get('grant_type');
      if (grant === 'password') {
        subject = form.get('username') ?? undefined;
        authenticated = subject === this.opts.username && form.get('password') === this.opts.password;
        if (authenticated && form.get('access_type') === 'offline') refresh = this.refreshToken;
      } else if (grant === 'refresh_token') {
        subject = 'refresh-token';
        authenticated = form.get('refresh_token') === this.refreshToken;
      }
      denied = !authenticated;
    }

    const record = (status: number): void => {
      this.requests.push({ method, subject: authenticated || denied ? subject : undefined, scopes, status });
    };
    if (service !== this.opts.service) {
      record(400);
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message: `unknown service ${service}` }] }));
      return;
    }
    if (denied) {
      record(401);
      res.writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Basic realm="capsa-test"' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid credentials' }] }));
      return;
    }
    const access = scopes.map(parseScope).filter((a): a is Access => a !== undefined);
    // Authenticated callers get everything they ask for; anonymous ones pull at most.
    const granted = access
      .map((a) => ({
        ...a,
        actions: authenticated ? a.actions : this.opts.anonymousPull ? a.actions.filter((x) => x === 'pull') : [],
      }))
      .filter((a) => a.actions.length > 0);
    const expiresIn = this.opts.expiresIn ?? 300;
    const token = this.sign(authenticated ? subject : undefined, granted, expiresIn);
    record(200);
    const body: Record<string, unknown> = {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date().toISOString(),
    };
    if (refresh) body.refresh_token = refresh;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }
}

/** "repository:NAME:pull,push" (NAME may hold ':' for other resource types) → Access. */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last === first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter(Boolean),
  };
}

async function readAll(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}
