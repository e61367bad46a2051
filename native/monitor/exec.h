/* Exec mode: run one command inside a running container (ExecSync). */
#ifndef CAPSA_EXEC_H
#define CAPSA_EXEC_H

/* Returns the process exit status of capsa-monitor: 0 when the command
 * ran (whatever its exit code), 1 when it could not be started. */
int exec_main(const char *spec_path);

/* exec_stream.c: `capsa-monitor exec-stream` (stdio streamed, see there). */
struct pollfd;
#define XS_NPOLL 5
extern int g_exec_stream;
int xs_init(int tty, int stdin_on);
int xs_open_output(const char *path);
int xs_child_stdio(int null, int out, int err);
void xs_in_shim(void);
void xs_after_fork(void);
int xs_pollfds(struct pollfd *pf);
void xs_handle(const struct pollfd *pf, int done);
int xs_busy(void);
int xs_aborted(void);

#endif
