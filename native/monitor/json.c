#define _GNU_SOURCE
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_DEPTH 64
#define CHUNK_SIZE 16384

struct jchunk {
	struct jchunk *next;
	size_t used, cap;
	char data[];
};

struct parser {
	const char *p, *start, *end;
	struct jdoc *doc;
	int depth;
};

static void *arena_alloc(struct jdoc *doc, size_t size)
{
	struct jchunk *c = doc->chunks;

	size = (size + 15) & ~(size_t)15;
	if (!c || c->cap - c->used < size) {
		size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = doc->chunks;
		doc->chunks = c;
	}
	c->used += size;
	return c->data + c->used - size;
}

static int fail(struct parser *ps, const char *what)
{
	return err_msg("json: %s at offset %zu", what, (size_t)(ps->p - ps->start));
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static struct jval *new_val(struct parser *ps, enum jtype t)
{
	struct jval *v = arena_alloc(ps->doc, sizeof(*v));

	if (!v) {
		fail(ps, "out of memory");
		return NULL;
	}
	memset(v, 0, sizeof(*v));
	v->type = t;
	return v;
}

static int hex4(struct parser *ps, unsigned *out)
{
	unsigned v = 0;
	int i;

	if (ps->end - ps->p < 4)
		return fail(ps, "truncated \\u escape");
	for (i = 0; i < 4; i++) {
		char c = *ps->p++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return fail(ps, "bad \\u escape");
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static int unicode_escape(struct parser *ps, char *o, size_t *olen)
{
	unsigned cp, lo;

	if (hex4(ps, &cp) < 0)
		return -1;
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
			return fail(ps, "lone surrogate");
		ps->p += 2;
		if (hex4(ps, &lo) < 0)
			return -1;
		if (lo < 0xdc00 || lo > 0xdfff)
			return fail(ps, "bad surrogate pair");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	} else if (cp >= 0xdc00 && cp <= 0xdfff) {
		return fail(ps, "lone surrogate");
	}
	if (cp == 0)
		return fail(ps, "string contains NUL");
	*olen += put_utf8(o + *olen, cp);
	return 0;
}

static int simple_escape(struct parser *ps, char c, char *o, size_t *olen)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *hit = c ? strchr(from, c) : NULL;

	if (!hit)
		return fail(ps, "bad escape");
	o[(*olen)++] = to[hit - from];
	return 0;
}

/* Output is never longer than input, so the arena copy is sized by input. */
static int parse_string(struct parser *ps, const char **out)
{
	const char *q = ++ps->p;
	size_t olen = 0;
	char *o;

	while (q < ps->end && *q != '"') {
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= ps->end)
		return fail(ps, "unterminated string");
	o = arena_alloc(ps->doc, (size_t)(q - ps->p) + 1);
	if (!o)
		return fail(ps, "out of memory");
	while (*ps->p != '"') {
		unsigned char c = (unsigned char)*ps->p;
		if (c < 0x20)
			return fail(ps, "control character in string");
		ps->p++;
		if (c != '\\') {
			o[olen++] = (char)c;
			continue;
		}
		c = (unsigned char)*ps->p++;
		if (c == 'u' ? unicode_escape(ps, o, &olen) : simple_escape(ps, (char)c, o, &olen))
			return -1;
	}
	ps->p++;
	o[olen] = '\0';
	*out = o;
	return 0;
}

static int digits(struct parser *ps)
{
	const char *s = ps->p;

	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
		ps->p++;
	return ps->p > s ? 0 : fail(ps, "bad number");
}

static struct jval *parse_number(struct parser *ps)
{
	const char *s = ps->p;
	struct jval *v;
	char *t;

	if (*ps->p == '-')
		ps->p++;
	if (ps->p < ps->end && *ps->p == '0')
		ps->p++;
	else if (digits(ps) < 0)
		return NULL;
	if (ps->p < ps->end && *ps->p == '.') {
		ps->p++;
		if (digits(ps) < 0)
			return NULL;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (digits(ps) < 0)
			return NULL;
	}
	v = new_val(ps, J_NUM);
	t = v ? arena_alloc(ps->doc, (size_t)(ps->p - s) + 1) : NULL;
	if (!t) {
		fail(ps, "out of memory");
		return NULL;
	}
	memcpy(t, s, (size_t)(ps->p - s));
	t[ps->p - s] = '\0';
	v->s = t;
	return v;
}

static struct jval *parse_value(struct parser *ps);

static int literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "unexpected token");
	ps->p += n;
	return 0;
}

static int append(struct jval *parent, struct jval *child, struct jval **tail)
{
	if (*tail)
		(*tail)->next = child;
	else
		parent->child = child;
	*tail = child;
	parent->n++;
	return 0;
}

static int member_key(struct parser *ps, const char **key)
{
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != '"')
		return fail(ps, "expected member name");
	if (parse_string(ps, key) < 0)
		return -1;
	skip_ws(ps);
	if (ps->p >= ps->end || *ps->p != ':')
		return fail(ps, "expected ':'");
	ps->p++;
	return 0;
}

static struct jval *parse_container(struct parser *ps, enum jtype t)
{
	char close = t == J_OBJ ? '}' : ']';
	struct jval *v = new_val(ps, t), *tail = NULL;

	if (!v)
		return NULL;
	if (++ps->depth > MAX_DEPTH) {
		fail(ps, "nesting too deep");
		return NULL;
	}
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return v;
	}
	for (;;) {
		const char *key = NULL;
		struct jval *c;
		if (t == J_OBJ && member_key(ps, &key) < 0)
			return NULL;
		c = parse_value(ps);
		if (!c)
			return NULL;
		c->key = key;
		append(v, c, &tail);
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			ps->depth--;
			return v;
		}
		fail(ps, t == J_OBJ ? "expected ',' or '}'" : "expected ',' or ']'");
		return NULL;
	}
}

static struct jval *parse_value(struct parser *ps)
{
	struct jval *v;

	skip_ws(ps);
	if (ps->p >= ps->end) {
		fail(ps, "unexpected end of input");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
		return parse_container(ps, J_OBJ);
	case '[':
		return parse_container(ps, J_ARR);
	case '"':
		v = new_val(ps, J_STR);
		return v && parse_string(ps, &v->s) == 0 ? v : NULL;
	case 't':
	case 'f':
		v = new_val(ps, J_BOOL);
		if (!v)
			return NULL;
		v->b = *ps->p == 't';
		return literal(ps, v->b ? "true" : "false") == 0 ? v : NULL;
	case 'n':
		v = new_val(ps, J_NULL);
		return v && literal(ps, "null") == 0 ? v : NULL;
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps);
		fail(ps, "unexpected character");
		return NULL;
	}
}

int json_parse(struct jdoc *doc, const char *text, size_t len)
{
	struct parser ps = { text, text, text + len, doc, 0 };

	doc->root = NULL;
	doc->chunks = NULL;
	doc->root = parse_value(&ps);
	if (!doc->root) {
		json_free(doc);
		return -1;
	}
	skip_ws(&ps);
	if (ps.p != ps.end) {
		fail(&ps, "trailing data");
		json_free(doc);
		return -1;
	}
	return 0;
}

void json_free(struct jdoc *doc)
{
	while (doc->chunks) {
		struct jchunk *n = doc->chunks->next;
		free(doc->chunks);
		doc->chunks = n;
	}
	doc->root = NULL;
}

struct jval *json_get(const struct jval *obj, const char *key)
{
	struct jval *c;

	if (!obj || obj->type != J_OBJ)
		return NULL;
	/* The last duplicate wins, as in JavaScript. */
	struct jval *hit = NULL;
	for (c = obj->child; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			hit = c;
	return hit;
}

int json_is(const struct jval *v, enum jtype t)
{
	return v && v->type == t;
}

int json_str(const struct jval *v, const char *what, const char **out)
{
	if (!json_is(v, J_STR))
		return err_msg("spec: %s: expected a string", what);
	*out = v->s;
	return 0;
}

int json_bool(const struct jval *v, const char *what, int *out)
{
	if (!json_is(v, J_BOOL))
		return err_msg("spec: %s: expected true or false", what);
	*out = v->b;
	return 0;
}

static int integer_text(const struct jval *v, const char *what)
{
	if (!json_is(v, J_NUM) || strpbrk(v->s, ".eE"))
		return err_msg("spec: %s: expected an integer", what);
	return 0;
}

int json_i64(const struct jval *v, const char *what, int64_t *out)
{
	char *end;
	long long x;

	if (integer_text(v, what) < 0)
		return -1;
	errno = 0;
	x = strtoll(v->s, &end, 10);
	if (errno || *end)
		return err_msg("spec: %s: integer out of range", what);
	*out = x;
	return 0;
}

int json_u64(const struct jval *v, const char *what, uint64_t *out)
{
	char *end;
	unsigned long long x;

	if (integer_text(v, what) < 0)
		return -1;
	if (v->s[0] == '-')
		return err_msg("spec: %s: must not be negative", what);
	errno = 0;
	x = strtoull(v->s, &end, 10);
	if (errno || *end)
		return err_msg("spec: %s: integer out of range", what);
	*out = x;
	return 0;
}
