/* json.h — building JSON documents with libfyaml (no hand-written JSON printer).
 *
 * A thin layer over a libfyaml document: create nodes, attach them, emit JSON. Strings are
 * tagged !!str so that "10" or "true" stay strings in the output. Nodes belong to the
 * document; rlb_json_free() releases everything. Any thread, one document per thread.
 */
#ifndef RINGLB_JSON_H
#define RINGLB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fy_document;
struct fy_node;

/* A JSON document under construction. Owner: the caller. */
struct rlb_json {
    struct fy_document *doc;
};

/* Start a document. Returns 0 or -ENOMEM. */
int rlb_json_init(struct rlb_json *j);
/* Release the document and every node. */
void rlb_json_free(struct rlb_json *j);

struct fy_node *rlb_json_obj(struct rlb_json *j);
struct fy_node *rlb_json_arr(struct rlb_json *j);
struct fy_node *rlb_json_str(struct rlb_json *j, const char *s);
struct fy_node *rlb_json_strn(struct rlb_json *j, const char *s, size_t n);
struct fy_node *rlb_json_int(struct rlb_json *j, int64_t v);
struct fy_node *rlb_json_uint(struct rlb_json *j, uint64_t v);
struct fy_node *rlb_json_num(struct rlb_json *j, double v);
struct fy_node *rlb_json_bool(struct rlb_json *j, bool v);
struct fy_node *rlb_json_null(struct rlb_json *j);

/* obj[key] = val (val may be NULL: then nothing is added). Returns 0 or -ENOMEM. */
int rlb_json_set(struct rlb_json *j, struct fy_node *obj, const char *key, struct fy_node *val);
/* arr.push(val). Returns 0 or -ENOMEM. */
int rlb_json_push(struct fy_node *arr, struct fy_node *val);

/* Emit `root` as JSON text (pretty when `pretty`, else one line), NUL-terminated, ending with
 * a newline. The caller frees the result with free(). NULL on ENOMEM. */
char *rlb_json_emit(struct rlb_json *j, struct fy_node *root, bool pretty);

#endif
