// A CRI seccomp setting → the `linux.seccomp` object of the launch spec.
//
// - RuntimeDefault ("runtime/default", "docker/default"): capsa's default
//   profile (default-profile.ts), its capability groups resolved against
//   the container's effective capabilities.
// - Localhost: a JSON profile file on the host, in the format Docker and
//   containerd read (defaultAction, architectures or archMap, syscalls with
//   names, action, errnoRet, args, includes/excludes), checked and resolved
//   here so that the monitor gets a plain OCI object.
// - Unconfined, unset (CRI's default, as containerd 1.6 has it) and
//   privileged containers: no filter.

import { promises as fs, constants as fsConstants } from 'fs';
import * as os from 'os';
import { InvalidArgumentError } from '../../errors';
import { ARCHITECTURES, DEFAULT_ACTION, DEFAULT_RULES, type DefaultRule } from './default-profile';
import {
  SECCOMP_ACTIONS,
  SECCOMP_ARCHITECTURES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
  type SeccompAction,
  type SeccompArg,
  type SeccompOperator,
  type SeccompSpec,
  type SeccompSyscall,
} from '../../containerizer';

/** A Localhost profile larger than this is refused (the default profile is ~10 KiB). */
export const MAX_PROFILE_BYTES = 1 << 20;
const MAX_ERRNO = 4095;

/** What CRI asked for (container-spec's ProfileSpec). */
export interface SeccompProfileRequest {
  type: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhostRef?: string;
}

/** The host facts the resolution depends on. */
export interface SeccompHost {
  /** Node's process.arch (default: this process's). */
  arch?: string;
  /** Kernel release, for a profile's minKernel (default: os.release()). */
  kernel?: string;
  /** Reads a Localhost profile; undefined when the file does not exist. Default: readProfileFile. */
  readProfile?: (hostPath: string) => Promise<Buffer | undefined>;
}

export interface ResolveSeccompInput extends SeccompHost {
  profile: SeccompProfileRequest;
  /** The CRI field the profile came from, named in errors. */
  field: string;
  /** The container's effective capabilities (CAP_* names). */
  capabilities: readonly string[];
  privileged: boolean;
}

/** The launch spec's linux.seccomp, or undefined for none. */
export async function resolveSeccomp(input: ResolveSeccompInput): Promise<SeccompSpec | undefined> {
  const { profile, field } = input;
  if (input.privileged) return undefined;
  switch (profile.type) {
    case 'Unconfined':
      return undefined;
    case 'RuntimeDefault':
      return defaultSeccompProfile(input.capabilities, input.arch);
    case 'Localhost': {
      const ref = profile.localhostRef ?? '';
      if (!ref.startsWith('/')) throw new InvalidArgumentError(field, `"${ref}" is not an absolute path`);
      const read = input.readProfile ?? readProfileFile;
      let data: Buffer | undefined;
      try {
        data = await read(ref);
      } catch (err) {
        throw new InvalidArgumentError(field, `cannot read seccomp profile ${ref}: ${(err as Error).message}`);
      }
      if (data === undefined) throw new InvalidArgumentError(field, `seccomp profile ${ref} does not exist`);
      return parseProfile(data, { ...input, where: `${field} (${ref})` });
    }
  }
}

/** A regular file of at most MAX_PROFILE_BYTES; undefined when it is missing. */
export async function readProfileFile(hostPath: string): Promise<Buffer | undefined> {
  let fh;
  try {
    fh = await fs.open(hostPath, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_PROFILE_BYTES) throw new Error(`larger than ${MAX_PROFILE_BYTES} bytes`);
    const buf = Buffer.alloc(MAX_PROFILE_BYTES + 1);
    let len = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, len, buf.length - len, null);
      if (bytesRead === 0) break;
      len += bytesRead;
      if (len > MAX_PROFILE_BYTES) throw new Error(`larger than ${MAX_PROFILE_BYTES} bytes`);
    }
    return buf.subarray(0, len);
  } finally {
    await fh.close();
  }
}

function ruleApplies(r: DefaultRule, caps: ReadonlySet<string>, arch: string): boolean {
  if (r.withCap && !caps.has(r.withCap)) return false;
  if (r.withoutCap && caps.has(r.withoutCap)) return false;
  if (r.onArch && !r.onArch.includes(arch)) return false;
  if (r.notOnArch?.includes(arch)) return false;
  return true;
}

/** capsa's RuntimeDefault profile for a container with these effective capabilities. */
export function defaultSeccompProfile(capabilities: readonly string[], arch: string = process.arch): SeccompSpec {
  const caps = new Set(capabilities.map(capName));
  const syscalls: SeccompSyscall[] = [];
  for (const r of DEFAULT_RULES) {
    if (!ruleApplies(r, caps, arch)) continue;
    syscalls.push({
      names: [...r.names],
      action: r.action ?? 'SCMP_ACT_ALLOW',
      ...(r.errnoRet !== undefined ? { errnoRet: r.errnoRet } : {}),
      ...(r.args ? { args: r.args.map((a) => ({ ...a })) } : {}),
    });
  }
  return {
    defaultAction: DEFAULT_ACTION.action,
    defaultErrnoRet: DEFAULT_ACTION.errnoRet,
    architectures: [...(ARCHITECTURES[arch] ?? [])],
    syscalls,
  };
}

function capName(c: string): string {
  const up = c.toUpperCase();
  return up.startsWith('CAP_') ? up : `CAP_${up}`;
}

/** Node's process.arch → the architecture names Docker profiles use in includes/excludes (Go's GOARCH). */
const GO_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  arm: 'arm',
  s390x: 's390x',
  ppc64: 'ppc64le',
  riscv64: 'riscv64',
  mips: 'mips',
  mipsel: 'mipsle',
};

// ---- Localhost profiles --------------------------------------------------

interface ParseContext {
  /** "<field> (<path>)", prefixed to every error. */
  where: string;
  capabilities: readonly string[];
  arch?: string;
  kernel?: string;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class ProfileReader {
  constructor(private readonly ctx: ParseContext) {}

  fail(what: string, msg: string): never {
    throw new InvalidArgumentError(this.ctx.where, `${what}: ${msg}`);
  }

  strings(v: unknown, what: string): string[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) this.fail(what, 'expected an array of strings');
    return v as string[];
  }

  uint(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
      this.fail(what, `expected an integer in 0..${max}, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  action(v: unknown, what: string): SeccompAction {
    if (v === 'SCMP_ACT_NOTIFY') this.fail(what, 'SCMP_ACT_NOTIFY is not supported');
    if (typeof v !== 'string' || !(SECCOMP_ACTIONS as readonly string[]).includes(v)) {
      this.fail(what, `unknown action ${JSON.stringify(v)}`);
    }
    return v as SeccompAction;
  }

  errnoRet(v: unknown, what: string): { errnoRet?: number } {
    return v === undefined || v === null ? {} : { errnoRet: this.uint(v, what, MAX_ERRNO) };
  }

  arg(v: unknown, what: string): SeccompArg {
    if (!isObject(v)) this.fail(what, 'expected an object');
    const op = v.op;
    if (typeof op !== 'string' || !(SECCOMP_OPERATORS as readonly string[]).includes(op)) {
      this.fail(`${what}.op`, `unknown operator ${JSON.stringify(op)}`);
    }
    const valueTwo = v.valueTwo === undefined || v.valueTwo === null ? 0 : this.uint(v.valueTwo, `${what}.valueTwo`);
    return {
      index: this.uint(v.index, `${what}.index`, 5),
      value: this.uint(v.value ?? 0, `${what}.value`),
      ...(valueTwo !== 0 || op === 'SCMP_CMP_MASKED_EQ' ? { valueTwo } : {}),
      op: op as SeccompOperator,
    };
  }

  /** Docker's includes/excludes: capabilities, architectures, minimum kernel. */
  selected(rule: Json, what: string, caps: ReadonlySet<string>, goArch: string): boolean {
    const inc = rule.includes ?? {};
    const exc = rule.excludes ?? {};
    if (!isObject(inc)) this.fail(`${what}.includes`, 'expected an object');
    if (!isObject(exc)) this.fail(`${what}.excludes`, 'expected an object');
    const incCaps = this.strings(inc.caps, `${what}.includes.caps`).map(capName);
    const incArches = this.strings(inc.arches, `${what}.includes.arches`);
    if (incCaps.some((c) => !caps.has(c))) return false;
    if (incArches.length > 0 && !incArches.includes(goArch)) return false;
    if (inc.minKernel !== undefined && inc.minKernel !== null && inc.minKernel !== '') {
      if (typeof inc.minKernel !== 'string') this.fail(`${what}.includes.minKernel`, 'expected a string');
      if (compareKernel(this.ctx.kernel ?? os.release(), inc.minKernel, `${what}.includes.minKernel`, this) < 0) {
        return false;
      }
    }
    if (this.strings(exc.caps, `${what}.excludes.caps`).some((c) => caps.has(capName(c)))) return false;
    if (this.strings(exc.arches, `${what}.excludes.arches`).includes(goArch)) return false;
    return true;
  }
}

/** Compares "6.1.0-18-amd64" with "4.8": <0, 0, >0 on major.minor(.patch). */
function compareKernel(running: string, min: string, what: string, r: ProfileReader): number {
  const nums = (s: string): number[] | undefined => {
    const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(s);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
  };
  const want = nums(min);
  if (!want) r.fail(what, `"${min}" is not a kernel version`);
  const have = nums(running) ?? [0, 0, 0];
  for (let i = 0; i < 3; i++) if (have[i] !== want[i]) return have[i] - want[i];
  return 0;
}

/**
 * A Localhost profile (Docker/containerd JSON format) → the OCI object the
 * monitor takes. A profile with neither defaultAction nor syscalls means no
 * filter (as Docker and containerd read it).
 */
export function parseProfile(data: Buffer | string, ctx: ParseContext): SeccompSpec | undefined {
  const r: ProfileReader = new ProfileReader(ctx);
  let doc: unknown;
  try {
    doc = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(ctx.where, `not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) r.fail('profile', 'expected a JSON object');
  const arch = ctx.arch ?? process.arch;
  const goArch = GO_ARCH[arch] ?? arch;
  const caps = new Set(ctx.capabilities.map(capName));
  const rules = doc.syscalls ?? [];
  if (!Array.isArray(rules)) r.fail('syscalls', 'expected an array');
  if ((doc.defaultAction === undefined || doc.defaultAction === '') && rules.length === 0) return undefined;

  const spec: SeccompSpec = {
    defaultAction: r.action(doc.defaultAction, 'defaultAction'),
    ...(doc.defaultErrnoRet !== undefined && doc.defaultErrnoRet !== null
      ? { defaultErrnoRet: r.uint(doc.defaultErrnoRet, 'defaultErrnoRet', MAX_ERRNO) }
      : {}),
    architectures: architectures(doc, r, arch),
    syscalls: [],
  };
  const flags = r.strings(doc.flags, 'flags');
  for (const f of flags) if (!SECCOMP_FLAGS.includes(f)) r.fail('flags', `unsupported flag ${f}`);
  if (flags.length > 0) spec.flags = flags;
  if (typeof doc.listenerPath === 'string' && doc.listenerPath !== '') {
    r.fail('listenerPath', 'seccomp notify is not supported');
  }

  rules.forEach((rule: unknown, i: number) => {
    const what = `syscalls[${i}]`;
    if (!isObject(rule)) r.fail(what, 'expected an object');
    const names = r.strings(rule.names, `${what}.names`);
    if (typeof rule.name === 'string' && rule.name !== '') {
      if (names.length > 0) r.fail(what, "use either 'name' or 'names'");
      names.push(rule.name);
    }
    if (names.length === 0 || names.some((n) => n === '')) r.fail(`${what}.names`, 'must name syscalls');
    const action = r.action(rule.action, `${what}.action`);
    const errno = r.errnoRet(rule.errnoRet, `${what}.errnoRet`);
    const argsIn = rule.args ?? [];
    if (!Array.isArray(argsIn)) r.fail(`${what}.args`, 'expected an array');
    const args = argsIn.map((a: unknown, j: number) => r.arg(a, `${what}.args[${j}]`));
    if (!r.selected(rule, what, caps, goArch)) return;
    spec.syscalls.push({ names, action, ...errno, ...(args.length > 0 ? { args } : {}) });
  });
  return spec;
}

/** `architectures`, or the native entry of `archMap` with its sub-architectures. */
function architectures(doc: Json, r: ProfileReader, arch: string): string[] {
  const list = r.strings(doc.architectures, 'architectures');
  const map = doc.archMap ?? [];
  if (!Array.isArray(map)) r.fail('archMap', 'expected an array');
  if (list.length > 0 && map.length > 0) r.fail('profile', "use either 'architectures' or 'archMap'");
  const out = [...list];
  const native = ARCHITECTURES[arch]?.[0];
  map.forEach((m: unknown, i: number) => {
    if (!isObject(m) || typeof m.architecture !== 'string') r.fail(`archMap[${i}]`, 'expected {architecture}');
    if (m.architecture !== native) return;
    out.push(m.architecture, ...r.strings(m.subArchitectures, `archMap[${i}].subArchitectures`));
  });
  for (const a of out) {
    if (!SECCOMP_ARCHITECTURES.includes(a)) r.fail('architectures', `unknown architecture ${a}`);
  }
  return [...new Set(out)];
}
