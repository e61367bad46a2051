// Enum values a CRI request may carry. protobuf keeps an enum number it does
// not know (a newer client, or a hostile one sends 99), and the generated
// toJSON then throws a plain Error, which would reach the client as
// INTERNAL. checkEnums walks a decoded request once and refuses any
// out-of-range enum with an InvalidArgument naming the field's path
// (snake_case, as in the proto: config.mounts[0].propagation).
import { InvalidArgumentError } from '../errors';
import {
  MountPropagation,
  NamespaceMode,
  Protocol,
  SecurityProfile_ProfileType,
  Signal,
  SupplementalGroupsPolicy,
} from '../gen/runtime/v1/api';

type EnumObject = Record<string, string | number>;

/**
 * The enum fields of PodSandboxConfig and ContainerConfig, by their
 * (camelCase) field name: in those messages each name is an enum wherever
 * it holds a number (network is also a message in status replies, never a
 * number there).
 */
const ENUM_FIELDS: Record<string, EnumObject> = {
  protocol: Protocol,
  propagation: MountPropagation,
  mode: NamespaceMode,
  network: NamespaceMode,
  pid: NamespaceMode,
  ipc: NamespaceMode,
  supplementalGroupsPolicy: SupplementalGroupsPolicy,
  profileType: SecurityProfile_ProfileType,
  stopSignal: Signal,
};

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function known(e: EnumObject, v: number): boolean {
  // ts-proto adds UNRECOGNIZED = -1 for its own use; it is not a wire value.
  return typeof e[v] === 'string' && e[v] !== 'UNRECOGNIZED';
}

function walk(value: unknown, field: string, depth: number): void {
  if (depth > 32 || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => walk(v, `${field}[${i}]`, depth + 1));
    return;
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const f = field === '' ? snake(k) : `${field}.${snake(k)}`;
    const e = ENUM_FIELDS[k];
    if (e && typeof v === 'number') {
      if (!known(e, v)) {
        const allowed = Object.keys(e).filter((n) => Number.isNaN(Number(n)) && n !== 'UNRECOGNIZED');
        const list = allowed.length <= 8 ? `one of ${allowed.join(', ')}` : `0..${allowed.length - 1}`;
        throw new InvalidArgumentError(f, `${v} is not a known value (${list})`);
      }
      continue;
    }
    if (typeof v === 'object') walk(v, f, depth + 1);
  }
}

/** Throws InvalidArgument for the first enum field of `msg` outside its enum; `field` prefixes the path. */
export function checkEnums(msg: unknown, field = ''): void {
  walk(msg, field, 0);
}
