import { createHash } from 'crypto';

import { chainId, chainIds, digestHex, isSha256Digest } from '../../src/provisioner/layers/chain';

const d = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

describe('layer chain IDs', () => {
  const [a, b, c] = [d('a'), d('b'), d('c')];

  it('the bottom layer is its own chain', () => {
    expect(chainId(undefined, a)).toBe(a);
    expect(chainId('', a)).toBe(a);
  });

  it('follows the OCI formula sha256(parent + " " + diffID)', () => {
    const ab = d(`${a} ${b}`);
    expect(chainId(a, b)).toBe(ab);
    expect(chainIds([a, b, c])).toEqual([a, ab, d(`${ab} ${c}`)]);
  });

  it('matches the OCI image-spec example shape (order matters)', () => {
    expect(chainId(a, b)).not.toBe(chainId(b, a));
    expect(chainIds([])).toEqual([]);
  });

  it('validates digests', () => {
    expect(isSha256Digest(a)).toBe(true);
    expect(isSha256Digest(a.toUpperCase())).toBe(false);
    expect(isSha256Digest('sha512:' + 'a'.repeat(128))).toBe(false);
    expect(isSha256Digest(undefined)).toBe(false);
    expect(() => chainId(undefined, 'nope')).toThrow(/sha256/);
    expect(() => chainId('sha256:1', a)).toThrow(/sha256/);
    expect(digestHex(a)).toBe(a.slice(7));
    expect(() => digestHex('sha256:../../etc')).toThrow();
  });
});
