import { parseNetDev } from '../../src/containerizer/isolators/namespaces/netdev';

test('parseNetDev reads rx/tx bytes and errors per interface and skips the headers', () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0',
    '  eth0: 18446744073709551615 10 3 0 0 0 0 0 2048 7 4 0 0 0 0 0',
    'garbage line',
    ' bad0: 1 2 3',
    '',
  ].join('\n');
  expect(parseNetDev(text)).toEqual([
    { name: 'lo', rxBytes: 140n, rxErrors: 0n, txBytes: 140n, txErrors: 0n },
    // 64-bit counters stay exact.
    { name: 'eth0', rxBytes: 18446744073709551615n, rxErrors: 3n, txBytes: 2048n, txErrors: 4n },
  ]);
  expect(parseNetDev('')).toEqual([]);
});
