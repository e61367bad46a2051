// /proc/net/dev → per-interface counters (the pod's network stats and metrics).

export interface InterfaceUsage {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
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
    const [rxBytes, rxPackets, rxErrors, rxDropped] = f.slice(0, 4).map(BigInt);
    const [txBytes, txPackets, txErrors, txDropped] = f.slice(8, 12).map(BigInt);
    out.push({ name, rxBytes, rxPackets, rxErrors, rxDropped, txBytes, txPackets, txErrors, txDropped });
  }
  return out;
}
