/* The container's filesystem, built in the init child inside its new
 * mount namespace: rootfs bind, spec mounts, /dev, pivot_root, masked and
 * read-only paths. Every path below the rootfs is resolved inside it
 * (openat2 RESOLVE_IN_ROOT), so image symlinks cannot point a mount out. */
#ifndef CAPSA_MOUNTS_H
#define CAPSA_MOUNTS_H

#include "spec.h"

/* Before joining a user namespace (still host root): opens the rootfs and
 * every bind source as detached trees, idmapped through userns_fd where the
 * spec says so, and chdirs to the rootfs; mounts_setup then attaches them. */
int mounts_open_trees(const struct spec *s, int userns_fd);
/* Propagation of "/", the rootfs bind, spec mounts and devices. */
int mounts_setup(const struct spec *s);
/* pivot_root into the rootfs and detach the old root. */
int mounts_pivot(const struct spec *s);
/* After pivot: masked paths, read-only paths, read-only root. */
int mounts_finish(const struct spec *s);

#endif
