// Namespaced sysctls a pod may set (pure): which namespace each belongs to,
// and its path under /proc/sys. Mirrors the kernel's per-namespace sysctl
// tables and runc's validation: net.* (network namespace), kernel.shm*,
// kernel.msg*, kernel.sem, fs.mqueue.* (IPC namespace). kernel.hostname and
// kernel.domainname are refused: the hostname comes from the pod config.

export type SysctlNamespace = 'net' | 'ipc';

/** Keys use "." or "/" as separators (kubelet accepts both; with "/", dots are part of a name). */
const KEY = /^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}$/;

export function sysctlNamespace(key: string): SysctlNamespace | undefined {
  const k = normalizeKey(key);
  if (k.startsWith('net.')) return 'net';
  if (k === 'kernel.sem' || k.startsWith('kernel.shm') || k.startsWith('kernel.msg') || k.startsWith('fs.mqueue.')) {
    return 'ipc';
  }
  return undefined;
}

/** The dotted form for classification: "net/ipv4/ip_forward" → "net.ipv4.ip_forward". */
function normalizeKey(key: string): string {
  return key.includes('/') ? key.replace(/\//g, '.') : key;
}

/** Path relative to /proc/sys: dots become slashes unless the key already uses slashes. */
export function sysctlPath(key: string): string {
  return key.includes('/') ? key : key.replace(/\./g, '/');
}

/** Why a sysctl cannot be set for this pod, or undefined when it can. */
export function sysctlProblem(
  key: string,
  value: string,
  modes: { network: 'pod' | 'host'; ipc: 'pod' | 'host' },
): string | undefined {
  if (!KEY.test(key) || key.includes('..') || key.includes('//') || key.endsWith('/') || key.endsWith('.')) {
    return 'not a sysctl name';
  }
  if (/[\n\0]/.test(value) || value.length > 4096) return 'value must be one line of at most 4096 bytes';
  const ns = sysctlNamespace(key);
  if (!ns) return 'not a namespaced sysctl (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)';
  if (ns === 'net' && modes.network === 'host') return 'a network sysctl cannot be set for a pod in the host network';
  if (ns === 'ipc' && modes.ipc === 'host') return 'an IPC sysctl cannot be set for a pod in the host IPC namespace';
  return undefined;
}
