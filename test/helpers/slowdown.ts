// How much slower than an ordinary host the tests run: CAPSA_TEST_SLOWDOWN
// (default 1). hack/test-cgroup-v2.sh sets it for its software-emulated VM,
// where Node runs about ten times slower. Waits that only catch a hang (RPC
// deadlines, a daemon or registry starting, a process exiting) and bounds a
// test puts on the runtime's own timing are multiplied by it, so a slow host
// passes what a fast one does and a hang still fails, only later.
export const SLOWDOWN = Math.max(1, Number(process.env.CAPSA_TEST_SLOWDOWN) || 1);

/** `ms` on this host. */
export function slow(ms: number): number {
  return ms * SLOWDOWN;
}
