/* json_read.h — reading JSON documents with libfyaml (admin request bodies, the state file).
 *
 * The reading half of json.h: parse a JSON text (libfyaml in forced JSON mode, diagnostics
 * collected instead of printed) and pick typed values out of it. Strict like the
 * configuration: strings must be JSON strings, numbers plain integers, and an object's keys
 * can be checked against a list of allowed names. Any thread, one document per thread.
 */
#ifndef RINGLB_JSON_READ_H
#define RINGLB_JSON_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fy_document;
struct fy_node;

/* Parse `len` bytes of JSON. Returns the document (free with fy_document_destroy()) or NULL
 * with a message ("line L, column C: ...") in err[errlen]. The document points into `text`:
 * the text must stay valid and unchanged until the document is destroyed. An empty text, or one whose root is
 * not an object or an array, is an error as well. */
struct fy_document *rlb_json_parse(const char *text, size_t len, char *err, size_t errlen);

/* True when `n` is an object / an array. */
bool rlb_json_is_obj(struct fy_node *n);
bool rlb_json_is_arr(struct fy_node *n);

/* obj[key], or NULL when obj is not an object or has no such key. */
struct fy_node *rlb_json_get(struct fy_node *obj, const char *key);

/* A JSON string: stores its (unescaped) bytes and length. Returns 0, or -EINVAL when `n` is
 * not a string or holds a NUL byte. The bytes belong to the document. */
int rlb_json_get_str(struct fy_node *n, const char **s, size_t *len);

/* A JSON integer within [min, max]. Returns 0 or -EINVAL (not a number, a fraction, out of
 * range). */
int rlb_json_get_int(struct fy_node *n, int64_t min, int64_t max, int64_t *out);

/* A JSON true/false. Returns 0 or -EINVAL. */
int rlb_json_get_bool(struct fy_node *n, bool *out);

/* Check that every key of object `obj` is one of the NULL-terminated `allowed` names.
 * Returns 0, or -EINVAL with "unknown key \"K\"" in err[errlen]. */
int rlb_json_check_keys(struct fy_node *obj, const char *const *allowed, char *err,
                        size_t errlen);

#endif
