/* action.h — what the rule actions produce: redirect locations and stickiness cookies.
 *
 * Redirects expand the ALB placeholders #{protocol} #{host} #{port} #{path} #{query} (SPEC
 * 3.5) from the request. Target-group stickiness (AWSALBTG) cookies are opaque and signed:
 * base64url(version | expiry | group id | HMAC-SHA256 tag), with a process-wide 32-byte key
 * set once at start (stickiness_key_file, or random) and read-only afterwards, so any worker
 * may sign and verify without locks.
 */
#ifndef RINGLB_ACTION_H
#define RINGLB_ACTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"
#include "ringlb/router.h"

#define RLB_STICKY_COOKIE "AWSALBTG"
#define RLB_STICKY_COOKIE_LEN 43 /* base64url of 32 bytes, unpadded */

/* Write "scheme://host[:port]/path[?query]" for redirect action `a` answering request `rq`
 * received on listener `lc` into out (NUL-terminated). Returns the length, or 0 when it does
 * not fit. Any thread. */
size_t rlb_action_redirect_url(const struct rlb_action *a, const struct rlb_listener_cfg *lc,
                               const struct rlb_route_request *rq, char *out, size_t cap);

/* Set the stickiness key: 32 bytes from `key_file` (its content, whitespace-trimmed, as raw
 * bytes when exactly 32, else as 64 hex digits), or random when key_file is NULL.
 * Returns 0 or -errno (file unreadable or not a 32-byte key). Main thread, before workers. */
int rlb_sticky_key_init(const char *key_file);

/* Set the key from 64 hex digits (the fleet key kept in etcd, cluster.h). Call before the
 * workers start: workers read the key without synchronisation. Returns 0 or -EINVAL. */
int rlb_sticky_key_set_hex(const char *hex);

/* Encode a cookie value for group id `group_hash` valid until `expires_s` (epoch seconds).
 * `out` receives RLB_STICKY_COOKIE_LEN characters and a NUL. Any thread. */
void rlb_sticky_encode(uint64_t group_hash, uint64_t expires_s, char *out);

/* Decode and verify a cookie value: true when the signature is valid and it has not expired
 * at `now_s`; then *group_hash is set. Any thread. */
bool rlb_sticky_decode(const char *v, size_t len, uint64_t now_s, uint64_t *group_hash);

/* Find cookie `name` in the request's Cookie headers; returns its value span or NULL. */
const char *rlb_cookie_find(const struct rlb_http_head *h, const char *name, size_t *len);

#endif
