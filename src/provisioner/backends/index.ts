// Rootfs backends: overlay (default), copy (fallback), bind (one read-only layer).
export { mountSource, type Backend, type BackendName, type BackendOptions } from './backend';
export { BindBackend } from './bind';
export { CopyBackend, LayerMerger } from './copy';
export { isMountPoint, mountsUnder, readMountInfo, unmountAll, type MountEntry } from './mounts';
export { OverlayBackend } from './overlay';
export { createBackend, overlayWorks, selectBackend } from './select';
export { resolveSubPath } from './subpath';
