import { CpuRates } from '../../src/cri/cpu-rate';

const S = 1_000_000_000n;

describe('CpuRates', () => {
  test('first sample has no rate; the next one a second later gives ns per second', () => {
    const r = new CpuRates();
    expect(r.observe('a', 5n * S, 100n * S)).toBeUndefined();
    // half a core for two seconds
    expect(r.observe('a', 6n * S, 102n * S)).toBe(S / 2n);
  });

  test('samples closer than the window give the last rate and keep the window', () => {
    const r = new CpuRates();
    r.observe('a', 0n, 0n);
    expect(r.observe('a', S, S)).toBe(S);
    expect(r.observe('a', S + S / 10n, S + S / 10n)).toBe(S);
    // measured against the sample at 1 s, not the one at 1.1 s
    expect(r.observe('a', S + S / 2n, 3n * S)).toBe(S / 4n);
  });

  test('a counter going back starts over', () => {
    const r = new CpuRates();
    r.observe('a', 10n * S, 0n);
    expect(r.observe('a', S, 2n * S)).toBeUndefined();
    expect(r.observe('a', 2n * S, 3n * S)).toBe(S);
  });

  test('keys are independent and old ones are forgotten', () => {
    const r = new CpuRates();
    r.observe('a', 0n, 0n);
    r.observe('b', 0n, 0n);
    expect(r.size).toBe(2);
    r.forget('b');
    expect(r.size).toBe(1);
    r.observe('c', 0n, 11n * 60n * S);
    expect(r.size).toBe(1);
  });
});
