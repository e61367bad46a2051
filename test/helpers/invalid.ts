// The CRI field an InvalidArgumentError names: the spec builders' tables
// assert on it. Fails the test when something else (or nothing) is thrown.
import { InvalidArgumentError } from '../../src/errors';

function fieldOfError(err: unknown): string | undefined {
  expect(err).toBeInstanceOf(InvalidArgumentError);
  return (err as InvalidArgumentError).context.field;
}

export function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return fieldOfError(err);
  }
  throw new Error('expected an InvalidArgumentError');
}

export async function fieldOfAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return fieldOfError(err);
  }
  throw new Error('expected an InvalidArgumentError');
}
