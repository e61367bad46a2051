/* Exec mode: run one command inside a running container (ExecSync). */
#ifndef CAPSA_EXEC_H
#define CAPSA_EXEC_H

/* Returns the process exit status of capsa-monitor: 0 when the command
 * ran (whatever its exit code), 1 when it could not be started. */
int exec_main(const char *spec_path);

#endif
