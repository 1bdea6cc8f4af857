/* config.c — load and validate the YAML/JSON configuration file (SPEC section 2).
 *
 * libfyaml builds a document tree (JSON is YAML, so one parser reads both); this module walks
 * it once, top-down, and fills a struct rlb_config with every default applied. Nothing stops at
 * the first problem: each error is recorded with the 1-based line and column of the offending
 * key or value, the walk goes on, and at the end the messages are sorted by position and handed
 * to the caller as "FILE:LINE:COL: message". A configuration is returned only when there was no
 * error at all.
 *
 * libfyaml 0.7.12 exposes source marks for scalar tokens only, so the position of a mapping or a
 * sequence is the position of its first scalar (for an empty one, the key that holds it).
 *
 * Also here: the duration and socket-address parsers used across the tree, the ALB quota report
 * (--alb-limits) and the `ringlb check` command. Main thread only.
 */
#include "ringlb/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libfyaml.h>

#define MS_PER_S 1000ULL
#define MS_PER_MIN (60ULL * MS_PER_S)
#define MS_PER_H (60ULL * MS_PER_MIN)
#define MS_PER_DAY (24ULL * MS_PER_H)

#define PATH_MAX_LEN 256
#define MAX_BODY 1024
#define MAX_NAME 64
#define MAX_PRIORITY 50000

/* ---------------------------------------------------------------------------------------------
 * Error collection
 */

struct err_item {
    uint32_t line, col;
    size_t seq; /* discovery order, keeps the sort stable */
    char *msg;  /* full "FILE:LINE:COL: message" */
};

/* The state of one load: where messages go and the file name they carry. */
struct ctx {
    const char *file;
    struct err_item *items;
    size_t n_items, cap_items;
};

/* A mapping being read, with its position and its dotted path for messages. */
struct map {
    struct fy_node *n;
    struct rlb_src_loc loc;
    const char *path;
};

static const struct rlb_src_loc LOC_START = {1, 1};

__attribute__((format(printf, 3, 4))) static void errf(struct ctx *c, struct rlb_src_loc loc,
                                                       const char *fmt, ...)
{
    if (loc.line == 0) {
        loc = LOC_START;
    }
    char *body = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (r < 0) {
        return;
    }
    /* one message per line, whatever the offending value contains */
    for (char *p = body; *p; p++) {
        if ((unsigned char)*p < ' ' || *p == 0x7f) {
            *p = '?';
        }
    }
    char *msg = NULL;
    r = asprintf(&msg, "%s:%u:%u: %s", c->file, loc.line, loc.col, body);
    free(body);
    if (r < 0) {
        return;
    }
    if (c->n_items == c->cap_items) {
        size_t cap = c->cap_items ? c->cap_items * 2 : 16;
        struct err_item *items = realloc(c->items, cap * sizeof(*items));
        if (!items) {
            free(msg);
            return;
        }
        c->items = items;
        c->cap_items = cap;
    }
    c->items[c->n_items] = (struct err_item){loc.line, loc.col, c->n_items, msg};
    c->n_items++;
}

static int err_item_cmp(const void *a, const void *b)
{
    const struct err_item *x = a, *y = b;
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    if (x->col != y->col) {
        return x->col < y->col ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

static void errs_append(struct rlb_config_errors *errs, char *msg)
{
    if (!errs) {
        free(msg);
        return;
    }
    char **msgs = realloc(errs->msgs, (errs->n + 1) * sizeof(*msgs));
    if (!msgs) {
        free(msg);
        return;
    }
    errs->msgs = msgs;
    errs->msgs[errs->n++] = msg;
}

/* Move the collected messages, sorted by position, into `errs`. */
static void ctx_flush(struct ctx *c, struct rlb_config_errors *errs)
{
    if (c->n_items > 1) {
        qsort(c->items, c->n_items, sizeof(*c->items), err_item_cmp);
    }
    for (size_t i = 0; i < c->n_items; i++) {
        errs_append(errs, c->items[i].msg);
    }
    free(c->items);
    c->items = NULL;
    c->n_items = c->cap_items = 0;
}

void rlb_config_errors_free(struct rlb_config_errors *errs)
{
    if (!errs) {
        return;
    }
    for (size_t i = 0; i < errs->n; i++) {
        free(errs->msgs[i]);
    }
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Pure parsers (exported ones are documented in config.h)
 */

static bool all_digits(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Parse `n` decimal digits of `s` into *out; fails on overflow or a non-digit. */
static int parse_u64n(const char *s, size_t n, uint64_t *out)
{
    if (!all_digits(s, n)) {
        return -EINVAL;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -EINVAL;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    return parse_u64n(s, strlen(s), out);
}

int rlb_duration_parse(const char *s, uint64_t *ms)
{
    if (!s || !ms) {
        return -EINVAL;
    }
    size_t len = strlen(s), n = 0;
    while (n < len && s[n] >= '0' && s[n] <= '9') {
        n++;
    }
    if (n == 0) {
        return -EINVAL;
    }
    const char *unit = s + n;
    uint64_t mult;
    if (*unit == '\0' || strcmp(unit, "s") == 0) {
        mult = MS_PER_S;
    } else if (strcmp(unit, "ms") == 0) {
        mult = 1;
    } else if (strcmp(unit, "m") == 0) {
        mult = MS_PER_MIN;
    } else if (strcmp(unit, "h") == 0) {
        mult = MS_PER_H;
    } else if (strcmp(unit, "d") == 0) {
        mult = MS_PER_DAY;
    } else {
        return -EINVAL;
    }
    uint64_t v;
    if (parse_u64n(s, n, &v) < 0 || v > UINT64_MAX / mult) {
        return -EINVAL;
    }
    *ms = v * mult;
    return 0;
}

/* Parse a port "1".."65535" (decimal, no sign, no spaces). */
static int parse_port(const char *s, uint16_t *port)
{
    uint64_t v;
    if (parse_u64(s, &v) < 0 || v < 1 || v > 65535) {
        return -EINVAL;
    }
    *port = (uint16_t)v;
    return 0;
}

/* Fill `out` from a numeric IP literal (no brackets) and a port. */
static int sockaddr_from_ip(const char *ip, uint16_t port, struct rlb_sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->len = sizeof(*sin6);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return -EINVAL;
}

/* Split "a.b.c.d:port" / "[v6]:port" / optionally a port-less "a.b.c.d", "[v6]" or bare "v6"
 * into an IP literal (copied to ip[]) and a port string (NULL when absent). */
static int split_host_port(const char *s, char *ip, size_t ipsz, const char **port,
                           bool port_optional)
{
    const char *host, *end;
    *port = NULL;
    if (s[0] == '[') {
        host = s + 1;
        end = strchr(host, ']');
        if (!end) {
            return -EINVAL;
        }
        if (end[1] == ':') {
            *port = end + 2;
        } else if (end[1] != '\0') {
            return -EINVAL;
        }
        if (memchr(host, ':', (size_t)(end - host)) == NULL) {
            return -EINVAL; /* brackets are for IPv6 only */
        }
    } else {
        host = s;
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            /* several colons: a bare IPv6 address, which cannot carry a port */
            end = s + strlen(s);
        } else if (colon) {
            end = colon;
            *port = colon + 1;
        } else {
            end = s + strlen(s);
        }
    }
    size_t n = (size_t)(end - host);
    if (n == 0 || n >= ipsz) {
        return -EINVAL;
    }
    memcpy(ip, host, n);
    ip[n] = '\0';
    if (!*port && !port_optional) {
        return -EINVAL;
    }
    return 0;
}

int rlb_sockaddr_parse(const char *s, struct rlb_sockaddr *out)
{
    char ip[INET6_ADDRSTRLEN + 1];
    const char *ps;
    uint16_t port;
    if (!s || !out) {
        return -EINVAL;
    }
    if (split_host_port(s, ip, sizeof(ip), &ps, false) < 0 || parse_port(ps, &port) < 0) {
        return -EINVAL;
    }
    struct rlb_sockaddr tmp;
    if (sockaddr_from_ip(ip, port, &tmp) < 0) {
        return -EINVAL;
    }
    /* "[v4]:port" and "v6:port" without brackets are not accepted */
    if ((s[0] == '[') != (tmp.ss.ss_family == AF_INET6)) {
        return -EINVAL;
    }
    *out = tmp;
    return 0;
}

static uint16_t sockaddr_port(const struct rlb_sockaddr *a)
{
    if (a->ss.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static bool sockaddr_is_loopback(const struct rlb_sockaddr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
        return b[0] == 127;
    }
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

static bool sockaddr_is_any(const struct rlb_sockaddr *a)
{
    if (a->ss.ss_family == AF_INET) {
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static bool sockaddr_same_ip(const struct rlb_sockaddr *a, const struct rlb_sockaddr *b)
{
    if (a->ss.ss_family != b->ss.ss_family) {
        return false;
    }
    if (a->ss.ss_family == AF_INET) {
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    }
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* "10.0.0.0/8", "::1/128". Host bits are accepted and cleared (as the struct documents). */
static int parse_cidr(const char *s, struct rlb_cidr *out)
{
    const char *slash = strchr(s, '/');
    char ip[INET6_ADDRSTRLEN + 1];
    uint64_t prefix;
    if (!slash || (size_t)(slash - s) >= sizeof(ip) || slash == s) {
        return -EINVAL;
    }
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    if (slash[1] == '\0' || strlen(slash + 1) > 3 || parse_u64(slash + 1, &prefix) < 0) {
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    unsigned bits;
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        return -EINVAL;
    }
    if (prefix > bits) {
        return -EINVAL;
    }
    out->prefix = (uint8_t)prefix;
    for (unsigned i = 0; i < bits / 8; i++) {
        unsigned first = i * 8;
        if (first >= prefix) {
            out->addr[i] = 0;
        } else if (first + 8 > prefix) {
            out->addr[i] &= (uint8_t)(0xff00u >> (prefix - first));
        }
    }
    return 0;
}

/* One parsed matcher range; same layout as rlb_health_check_cfg.match_ranges[]. */
struct code_range {
    uint16_t lo, hi;
};

/* Matcher "200", "200,202", "200-299" (codes 100..599). Returns the number of ranges or -EINVAL;
 * stores them into *out (a malloc'd struct code_range array) when `out` is non-NULL. */
static int parse_matcher(const char *s, void **out, size_t *n_out)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) {
        cap += *p == ',';
    }
    struct code_range *r = calloc(cap, sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    size_t n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (p < end && *p == ' ') {
            p++;
        }
        while (end > p && end[-1] == ' ') {
            end--;
        }
        const char *dash = memchr(p, '-', (size_t)(end - p));
        uint64_t lo, hi;
        if (dash) {
            if (parse_u64n(p, (size_t)(dash - p), &lo) < 0 ||
                parse_u64n(dash + 1, (size_t)(end - dash - 1), &hi) < 0) {
                goto bad;
            }
        } else {
            if (parse_u64n(p, (size_t)(end - p), &lo) < 0) {
                goto bad;
            }
            hi = lo;
        }
        if (lo < 100 || hi > 599 || lo > hi) {
            goto bad;
        }
        r[n].lo = (uint16_t)lo;
        r[n].hi = (uint16_t)hi;
        n++;
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    if (out) {
        *out = r;
        *n_out = n;
    } else {
        free(r);
    }
    return (int)n;
bad:
    free(r);
    return -EINVAL;
}

static void fmt_duration(uint64_t ms, char *buf, size_t sz)
{
    if (ms != 0 && ms % MS_PER_DAY == 0) {
        snprintf(buf, sz, "%llud", (unsigned long long)(ms / MS_PER_DAY));
    } else if (ms != 0 && ms % MS_PER_H == 0) {
        snprintf(buf, sz, "%lluh", (unsigned long long)(ms / MS_PER_H));
    } else if (ms != 0 && ms % MS_PER_MIN == 0 && ms < MS_PER_H) {
        snprintf(buf, sz, "%llum", (unsigned long long)(ms / MS_PER_MIN));
    } else if (ms % MS_PER_S == 0) {
        snprintf(buf, sz, "%llus", (unsigned long long)(ms / MS_PER_S));
    } else {
        snprintf(buf, sz, "%llums", (unsigned long long)ms);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Document access helpers
 */

static struct rlb_src_loc loc_or(struct rlb_src_loc a, struct rlb_src_loc b)
{
    return a.line ? a : b;
}

/* Position of a node: its own for scalars, its first scalar for collections; {0,0} if none. */
static struct rlb_src_loc node_loc(struct fy_node *n)
{
    for (int depth = 0; n && depth < 128; depth++) {
        void *it = NULL;
        switch (fy_node_get_type(n)) {
        case FYNT_SCALAR: {
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
            if (!m) {
                return (struct rlb_src_loc){0, 0};
            }
            /* the mark of a quoted scalar is its first character: point at the quote */
            enum fy_node_style st = fy_node_get_style(n);
            uint32_t quote = (st == FYNS_SINGLE_QUOTED || st == FYNS_DOUBLE_QUOTED) &&
                             m->column > 0;
            return (struct rlb_src_loc){(uint32_t)m->line + 1, (uint32_t)m->column + 1 - quote};
        }
        case FYNT_MAPPING: {
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            if (!p) {
                return (struct rlb_src_loc){0, 0};
            }
            n = fy_node_pair_key(p) ? fy_node_pair_key(p) : fy_node_pair_value(p);
            break;
        }
        case FYNT_SEQUENCE:
            n = fy_node_sequence_iterate(n, &it);
            break;
        default:
            return (struct rlb_src_loc){0, 0};
        }
    }
    return (struct rlb_src_loc){0, 0};
}

/* A plain null scalar ("", "~", "null") or no node at all. */
static bool node_is_null(struct fy_node *n)
{
    if (!n) {
        return true;
    }
    if (!fy_node_is_scalar(n) || fy_node_get_style(n) != FYNS_PLAIN) {
        return false;
    }
    size_t len;
    const char *s = fy_node_get_scalar(n, &len);
    if (!s || len == 0) {
        return true;
    }
    return (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) ||
                         !memcmp(s, "NULL", 4)));
}

static const char *type_name(struct fy_node *n)
{
    if (!n) {
        return "null";
    }
    switch (fy_node_get_type(n)) {
    case FYNT_MAPPING:
        return "a mapping";
    case FYNT_SEQUENCE:
        return "a list";
    default:
        return "a scalar";
    }
}

/* Scalar text as a NUL-terminated heap copy (embedded NULs kept; *lenp gets the length). */
static char *scalar_dup(struct fy_node *n, size_t *lenp)
{
    size_t len = 0;
    const char *s = fy_node_get_scalar(n, &len);
    char *d = malloc(len + 1);
    if (!d) {
        return NULL;
    }
    if (len) {
        memcpy(d, s, len);
    }
    d[len] = '\0';
    if (lenp) {
        *lenp = len;
    }
    return d;
}

/* Does a key named `key` exist in mapping `m`? Sets *kloc and returns its value node (which may
 * be NULL for `key:` with nothing after it). *found tells presence apart from a null value. */
static struct fy_node *map_lookup(struct fy_node *m, const char *key, struct rlb_src_loc *kloc,
                                  bool *found)
{
    void *it = NULL;
    struct fy_node_pair *p;
    size_t klen = strlen(key);
    *found = false;
    while ((p = fy_node_mapping_iterate(m, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        if (!k || !fy_node_is_scalar(k)) {
            continue;
        }
        size_t len;
        const char *s = fy_node_get_scalar(k, &len);
        if (s && len == klen && memcmp(s, key, len) == 0) {
            *found = true;
            *kloc = node_loc(k);
            return fy_node_pair_value(p);
        }
    }
    return NULL;
}

static void join_path(char *buf, size_t sz, const char *path, const char *key)
{
    if (path && *path) {
        snprintf(buf, sz, "%s.%s", path, key);
    } else {
        snprintf(buf, sz, "%s", key);
    }
}

/* A field of a mapping: its value (NULL when absent or null) and where to point at. */
struct field {
    struct fy_node *v;
    struct rlb_src_loc loc; /* the value, else the key, else the mapping */
    bool present;           /* key present with a non-null value */
    char path[PATH_MAX_LEN];
};

static struct field get_field(const struct map *m, const char *key)
{
    struct field f = {0};
    struct rlb_src_loc kloc = {0, 0};
    bool found;
    join_path(f.path, sizeof(f.path), m->path, key);
    f.v = m->n ? map_lookup(m->n, key, &kloc, &found) : NULL;
    if (!m->n || !found || node_is_null(f.v)) {
        f.v = NULL;
        f.loc = loc_or(kloc, m->loc);
        return f;
    }
    f.present = true;
    f.loc = loc_or(node_loc(f.v), loc_or(kloc, m->loc));
    return f;
}

/* Check that `n` is a mapping whose keys are all in `keys`; report every other key. Returns
 * false (after reporting) when `n` is not a mapping. */
static bool check_map(struct ctx *c, struct fy_node *n, struct rlb_src_loc at, const char *path,
                      const char *const *keys)
{
    if (!n || !fy_node_is_mapping(n)) {
        errf(c, loc_or(node_loc(n), at), "%s: expected a mapping, got %s", path, type_name(n));
        return false;
    }
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(n, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        if (!k || !fy_node_is_scalar(k)) {
            errf(c, loc_or(node_loc(k), at), "%s%skeys must be plain strings", path,
                 path[0] ? ": " : "");
            continue;
        }
        size_t len;
        const char *s = fy_node_get_scalar(k, &len);
        bool known = false;
        for (size_t i = 0; keys[i]; i++) {
            if (strlen(keys[i]) == len && memcmp(keys[i], s, len) == 0) {
                known = true;
                break;
            }
        }
        if (!known) {
            errf(c, loc_or(node_loc(k), at), "%s%sunknown key '%.*s'", path, path[0] ? ": " : "",
                 (int)(len > 64 ? 64 : len), s);
        }
    }
    return true;
}

/* Open a sub-mapping field; returns false when absent or not a mapping (error reported). */
static bool open_map(struct ctx *c, const struct field *f, const char *const *keys,
                     struct map *out)
{
    if (!f->present) {
        return false;
    }
    if (!check_map(c, f->v, f->loc, f->path, keys)) {
        return false;
    }
    out->n = f->v;
    out->loc = f->loc;
    out->path = f->path;
    return true;
}

static void missing(struct ctx *c, const struct map *m, const char *key)
{
    errf(c, m->loc, "%s%smissing required key '%s'", m->path, m->path[0] ? ": " : "", key);
}

/* The scalar text of a present field, or NULL after reporting a type error. Owned by the
 * document; NUL-terminated. */
static const char *field_scalar(struct ctx *c, const struct field *f)
{
    if (!fy_node_is_scalar(f->v)) {
        errf(c, f->loc, "%s: expected a scalar, got %s", f->path, type_name(f->v));
        return NULL;
    }
    const char *s = fy_node_get_scalar0(f->v);
    if (!s) {
        errf(c, f->loc, "%s: out of memory", f->path);
    }
    return s;
}

/* A string field. Returns 1 when set, 0 when absent (error if required), -1 on error. */
static int get_str(struct ctx *c, const struct map *m, const char *key, bool required,
                   bool allow_empty, char **out)
{
    struct field f = get_field(m, key);
    if (!f.present) {
        if (required) {
            missing(c, m, key);
            return -1;
        }
        return 0;
    }
    if (!fy_node_is_scalar(f.v)) {
        errf(c, f.loc, "%s: expected a string, got %s", f.path, type_name(f.v));
        return -1;
    }
    size_t len;
    char *s = scalar_dup(f.v, &len);
    if (!s) {
        errf(c, f.loc, "%s: out of memory", f.path);
        return -1;
    }
    if (strlen(s) != len) {
        errf(c, f.loc, "%s: NUL byte in string", f.path);
        free(s);
        return -1;
    }
    if (len == 0 && !allow_empty) {
        errf(c, f.loc, "%s: must not be empty", f.path);
        free(s);
        return -1;
    }
    free(*out);
    *out = s;
    return 1;
}

static int get_bool(struct ctx *c, const struct map *m, const char *key, bool *out)
{
    struct field f = get_field(m, key);
    if (!f.present) {
        return 0;
    }
    const char *s = field_scalar(c, &f);
    if (!s) {
        return -1;
    }
    if (!strcasecmp(s, "true")) {
        *out = true;
    } else if (!strcasecmp(s, "false")) {
        *out = false;
    } else {
        errf(c, f.loc, "%s: expected true or false, got \"%.64s\"", f.path, s);
        return -1;
    }
    return 1;
}

static int get_uint(struct ctx *c, const struct map *m, const char *key, bool required,
                    uint64_t lo, uint64_t hi, uint64_t *out)
{
    struct field f = get_field(m, key);
    if (!f.present) {
        if (required) {
            missing(c, m, key);
            return -1;
        }
        return 0;
    }
    const char *s = field_scalar(c, &f);
    if (!s) {
        return -1;
    }
    uint64_t v;
    if (parse_u64(s, &v) < 0) {
        errf(c, f.loc, "%s: expected an integer, got \"%.64s\"", f.path, s);
        return -1;
    }
    if (v < lo || v > hi) {
        errf(c, f.loc, "%s: %llu is out of range %llu..%llu", f.path, (unsigned long long)v,
             (unsigned long long)lo, (unsigned long long)hi);
        return -1;
    }
    *out = v;
    return 1;
}

static int get_duration(struct ctx *c, const struct map *m, const char *key, uint64_t lo,
                        uint64_t hi, uint64_t *out)
{
    struct field f = get_field(m, key);
    if (!f.present) {
        return 0;
    }
    const char *s = field_scalar(c, &f);
    if (!s) {
        return -1;
    }
    uint64_t v;
    if (rlb_duration_parse(s, &v) < 0) {
        errf(c, f.loc, "%s: invalid duration \"%.64s\" (use e.g. 250ms, 5s, 10m, 1h, 1d or "
             "seconds)", f.path, s);
        return -1;
    }
    if (v < lo || v > hi) {
        char a[32], b[32];
        fmt_duration(lo, a, sizeof(a));
        fmt_duration(hi, b, sizeof(b));
        errf(c, f.loc, "%s: %.64s is out of range %s..%s", f.path, s, a, b);
        return -1;
    }
    *out = v;
    return 1;
}

/* An enumerated string: index into `names` (NULL-terminated). */
static int get_enum(struct ctx *c, const struct map *m, const char *key,
                    const char *const *names, int *out)
{
    struct field f = get_field(m, key);
    if (!f.present) {
        return 0;
    }
    const char *s = field_scalar(c, &f);
    if (!s) {
        return -1;
    }
    char allowed[256] = "";
    for (int i = 0; names[i]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 1;
        }
        size_t l = strlen(allowed);
        snprintf(allowed + l, sizeof(allowed) - l, "%s%s", i ? ", " : "", names[i]);
    }
    errf(c, f.loc, "%s: invalid value \"%.64s\" (allowed: %s)", f.path, s, allowed);
    return -1;
}

/* A list field that must be a non-empty sequence. Returns the sequence node or NULL. */
static struct fy_node *get_list(struct ctx *c, const struct field *f)
{
    if (!f->present) {
        return NULL;
    }
    if (!fy_node_is_sequence(f->v)) {
        errf(c, f->loc, "%s: expected a list, got %s", f->path, type_name(f->v));
        return NULL;
    }
    if (fy_node_sequence_item_count(f->v) <= 0) {
        errf(c, f->loc, "%s: the list must not be empty", f->path);
        return NULL;
    }
    return f->v;
}

typedef bool (*str_check_fn)(const char *s);

/* A non-empty list of non-empty strings, each optionally checked by `ok`. */
static int get_str_list(struct ctx *c, const struct map *m, const char *key, str_check_fn ok,
                        const char *what, char ***out, size_t *n_out)
{
    struct field f = get_field(m, key);
    struct fy_node *seq = get_list(c, &f);
    if (!seq) {
        return f.present ? -1 : 0;
    }
    size_t n = (size_t)fy_node_sequence_item_count(seq);
    char **v = calloc(n, sizeof(*v));
    if (!v) {
        errf(c, f.loc, "%s: out of memory", f.path);
        return -1;
    }
    *out = v;
    *n_out = n;
    int rc = 1;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; (item = fy_node_sequence_iterate(seq, &it)) != NULL && i < n; i++) {
        struct rlb_src_loc il = loc_or(node_loc(item), f.loc);
        if (node_is_null(item) || !fy_node_is_scalar(item)) {
            errf(c, il, "%s[%zu]: expected a string, got %s", f.path, i,
                 node_is_null(item) ? "null" : type_name(item));
            rc = -1;
            continue;
        }
        size_t len;
        v[i] = scalar_dup(item, &len);
        if (!v[i] || len == 0 || strlen(v[i]) != len) {
            errf(c, il, "%s[%zu]: must be a non-empty string", f.path, i);
            rc = -1;
            continue;
        }
        if (ok && !ok(v[i])) {
            errf(c, il, "%s[%zu]: invalid value \"%.64s\" (expected %s)", f.path, i, v[i], what);
            rc = -1;
        }
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Value checkers
 */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') {
            return false;
        }
    }
    return true;
}

static bool valid_host_pattern(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '*' && ch != '?') {
            return false;
        }
    }
    return true;
}

static bool valid_path_pattern(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch >= 0x7f) {
            return false;
        }
    }
    return true;
}

static bool valid_method(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(s[i] >= 'A' && s[i] <= 'Z') && s[i] != '-' && s[i] != '_') {
            return false;
        }
    }
    return true;
}

/* RFC 9110 token characters (header field names). */
static bool valid_token(const char *s)
{
    if (!*s || strlen(s) > 40) {
        return false;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!isalnum(ch) && !strchr("!#$%&'*+-.^_`|~", ch)) {
            return false;
        }
    }
    return true;
}

static bool valid_header_value(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < ' ' || ch == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool valid_cidr(const char *s)
{
    struct rlb_cidr tmp;
    return parse_cidr(s, &tmp) == 0;
}

static bool valid_etcd_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 && s[7]) || (strncmp(s, "https://", 8) == 0 && s[8]);
}

/* ---------------------------------------------------------------------------------------------
 * Schema
 */

static const char *const TOP_KEYS[] = {
    "threads", "shutdown_timeout", "state_file", "admin", "access_log", "metrics", "user",
    "stickiness_key_file", "cluster", "listeners", "target_groups", NULL,
};
static const char *const ADMIN_KEYS[] = {"listen", "token_file", "canary_header", NULL};
static const char *const ACCESS_LOG_KEYS[] = {"path", NULL};
static const char *const METRICS_KEYS[] = {"window", NULL};
static const char *const CLUSTER_KEYS[] = {"etcd", "prefix", "instance", "lease_ttl", "tls",
                                           "auth", NULL};
static const char *const CLUSTER_TLS_KEYS[] = {"ca", "cert", "key", NULL};
static const char *const CLUSTER_AUTH_KEYS[] = {"user", "password_file", NULL};
static const char *const LISTENER_KEYS[] = {
    "name", "listen", "protocol", "tls", "idle_timeout", "client_keep_alive", "header_timeout",
    "xff", "xff_client_port", "preserve_host_header", "drop_invalid_header_fields",
    "desync_mitigation_mode", "max_connections", "rules", "default_action", NULL,
};
static const char *const TLS_KEYS[] = {"certificates", "security_policy", NULL};
static const char *const CERT_KEYS[] = {"cert", "key", NULL};
static const char *const RULE_KEYS[] = {"priority", "conditions", "action", NULL};
static const char *const COND_KEYS[] = {"host_header", "path_pattern", "http_request_method",
                                        "source_ip", "http_header", "query_string", NULL};
static const char *const HTTP_HEADER_KEYS[] = {"name", "values", NULL};
static const char *const QUERY_KEYS[] = {"key", "value", NULL};
static const char *const ACTION_KEYS[] = {"forward", "redirect", "fixed_response", NULL};
static const char *const FORWARD_KEYS[] = {"target_groups", "stickiness", NULL};
static const char *const FWD_GROUP_KEYS[] = {"name", "weight", NULL};
static const char *const FWD_STICKY_KEYS[] = {"enabled", "duration", NULL};
static const char *const REDIRECT_KEYS[] = {"protocol", "host", "port", "path", "query",
                                            "status_code", NULL};
static const char *const FIXED_KEYS[] = {"status_code", "content_type", "message_body", NULL};
static const char *const TG_KEYS[] = {
    "name", "protocol", "port", "algorithm", "deregistration_delay", "slow_start", "stickiness",
    "health_check", "targets", "scaling", NULL,
};
static const char *const TG_STICKY_KEYS[] = {"enabled", "type", "duration", NULL};
static const char *const HC_KEYS[] = {
    "enabled", "path", "port", "interval", "timeout", "healthy_threshold", "unhealthy_threshold",
    "matcher", NULL,
};
static const char *const TARGET_KEYS[] = {"address", "port", NULL};
static const char *const SCALING_KEYS[] = {"metric", "target_value", "min", "max",
                                           "scale_out_cooldown", "scale_in_cooldown", "hook",
                                           NULL};

static const char *const PROTOCOLS[] = {"HTTP", "HTTPS", NULL};
static const char *const XFF_MODES[] = {"append", "preserve", "remove", NULL};
static const char *const DESYNC_MODES[] = {"defensive", "monitor", "strictest", NULL};
static const char *const ALGORITHMS[] = {"round_robin", "least_outstanding_requests",
                                         "weighted_random", NULL};
static const char *const CONTENT_TYPES[] = {"text/plain", "text/css", "text/html",
                                            "application/javascript", "application/json", NULL};
/* The ALB policies the TLS module maps (SPEC section 7). */
static const char *const SECURITY_POLICIES[] = {
    "ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-2016-08", "ELBSecurityPolicy-FS-1-2-Res-2020-10", NULL,
};
static const char *const STICKY_TYPES[] = {"lb_cookie", NULL};
static const char *const SCALING_METRICS[] = {"request_count_per_target", NULL};

#define DEFAULT_SECURITY_POLICY "ELBSecurityPolicy-TLS13-1-2-2021-06"
#define DEFAULT_ADMIN_LISTEN "127.0.0.1:9901"
#define DEFAULT_CANARY_HEADER "X-Ringlb-Canary"
#define DEFAULT_CLUSTER_PREFIX "/ringlb/"

/* ---------------------------------------------------------------------------------------------
 * Sections
 */

static struct rlb_src_loc item_loc(struct fy_node *item, struct rlb_src_loc fallback)
{
    return loc_or(node_loc(item), fallback);
}

static void parse_admin(struct ctx *c, struct rlb_config *cfg, const struct map *top)
{
    struct field f = get_field(top, "admin");
    struct map m;
    if (!f.present || !open_map(c, &f, ADMIN_KEYS, &m)) {
        cfg->admin.canary_header = strdup(DEFAULT_CANARY_HEADER);
        return;
    }
    if (get_str(c, &m, "listen", false, false, &cfg->admin.listen) == 0) {
        cfg->admin.listen = strdup(DEFAULT_ADMIN_LISTEN);
    }
    get_str(c, &m, "token_file", false, false, &cfg->admin.token_file);
    if (get_str(c, &m, "canary_header", false, false, &cfg->admin.canary_header) == 1) {
        if (!valid_token(cfg->admin.canary_header)) {
            struct field hf = get_field(&m, "canary_header");
            errf(c, hf.loc, "%s: \"%.64s\" is not a valid header name (1..40 token "
                 "characters)", hf.path, cfg->admin.canary_header);
        }
    } else {
        cfg->admin.canary_header = strdup(DEFAULT_CANARY_HEADER);
    }
    if (!cfg->admin.listen) {
        return;
    }
    struct field lf = get_field(&m, "listen");
    if (rlb_sockaddr_parse(cfg->admin.listen, &cfg->admin.addr) < 0) {
        errf(c, lf.loc, "%s: invalid address \"%.64s\" (expected numeric ip:port or "
             "[ipv6]:port)", lf.path, cfg->admin.listen);
        return;
    }
    if (!sockaddr_is_loopback(&cfg->admin.addr) && !cfg->admin.token_file) {
        errf(c, lf.loc, "%s: a non-loopback admin address requires admin.token_file",
             lf.path);
    }
}

static void parse_cluster(struct ctx *c, struct rlb_config *cfg, const struct map *top)
{
    struct field f = get_field(top, "cluster");
    struct map m;
    struct rlb_cluster_cfg *cl = &cfg->cluster;
    if (!open_map(c, &f, CLUSTER_KEYS, &m)) {
        return;
    }
    cl->present = true;
    cl->lease_ttl_ms = 5 * MS_PER_S;
    if (get_str_list(c, &m, "etcd", valid_etcd_url, "an http:// or https:// URL",
                     &cl->etcd, &cl->n_etcd) == 0) {
        missing(c, &m, "etcd");
    }
    if (get_str(c, &m, "prefix", false, false, &cl->prefix) == 0) {
        cl->prefix = strdup(DEFAULT_CLUSTER_PREFIX);
    }
    if (get_str(c, &m, "instance", false, false, &cl->instance) == 0) {
        char host[256] = "";
        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0]) {
            snprintf(host, sizeof(host), "localhost");
        }
        cl->instance = strdup(host);
    }
    get_duration(c, &m, "lease_ttl", MS_PER_S, MS_PER_H, &cl->lease_ttl_ms);

    struct field tf = get_field(&m, "tls");
    struct map tm;
    if (open_map(c, &tf, CLUSTER_TLS_KEYS, &tm)) {
        get_str(c, &tm, "ca", false, false, &cl->tls_ca);
        int hc = get_str(c, &tm, "cert", false, false, &cl->tls_cert);
        int hk = get_str(c, &tm, "key", false, false, &cl->tls_key);
        if (hc == 1 && hk == 0) {
            missing(c, &tm, "key");
        } else if (hk == 1 && hc == 0) {
            missing(c, &tm, "cert");
        }
    }
    struct field af = get_field(&m, "auth");
    struct map am;
    if (open_map(c, &af, CLUSTER_AUTH_KEYS, &am)) {
        get_str(c, &am, "user", true, false, &cl->auth_user);
        get_str(c, &am, "password_file", true, false, &cl->auth_password_file);
    }
}

static void parse_globals(struct ctx *c, struct rlb_config *cfg, const struct map *top)
{
    /* threads: auto | 1..256 */
    struct field f = get_field(top, "threads");
    if (f.present) {
        const char *s = field_scalar(c, &f);
        uint64_t v;
        if (s && strcmp(s, "auto") != 0) {
            if (parse_u64(s, &v) < 0 || v < 1 || v > 256) {
                errf(c, f.loc, "threads: expected auto or an integer 1..256, got \"%.64s\"", s);
            } else {
                cfg->threads = (unsigned)v;
            }
        }
    }
    get_duration(c, top, "shutdown_timeout", 0, MS_PER_DAY, &cfg->shutdown_timeout_ms);
    get_str(c, top, "state_file", false, false, &cfg->state_file);
    get_str(c, top, "user", false, false, &cfg->user);
    get_str(c, top, "stickiness_key_file", false, false, &cfg->stickiness_key_file);
    parse_admin(c, cfg, top);

    struct map m;
    f = get_field(top, "access_log");
    if (open_map(c, &f, ACCESS_LOG_KEYS, &m)) {
        get_str(c, &m, "path", false, false, &cfg->access_log.path);
        if (cfg->access_log.path && strcmp(cfg->access_log.path, "off") == 0) {
            free(cfg->access_log.path);
            cfg->access_log.path = NULL;
        }
    }
    f = get_field(top, "metrics");
    if (open_map(c, &f, METRICS_KEYS, &m)) {
        get_duration(c, &m, "window", 100, MS_PER_H, &cfg->metrics.window_ms);
    }
    parse_cluster(c, cfg, top);
}

/* --- target groups ------------------------------------------------------------------------- */

static void parse_health_check(struct ctx *c, struct rlb_health_check_cfg *hc,
                               const struct map *tg)
{
    hc->enabled = true;
    hc->interval_ms = 30 * MS_PER_S;
    hc->timeout_ms = 5 * MS_PER_S;
    hc->healthy_threshold = 5;
    hc->unhealthy_threshold = 2;

    struct field f = get_field(tg, "health_check");
    struct map m = {0};
    bool have = open_map(c, &f, HC_KEYS, &m);
    if (have) {
        get_bool(c, &m, "enabled", &hc->enabled);
        if (get_str(c, &m, "path", false, false, &hc->path) == 1 && hc->path[0] != '/') {
            struct field pf = get_field(&m, "path");
            errf(c, pf.loc, "%s: must start with '/'", pf.path);
        }
        struct field pf = get_field(&m, "port");
        if (pf.present) {
            const char *s = field_scalar(c, &pf);
            if (s && strcmp(s, "traffic-port") != 0 && parse_port(s, &hc->port) < 0) {
                errf(c, pf.loc, "%s: expected traffic-port or a port 1..65535, got \"%.64s\"",
                     pf.path, s);
            }
        }
        get_duration(c, &m, "interval", 100, 300 * MS_PER_S, &hc->interval_ms);
        int tset = get_duration(c, &m, "timeout", 1, 120 * MS_PER_S, &hc->timeout_ms);
        if (tset == 0) {
            /* ALB default 5s, kept below a short interval so that the pair stays valid */
            uint64_t half = hc->interval_ms / 2;
            hc->timeout_ms = half < 5 * MS_PER_S ? half : 5 * MS_PER_S;
            if (hc->timeout_ms == 0) {
                hc->timeout_ms = 1;
            }
        } else if (tset == 1 && hc->timeout_ms >= hc->interval_ms) {
            struct field tf = get_field(&m, "timeout");
            errf(c, tf.loc, "%s: must be shorter than the interval", tf.path);
        }
        uint64_t v;
        if (get_uint(c, &m, "healthy_threshold", false, 2, 10, &v) == 1) {
            hc->healthy_threshold = (uint32_t)v;
        }
        if (get_uint(c, &m, "unhealthy_threshold", false, 2, 10, &v) == 1) {
            hc->unhealthy_threshold = (uint32_t)v;
        }
        void *ranges = NULL;
        if (get_str(c, &m, "matcher", false, false, &hc->matcher) == 1 &&
            parse_matcher(hc->matcher, &ranges, &hc->n_match_ranges) < 0) {
            struct field mf = get_field(&m, "matcher");
            errf(c, mf.loc, "%s: invalid matcher \"%.64s\" (e.g. \"200\", \"200,202\", "
                 "\"200-299\"; codes 100..599)", mf.path, hc->matcher);
        }
        hc->match_ranges = ranges;
    }
    if (!hc->path) {
        hc->path = strdup("/");
    }
    if (!hc->matcher) {
        hc->matcher = strdup("200");
        void *ranges = NULL;
        parse_matcher(hc->matcher, &ranges, &hc->n_match_ranges);
        hc->match_ranges = ranges;
    }
}

/* A target: "ip:port", "ip", "[v6]:port", "[v6]", bare "v6", or {address, port}. */
static void parse_target(struct ctx *c, struct rlb_target_cfg *t, struct fy_node *item,
                         const char *path, struct rlb_src_loc loc, uint16_t group_port)
{
    char ip[INET6_ADDRSTRLEN + 1];
    t->loc = loc;
    t->port = group_port;
    if (fy_node_is_scalar(item) && !node_is_null(item)) {
        const char *s = fy_node_get_scalar0(item);
        const char *ps = NULL;
        if (!s || split_host_port(s, ip, sizeof(ip), &ps, true) < 0 ||
            (ps && parse_port(ps, &t->port) < 0) ||
            sockaddr_from_ip(ip, t->port, &t->addr) < 0 ||
            (s[0] == '[' && t->addr.ss.ss_family != AF_INET6) ||
            (s[0] != '[' && ps && t->addr.ss.ss_family != AF_INET)) {
            errf(c, loc, "%s: invalid target \"%.64s\" (expected ip, ip:port or [ipv6]:port)",
                 path, s ? s : "");
            return;
        }
        t->id = strdup(ip);
        return;
    }
    struct map m = {item, loc, path};
    if (!check_map(c, item, loc, path, TARGET_KEYS)) {
        return;
    }
    struct field af = get_field(&m, "address");
    if (get_str(c, &m, "address", true, false, &t->id) != 1) {
        return;
    }
    uint64_t v;
    if (get_uint(c, &m, "port", false, 1, 65535, &v) == 1) {
        t->port = (uint16_t)v;
    }
    if (sockaddr_from_ip(t->id, t->port, &t->addr) < 0) {
        errf(c, af.loc, "%s: invalid IP address \"%.64s\"", af.path, t->id);
    }
}

static void parse_scaling(struct ctx *c, struct rlb_scaling_cfg *sc, const struct map *tg)
{
    struct field f = get_field(tg, "scaling");
    struct map m;
    if (!open_map(c, &f, SCALING_KEYS, &m)) {
        return;
    }
    sc->present = true;
    sc->min = 1;
    sc->scale_out_cooldown_ms = 300 * MS_PER_S;
    sc->scale_in_cooldown_ms = 300 * MS_PER_S;
    int metric = 0;
    get_enum(c, &m, "metric", SCALING_METRICS, &metric);
    sc->metric = strdup(SCALING_METRICS[metric]);

    struct field tv = get_field(&m, "target_value");
    if (!tv.present) {
        missing(c, &m, "target_value");
    } else {
        const char *s = field_scalar(c, &tv);
        char *end = NULL;
        double d = s ? strtod(s, &end) : 0;
        if (s && (end == s || *end != '\0' || !isfinite(d) || d <= 0)) {
            errf(c, tv.loc, "%s: expected a positive number, got \"%.64s\"", tv.path, s);
        } else if (s) {
            sc->target_value = d;
        }
    }
    uint64_t v;
    if (get_uint(c, &m, "min", false, 0, 100000, &v) == 1) {
        sc->min = (uint32_t)v;
    }
    int rmax = get_uint(c, &m, "max", true, 1, 100000, &v);
    if (rmax == 1) {
        sc->max = (uint32_t)v;
        if (sc->min > sc->max) {
            struct field mf = get_field(&m, "min");
            errf(c, loc_or(mf.loc, m.loc), "%s: min (%u) is greater than max (%u)", m.path,
                 sc->min, sc->max);
        }
    }
    get_duration(c, &m, "scale_out_cooldown", 0, MS_PER_DAY, &sc->scale_out_cooldown_ms);
    get_duration(c, &m, "scale_in_cooldown", 0, MS_PER_DAY, &sc->scale_in_cooldown_ms);
    get_str(c, &m, "hook", false, false, &sc->hook);
}

static void parse_target_group(struct ctx *c, struct rlb_target_group_cfg *tg,
                               const struct map *m)
{
    tg->port = 80;
    tg->deregistration_delay_ms = 300 * MS_PER_S;
    tg->stickiness.duration_ms = MS_PER_DAY;
    tg->loc = m->loc;

    if (get_str(c, m, "name", true, false, &tg->name) == 1 && !valid_name(tg->name)) {
        struct field nf = get_field(m, "name");
        errf(c, nf.loc, "%s: invalid name \"%.64s\" (1..64 of A-Z a-z 0-9 - _ .)", nf.path,
             tg->name);
    }
    int e = 0;
    if (get_enum(c, m, "protocol", PROTOCOLS, &e) == 1) {
        tg->protocol = (enum rlb_protocol)e;
    }
    uint64_t v;
    if (get_uint(c, m, "port", false, 1, 65535, &v) == 1) {
        tg->port = (uint16_t)v;
    }
    if (get_enum(c, m, "algorithm", ALGORITHMS, &e) == 1) {
        tg->algorithm = (enum rlb_algorithm)e;
    }
    get_duration(c, m, "deregistration_delay", 0, 3600 * MS_PER_S, &tg->deregistration_delay_ms);
    if (get_duration(c, m, "slow_start", 0, 900 * MS_PER_S, &tg->slow_start_ms) == 1 &&
        tg->slow_start_ms != 0 && tg->slow_start_ms < 30 * MS_PER_S) {
        struct field sf = get_field(m, "slow_start");
        errf(c, sf.loc, "%s: must be 0 (off) or 30s..900s", sf.path);
    }

    struct field sf = get_field(m, "stickiness");
    struct map sm;
    if (open_map(c, &sf, TG_STICKY_KEYS, &sm)) {
        get_bool(c, &sm, "enabled", &tg->stickiness.enabled);
        get_enum(c, &sm, "type", STICKY_TYPES, &e);
        get_duration(c, &sm, "duration", MS_PER_S, 7 * MS_PER_DAY, &tg->stickiness.duration_ms);
    }
    tg->stickiness.type = strdup(STICKY_TYPES[0]);

    parse_health_check(c, &tg->health_check, m);

    struct field tf = get_field(m, "targets");
    if (tf.present && !fy_node_is_sequence(tf.v)) {
        errf(c, tf.loc, "%s: expected a list, got %s", tf.path, type_name(tf.v));
    } else if (tf.present) {
        size_t n = (size_t)fy_node_sequence_item_count(tf.v);
        tg->targets = n ? calloc(n, sizeof(*tg->targets)) : NULL;
        if (n && !tg->targets) {
            errf(c, tf.loc, "%s: out of memory", tf.path);
            return;
        }
        tg->n_targets = n;
        void *it = NULL;
        struct fy_node *item;
        for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(tf.v, &it)) != NULL; i++) {
            char path[PATH_MAX_LEN];
            snprintf(path, sizeof(path), "%.200s[%zu]", tf.path, i);
            struct rlb_src_loc il = item_loc(item, tf.loc);
            struct rlb_target_cfg *t = &tg->targets[i];
            parse_target(c, t, item, path, il, tg->port);
            if (!t->id) {
                continue;
            }
            for (size_t j = 0; j < i; j++) {
                if (tg->targets[j].id && tg->targets[j].port == t->port &&
                    sockaddr_same_ip(&tg->targets[j].addr, &t->addr)) {
                    errf(c, il, "%s: duplicate target %s port %u", path, t->id, t->port);
                    break;
                }
            }
        }
    }
    parse_scaling(c, &tg->scaling, m);
}

static void parse_target_groups(struct ctx *c, struct rlb_config *cfg, const struct map *top)
{
    struct field f = get_field(top, "target_groups");
    if (!f.present) {
        return;
    }
    if (!fy_node_is_sequence(f.v)) {
        errf(c, f.loc, "%s: expected a list, got %s", f.path, type_name(f.v));
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(f.v);
    if (n == 0) {
        return;
    }
    cfg->target_groups = calloc(n, sizeof(*cfg->target_groups));
    if (!cfg->target_groups) {
        errf(c, f.loc, "target_groups: out of memory");
        return;
    }
    cfg->n_target_groups = n;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(f.v, &it)) != NULL; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "target_groups[%zu]", i);
        struct rlb_target_group_cfg *tg = &cfg->target_groups[i];
        struct map m = {item, item_loc(item, f.loc), path};
        tg->loc = m.loc;
        if (!check_map(c, item, m.loc, path, TG_KEYS)) {
            continue;
        }
        parse_target_group(c, tg, &m);
        if (!tg->name) {
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->target_groups[j].name && !strcmp(cfg->target_groups[j].name, tg->name)) {
                struct field nf = get_field(&m, "name");
                errf(c, nf.loc, "%s: duplicate target group name \"%s\"", nf.path, tg->name);
                break;
            }
        }
    }
}

/* --- actions ------------------------------------------------------------------------------- */

static ssize_t find_group(const struct rlb_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        if (cfg->target_groups[i].name && strcmp(cfg->target_groups[i].name, name) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

static void parse_forward(struct ctx *c, const struct rlb_config *cfg, struct rlb_action *a,
                          const struct field *f)
{
    struct map m;
    a->forward.stickiness_duration_ms = MS_PER_DAY;
    if (!open_map(c, f, FORWARD_KEYS, &m)) {
        return;
    }
    struct field gf = get_field(&m, "target_groups");
    if (!gf.present) {
        missing(c, &m, "target_groups");
    }
    struct fy_node *seq = get_list(c, &gf);
    if (seq) {
        size_t n = (size_t)fy_node_sequence_item_count(seq);
        a->forward.groups = calloc(n, sizeof(*a->forward.groups));
        if (!a->forward.groups) {
            errf(c, gf.loc, "%s: out of memory", gf.path);
            return;
        }
        a->forward.n_groups = n;
        size_t n_omitted = 0;
        bool any_weight = false, weight_error = false;
        void *it = NULL;
        struct fy_node *item;
        for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(seq, &it)) != NULL; i++) {
            char path[PATH_MAX_LEN];
            snprintf(path, sizeof(path), "%.200s[%zu]", gf.path, i);
            struct rlb_forward_group *g = &a->forward.groups[i];
            struct map gm = {item, item_loc(item, gf.loc), path};
            g->loc = gm.loc;
            g->weight = 1;
            if (!check_map(c, item, gm.loc, path, FWD_GROUP_KEYS)) {
                continue;
            }
            uint64_t w;
            int rw = get_uint(c, &gm, "weight", false, 0, 999, &w);
            if (rw == 1) {
                g->weight = (uint32_t)w;
                g->weight_set = true;
            } else if (rw < 0) {
                weight_error = true;
            } else {
                if (++n_omitted == 2) {
                    errf(c, gm.loc, "%s: only one target group of a forward action may omit "
                         "its weight", path);
                }
            }
            if (rw >= 0 && g->weight > 0) {
                any_weight = true;
            }
            if (get_str(c, &gm, "name", true, false, &g->name) != 1) {
                continue;
            }
            struct field nf = get_field(&gm, "name");
            ssize_t gi = find_group(cfg, g->name);
            if (gi < 0) {
                errf(c, nf.loc, "%s: unknown target group \"%.64s\"", nf.path, g->name);
            } else {
                g->group_index = (size_t)gi;
            }
            for (size_t j = 0; j < i; j++) {
                if (a->forward.groups[j].name && !strcmp(a->forward.groups[j].name, g->name)) {
                    errf(c, nf.loc, "%s: target group \"%s\" listed twice", nf.path, g->name);
                    break;
                }
            }
        }
        if (!any_weight && !weight_error) {
            errf(c, gf.loc, "%s: at least one target group needs a weight above 0", gf.path);
        }
    }
    struct field sf = get_field(&m, "stickiness");
    struct map sm;
    if (open_map(c, &sf, FWD_STICKY_KEYS, &sm)) {
        get_bool(c, &sm, "enabled", &a->forward.stickiness_enabled);
        get_duration(c, &sm, "duration", MS_PER_S, 7 * MS_PER_DAY,
                     &a->forward.stickiness_duration_ms);
    }
}

/* HTTP_301 / HTTP_302 (301 and 302 are accepted too). */
static void parse_redirect(struct ctx *c, const struct rlb_listener_cfg *l, struct rlb_action *a,
                           const struct field *f)
{
    struct map m;
    if (!open_map(c, f, REDIRECT_KEYS, &m)) {
        return;
    }
    struct field sf = get_field(&m, "status_code");
    if (!sf.present) {
        missing(c, &m, "status_code");
    } else {
        const char *s = field_scalar(c, &sf);
        if (s && (!strcmp(s, "HTTP_301") || !strcmp(s, "301"))) {
            a->redirect.status_code = 301;
        } else if (s && (!strcmp(s, "HTTP_302") || !strcmp(s, "302"))) {
            a->redirect.status_code = 302;
        } else if (s) {
            errf(c, sf.loc, "%s: expected HTTP_301 or HTTP_302, got \"%.64s\"", sf.path, s);
        }
    }
    struct field pf = get_field(&m, "protocol");
    if (get_str(c, &m, "protocol", false, false, &a->redirect.protocol) == 1) {
        const char *p = a->redirect.protocol;
        if (strcmp(p, "HTTP") && strcmp(p, "HTTPS") && strcmp(p, "#{protocol}")) {
            errf(c, pf.loc, "%s: expected HTTP, HTTPS or #{protocol}, got \"%.64s\"", pf.path, p);
        } else if (l && l->protocol == RLB_PROTO_HTTPS && !strcmp(p, "HTTP")) {
            errf(c, pf.loc, "%s: an HTTPS listener cannot redirect to HTTP", pf.path);
        }
    }
    get_str(c, &m, "host", false, false, &a->redirect.host);
    struct field portf = get_field(&m, "port");
    if (get_str(c, &m, "port", false, false, &a->redirect.port) == 1) {
        uint16_t port;
        if (strcmp(a->redirect.port, "#{port}") && parse_port(a->redirect.port, &port) < 0) {
            errf(c, portf.loc, "%s: expected #{port} or a port 1..65535, got \"%.64s\"",
                 portf.path, a->redirect.port);
        }
    }
    struct field pathf = get_field(&m, "path");
    if (get_str(c, &m, "path", false, false, &a->redirect.path) == 1 &&
        a->redirect.path[0] != '/') {
        errf(c, pathf.loc, "%s: must start with '/'", pathf.path);
    }
    struct field qf = get_field(&m, "query");
    if (get_str(c, &m, "query", false, true, &a->redirect.query) == 1 &&
        a->redirect.query[0] == '?') {
        errf(c, qf.loc, "%s: must not start with '?'", qf.path);
    }

    /* A redirect to the very same URL would loop forever. */
    const struct rlb_action *r = a;
    bool same_proto = !r->redirect.protocol || !strcmp(r->redirect.protocol, "#{protocol}") ||
                      (l && !strcmp(r->redirect.protocol, PROTOCOLS[l->protocol]));
    char lport[8] = "";
    if (l) {
        snprintf(lport, sizeof(lport), "%u", l->port);
    }
    bool same_port = !r->redirect.port || !strcmp(r->redirect.port, "#{port}") ||
                     (l && !strcmp(r->redirect.port, lport));
    bool same_host = !r->redirect.host || !strcmp(r->redirect.host, "#{host}");
    bool same_path = !r->redirect.path || !strcmp(r->redirect.path, "/#{path}");
    bool same_query = !r->redirect.query || !strcmp(r->redirect.query, "#{query}");
    if (same_proto && same_port && same_host && same_path && same_query) {
        errf(c, m.loc, "%s: this redirect would not change the URL (it would loop)", m.path);
    }
}

static void parse_fixed(struct ctx *c, struct rlb_action *a, const struct field *f)
{
    struct map m;
    if (!open_map(c, f, FIXED_KEYS, &m)) {
        return;
    }
    uint64_t v;
    struct field sf = get_field(&m, "status_code");
    if (get_uint(c, &m, "status_code", true, 200, 599, &v) == 1) {
        if (v >= 300 && v < 400) {
            errf(c, sf.loc, "%s: %llu is not a 2XX, 4XX or 5XX code", sf.path,
                 (unsigned long long)v);
        } else {
            a->fixed.status_code = (int)v;
        }
    }
    int ct = 0;
    if (get_enum(c, &m, "content_type", CONTENT_TYPES, &ct) == 1) {
        a->fixed.content_type = strdup(CONTENT_TYPES[ct]);
    }
    struct field bf = get_field(&m, "message_body");
    if (bf.present) {
        if (!fy_node_is_scalar(bf.v)) {
            errf(c, bf.loc, "%s: expected a string, got %s", bf.path, type_name(bf.v));
        } else {
            a->fixed.body = scalar_dup(bf.v, &a->fixed.body_len);
            if (a->fixed.body_len > MAX_BODY) {
                errf(c, bf.loc, "%s: %zu bytes, at most %d allowed", bf.path,
                     a->fixed.body_len, MAX_BODY);
            }
        }
    }
}

/* An action mapping: exactly one of forward, redirect, fixed_response. `l` may be NULL. */
static void parse_action(struct ctx *c, const struct rlb_config *cfg,
                         const struct rlb_listener_cfg *l, struct rlb_action *a,
                         const struct field *af)
{
    struct map m;
    a->loc = af->loc;
    if (!open_map(c, af, ACTION_KEYS, &m)) {
        return;
    }
    struct field ff = get_field(&m, "forward");
    struct field rf = get_field(&m, "redirect");
    struct field xf = get_field(&m, "fixed_response");
    int n = ff.present + rf.present + xf.present;
    if (n != 1) {
        errf(c, m.loc, "%s: expected exactly one of forward, redirect, fixed_response", m.path);
    }
    if (ff.present) {
        a->type = RLB_ACTION_FORWARD;
        a->loc = ff.loc;
        parse_forward(c, cfg, a, &ff);
    }
    if (rf.present) {
        a->type = RLB_ACTION_REDIRECT;
        a->loc = rf.loc;
        parse_redirect(c, l, a, &rf);
    }
    if (xf.present) {
        a->type = RLB_ACTION_FIXED_RESPONSE;
        a->loc = xf.loc;
        parse_fixed(c, a, &xf);
    }
}

/* --- rules --------------------------------------------------------------------------------- */

static void parse_http_header_conds(struct ctx *c, struct rlb_conditions *rc,
                                    const struct map *cm)
{
    struct field f = get_field(cm, "http_header");
    struct fy_node *seq = get_list(c, &f);
    if (!seq) {
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(seq);
    rc->http_header = calloc(n, sizeof(*rc->http_header));
    if (!rc->http_header) {
        return;
    }
    rc->n_http_header = n;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(seq, &it)) != NULL; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "%.200s[%zu]", f.path, i);
        struct map m = {item, item_loc(item, f.loc), path};
        struct rlb_header_condition *h = &rc->http_header[i];
        if (!check_map(c, item, m.loc, path, HTTP_HEADER_KEYS)) {
            continue;
        }
        if (get_str(c, &m, "name", true, false, &h->name) == 1 && !valid_token(h->name)) {
            struct field nf = get_field(&m, "name");
            errf(c, nf.loc, "%s: invalid header name \"%.64s\"", nf.path, h->name);
        }
        if (get_str_list(c, &m, "values", valid_header_value,
                         "a pattern of printable characters, up to 128", &h->values,
                         &h->n_values) == 0) {
            missing(c, &m, "values");
        }
    }
}

static void parse_query_conds(struct ctx *c, struct rlb_conditions *rc, const struct map *cm)
{
    struct field f = get_field(cm, "query_string");
    struct fy_node *seq = get_list(c, &f);
    if (!seq) {
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(seq);
    rc->query_string = calloc(n, sizeof(*rc->query_string));
    if (!rc->query_string) {
        return;
    }
    rc->n_query_string = n;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(seq, &it)) != NULL; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "%.200s[%zu]", f.path, i);
        struct map m = {item, item_loc(item, f.loc), path};
        struct rlb_query_condition *q = &rc->query_string[i];
        if (!check_map(c, item, m.loc, path, QUERY_KEYS)) {
            continue;
        }
        get_str(c, &m, "key", false, false, &q->key);
        get_str(c, &m, "value", true, false, &q->value);
    }
}

static void parse_conditions(struct ctx *c, struct rlb_conditions *rc, const struct map *rule)
{
    struct field f = get_field(rule, "conditions");
    struct map m;
    if (!f.present) {
        missing(c, rule, "conditions");
        return;
    }
    if (!open_map(c, &f, COND_KEYS, &m)) {
        return;
    }
    get_str_list(c, &m, "host_header", valid_host_pattern,
                 "a host pattern of A-Z a-z 0-9 - . * ?, up to 128", &rc->host_header,
                 &rc->n_host_header);
    get_str_list(c, &m, "path_pattern", valid_path_pattern,
                 "a path pattern of printable characters, up to 128", &rc->path_pattern,
                 &rc->n_path_pattern);
    get_str_list(c, &m, "http_request_method", valid_method, "a method of A-Z - _", &rc->method,
                 &rc->n_method);
    char **cidrs = NULL;
    size_t n_cidrs = 0;
    get_str_list(c, &m, "source_ip", valid_cidr, "a CIDR such as 10.0.0.0/8 or ::1/128", &cidrs,
                 &n_cidrs);
    if (n_cidrs) {
        rc->source_ip = calloc(n_cidrs, sizeof(*rc->source_ip));
        if (rc->source_ip) {
            rc->n_source_ip = n_cidrs;
            for (size_t i = 0; i < n_cidrs; i++) {
                if (cidrs[i]) {
                    parse_cidr(cidrs[i], &rc->source_ip[i]);
                }
            }
        }
    }
    for (size_t i = 0; i < n_cidrs; i++) {
        free(cidrs[i]);
    }
    free(cidrs);
    parse_http_header_conds(c, rc, &m);
    parse_query_conds(c, rc, &m);
    bool any = false;
    for (size_t i = 0; COND_KEYS[i]; i++) {
        any |= get_field(&m, COND_KEYS[i]).present;
    }
    if (!any) {
        errf(c, m.loc, "%s: a rule needs at least one condition", m.path);
    }
}

static int rule_cmp(const void *a, const void *b)
{
    const struct rlb_rule *x = a, *y = b;
    return x->priority < y->priority ? -1 : (x->priority > y->priority);
}

static void parse_rules(struct ctx *c, const struct rlb_config *cfg, struct rlb_listener_cfg *l,
                        const struct map *lm)
{
    struct field f = get_field(lm, "rules");
    if (!f.present) {
        return;
    }
    if (!fy_node_is_sequence(f.v)) {
        errf(c, f.loc, "%s: expected a list, got %s", f.path, type_name(f.v));
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(f.v);
    if (n == 0) {
        return;
    }
    l->rules = calloc(n, sizeof(*l->rules));
    if (!l->rules) {
        errf(c, f.loc, "%s: out of memory", f.path);
        return;
    }
    l->n_rules = n;
    /* rule index + 1 by priority, to find duplicates in linear time (10,000+ rules) */
    size_t *first_use = calloc(MAX_PRIORITY + 1, sizeof(*first_use));
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(f.v, &it)) != NULL; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "%.200s[%zu]", f.path, i);
        struct rlb_rule *r = &l->rules[i];
        struct map m = {item, item_loc(item, f.loc), path};
        r->loc = m.loc;
        if (!check_map(c, item, m.loc, path, RULE_KEYS)) {
            continue;
        }
        uint64_t prio;
        if (get_uint(c, &m, "priority", true, 1, MAX_PRIORITY, &prio) == 1) {
            r->priority = (uint32_t)prio;
            if (first_use && first_use[prio]) {
                struct field pf = get_field(&m, "priority");
                errf(c, pf.loc, "%s: priority %u is already used by %s[%zu]", pf.path,
                     r->priority, f.path, first_use[prio] - 1);
            } else if (first_use) {
                first_use[prio] = i + 1;
            }
        }
        parse_conditions(c, &r->conditions, &m);
        struct field af = get_field(&m, "action");
        if (!af.present) {
            missing(c, &m, "action");
        } else {
            parse_action(c, cfg, l, &r->action, &af);
        }
    }
    free(first_use);
    qsort(l->rules, l->n_rules, sizeof(*l->rules), rule_cmp);
}

/* --- listeners ----------------------------------------------------------------------------- */

static void parse_listener_tls(struct ctx *c, struct rlb_listener_cfg *l, const struct map *lm)
{
    struct field f = get_field(lm, "tls");
    struct map m;
    if (f.present && l->protocol != RLB_PROTO_HTTPS) {
        errf(c, f.loc, "%s: tls is only allowed on HTTPS listeners", f.path);
        return;
    }
    if (l->protocol != RLB_PROTO_HTTPS) {
        return;
    }
    if (!f.present) {
        errf(c, lm->loc, "%s: an HTTPS listener needs tls.certificates", lm->path);
        l->security_policy = strdup(DEFAULT_SECURITY_POLICY);
        return;
    }
    if (!open_map(c, &f, TLS_KEYS, &m)) {
        return;
    }
    int sp = 0;
    get_enum(c, &m, "security_policy", SECURITY_POLICIES, &sp);
    l->security_policy = strdup(SECURITY_POLICIES[sp]);

    struct field cf = get_field(&m, "certificates");
    if (!cf.present) {
        errf(c, m.loc, "%s: an HTTPS listener needs at least one certificate", cf.path);
        return;
    }
    struct fy_node *seq = get_list(c, &cf);
    if (!seq) {
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(seq);
    l->certificates = calloc(n, sizeof(*l->certificates));
    if (!l->certificates) {
        return;
    }
    l->n_certificates = n;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(seq, &it)) != NULL; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "%.200s[%zu]", cf.path, i);
        struct map cm = {item, item_loc(item, cf.loc), path};
        l->certificates[i].loc = cm.loc;
        if (!check_map(c, item, cm.loc, path, CERT_KEYS)) {
            continue;
        }
        get_str(c, &cm, "cert", true, false, &l->certificates[i].cert);
        get_str(c, &cm, "key", true, false, &l->certificates[i].key);
    }
}

static void parse_listener(struct ctx *c, const struct rlb_config *cfg,
                           struct rlb_listener_cfg *l, const struct map *m)
{
    l->idle_timeout_ms = 60 * MS_PER_S;
    l->client_keep_alive_ms = 3600 * MS_PER_S;
    l->header_timeout_ms = 10 * MS_PER_S;

    if (get_str(c, m, "name", true, false, &l->name) == 1 && !valid_name(l->name)) {
        struct field nf = get_field(m, "name");
        errf(c, nf.loc, "%s: invalid name \"%.64s\" (1..64 of A-Z a-z 0-9 - _ .)", nf.path,
             l->name);
    }
    if (get_str(c, m, "listen", true, false, &l->listen) == 1) {
        if (rlb_sockaddr_parse(l->listen, &l->addr) < 0) {
            struct field lf = get_field(m, "listen");
            errf(c, lf.loc, "%s: invalid address \"%.64s\" (expected numeric ip:port or "
                 "[ipv6]:port)", lf.path, l->listen);
        } else {
            l->port = sockaddr_port(&l->addr);
        }
    }
    int e = 0;
    if (get_enum(c, m, "protocol", PROTOCOLS, &e) == 1) {
        l->protocol = (enum rlb_protocol)e;
    }
    parse_listener_tls(c, l, m);
    get_duration(c, m, "idle_timeout", 1, 4000 * MS_PER_S, &l->idle_timeout_ms);
    get_duration(c, m, "client_keep_alive", 1, 7 * MS_PER_DAY, &l->client_keep_alive_ms);
    get_duration(c, m, "header_timeout", 1, MS_PER_H, &l->header_timeout_ms);
    if (get_enum(c, m, "xff", XFF_MODES, &e) == 1) {
        l->xff = (enum rlb_xff_mode)e;
    }
    get_bool(c, m, "xff_client_port", &l->xff_client_port);
    get_bool(c, m, "preserve_host_header", &l->preserve_host_header);
    get_bool(c, m, "drop_invalid_header_fields", &l->drop_invalid_header_fields);
    if (get_enum(c, m, "desync_mitigation_mode", DESYNC_MODES, &e) == 1) {
        l->desync_mode = (enum rlb_desync_mode)e;
    }
    uint64_t v;
    if (get_uint(c, m, "max_connections", false, 0, UINT32_MAX, &v) == 1) {
        l->max_connections = (uint32_t)v;
    }
    parse_rules(c, cfg, l, m);
    struct field df = get_field(m, "default_action");
    if (!df.present) {
        missing(c, m, "default_action");
    } else {
        parse_action(c, cfg, l, &l->default_action, &df);
    }
}

static void parse_listeners(struct ctx *c, struct rlb_config *cfg, const struct map *top)
{
    struct field f = get_field(top, "listeners");
    if (!f.present) {
        missing(c, top, "listeners");
        return;
    }
    if (!fy_node_is_sequence(f.v)) {
        errf(c, f.loc, "%s: expected a list, got %s", f.path, type_name(f.v));
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(f.v);
    if (n == 0) {
        errf(c, f.loc, "listeners: at least one listener is required");
        return;
    }
    cfg->listeners = calloc(n, sizeof(*cfg->listeners));
    if (!cfg->listeners) {
        errf(c, f.loc, "listeners: out of memory");
        return;
    }
    cfg->n_listeners = n;
    void *it = NULL;
    struct fy_node *item;
    for (size_t i = 0; i < n && (item = fy_node_sequence_iterate(f.v, &it)) != NULL; i++) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof(path), "listeners[%zu]", i);
        struct rlb_listener_cfg *l = &cfg->listeners[i];
        struct map m = {item, item_loc(item, f.loc), path};
        l->loc = m.loc;
        if (!check_map(c, item, m.loc, path, LISTENER_KEYS)) {
            continue;
        }
        parse_listener(c, cfg, l, &m);
        for (size_t j = 0; j < i; j++) {
            const struct rlb_listener_cfg *o = &cfg->listeners[j];
            if (l->name && o->name && !strcmp(l->name, o->name)) {
                struct field nf = get_field(&m, "name");
                errf(c, nf.loc, "%s: duplicate listener name \"%s\"", nf.path, l->name);
            }
            if (l->port && o->port && l->port == o->port &&
                l->addr.ss.ss_family == o->addr.ss.ss_family &&
                (sockaddr_same_ip(&l->addr, &o->addr) || sockaddr_is_any(&l->addr) ||
                 sockaddr_is_any(&o->addr))) {
                struct field lf = get_field(&m, "listen");
                errf(c, lf.loc, "%s: address %s conflicts with listener \"%s\" (%s)", lf.path,
                     l->listen, o->name ? o->name : "?", o->listen);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Entry points
 */

static void config_defaults(struct rlb_config *cfg)
{
    cfg->threads = 0;
    cfg->shutdown_timeout_ms = 30 * MS_PER_S;
    cfg->metrics.window_ms = 60 * MS_PER_S;
}

static void discard_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

/* True when `text` holds nothing but blank lines, comments and document markers. */
static bool only_comments(const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) {
            i++;
        }
        size_t eol = i;
        while (eol < len && text[eol] != '\n') {
            eol++;
        }
        bool marker = eol - i >= 3 &&
                      (!strncmp(text + i, "---", 3) || !strncmp(text + i, "...", 3));
        if (i < eol && text[i] != '#' && !marker) {
            return false;
        }
        i = eol + 1;
    }
    return true;
}

/* Find the first byte that is not valid UTF-8 text (a NUL counts as invalid): libfyaml 0.7
 * can hang on some invalid sequences, so text is checked before it is parsed. Returns true
 * when everything is valid; else *loc is the offending character's position. */
static bool valid_utf8_text(const char *text, size_t len, struct rlb_src_loc *loc)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t line = 1, col = 1;
    size_t i = 0;
    while (i < len) {
        unsigned char ch = s[i];
        size_t n = 0;
        uint32_t cp = 0;
        if (ch == 0)
            goto bad;
        if (ch < 0x80) {
            n = 1;
        } else if ((ch & 0xe0) == 0xc0) {
            n = 2;
            cp = ch & 0x1f;
        } else if ((ch & 0xf0) == 0xe0) {
            n = 3;
            cp = ch & 0x0f;
        } else if ((ch & 0xf8) == 0xf0) {
            n = 4;
            cp = ch & 0x07;
        } else {
            goto bad;
        }
        if (i + n > len)
            goto bad;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        if (ch == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += n;
    }
    return true;
bad:
    loc->line = line;
    loc->col = col;
    return false;
}

static struct rlb_config *load_text(const char *name, const char *text, size_t len,
                                     struct rlb_config_errors *errs)
{
    struct ctx c = {.file = name};
    struct rlb_config *cfg = NULL;
    struct rlb_src_loc bad;
    if (!valid_utf8_text(text, len, &bad)) {
        errf(&c, bad, "the file is not valid UTF-8 text (or holds a NUL byte)");
        ctx_flush(&c, errs);
        return NULL;
    }
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = discard_output;
    dcfg.colorize = false;
    dcfg.level = FYET_ERROR;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        errf(&c, LOC_START, "cannot create the YAML diagnostics object");
        goto out;
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT,
        .diag = diag,
    };
    struct fy_document *fyd = fy_document_build_from_string(&pcfg, text, len);
    if (!fyd) {
        void *it = NULL;
        struct fy_diag_error *e;
        size_t before = c.n_items;
        while ((e = fy_diag_errors_iterate(diag, &it)) != NULL) {
            struct rlb_src_loc loc = {e->line > 0 ? (uint32_t)e->line : 1,
                                      e->column > 0 ? (uint32_t)e->column : 1};
            errf(&c, loc, "%s", e->msg ? e->msg : "YAML syntax error");
        }
        if (c.n_items == before) {
            errf(&c, LOC_START, only_comments(text, len) ? "empty configuration"
                                                         : "YAML syntax error");
        }
        goto out;
    }
    struct fy_node *root = fy_document_root(fyd);
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->path = strdup(name))) {
        errf(&c, LOC_START, "out of memory");
        fy_document_destroy(fyd);
        goto out;
    }
    config_defaults(cfg);
    if (node_is_null(root)) {
        errf(&c, LOC_START, "empty configuration");
    } else if (check_map(&c, root, LOC_START, "", TOP_KEYS)) {
        struct map top = {root, LOC_START, ""};
        parse_globals(&c, cfg, &top);
        parse_target_groups(&c, cfg, &top);
        parse_listeners(&c, cfg, &top);
    }
    fy_document_destroy(fyd);
out:
    if (diag) {
        fy_diag_destroy(diag);
    }
    if (c.n_items) {
        rlb_config_free(cfg);
        cfg = NULL;
    }
    ctx_flush(&c, errs);
    return cfg;
}

struct rlb_config *rlb_config_load_string(const char *name, const char *text, size_t len,
                                          struct rlb_config_errors *errs)
{
    return load_text(name ? name : "<string>", text ? text : "", text ? len : 0, errs);
}

struct rlb_config *rlb_config_load(const char *path, struct rlb_config_errors *errs)
{
    struct ctx c = {.file = path ? path : "(null)"};
    FILE *fp = path ? fopen(path, "rb") : NULL;
    char *buf = NULL;
    size_t len = 0;
    if (!fp) {
        errf(&c, LOC_START, "cannot open: %s", strerror(path ? errno : EINVAL));
        ctx_flush(&c, errs);
        return NULL;
    }
    size_t cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                errf(&c, LOC_START, "cannot read: out of memory");
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, fp);
        len += r;
        if (r == 0) {
            if (ferror(fp)) {
                errf(&c, LOC_START, "cannot read: %s", strerror(errno ? errno : EIO));
            }
            break;
        }
    }
    fclose(fp);
    if (c.n_items) {
        free(buf);
        ctx_flush(&c, errs);
        return NULL;
    }
    struct rlb_config *cfg = load_text(path, buf ? buf : "", len, errs);
    free(buf);
    return cfg;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static void free_action(struct rlb_action *a)
{
    for (size_t i = 0; i < a->forward.n_groups; i++) {
        free(a->forward.groups[i].name);
    }
    free(a->forward.groups);
    free(a->redirect.protocol);
    free(a->redirect.host);
    free(a->redirect.port);
    free(a->redirect.path);
    free(a->redirect.query);
    free(a->fixed.content_type);
    free(a->fixed.body);
}

static void free_conditions(struct rlb_conditions *rc)
{
    free_strv(rc->host_header, rc->n_host_header);
    free_strv(rc->path_pattern, rc->n_path_pattern);
    free_strv(rc->method, rc->n_method);
    free(rc->source_ip);
    for (size_t i = 0; i < rc->n_http_header; i++) {
        free(rc->http_header[i].name);
        free_strv(rc->http_header[i].values, rc->http_header[i].n_values);
    }
    free(rc->http_header);
    for (size_t i = 0; i < rc->n_query_string; i++) {
        free(rc->query_string[i].key);
        free(rc->query_string[i].value);
    }
    free(rc->query_string);
}

void rlb_config_free(struct rlb_config *cfg)
{
    if (!cfg) {
        return;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct rlb_listener_cfg *l = &cfg->listeners[i];
        free(l->name);
        free(l->listen);
        for (size_t j = 0; j < l->n_certificates; j++) {
            free(l->certificates[j].cert);
            free(l->certificates[j].key);
        }
        free(l->certificates);
        free(l->security_policy);
        for (size_t j = 0; j < l->n_rules; j++) {
            free_conditions(&l->rules[j].conditions);
            free_action(&l->rules[j].action);
        }
        free(l->rules);
        free_action(&l->default_action);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        struct rlb_target_group_cfg *tg = &cfg->target_groups[i];
        free(tg->name);
        free(tg->stickiness.type);
        free(tg->health_check.path);
        free(tg->health_check.matcher);
        free(tg->health_check.match_ranges);
        for (size_t j = 0; j < tg->n_targets; j++) {
            free(tg->targets[j].id);
        }
        free(tg->targets);
        free(tg->scaling.metric);
        free(tg->scaling.hook);
    }
    free(cfg->target_groups);
    free_strv(cfg->cluster.etcd, cfg->cluster.n_etcd);
    free(cfg->cluster.prefix);
    free(cfg->cluster.instance);
    free(cfg->cluster.tls_ca);
    free(cfg->cluster.tls_cert);
    free(cfg->cluster.tls_key);
    free(cfg->cluster.auth_user);
    free(cfg->cluster.auth_password_file);
    free(cfg->path);
    free(cfg->state_file);
    free(cfg->admin.listen);
    free(cfg->admin.token_file);
    free(cfg->admin.canary_header);
    free(cfg->access_log.path);
    free(cfg->user);
    free(cfg->stickiness_key_file);
    free(cfg);
}

/* ---------------------------------------------------------------------------------------------
 * ALB quotas
 */

#define ALB_MAX_RULES 100
#define ALB_MAX_CONDITION_VALUES 5
#define ALB_MAX_FORWARD_GROUPS 5
#define ALB_MAX_CERTIFICATES 25
#define ALB_MAX_TARGETS 1000

__attribute__((format(printf, 4, 5))) static size_t limit_msg(const struct rlb_config *cfg,
                                                             struct rlb_config_errors *out,
                                                             struct rlb_src_loc loc,
                                                             const char *fmt, ...)
{
    char *body = NULL, *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (r < 0) {
        return 0;
    }
    if (loc.line == 0) {
        loc = LOC_START;
    }
    r = asprintf(&msg, "%s:%u:%u: %s", cfg->path ? cfg->path : "", loc.line, loc.col, body);
    free(body);
    if (r < 0) {
        return 0;
    }
    size_t before = out ? out->n : 0;
    errs_append(out, msg);
    return out && out->n > before;
}

static size_t limit_forward(const struct rlb_config *cfg, struct rlb_config_errors *out,
                            const struct rlb_action *a, const char *where)
{
    if (a->type != RLB_ACTION_FORWARD || a->forward.n_groups <= ALB_MAX_FORWARD_GROUPS) {
        return 0;
    }
    return limit_msg(cfg, out, a->loc,
                     "ALB limit: %s forwards to %zu target groups (ALB allows %d per action)",
                     where, a->forward.n_groups, ALB_MAX_FORWARD_GROUPS);
}

size_t rlb_config_alb_limits(const struct rlb_config *cfg, struct rlb_config_errors *out)
{
    size_t n = 0;
    if (!cfg) {
        return 0;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct rlb_listener_cfg *l = &cfg->listeners[i];
        if (l->n_rules > ALB_MAX_RULES) {
            n += limit_msg(cfg, out, l->loc,
                           "ALB limit: listener \"%s\" has %zu rules (ALB allows %d per "
                           "listener)", l->name, l->n_rules, ALB_MAX_RULES);
        }
        if (l->n_certificates > ALB_MAX_CERTIFICATES) {
            n += limit_msg(cfg, out, l->certificates[ALB_MAX_CERTIFICATES].loc,
                           "ALB limit: listener \"%s\" has %zu certificates (ALB allows %d per "
                           "listener)", l->name, l->n_certificates, ALB_MAX_CERTIFICATES);
        }
        for (size_t j = 0; j < l->n_rules; j++) {
            const struct rlb_rule *r = &l->rules[j];
            const struct rlb_conditions *rc = &r->conditions;
            size_t values = rc->n_host_header + rc->n_path_pattern + rc->n_method +
                            rc->n_source_ip + rc->n_query_string;
            for (size_t k = 0; k < rc->n_http_header; k++) {
                values += rc->http_header[k].n_values;
            }
            if (values > ALB_MAX_CONDITION_VALUES) {
                n += limit_msg(cfg, out, r->loc,
                               "ALB limit: rule %u of listener \"%s\" has %zu condition values "
                               "(ALB allows %d per rule)", r->priority, l->name, values,
                               ALB_MAX_CONDITION_VALUES);
            }
            char where[96];
            snprintf(where, sizeof(where), "rule %u of listener \"%.32s\"", r->priority,
                     l->name);
            n += limit_forward(cfg, out, &r->action, where);
        }
        char where[96];
        snprintf(where, sizeof(where), "the default action of listener \"%.32s\"", l->name);
        n += limit_forward(cfg, out, &l->default_action, where);
    }
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct rlb_target_group_cfg *tg = &cfg->target_groups[i];
        if (tg->n_targets > ALB_MAX_TARGETS) {
            n += limit_msg(cfg, out, tg->targets[ALB_MAX_TARGETS].loc,
                           "ALB limit: target group \"%s\" has %zu targets (ALB allows %d per "
                           "group)", tg->name, tg->n_targets, ALB_MAX_TARGETS);
        }
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * ringlb check
 */

static int check_usage(const char *msg)
{
    if (msg) {
        fprintf(stderr, "ringlb check: %s\n", msg);
    }
    fprintf(stderr, "usage: ringlb check -c FILE [--alb-limits]\n");
    return 2;
}

int rlb_config_check_main(int argc, char **argv)
{
    const char *file = NULL;
    bool limits = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) {
                return check_usage("-c needs a file name");
            }
            file = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            file = a + 9;
        } else if (!strncmp(a, "-c", 2) && a[2]) {
            file = a + 2;
        } else if (!strcmp(a, "--alb-limits")) {
            limits = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: ringlb check -c FILE [--alb-limits]\n");
            return 0;
        } else {
            char msg[128];
            snprintf(msg, sizeof(msg), "unknown argument '%.64s'", a);
            return check_usage(msg);
        }
    }
    if (!file || !*file) {
        return check_usage("missing -c FILE");
    }
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load(file, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++) {
            printf("%s\n", errs.msgs[i]);
        }
        if (errs.n == 0) {
            printf("%s:1:1: invalid configuration\n", file);
        }
        rlb_config_errors_free(&errs);
        fflush(stdout);
        return 2;
    }
    if (limits) {
        struct rlb_config_errors lim = {0};
        rlb_config_alb_limits(cfg, &lim);
        for (size_t i = 0; i < lim.n; i++) {
            printf("%s\n", lim.msgs[i]);
        }
        rlb_config_errors_free(&lim);
    }
    printf("ok\n");
    fflush(stdout);
    rlb_config_errors_free(&errs);
    rlb_config_free(cfg);
    return 0;
}
