/* The CRI container log: one record per line,
 *   <RFC3339Nano> <stdout|stderr> <F|P> <content>\n
 * Lines longer than LOG_LINE_MAX are split into P records; the piece that
 * ends the line is F. At EOF a line without a newline is written as P, as
 * containerd does. */
#ifndef CAPSA_LOG_H
#define CAPSA_LOG_H

#include <stddef.h>

#define LOG_LINE_MAX 16384

struct log_stream {
	const char *name;
	size_t len;
	char *buf; /* LOG_LINE_MAX bytes, allocated on first partial line */
};

struct log_file {
	const char *path; /* NULL: output is read and dropped */
	int fd;
	int warned;
	struct log_stream out, err;
};

int log_open(struct log_file *l, const char *path);
/* Opens the path again (after rotation); the old fd stays on failure. */
int log_reopen(struct log_file *l);
void log_feed(struct log_file *l, struct log_stream *s, const char *data, size_t n);
/* End of a stream: a buffered incomplete line goes out as P. */
void log_eof(struct log_file *l, struct log_stream *s);
void log_close(struct log_file *l);

#endif
