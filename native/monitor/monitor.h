/* Run mode: the long-lived monitor of one container. */
#ifndef CAPSA_MONITOR_H
#define CAPSA_MONITOR_H

#include "spec.h"

/* Runs in the detached monitor process, with the run dir as cwd. Writes
 * "ok <pid>\n" or "error <reason>\n" to ready_fd once the container is
 * ready (created and waiting with wait_start, else started) or failed,
 * then closes it. Returns the process exit status. */
int monitor_run(struct spec *s, int wait_start, int ready_fd);

#endif
