import { parseNetDev } from '../../src/containerizer/isolators/namespaces/netdev';

test('parseNetDev reads rx/tx bytes, packets, errors and drops per interface and skips the headers', () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0',
    '  eth0: 18446744073709551615 10 3 5 0 0 0 0 2048 7 4 6 0 0 0 0',
    'garbage line',
    ' bad0: 1 2 3',
    '',
  ].join('\n');
  expect(parseNetDev(text)).toEqual([
    {
      name: 'lo',
      ...{ rxBytes: 140n, rxPackets: 2n, rxErrors: 0n, rxDropped: 0n },
      ...{ txBytes: 140n, txPackets: 2n, txErrors: 0n, txDropped: 0n },
    },
    // 64-bit counters stay exact.
    {
      name: 'eth0',
      ...{ rxBytes: 18446744073709551615n, rxPackets: 10n, rxErrors: 3n, rxDropped: 5n },
      ...{ txBytes: 2048n, txPackets: 7n, txErrors: 4n, txDropped: 6n },
    },
  ]);
  expect(parseNetDev('')).toEqual([]);
});
