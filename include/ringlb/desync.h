/* desync.h — HTTP desync (request smuggling) classification of request heads, as the ALB does.
 *
 * Every request head is classified Compliant / Acceptable / Ambiguous / Severe with one of the
 * reasons the ALB logs in its access log (classification, classification_reason), following
 * the semantics of AWS's http_desync_guardian, the library behind the ALB's desync
 * mitigation modes. The classifier reads the raw bytes of the head itself and does not depend
 * on what llhttp accepts or how leniently: bare CR/LF, NUL and control characters, obs-fold,
 * whitespace before a colon, look-alike Transfer-Encoding/Content-Length names, obfuscated or
 * repeated framing headers, request-line oddities.
 *
 * Pure functions: no state, no allocation, any thread. One pass over the head.
 */
#ifndef RINGLB_DESYNC_H
#define RINGLB_DESYNC_H

#include <stddef.h>

#include "ringlb/config.h"

/* Risk tiers, in increasing order (comparisons between tiers are meaningful). */
enum rlb_desync_tier {
    RLB_DESYNC_COMPLIANT,  /* RFC 7230/9112 compliant */
    RLB_DESYNC_ACCEPTABLE, /* not compliant, no known desync risk */
    RLB_DESYNC_AMBIGUOUS,  /* servers and proxies may disagree on it: a desync risk */
    RLB_DESYNC_SEVERE,     /* malformed or crafted: a high desync risk */
};

/* Classification reasons: the ALB's classification_reason values. Each belongs to exactly one
 * tier (rlb_desync_reason_tier()); the comment gives it. */
enum rlb_desync_reason {
    RLB_DESYNC_REASON_COMPLIANT,                   /* Compliant */
    RLB_DESYNC_REASON_NON_COMPLIANT_HEADER,        /* Acceptable: CTL/non-ASCII in a header */
    RLB_DESYNC_REASON_SPACE_IN_URI,                /* Acceptable: unescaped space in the URI */
    RLB_DESYNC_REASON_NON_COMPLIANT_VERSION,       /* Acceptable: HTTP/0.9, 1.2-1.9, spaces */
    RLB_DESYNC_REASON_GET_HEAD_ZERO_CONTENT_LENGTH, /* Acceptable: GET/HEAD + CL: 0 */
    RLB_DESYNC_REASON_EMPTY_HEADER,                /* Ambiguous: empty/whitespace field name */
    RLB_DESYNC_REASON_AMBIGUOUS_URI,               /* Ambiguous: CTL in the URI, missing URI */
    RLB_DESYNC_REASON_UNDEFINED_CONTENT_LENGTH_SEMANTICS,    /* Ambiguous: CL on GET/HEAD/0.9 */
    RLB_DESYNC_REASON_UNDEFINED_TRANSFER_ENCODING_SEMANTICS, /* Ambiguous: TE on GET/HEAD/1.0 */
    RLB_DESYNC_REASON_DUPLICATE_CONTENT_LENGTH,    /* Ambiguous: CL repeated, same value */
    RLB_DESYNC_REASON_BOTH_TE_CL_PRESENT,          /* Ambiguous: Transfer-Encoding + CL */
    RLB_DESYNC_REASON_SUSPICIOUS_HEADER,           /* Ambiguous: TE/CL look-alike name */
    RLB_DESYNC_REASON_BAD_HEADER,                  /* Severe: NUL/CR/LF, obs-fold, no colon */
    RLB_DESYNC_REASON_BAD_URI,                     /* Severe: NUL/CR/LF in the URI */
    RLB_DESYNC_REASON_BAD_VERSION,                 /* Severe: malformed version */
    RLB_DESYNC_REASON_MULTIPLE_CONTENT_LENGTH,     /* Severe: CL repeated, different values */
    RLB_DESYNC_REASON_BAD_CONTENT_LENGTH,          /* Severe: CL not a plain decimal number */
    RLB_DESYNC_REASON_MULTIPLE_TRANSFER_ENCODING_CHUNKED, /* Severe: chunked twice */
    RLB_DESYNC_REASON_BAD_TRANSFER_ENCODING,       /* Severe: unknown coding, chunked not last */
    RLB_DESYNC_REASON_BAD_METHOD,                  /* Severe: method not a token */
    RLB_DESYNC_REASON_COUNT
};

/* The verdict for one request: the highest tier found and the first reason (in the
 * guardian's order of checks) at that tier. */
struct rlb_desync_result {
    enum rlb_desync_tier tier;
    enum rlb_desync_reason reason;
};

/* What to do with a request, given the listener's desync_mitigation_mode and its tier. */
enum rlb_desync_action {
    RLB_DESYNC_ACT_FORWARD,       /* forward; keep-alive as usual */
    RLB_DESYNC_ACT_FORWARD_CLOSE, /* forward, then close the client and target connections */
    RLB_DESYNC_ACT_REJECT,        /* answer 400 and close the client connection */
};

/* Classify the request head `head[0..len)`: the exact bytes from the first byte of the
 * request line to the end of the empty line that ends the head (as rlb_http1_scan() frames
 * it). Bytes after the first empty line are not examined; a head without one is Severe
 * (BadHeader). `head` need not be NUL-terminated and may contain any bytes.
 *
 * Where the raw bytes allow more than one reading, the reading the guardian's test corpus
 * describes is taken (a line that ends in a bare LF, for instance, is a header or URI that
 * contains an LF), and where the guardian is lenient on something RFC 9112 says a server must
 * reject and that changes message framing, the classifier is strict (see src/desync.c).
 * Pure; no allocation; O(len); any thread. */
struct rlb_desync_result rlb_desync_classify(const char *head, size_t len);

/* The action for `tier` under `mode`, as the ALB applies its modes:
 *   monitor:   everything is forwarded;
 *   defensive: Compliant and Acceptable forwarded, Ambiguous forwarded then both connections
 *              closed, Severe rejected (400, close);
 *   strictest: Compliant forwarded, everything else rejected (400, close). */
enum rlb_desync_action rlb_desync_action(enum rlb_desync_mode mode, enum rlb_desync_tier tier);

/* The tier a reason belongs to. */
enum rlb_desync_tier rlb_desync_reason_tier(enum rlb_desync_reason reason);

/* "Compliant", "Acceptable", "Ambiguous" or "Severe" (the access log's classification);
 * "Unknown" for an out-of-range value. Static storage. */
const char *rlb_desync_tier_name(enum rlb_desync_tier tier);

/* The reason as the ALB logs it ("BothTeClPresent", ...; "Compliant" for none);
 * "Unknown" for an out-of-range value. Static storage. */
const char *rlb_desync_reason_name(enum rlb_desync_reason reason);

#endif
