// Seccomp: the CRI setting resolved into the OCI linux.seccomp object that
// capsa-monitor enforces.
export {
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
export {
  defaultSeccompProfile,
  parseProfile,
  readProfileFile,
  resolveSeccomp,
  MAX_PROFILE_BYTES,
  type ResolveSeccompInput,
  type SeccompHost,
  type SeccompProfileRequest,
} from './profile';
export { DEFAULT_RULES, CLONE_NAMESPACE_FLAGS } from './default-profile';
