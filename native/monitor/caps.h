/* Capabilities: names, and applying a process's sets around the uid switch. */
#ifndef CAPSA_CAPS_H
#define CAPSA_CAPS_H

#include "spec.h"

/* "CAP_CHOWN" -> 0; -1 when unknown. */
int cap_from_name(const char *name);

/* Drops the bounding set to caps->bounding and keeps the permitted set
 * across the uid change (call before creds_apply). */
int caps_prepare(const struct caps_spec *caps);
/* After the uid change: capset + ambient raise. */
int caps_finish(const struct caps_spec *caps);
/* Leaves only CAP_KILL (for the exec shim). */
int caps_only_kill(void);

#endif
