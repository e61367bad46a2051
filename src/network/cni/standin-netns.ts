// DEL for a sandbox whose network namespace is already gone.
//
// The spec lets DEL run without a netns (CNI_NETNS empty), and IPAM then
// frees the address. But some plugins find what to undo through the pod's
// interface: the bridge and ptp plugins (up to at least 1.1) read eth0's
// addresses inside the netns to know which `ipMasq` NAT rules to delete, and
// with no netns they silently leave those rules behind. So when the netns is
// gone and the ADD result is known, DEL gets a stand-in: a fresh, empty
// namespace holding an interface of the same name with the same addresses.
// The plugins then undo exactly what they made, by their own logic; the
// stand-in is removed afterwards. Named `capsa-<id>-cnidel` (prefix + id),
// so a crash in between leaves nothing that cannot be traced and the next
// attempt replaces it.
import { execFile } from 'child_process';
import type { Logger } from '../../log';

const NETNS_DIR = '/run/netns';
const IP_TIMEOUT_MS = 10_000;

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: IP_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, _out, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

export function standInName(sandboxId: string): string {
  return `capsa-${sandboxId}-cnidel`;
}

/**
 * Runs `fn` with the path of a stand-in netns holding `ifName` with
 * `addresses` (CIDRs), or with '' when there are no addresses or the
 * stand-in cannot be made (DEL then runs without a netns, as the spec allows).
 */
export async function withStandInNetns<T>(
  sandboxId: string,
  ifName: string,
  addresses: readonly string[],
  log: Logger | undefined,
  fn: (netnsPath: string) => Promise<T>,
): Promise<T> {
  if (addresses.length === 0) return fn('');
  const name = standInName(sandboxId);
  let made = false;
  try {
    await ip(['netns', 'del', name]).catch(() => undefined); // a leftover of a crash
    await ip(['netns', 'add', name]);
    made = true;
    // A veth pair with both ends inside: works wherever CNI's own veths do.
    await ip(['-n', name, 'link', 'add', ifName, 'type', 'veth', 'peer', 'name', 'capsa-cnidel']);
    for (const a of addresses) await ip(['-n', name, 'addr', 'add', a, 'dev', ifName]);
  } catch (err) {
    log?.warn(
      { stage: 'network', sandboxId, err: (err as Error).message },
      'cannot make a stand-in netns for DEL; sending DEL without a netns',
    );
    if (made) await ip(['netns', 'del', name]).catch(() => undefined);
    return fn('');
  }
  try {
    return await fn(`${NETNS_DIR}/${name}`);
  } finally {
    await ip(['netns', 'del', name]).catch((err: Error) =>
      log?.warn({ stage: 'network', sandboxId, err: err.message }, 'cannot remove the stand-in netns'),
    );
  }
}
