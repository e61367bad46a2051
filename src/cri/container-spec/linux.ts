// Process settings that need no I/O: oom_score_adj, rlimits, working
// directory, the privileged check and the seccomp and AppArmor profiles
// asked for (../seccomp resolves the seccomp one into the filter the
// monitor loads; AppArmor is only recorded). (The pod's sysctls are not
// repeated per container: the sandbox writes them once into the
// namespaces it pins.)

import * as path from 'path';
import { InvalidArgumentError } from '../../errors';
import {
  SecurityProfile_ProfileType,
  type LinuxContainerSecurityContext,
  type SecurityProfile,
} from '../../gen/runtime/v1/api';
import type { ProfileSpec, RlimitSpec } from '../../containerizer';
import { checkString, imageString, IMAGE_FIELD } from './values';

const SC = 'config.linux.security_context';

/**
 * config.linux.resources.oom_score_adj, which must be within -1000..1000.
 * When the daemon may not lower a child's score below its own (no
 * CAP_SYS_RESOURCE: `restrict`), the score is max(requested, daemon's).
 */
export function oomScoreAdj(requested: bigint, daemon: number, restrict: boolean): number {
  if (requested < -1000n || requested > 1000n) {
    throw new InvalidArgumentError('config.linux.resources.oom_score_adj', `${requested} is outside -1000..1000`);
  }
  const n = Number(requested);
  return restrict ? Math.max(n, daemon) : n;
}

export interface Rlimit {
  soft: number;
  hard: number;
}

/** RLIMIT_NOFILE from the daemon's own (as containerd 1.x inherits it); CRI has no rlimit field. */
export function buildRlimits(nofile: Rlimit): RlimitSpec[] {
  if (!Number.isSafeInteger(nofile.soft) || !Number.isSafeInteger(nofile.hard) || nofile.soft > nofile.hard) {
    throw new InvalidArgumentError('rlimit_nofile', `soft ${nofile.soft} / hard ${nofile.hard} is not a valid limit`);
  }
  return [{ type: 'RLIMIT_NOFILE', hard: nofile.hard, soft: nofile.soft }];
}

/** config.working_dir, else the image's WorkingDir (relative ones read against "/"), else "/". */
export function workingDir(criDir: string, imageDir: unknown): string {
  if (criDir !== '') {
    checkString(criDir, 'config.working_dir');
    if (!criDir.startsWith('/')) throw new InvalidArgumentError('config.working_dir', `"${criDir}" is not absolute`);
    return path.posix.normalize(criDir);
  }
  const image = imageString(imageDir, 'WorkingDir') ?? '';
  if (image === '') return '/';
  checkString(image, IMAGE_FIELD, "the image's WorkingDir");
  return path.posix.normalize(`/${image}`);
}

/** The privileged flag, refused when the pod sandbox is not privileged (as containerd does). */
export function checkPrivileged(container: boolean, sandbox: boolean): boolean {
  if (container && !sandbox) {
    throw new InvalidArgumentError(`${SC}.privileged`, 'the pod sandbox is not privileged');
  }
  return container;
}

function fromProfile(p: SecurityProfile, field: string, kind: 'seccomp' | 'apparmor'): ProfileSpec {
  switch (p.profileType) {
    case SecurityProfile_ProfileType.RuntimeDefault:
      return { type: 'RuntimeDefault' };
    case SecurityProfile_ProfileType.Unconfined:
      return { type: 'Unconfined' };
    case SecurityProfile_ProfileType.Localhost: {
      const ref = checkString(p.localhostRef, `${field}.localhost_ref`);
      if (ref === '') throw new InvalidArgumentError(`${field}.localhost_ref`, 'required for a Localhost profile');
      if (kind === 'seccomp' && !ref.startsWith('/')) {
        throw new InvalidArgumentError(`${field}.localhost_ref`, `"${ref}" is not an absolute path`);
      }
      return { type: 'Localhost', localhostRef: ref };
    }
    default:
      throw new InvalidArgumentError(`${field}.profile_type`, `unknown profile type ${String(p.profileType)}`);
  }
}

/** The deprecated string forms: "runtime/default", "docker/default", "unconfined", "localhost/<ref>". */
function fromString(s: string, field: string, unset: ProfileSpec): ProfileSpec {
  if (s === '') return unset;
  if (s === 'runtime/default' || s === 'docker/default') return { type: 'RuntimeDefault' };
  if (s === 'unconfined') return { type: 'Unconfined' };
  if (s.startsWith('localhost/') && s.length > 'localhost/'.length) {
    return { type: 'Localhost', localhostRef: checkString(s.slice('localhost/'.length), field) };
  }
  throw new InvalidArgumentError(field, `unknown profile "${s}"`);
}

/**
 * The seccomp and AppArmor profiles asked for (../seccomp turns the seccomp
 * one into the filter; AppArmor is recorded only). Unset seccomp is
 * Unconfined and unset AppArmor RuntimeDefault (CRI's defaults); privileged
 * containers are unconfined.
 */
export function securityProfiles(
  sc: LinuxContainerSecurityContext | undefined,
  privileged: boolean,
): { seccomp: ProfileSpec; apparmor: ProfileSpec } {
  if (privileged) return { seccomp: { type: 'Unconfined' }, apparmor: { type: 'Unconfined' } };
  const seccomp = sc?.seccomp
    ? fromProfile(sc.seccomp, `${SC}.seccomp`, 'seccomp')
    : fromString(sc?.seccompProfilePath ?? '', `${SC}.seccomp_profile_path`, { type: 'Unconfined' });
  const apparmor = sc?.apparmor
    ? fromProfile(sc.apparmor, `${SC}.apparmor`, 'apparmor')
    : fromString(sc?.apparmorProfile ?? '', `${SC}.apparmor_profile`, { type: 'RuntimeDefault' });
  return { seccomp, apparmor };
}
