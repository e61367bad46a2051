// A real registry for tests: Debian's `docker-registry` (distribution 2.8)
// on 127.0.0.1 with a free port and a temporary storage dir, optionally
// behind HTTP basic auth (htpasswd) or bearer tokens (./token-server), and
// `skopeo` to push OCI layouts (hack/make-test-images.sh) into it.
//
// Needs (apt): docker-registry skopeo umoci apache2-utils (htpasswd) openssl
// util-linux (setpriv), plus what hack/make-test-images.sh needs.
//
//   const images = await ensureTestImages();
//   const reg = await startRegistry({ basicAuth: { username: 'u', password: 'p' } });
//   try {
//     await reg.push(images.busybox.layout, 'library/busybox:1');
//     const res = await reg.fetch('/v2/library/busybox/manifests/1');
//   } finally {
//     await reg.stop();
//   }
import { ChildProcess, execFile, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import { existsSync, promises as fs, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { slow } from './slowdown';
import { TokenServer } from './token-server';

const execFileP = promisify(execFile);

export interface Account {
  username: string;
  password: string;
}

export interface StartRegistryOptions {
  /** Require HTTP basic auth with this account (htpasswd file, bcrypt). */
  basicAuth?: Account;
  /**
   * Require bearer tokens from a TokenServer started alongside, which
   * accepts this account. `anonymousPull` lets tokens without credentials pull.
   */
  tokenAuth?: Account & { anonymousPull?: boolean; expiresIn?: number };
  /** Seconds to wait for the registry to answer (default 20). */
  startTimeoutSec?: number;
}

export interface PushOptions {
  /** Tag inside the OCI layout (default: its only image, else the destination tag). */
  srcTag?: string;
  /** Manifest format to push (default: keep the layout's, OCI). */
  format?: 'oci' | 'v2s2';
  /** Recompress layers on the way (default: keep them as they are). */
  compress?: 'gzip' | 'zstd';
  /** Push without credentials even if the registry has some (to test refusals). */
  anonymous?: boolean;
}

export interface PushResult {
  /** repo:tag as pushed, without host. */
  ref: string;
  /** Digest of the manifest the registry now holds. */
  digest: string;
}

/** Live registries of this process, killed on exit if a test forgot stop(). */
const live = new Set<TestRegistry>();
process.once('exit', () => {
  for (const r of live) r.killNow();
});

export class TestRegistry {
  private stopped = false;
  private readonly tokens = new Map<string, string>();

  constructor(
    /** 127.0.0.1:PORT */
    readonly host: string,
    /** Temp dir with config.yml, storage (data/), htpasswd or token key + cert; removed by stop(). */
    readonly dir: string,
    private readonly proc: ChildProcess,
    private readonly logText: () => string,
    /** The account the registry requires, if any. */
    readonly account?: Account,
    readonly tokenServer?: TokenServer,
  ) {
    live.add(this);
  }

  /** http://127.0.0.1:PORT */
  get url(): string {
    return `http://${this.host}`;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** What the registry logged so far (for failure messages). */
  log(): string {
    return this.logText();
  }

  /**
   * Pushes image `opts.srcTag` (default: the only one) of the OCI layout
   * `layoutDir` as `ref` ('repo:tag', tag defaults to latest), with skopeo.
   */
  async push(layoutDir: string, ref: string, opts: PushOptions = {}): Promise<PushResult> {
    const { repo, tag } = splitRef(ref);
    const srcTag = opts.srcTag ?? ((await countManifests(layoutDir)) === 1 ? undefined : tag);
    let src = srcTag ? `oci:${layoutDir}:${srcTag}` : `oci:${layoutDir}`;
    const tmp = path.join(this.dir, `push-${randomBytes(6).toString('hex')}`);
    try {
      if (opts.compress) {
        // Recompress into a scratch layout first: pushing straight to the registry, skopeo would
        // reuse the blobs it already holds there in their old compression.
        await this.skopeo(['copy', '--quiet', '--dest-compress-format', opts.compress, src, `oci:${tmp}:latest`]);
        src = `oci:${tmp}:latest`;
      }
      const args = ['copy', '--quiet', '--dest-tls-verify=false', '--digestfile', `${tmp}.digest`];
      if (this.account && !opts.anonymous)
        args.push('--dest-creds', `${this.account.username}:${this.account.password}`);
      else args.push('--dest-no-creds');
      if (opts.format) args.push('--format', opts.format);
      await this.skopeo([...args, src, `docker://${this.host}/${repo}:${tag}`]);
      const digest = (await fs.readFile(`${tmp}.digest`, 'utf8')).trim();
      return { ref: `${repo}:${tag}`, digest };
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
      await fs.rm(`${tmp}.digest`, { force: true });
    }
  }

  private async skopeo(args: string[]): Promise<void> {
    // our own policy: skopeo must not depend on the host's /etc/containers/policy.json
    const all = ['--policy', path.join(this.dir, 'policy.json'), ...args];
    try {
      await execFileP('skopeo', all, { maxBuffer: 16 << 20 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`skopeo ${all.join(' ')} failed: ${e.stderr || e.message}`);
    }
  }

  /**
   * fetch() against the registry (`pathOrUrl` like '/v2/repo/manifests/tag'),
   * authenticating with the registry's account: Basic directly, or, on a
   * Bearer challenge, a token from the realm for the challenged scope.
   * `anonymous` skips credentials (tokens are still fetched, without them).
   */
  async fetch(pathOrUrl: string, init: RequestInit & { anonymous?: boolean } = {}): Promise<Response> {
    const { anonymous, ...req } = init;
    const url = new URL(pathOrUrl, this.url);
    const headers = new Headers(req.headers);
    const creds = anonymous ? undefined : this.account;
    if (creds && !this.tokenServer) headers.set('Authorization', basic(creds));
    const cached = this.tokens.get(`${anonymous ? '-' : '+'}${url.pathname}`);
    if (cached) headers.set('Authorization', `Bearer ${cached}`);
    let res = await fetch(url, { ...req, headers });
    const challenge = res.headers.get('www-authenticate');
    if (res.status === 401 && challenge?.startsWith('Bearer ')) {
      const p = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const tokenUrl = new URL(p.realm);
      if (p.service) tokenUrl.searchParams.set('service', p.service);
      if (p.scope) for (const s of p.scope.split(' ')) tokenUrl.searchParams.append('scope', s);
      const tr = await fetch(tokenUrl, { headers: creds ? { Authorization: basic(creds) } : {} });
      if (!tr.ok) return tr;
      const token = ((await tr.json()) as { token: string }).token;
      this.tokens.set(`${anonymous ? '-' : '+'}${url.pathname}`, token);
      await res.body?.cancel();
      headers.set('Authorization', `Bearer ${token}`);
      res = await fetch(url, { ...req, headers });
    }
    return res;
  }

  /** Stops the registry (SIGTERM, then SIGKILL after 5 s) and removes its temp dir. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      if (this.proc.exitCode === null && this.proc.signalCode === null) {
        const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
        this.proc.kill('SIGTERM');
        const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await this.tokenServer?.stop();
    } finally {
      live.delete(this);
      await fs.rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Synchronous last resort for process exit. */
  killNow(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts docker-registry on 127.0.0.1:<free port> and waits until GET /v2/ answers. */
export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  if (opts.basicAuth && opts.tokenAuth) throw new Error('startRegistry: basicAuth and tokenAuth exclude each other');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'capsa-registry-'));
  let tokenServer: TokenServer | undefined;
  let proc: ChildProcess | undefined;
  try {
    await fs.writeFile(
      path.join(dir, 'policy.json'),
      JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }),
    );
    let auth = '';
    if (opts.basicAuth) {
      await fs.writeFile(path.join(dir, 'htpasswd'), await htpasswdEntry(opts.basicAuth));
      auth = `auth:\n  htpasswd:\n    realm: capsa-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
    } else if (opts.tokenAuth) {
      const service = 'capsa-test-registry';
      tokenServer = await TokenServer.start({ dir, service, ...opts.tokenAuth });
      auth =
        `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${service}\n` +
        `    issuer: ${tokenServer.issuer}\n    rootcertbundle: ${tokenServer.certFile}\n`;
    }
    const config = path.join(dir, 'config.yml');
    await fs.writeFile(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: info',
        '  formatter: text',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        '  maintenance:',
        '    uploadpurging:',
        '      enabled: false',
        'http:',
        // port 0: the kernel picks a free port, which the registry logs ("listening on ...")
        '  addr: 127.0.0.1:0',
        `  secret: ${randomBytes(16).toString('hex')}`,
        auth,
      ].join('\n'),
    );
    // setpriv --pdeathsig: the registry dies with this process even if it is SIGKILLed
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'docker-registry', 'serve', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc = child;
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.length > 1 << 20) out = out.slice(-(1 << 19));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
    spawnError.catch(() => undefined);

    const deadline = Date.now() + slow((opts.startTimeoutSec ?? 20) * 1000);
    let host: string | undefined;
    while (!host) {
      host = /listening on (127\.0\.0\.1:\d+)/.exec(out)?.[1];
      if (host) break;
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}):\n${out}`);
      if (Date.now() > deadline) throw new Error(`docker-registry did not start listening:\n${out}`);
      await Promise.race([delay(20), spawnError]);
    }
    const account = opts.basicAuth ?? opts.tokenAuth;
    const reg = new TestRegistry(host, dir, child, () => out, account && { ...account }, tokenServer);
    for (;;) {
      try {
        const res = await fetch(`http://${host}/v2/`);
        await res.body?.cancel();
        // 401 is an answer too: the auth registries challenge anonymous requests
        if (res.status === 200 || res.status === 401) return reg;
      } catch {
        // not accepting connections yet
      }
      if (Date.now() > deadline) {
        await reg.stop();
        throw new Error(`docker-registry on ${host} did not answer GET /v2/:\n${out}`);
      }
      await delay(20);
    }
  } catch (err) {
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await tokenServer?.stop();
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A bcrypt htpasswd line (apache2-utils' htpasswd; Node's crypto has no bcrypt). */
export async function htpasswdEntry(account: Account): Promise<string> {
  // -i: password on stdin, not in the process list; -C 4: the cheapest bcrypt cost, tests stay fast
  const child = spawn('htpasswd', ['-niB', '-C', '4', account.username], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end(`${account.password}\n`);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`htpasswd failed (${code}): ${err}`);
  return `${out.trim()}\n`;
}

// ---------------------------------------------------------------- test images

export type TestImageName = 'busybox' | 'layers' | 'big';

export interface TestImage {
  /** OCI image layout directory. */
  layout: string;
  /** Tag of the image inside the layout. */
  tag: string;
  /** Suggested repo:tag to push it as, e.g. capsa-test/busybox:latest. */
  ref: string;
  /** Manifest digest in the layout (reproducible across builds). */
  digest: string;
}

export type TestImages = Record<'busybox' | 'layers', TestImage> & { big?: TestImage };

/** Where ensureTestImages() builds by default ($CAPSA_TEST_IMAGES_DIR overrides). */
export const TEST_IMAGES_DIR = process.env.CAPSA_TEST_IMAGES_DIR || '/var/tmp/capsa-test-images';

const building = new Map<string, Promise<TestImages>>();

/**
 * Makes sure hack/make-test-images.sh has built the test images into `dir`
 * (a no-op taking ~0.3 s when its inputs did not change) and returns them.
 * `big` also builds the ~100 MiB benchmark image.
 */
export function ensureTestImages(opts: { big?: boolean; dir?: string } = {}): Promise<TestImages> {
  const dir = opts.dir ?? TEST_IMAGES_DIR;
  const key = `${dir}\0${opts.big ? 'big' : ''}`;
  let p = building.get(key);
  if (!p) {
    p = buildTestImages(dir, !!opts.big);
    building.set(key, p);
    p.catch(() => building.delete(key));
  }
  return p;
}

async function buildTestImages(dir: string, big: boolean): Promise<TestImages> {
  const script = path.join(repoRoot(), 'hack', 'make-test-images.sh');
  const args = [script, ...(big ? ['--big'] : []), dir];
  try {
    await execFileP('bash', args, { maxBuffer: 16 << 20, timeout: 10 * 60 * 1000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`bash ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
  const images = JSON.parse(await fs.readFile(path.join(dir, 'images.json'), 'utf8')) as TestImages;
  if (big && !images.big) throw new Error(`${dir}/images.json lists no big image`);
  return images;
}

/** The repository root: the nearest ancestor of this file holding hack/make-test-images.sh. */
function repoRoot(): string {
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    if (existsSync(path.join(d, 'hack', 'make-test-images.sh'))) return d;
  }
  throw new Error(`no hack/make-test-images.sh above ${__dirname}`);
}

// ---------------------------------------------------------------- small helpers

function splitRef(ref: string): { repo: string; tag: string } {
  const m = /^([a-z0-9]+(?:[._/-][a-z0-9]+)*)(?::([\w][\w.-]{0,127}))?$/.exec(ref);
  if (!m) throw new Error(`push: "${ref}" is not repo[:tag] (no host, no digest)`);
  return { repo: m[1], tag: m[2] ?? 'latest' };
}

async function countManifests(layoutDir: string): Promise<number> {
  const index = JSON.parse(await fs.readFile(path.join(layoutDir, 'index.json'), 'utf8')) as { manifests?: unknown[] };
  return index.manifests?.length ?? 0;
}

function basic(a: Account): string {
  return `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
