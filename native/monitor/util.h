/* Small helpers shared by every part of capsa-monitor: error text, I/O
 * loops, time stamps, atomic files. */
#ifndef CAPSA_UTIL_H
#define CAPSA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ERR_MAX 1024

/* The last error, as "<op>: <strerror>[: <path>]". Functions return -1 and
 * leave the reason here; callers add nothing but pass it up. */
extern char g_err[ERR_MAX];

/* The last error as a record, kept next to g_err by err_sys/err_msg: the
 * daemon maps it to a CRI error without reading the text (start-error holds
 * it as JSON, see err_json). */
struct err_rec {
	char op[128];    /* the failing operation ("bind", "open log", "chdir"), "" for err_msg */
	char path[1024]; /* the path it failed on, "" when none */
	int errnum;      /* errno, 0 when no system call failed */
	char mount[1024]; /* destination of the spec mount being made, "" outside one */
};
extern struct err_rec g_rec;

/* err_sys("mount", "/proc") -> "mount: no such file or directory: /proc"
 * (uses errno); always returns -1. */
int err_sys(const char *op, const char *path);
/* err_sys whose message names `what` ("mount /x: bind") while the record's
 * op stays `op` ("bind"). */
int err_sys_as(const char *what, const char *op, const char *path);
/* printf-style message without errno; always returns -1. */
int err_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Names the spec mount being made in every error until cleared with NULL. */
void err_set_mount(const char *dest);
/* The last error as one JSON object, {"message","op","path","errno","code",
 * "mount"} (empty members left out), into out (cap bytes, REC_MAX fits). */
#define REC_MAX 4096
void err_json(char *out, size_t cap);
/* Makes a record another process sent (err_json's text) the last error. */
void err_load_json(const char *text);

/* Diagnostics to stderr (the run dir's monitor.log once detached). */
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

ssize_t read_full(int fd, void *buf, size_t len);
int write_all(int fd, const void *buf, size_t len);
/* Reads a whole (small) file into a malloc'd NUL-terminated buffer. */
char *read_file(const char *path, size_t max, size_t *len_out);
/* write tmp, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode);

/* RFC 3339 with nanoseconds, UTC: 2024-01-02T03:04:05.123456789Z (30 chars). */
#define TS_LEN 30
void ts_now(char out[TS_LEN + 1]);
uint64_t mono_ms(void);

/* Start time of a process (field 22 of /proc/<pid>/stat), 0 on error. */
unsigned long long proc_start_time(pid_t pid);

/* Appends s to out (cap bytes) as a JSON string literal. */
int json_quote(char *out, size_t cap, const char *s);

/* Sync channel (SOCK_SEQPACKET): one message = type byte + text (at most
 * REC_MAX bytes: an error record), and optionally one passed fd. chan_recv
 * returns 0 on EOF, 1 on a message. */
int chan_send(int sock, char type, const char *text, int pass_fd);
int chan_recv(int sock, char *type, char *text, size_t cap, int *fd_out);

/* Drops the page-table entries of our own code. The monitor lives as long as
 * its container, but the code it ran to set the container up is never run
 * again; file-backed text is simply faulted back in when needed, so this
 * only shrinks RSS (the per-container memory budget is 1 MiB). */
void shed_code_pages(void);
int set_nonblock(int fd);
int set_cloexec(int fd);
int open_devnull(void);

#endif
