/* A small strict JSON parser (RFC 8259) into a read-only tree. Strings are
 * unescaped UTF-8 and may not contain NUL; numbers keep their text so that
 * 64-bit integers are exact. All memory comes from one arena. */
#ifndef CAPSA_JSON_H
#define CAPSA_JSON_H

#include <stddef.h>
#include <stdint.h>

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	int b;              /* J_BOOL */
	const char *s;      /* J_STR: the string; J_NUM: the number's text */
	const char *key;    /* member name when inside an object */
	struct jval *child; /* first element / member */
	struct jval *next;  /* next sibling */
	size_t n;           /* number of elements / members */
};

struct jdoc {
	struct jval *root;
	struct jchunk *chunks;
};

/* Parses text (len bytes). On error returns -1 with g_err set to
 * "json: <what> at offset N". */
int json_parse(struct jdoc *doc, const char *text, size_t len);
void json_free(struct jdoc *doc);

/* Member lookup; NULL when absent or v is not an object. */
struct jval *json_get(const struct jval *obj, const char *key);
/* Typed accessors: return -1 with g_err naming `what` on a type mismatch. */
int json_str(const struct jval *v, const char *what, const char **out);
int json_bool(const struct jval *v, const char *what, int *out);
int json_i64(const struct jval *v, const char *what, int64_t *out);
int json_u64(const struct jval *v, const char *what, uint64_t *out);
int json_is(const struct jval *v, enum jtype t);

#endif
