// Where one of capsa's helper programs (capsa-monitor, capsa-pause) is: the
// path in its environment variable, next to the sources (a build tree), or
// installed under libexec.
import { existsSync } from 'fs';
import * as path from 'path';
import { FailedPreconditionError } from '../errors';

export interface HelperBinary {
  /** e.g. "capsa-monitor" */
  name: string;
  /** The environment variable that overrides the search, e.g. CAPSA_MONITOR. */
  env: string;
  /** Its directory in a source tree, e.g. "native/build". */
  buildDir: string;
  /** What builds it, for the error. */
  make: string;
}

export function findHelperBinary(b: HelperBinary): string {
  const fromEnv = process.env[b.env];
  if (fromEnv) return fromEnv;
  let dir = __dirname;
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(dir, b.buildDir, b.name);
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  for (const p of [`/usr/local/libexec/capsa/${b.name}`, `/usr/libexec/capsa/${b.name}`]) {
    if (existsSync(p)) return p;
  }
  throw new FailedPreconditionError(`${b.name} not found: run ${b.make} (hack/setup.sh does)`);
}
