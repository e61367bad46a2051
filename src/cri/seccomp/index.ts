// Seccomp: the CRI setting resolved into the OCI linux.seccomp object that
// capsa-monitor enforces.
export * from './types';
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
