/* http1.h — HTTP/1.x heads: framing, parsing (llhttp), rewriting, LB-generated responses.
 *
 * A head is parsed in one go from contiguous memory once its end is known (the framer finds
 * the blank line incrementally, so a slow client costs O(n) in total). Parsing fills a
 * struct rlb_http_head whose spans point into that memory; the head is then re-serialised for
 * the other side — which is also how bare-LF line ends and odd whitespace are never forwarded
 * as received. Bodies are not parsed here beyond framing: the same llhttp parser continues
 * over the body to find where the message ends (see struct rlb_http_ctx).
 */
#ifndef RINGLB_HTTP1_H
#define RINGLB_HTTP1_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"

#define RLB_MAX_REQUEST_LINE (16u * 1024u)
#define RLB_MAX_HEADER_LINE (16u * 1024u)
#define RLB_MAX_REQUEST_HEAD (64u * 1024u)
#define RLB_MAX_RESPONSE_HEAD (32u * 1024u)
#define RLB_MAX_HEADERS 1024u

/* One header field; spans into the parsed head. */
struct rlb_hdr {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
};

/* A parsed head. Owner: whoever parsed it; valid while the head bytes are. */
struct rlb_http_head {
    const char *method; uint32_t method_len;
    const char *url;    uint32_t url_len;
    const char *reason; uint32_t reason_len;
    uint16_t status;
    uint8_t major, minor;
    uint8_t method_id;          /* enum llhttp_method */
    bool keep_alive;            /* llhttp_should_keep_alive() after the head */
    bool chunked;               /* Transfer-Encoding: chunked (last coding) */
    bool has_content_length;
    bool has_transfer_encoding;
    bool upgrade;               /* Connection: upgrade + Upgrade present (request) */
    bool expect_continue;
    bool bad_value;             /* a header value holds NUL or another forbidden control */
    uint64_t content_length;
    uint32_t head_len;          /* bytes of the head including the blank line */
    uint32_t n_hdrs;
    struct rlb_hdr hdrs[RLB_MAX_HEADERS];
};

/* Parser context: what llhttp callbacks write to (parser->data). Owner: the exchange. */
struct rlb_http_ctx {
    struct rlb_http_head *head; /* NULL while parsing a body */
    bool headers_done;
    bool message_done;
    bool skip_body;             /* response to HEAD: no body whatever the headers say */
    bool too_many_headers;
    /* Body spans (for de-chunking), collected while parsing a body when `collect` is set. */
    bool collect;
    uint32_t n_spans;
    struct { const char *p; uint32_t len; } spans[64];
};

/* Incremental search for the end of a head (the first empty line, CRLF or bare LF).
 * `state` and `*scanned` carry progress between calls over a growing input; the caller passes
 * the bytes from offset *scanned on. Returns the head length (from the head's first byte)
 * when found, else 0. Bytes before the first line are not skipped. */
struct rlb_head_scan {
    uint32_t scanned;    /* bytes examined so far */
    uint32_t first_line; /* length of the first line incl. LF once seen, else 0 */
    uint8_t state;
};
uint32_t rlb_http1_scan(struct rlb_head_scan *sc, const char *data, uint32_t len);

/* Grow a span that llhttp delivers in one or more callbacks over contiguous memory: the first
 * call sets *start, every call moves the end to at + n. */
static inline void rlb_span_extend(const char **start, size_t *len, const char *at, size_t n)
{
    if (!*start)
        *start = at;
    *len = (size_t)(at + n - *start);
}

/* The llhttp settings shared by every parser of ringlb (callbacks fill rlb_http_ctx). */
const llhttp_settings_t *rlb_http1_settings(void);

/* Parse a complete head in `buf` (exactly `len` bytes, ending with the blank line) with `p`,
 * which must have been initialised for the right type with rlb_http1_settings() and
 * p->data = ctx. Fills ctx->head. Returns HPE_OK or an llhttp error code. The parser is left
 * ready to continue with the body. Line breaks that llhttp leaves inside a value (obs-fold)
 * are replaced by spaces in place, as RFC 9112 allows, so they are never forwarded; NUL and
 * other control characters in a value set head->bad_value. */
int rlb_http1_parse_head(llhttp_t *p, struct rlb_http_ctx *ctx, char *buf, uint32_t len);

/* True when s[0..len) is a non-empty RFC 9110 token (the only valid header field names). */
bool rlb_http1_is_token(const char *s, uint32_t len);

/* Case-insensitive comparison of a header name with a NUL-terminated lower-case name. */
bool rlb_http1_name_is(const struct rlb_hdr *h, const char *lname);

/* The first header called `lname` (lower-case) or NULL. */
const struct rlb_hdr *rlb_http1_find(const struct rlb_http_head *h, const char *lname);

/* Facts about the client connection that go into the forwarded request. */
struct rlb_forward_info {
    const char *client_ip;     /* textual, no brackets */
    uint16_t client_port;
    uint16_t listener_port;
    const char *listener_host; /* for HTTP/1.0 requests without Host */
    bool https;
    enum rlb_xff_mode xff;
    bool xff_client_port;
    bool preserve_host;
    uint64_t now_s;            /* epoch seconds for the trace id */
    uint64_t rand[2];          /* 128 random bits for the trace id */
};

/* Count of addresses in the request's X-Forwarded-For headers. */
unsigned rlb_http1_xff_count(const struct rlb_http_head *h);

/* Serialise the request to send to a target: request line (HTTP/1.1), end-to-end headers,
 * Host as the ALB sends it, X-Forwarded-*, X-Amzn-Trace-Id, Connection/Upgrade for upgrades.
 * Returns the length written, or 0 when `cap` is too small. */
uint32_t rlb_http1_write_request(char *out, uint32_t cap, const struct rlb_http_head *h,
                                 const struct rlb_forward_info *fi);

/* Upper bound of rlb_http1_write_request()'s output for `h`. */
uint32_t rlb_http1_request_bound(const struct rlb_http_head *h);

enum {
    RLB_RESP_CLOSE = 1,     /* tell the client the connection closes */
    RLB_RESP_HTTP10 = 2,    /* the client speaks HTTP/1.0 */
    RLB_RESP_DECHUNK = 4,   /* the body will be sent de-chunked (drop Transfer-Encoding) */
    RLB_RESP_KEEPALIVE10 = 8, /* HTTP/1.0 client asked for keep-alive and gets it */
};

/* Serialise a target's response head for the client (flags RLB_RESP_*), adding the header
 * lines `extra` (each ending in CRLF; may be NULL). Returns the length or 0 when `cap` is too
 * small. */
uint32_t rlb_http1_write_response(char *out, uint32_t cap, const struct rlb_http_head *h,
                                  unsigned flags, const char *extra);

/* Upper bound of rlb_http1_write_response()'s output for `h`. */
uint32_t rlb_http1_response_bound(const struct rlb_http_head *h);

/* The standard reason phrase of `status` ("Unknown" when none). */
const char *rlb_http1_reason(int status);

/* Write a complete LB-generated response: the ALB's HTML error page for `status` when
 * `content_type` is NULL, else the given body. Adds Server: awselb/2.0, Date, Content-Length,
 * Connection (close or keep-alive), extra header lines `extra` (may be NULL, each ending in
 * CRLF). `head_only` omits the body (HEAD). Returns the length or 0 when `cap` is too small. */
uint32_t rlb_http1_write_local(char *out, uint32_t cap, int status, const char *content_type,
                               const char *body, uint32_t body_len, const char *extra,
                               bool close, bool head_only);

/* The current time as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), cached per thread
 * per second. Returns a pointer to thread-local storage (29 characters). */
const char *rlb_http1_date(void);

/* `t` (epoch seconds) as an IMF-fixdate, in thread-local storage overwritten by the next call. */
const char *rlb_http1_date_at(uint64_t t);

#endif
