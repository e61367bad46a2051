/**
 * PodSandboxConfig.log_directory: where kubelet wants the pod's CRI logs. capsa creates
 * it (and the log files under it) as root, so a `..` in it would let a request create
 * directories wherever the walk lands; it is refused, as log_path and mount paths are.
 */
import { InvalidArgumentError } from '../errors';

/** Throws InvalidArgumentError naming `field` unless `dir` is an absolute path without `..`. */
export function checkLogDirectory(field: string, dir: string): void {
  if (dir.startsWith('/') === false) throw new InvalidArgumentError(field, `"${dir.slice(0, 80)}" is not absolute`);
  if (dir.split('/').includes('..')) {
    throw new InvalidArgumentError(
      field,
      `"${dir.slice(0, 80)}" has a '..' component: the log directory is named as it is`,
    );
  }
}
