/* router.h — listener rule matching (SPEC 3.4), compiled when a snapshot is built.
 *
 * Rules are evaluated by ascending priority and the first whose every condition matches wins.
 * To keep the cost flat in the number of rules, a listener's rules are indexed at snapshot
 * build time:
 *   - rules whose host_header values are all exact names go into a hash table by host;
 *   - rules without a host condition go into a byte trie keyed by the literal prefix that
 *     every one of their path patterns starts with (empty prefix: the root);
 *   - the rest (wildcard hosts) stay in a short list that is always a candidate.
 * A request collects the candidates of its host bucket, of the trie nodes along its path and
 * of the wildcard list, and evaluates them in priority order; only candidates are evaluated.
 * The index is immutable and shared by every worker.
 */
#ifndef RINGLB_ROUTER_H
#define RINGLB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ringlb/config.h"
#include "ringlb/http1.h"

struct rlb_router;

/* Build the index of lc->rules (which must stay alive and unchanged while the router is
 * used). NULL on ENOMEM. Main thread. */
struct rlb_router *rlb_router_build(const struct rlb_listener_cfg *lc);

/* Free a router built by rlb_router_build(). NULL is accepted. */
void rlb_router_free(struct rlb_router *r);

/* The request facts rules look at. Spans are not NUL-terminated. */
struct rlb_route_request {
    const char *method; size_t method_len;
    const char *host; size_t host_len;   /* Host header value (may carry a port), or NULL */
    const char *path; size_t path_len;   /* without the query */
    const char *query; size_t query_len; /* after '?', or NULL */
    const struct rlb_http_head *head;    /* for http_header conditions (may be NULL) */
    const struct sockaddr *peer;         /* TCP peer for source_ip */
};

/* Fill `rq` from a parsed request head and the client address. */
void rlb_route_request_from_head(struct rlb_route_request *rq, const struct rlb_http_head *h,
                                 const struct sockaddr *peer);

/* Index (into lc->rules) of the first matching rule, or -1 for the default action.
 * `evaluated` (may be NULL) receives the number of rules whose conditions were evaluated. */
int rlb_router_match(const struct rlb_router *r, const struct rlb_route_request *rq,
                     unsigned *evaluated);

/* Does rule `rule` match `rq`? (All conditions; used by the index and by `ringlb route`.) */
bool rlb_rule_matches(const struct rlb_rule *rule, const struct rlb_route_request *rq);

/* ALB wildcard match: `*` any run (also empty), `?` exactly one character; `fold` compares
 * ASCII case-insensitively. With `escapes`, `\*` and `\?` in the pattern match literally. */
bool rlb_wildcard_match(const char *pat, const char *s, size_t n, bool fold, bool escapes);

#endif
