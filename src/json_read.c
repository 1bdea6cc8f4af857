/* json_read.c — JSON input through libfyaml (see json_read.h). */
#include "ringlb/json_read.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void discard_output(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

struct fy_document *rlb_json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = discard_output;
    dcfg.colorize = false;
    dcfg.level = FYET_ERROR;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (!diag) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {
        .flags = FYPCF_QUIET | FYPCF_JSON_FORCE,
        .diag = diag,
    };
    struct fy_document *fyd = len ? fy_document_build_from_string(&pcfg, text, len) : NULL;
    if (!fyd) {
        void *it = NULL;
        struct fy_diag_error *e = len ? fy_diag_errors_iterate(diag, &it) : NULL;
        if (e)
            snprintf(err, errlen, "invalid JSON at line %d, column %d: %s", e->line,
                     e->column, e->msg ? e->msg : "syntax error");
        else
            snprintf(err, errlen, "invalid JSON: %s", len ? "syntax error" : "empty body");
        fy_diag_destroy(diag);
        return NULL;
    }
    fy_diag_destroy(diag);
    struct fy_node *root = fy_document_root(fyd);
    if (!rlb_json_is_obj(root) && !rlb_json_is_arr(root)) {
        snprintf(err, errlen, "invalid JSON: expected an object");
        fy_document_destroy(fyd);
        return NULL;
    }
    return fyd;
}

bool rlb_json_is_obj(struct fy_node *n) { return n && fy_node_is_mapping(n); }

bool rlb_json_is_arr(struct fy_node *n) { return n && fy_node_is_sequence(n); }

struct fy_node *rlb_json_get(struct fy_node *obj, const char *key)
{
    if (!rlb_json_is_obj(obj))
        return NULL;
    return fy_node_mapping_lookup_by_string(obj, key, strlen(key));
}

/* Is `n` a scalar written as a JSON string (quoted)? */
static bool quoted(struct fy_node *n)
{
    if (!n || !fy_node_is_scalar(n))
        return false;
    enum fy_node_style st = fy_node_get_style(n);
    return st == FYNS_DOUBLE_QUOTED || st == FYNS_SINGLE_QUOTED;
}

int rlb_json_get_str(struct fy_node *n, const char **s, size_t *len)
{
    if (!quoted(n))
        return -EINVAL;
    size_t l = 0;
    const char *v = fy_node_get_scalar(n, &l);
    if (!v)
        v = "";
    if (memchr(v, '\0', l))
        return -EINVAL;
    *s = v;
    *len = l;
    return 0;
}

/* The text of a plain (unquoted) scalar, NUL-terminated in buf[n]; NULL if not one. */
static const char *plain_text(struct fy_node *n, char *buf, size_t bufn)
{
    if (!n || !fy_node_is_scalar(n) || quoted(n))
        return NULL;
    size_t l = 0;
    const char *v = fy_node_get_scalar(n, &l);
    if (!v || l == 0 || l >= bufn)
        return NULL;
    memcpy(buf, v, l);
    buf[l] = '\0';
    return buf;
}

int rlb_json_get_int(struct fy_node *n, int64_t min, int64_t max, int64_t *out)
{
    char buf[32];
    const char *t = plain_text(n, buf, sizeof(buf));
    if (!t)
        return -EINVAL;
    const char *p = t[0] == '-' ? t + 1 : t;
    if (!*p)
        return -EINVAL;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(t, &end, 10);
    if (errno || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int rlb_json_get_bool(struct fy_node *n, bool *out)
{
    char buf[8];
    const char *t = plain_text(n, buf, sizeof(buf));
    if (t && strcmp(t, "true") == 0)
        *out = true;
    else if (t && strcmp(t, "false") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

int rlb_json_check_keys(struct fy_node *obj, const char *const *allowed, char *err,
                        size_t errlen)
{
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(obj, &it)) != NULL) {
        const char *k;
        size_t kl;
        if (rlb_json_get_str(fy_node_pair_key(p), &k, &kl) < 0) {
            snprintf(err, errlen, "object keys must be strings");
            return -EINVAL;
        }
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strlen(allowed[i]) == kl && memcmp(allowed[i], k, kl) == 0;
        if (!ok) {
            snprintf(err, errlen, "unknown key \"%.*s\"", (int)(kl > 64 ? 64 : kl), k);
            return -EINVAL;
        }
    }
    return 0;
}
