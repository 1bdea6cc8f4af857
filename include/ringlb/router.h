/* router.h — listener rule evaluation (SPEC 3.4).
 *
 * Rules are evaluated in ascending priority; the first whose every condition matches wins.
 * This is the straightforward evaluator; it reads only the immutable snapshot and the parsed
 * request head, so any worker may call it concurrently.
 */
#ifndef RINGLB_ROUTER_H
#define RINGLB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "ringlb/http1.h"
#include "ringlb/snapshot.h"

/* Index (into lst->cfg->rules) of the first matching rule, or -1 for the default action. */
int rlb_router_match(const struct rlb_listener *lst, const struct rlb_http_head *h,
                     const struct sockaddr *peer);

/* ALB wildcard match: `*` any run (also empty), `?` exactly one character; `fold` compares
 * ASCII case-insensitively. `\*` and `\?` in the pattern match literally when `escapes`. */
bool rlb_wildcard_match(const char *pat, const char *s, size_t n, bool fold, bool escapes);

#endif
