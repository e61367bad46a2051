import { isValidAuthority } from '../../src/server/h2-authority';

describe(':authority validation', () => {
  test.each([
    ['localhost', true],
    ['127.0.0.1:5000', true],
    ['[::1]:10010', true],
    ['', true],
    ['/run/capsa/capsa.sock', false],
    ['a b', false],
    ['x\ny', false],
  ])('%j valid=%s', (v, ok) => expect(isValidAuthority(v)).toBe(ok));
});
