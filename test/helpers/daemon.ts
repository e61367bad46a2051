// Starts the real capsa daemon (the compiled CLI) on a temporary root,
// state dir and socket, and gives tests generated gRPC clients for it.
import * as grpc from '@grpc/grpc-js';
import { ChildProcess, spawn } from 'child_process';
import { existsSync, mkdtempSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as api from '../../src/gen/runtime/v1/api';
import { ImageServiceClient, RuntimeServiceClient } from '../../src/gen/runtime/v1/api';
import { slow } from './slowdown';

export const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');

export interface TestDaemon {
  dir: string;
  root: string;
  state: string;
  socket: string;
  proc: ChildProcess;
  runtime: RuntimeServiceClient;
  image: ImageServiceClient;
  /** Everything the daemon logged so far. */
  output(): string;
  /** SIGTERM, wait for exit; resolves to the exit code. */
  stop(): Promise<number | null>;
  /** Removes the temp dir (after stop). */
  cleanup(): Promise<void>;
}

export interface StartOptions {
  /** Extra `capsa serve` arguments. */
  args?: string[];
  /** TOML written to <dir>/capsa.toml and passed with --config. */
  toml?: string;
  /** Reuse an existing dir (restart tests). */
  dir?: string;
  timeoutMs?: number;
  /** The program to run with node (default the checkout's dist/src/cli.js; e.g. an installed bin/capsa). */
  cli?: string;
}

/** Resolves to the exit code; rejects after `timeoutMs` (times the host's slowdown). */
export function waitForExit(proc: ChildProcess, timeoutMs = 20000): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  const ms = slow(timeoutMs);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`process ${proc.pid} did not exit in ${ms} ms`)), ms);
    proc.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

export async function startDaemon(opts: StartOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'capsa-test-'));
  const root = path.join(dir, 'root');
  const state = path.join(dir, 'state');
  const socket = path.join(state, 'capsa.sock');
  const args = ['serve', '--root', root, '--state', state, '--socket', socket, '--log-level', 'debug'];
  args.push('--metrics-address', '', '--cni-conf-dir', path.join(dir, 'cni'));
  // Always an explicit config file, so the host's /etc/capsa/capsa.toml never leaks into a test.
  const file = path.join(dir, 'capsa.toml');
  await fs.writeFile(file, opts.toml ?? '');
  args.push('--config', file, ...(opts.args ?? []));
  let out = '';
  const proc = spawn(process.execPath, [opts.cli ?? CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  // Slow hosts (CAPSA_TEST_SLOWDOWN: hack/test-cgroup-v2.sh's emulated VM) get more.
  const deadline = Date.now() + slow(opts.timeoutMs ?? 15000);
  while (!/capsa is serving/.test(out)) {
    if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`daemon did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const target = `unix://${socket}`;
  const runtime = new RuntimeServiceClient(target, grpc.credentials.createInsecure());
  const image = new ImageServiceClient(target, grpc.credentials.createInsecure());
  return {
    dir,
    root,
    state,
    socket,
    proc,
    runtime,
    image,
    output: () => out,
    stop: async () => {
      runtime.close();
      image.close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return waitForExit(proc);
    },
    cleanup: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await waitForExit(proc);
      }
      if (existsSync(dir)) await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The full request message for `method` (e.g. "runPodSandbox") built from a
 * partial one, as the generated encoders need every field present.
 */
export function request(method: string, partial: unknown): unknown {
  const name = method[0].toUpperCase() + method.slice(1) + 'Request';
  const type = (api as unknown as Record<string, { fromPartial?: (p: unknown) => unknown }>)[name];
  if (!type?.fromPartial) throw new Error(`no message type ${name}`);
  return type.fromPartial(partial ?? {});
}

/** Promisifies a unary generated-client call with a deadline (times the host's slowdown); `req` may be partial. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function call<Res = any>(client: grpc.Client, method: string, req: unknown, timeoutMs = 10000): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method].bind(client);
    fn(
      request(method, req),
      new grpc.Metadata(),
      { deadline: new Date(Date.now() + slow(timeoutMs)) },
      (err: Error | null, res: Res) => (err ? reject(err) : resolve(res)),
    );
  });
}

/** RunPodSandbox with a (partial) config; resolves to the sandbox id. */
export async function runp(d: TestDaemon, config: Record<string, unknown>, timeoutMs?: number): Promise<string> {
  return (await call<{ podSandboxId: string }>(d.runtime, 'runPodSandbox', { config }, timeoutMs)).podSandboxId;
}

/** CreateContainer in `pod` (its config passed as kubelet does); resolves to the container id. */
/** ExecSync through the socket, its output as text. */
export async function execSync(
  d: TestDaemon,
  id: string,
  cmd: string[],
  timeout = 0,
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await call<{ stdout: Buffer; stderr: Buffer; exitCode: number }>(
    d.runtime,
    'execSync',
    { containerId: id, cmd, timeout: BigInt(timeout) },
    30_000,
  );
  return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exitCode: r.exitCode };
}

export async function createContainer(
  d: TestDaemon,
  pod: string,
  podCfg: Record<string, unknown>,
  config: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<string> {
  const r = await call<{ containerId: string }>(
    d.runtime,
    'createContainer',
    { podSandboxId: pod, config, sandboxConfig: podCfg },
    timeoutMs,
  );
  return r.containerId;
}

export function grpcCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

/** Expects `p` to fail with gRPC `code` and details matching `details`. */
export async function expectRpcError(p: Promise<unknown>, code: grpc.status, details: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeDefined();
  expect({ code: grpcCode(err), details: (err as { details?: string }).details }).toEqual({
    code,
    details: expect.stringMatching(details),
  });
}
