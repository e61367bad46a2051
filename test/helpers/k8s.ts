// The one-node cluster of hack/k8s (kubelet on capsa) for the end-to-end
// suites: bring it up and down, run kubectl, apply objects, wait for
// conditions. Tests drive the cluster only through kubectl, as a user would.
import { execFile, spawn, SpawnOptions } from 'child_process';
import * as path from 'path';
import { promisify } from 'util';

const run = promisify(execFile);

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const K8S_HACK = path.join(REPO, 'hack', 'k8s');
export const K8S_BIN = path.join(process.env.CAPSA_K8S_CACHE ?? '/var/cache/capsa-k8s', 'bin');
export const K8S_DIR = process.env.CAPSA_K8S_DIR ?? '/var/lib/capsa-k8s';
export const K8S_RUN = process.env.CAPSA_K8S_RUN ?? '/run/capsa-k8s';
export const KUBECONFIG = path.join(K8S_DIR, 'pki', 'admin.kubeconfig');
export const NODE = process.env.CAPSA_K8S_NODE ?? 'capsa-node';
export const CAPSA_SOCKET = process.env.CAPSA_K8S_SOCKET ?? '/run/capsa/capsa.sock';
/** kubelet's cgroup root (hack/k8s/lib.sh CGROUP_ROOT): kubepods lives under it. */
export const CGROUP_ROOT = process.env.CAPSA_K8S_CGROUP_ROOT ?? '/';
/** The cgroup driver of capsa and kubelet (hack/k8s/up.sh CAPSA_K8S_CGROUP_DRIVER; hack/sysd/k8s.sh: systemd). */
export const CGROUP_DRIVER = process.env.CAPSA_K8S_CGROUP_DRIVER === 'systemd' ? 'systemd' : 'cgroupfs';
/**
 * Where kubelet puts a pod of QoS class `qos` (relative to its cgroup root):
 * kubepods/burstable/pod<uid>, or with the systemd driver its slice path
 * kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, - as _>.slice.
 */
export function podCgroupOf(qos: 'Guaranteed' | 'Burstable' | 'BestEffort', uid: string): string {
  const tier = qos === 'Guaranteed' ? [] : [qos.toLowerCase()];
  if (CGROUP_DRIVER === 'cgroupfs') return ['kubepods', ...tier, `pod${uid}`].join('/');
  const parts = ['kubepods', ...tier, `pod${uid.replace(/-/g, '_')}`];
  return parts.map((_, i) => `${parts.slice(0, i + 1).join('-')}.slice`).join('/');
}
/** kubelet's feature gates, as hack/k8s/up.sh sets them (same default). */
export const FEATURE_GATES = process.env.CAPSA_K8S_FEATURE_GATES ?? 'PodAndContainerStatsFromCRI=true';
export const gateOn = (g: string): boolean => FEATURE_GATES.split(',').includes(`${g}=true`);

/** Runs a hack/k8s script (up.sh, down.sh, …), failing with its output. */
export async function k8sScript(name: string, args: string[] = [], timeoutMs = 600_000): Promise<string> {
  try {
    const { stdout, stderr } = await run('bash', [path.join(K8S_HACK, name), ...args], {
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${name} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** kubectl with the cluster's admin kubeconfig; never throws. */
export function kubectlRaw(
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const so: SpawnOptions = {
      env: { ...process.env, KUBECONFIG, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    };
    const child = spawn(path.join(K8S_BIN, 'kubectl'), args, so);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}\n(killed: ${signal})` : stderr });
    });
    child.stdin!.end(opts.input ?? '');
  });
}

/** kubectl that must succeed; returns stdout. */
export async function kubectl(
  args: string[],
  opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<string> {
  const r = await kubectlRaw(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** kubectl apply of objects given as plain JS values. */
export async function apply(...objects: object[]): Promise<void> {
  const input = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects });
  await kubectl(['apply', '-f', '-'], { input });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function getJson<T = any>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl(['get', ...args, '-o', 'json'])) as T;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined/false. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 90_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    }
    await sleep(500);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Pod = any;

export function pod(ns: string, name: string): Promise<Pod> {
  return getJson(['pod', '-n', ns, name]);
}

/** The pod once `test` holds for it. */
export function waitPod(
  ns: string,
  name: string,
  what: string,
  test: (p: Pod) => boolean,
  timeoutMs?: number,
): Promise<Pod> {
  return until(
    `pod ${ns}/${name} ${what}`,
    async () => {
      const p = await pod(ns, name);
      return test(p) ? p : undefined;
    },
    timeoutMs,
  );
}

export function isReady(p: Pod): boolean {
  return (p.status?.conditions ?? []).some(
    (c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True',
  );
}

export function phase(p: Pod): string {
  return p.status?.phase ?? '';
}

export function containerStatus(p: Pod, name: string): Pod {
  return [...(p.status?.containerStatuses ?? []), ...(p.status?.initContainerStatuses ?? [])].find(
    (c: { name: string }) => c.name === name,
  );
}

/** A namespace of the test's own, deleted (with its pods) by the returned function. */
export async function namespace(name: string): Promise<() => Promise<void>> {
  await kubectl(['create', 'namespace', name]);
  await until(
    `service account default in ${name}`,
    async () => (await kubectlRaw(['get', 'sa', 'default', '-n', name])).code === 0,
  );
  return async () => {
    await kubectlRaw(['delete', 'namespace', name, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
  };
}

/** A namespace for the whole suite: made before its first test, deleted (with its pods) after its last. */
export function suiteNamespace(name: string): void {
  let drop: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    drop = await namespace(name);
  }, 120_000);
  afterAll(async () => {
    await drop?.();
  }, 180_000);
}
