/* Attach: the container's output streamed to clients of output.sock, and
 * the `capsa-monitor attach` relay the daemon runs (see attach.c). */
#ifndef CAPSA_ATTACH_H
#define CAPSA_ATTACH_H

#include <stddef.h>

#define ATTACH_STDOUT 1
#define ATTACH_STDERR 2

/* Run mode, in the run dir: listen on output.sock. */
int attach_listen(void);
/* An epoll fd the monitor polls (POLLIN: call attach_handle), or -1. */
int attach_fd(void);
void attach_handle(void);
/* Tees n bytes of a stream (ATTACH_STDOUT/ATTACH_STDERR) to every client. */
void attach_output(int stream, const char *data, size_t n);
void attach_remove(void);

/* capsa-monitor attach [--stdin] <run-dir>: the daemon's side. */
int attach_main(int argc, char **argv);

#endif
