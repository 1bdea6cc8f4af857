/* json.c — JSON documents through libfyaml (see json.h). */
#include "ringlb/json.h"

#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rlb_json_init(struct rlb_json *j)
{
    j->doc = fy_document_create(NULL);
    return j->doc ? 0 : -ENOMEM;
}

void rlb_json_free(struct rlb_json *j)
{
    if (j->doc)
        fy_document_destroy(j->doc);
    j->doc = NULL;
}

struct fy_node *rlb_json_obj(struct rlb_json *j) { return fy_node_create_mapping(j->doc); }

struct fy_node *rlb_json_arr(struct rlb_json *j) { return fy_node_create_sequence(j->doc); }

struct fy_node *rlb_json_strn(struct rlb_json *j, const char *s, size_t n)
{
    struct fy_node *v = fy_node_create_scalar_copy(j->doc, s ? s : "", s ? n : 0);
    if (v && fy_node_set_tag(v, "!!str", 5) != 0) {
        fy_node_free(v);
        return NULL;
    }
    return v;
}

struct fy_node *rlb_json_str(struct rlb_json *j, const char *s)
{
    return rlb_json_strn(j, s, s ? strlen(s) : 0);
}

static struct fy_node *plain(struct rlb_json *j, const char *text)
{
    return fy_node_create_scalar_copy(j->doc, text, strlen(text));
}

struct fy_node *rlb_json_int(struct rlb_json *j, int64_t v)
{
    char b[32];
    snprintf(b, sizeof(b), "%lld", (long long)v);
    return plain(j, b);
}

struct fy_node *rlb_json_uint(struct rlb_json *j, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return plain(j, b);
}

struct fy_node *rlb_json_num(struct rlb_json *j, double v)
{
    char b[64];
    if (!isfinite(v))
        return plain(j, "null");
    snprintf(b, sizeof(b), "%.10g", v);
    return plain(j, b);
}

struct fy_node *rlb_json_bool(struct rlb_json *j, bool v) { return plain(j, v ? "true" : "false"); }

struct fy_node *rlb_json_null(struct rlb_json *j) { return plain(j, "null"); }

int rlb_json_set(struct rlb_json *j, struct fy_node *obj, const char *key, struct fy_node *val)
{
    if (!val)
        return -ENOMEM;
    struct fy_node *k = rlb_json_str(j, key);
    if (!k || fy_node_mapping_append(obj, k, val) != 0)
        return -ENOMEM;
    return 0;
}

int rlb_json_push(struct fy_node *arr, struct fy_node *val)
{
    if (!val || fy_node_sequence_append(arr, val) != 0)
        return -ENOMEM;
    return 0;
}

char *rlb_json_emit(struct rlb_json *j, struct fy_node *root, bool pretty)
{
    if (fy_document_set_root(j->doc, root) != 0)
        return NULL;
    char *s = fy_emit_document_to_string(
        j->doc, (enum fy_emitter_cfg_flags)(pretty ? FYECF_MODE_JSON : FYECF_MODE_JSON_ONELINE));
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n == 0 || s[n - 1] != '\n') {
        char *t = realloc(s, n + 2);
        if (!t) {
            free(s);
            return NULL;
        }
        s = t;
        s[n] = '\n';
        s[n + 1] = 0;
    }
    return s;
}
