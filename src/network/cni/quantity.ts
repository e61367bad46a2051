// Kubernetes resource quantities ("10M", "1.5Gi", "500m", "1e3"), enough to
// read the bandwidth annotations exactly as kubelet does: the value is
// rounded up to an integer (resource.Quantity.Value()). Exact arithmetic in
// bigint, no floating point.

const BINARY: Record<string, number> = { Ki: 1, Mi: 2, Gi: 3, Ti: 4, Pi: 5, Ei: 6 };
const DECIMAL: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

const QUANTITY = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$/;

export class QuantityError extends Error {}

/** The quantity's value rounded up (away from zero for positives, toward zero for negatives) to an integer. */
export function parseQuantity(s: string): bigint {
  const m = QUANTITY.exec(s.trim());
  if (!m || s.trim() !== s || s === '') throw new QuantityError(`"${s}" is not a quantity`);
  const [, sign, number, suffix] = m;
  const [whole, frac = ''] = number.split('.');
  let num = BigInt((whole || '0') + frac);
  let den = 10n ** BigInt(frac.length);

  if (suffix in BINARY) {
    num *= 1n << BigInt(10 * BINARY[suffix]);
  } else if (suffix in DECIMAL) {
    const e = DECIMAL[suffix];
    if (e >= 0) num *= 10n ** BigInt(e);
    else den *= 10n ** BigInt(-e);
  } else {
    const exp = /^[eE]([+-]?\d+)$/.exec(suffix);
    if (!exp) throw new QuantityError(`"${s}" has an unknown suffix "${suffix}"`);
    const e = Number(exp[1]);
    if (Math.abs(e) > 100) throw new QuantityError(`"${s}" is out of range`);
    if (e >= 0) num *= 10n ** BigInt(e);
    else den *= 10n ** BigInt(-e);
  }
  // Ceiling of num/den for the magnitude; a negative value rounds toward zero, as Quantity.Value() does.
  const q = num / den;
  const up = num % den === 0n ? q : q + 1n;
  if (sign === '-') return -(num / den);
  return up;
}
