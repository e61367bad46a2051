// /proc/net/dev → per-interface counters (the pod's network stats).

export interface InterfaceUsage {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
}

/**
 * Parses /proc/net/dev: two header lines, then "name: rx_bytes rx_packets
 * rx_errs rx_drop rx_fifo rx_frame rx_compressed rx_multicast tx_bytes
 * tx_packets tx_errs …". Lines that do not fit are skipped.
 */
export function parseNetDev(text: string): InterfaceUsage[] {
  const out: InterfaceUsage[] = [];
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    if (name === '' || name.includes('|') || f.length < 16 || !f.every((x) => /^\d+$/.test(x))) continue;
    out.push({ name, rxBytes: BigInt(f[0]), rxErrors: BigInt(f[2]), txBytes: BigInt(f[8]), txErrors: BigInt(f[10]) });
  }
  return out;
}
