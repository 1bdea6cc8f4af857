/* http1.c — HTTP/1.x head framing, llhttp glue, head rewriting and LB responses.
 *
 * Rewriting follows the ALB: hop-by-hop headers (Connection, Keep-Alive, Proxy-Connection, TE,
 * Upgrade and every header Connection names) never cross; the request gains X-Forwarded-For
 * (per the listener's xff mode), X-Forwarded-Proto, X-Forwarded-Port (replacing incoming
 * values) and X-Amzn-Trace-Id (an incoming Root is kept, Self= is inserted before it).
 */
#include "ringlb/http1.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- framing ---------------------------------------------------------------------------- */

uint32_t rlb_http1_scan(struct rlb_head_scan *sc, const char *data, uint32_t len)
{
    /* state: 0 inside a line, 1 just after LF, 2 after LF CR */
    uint32_t i = 0;
    uint8_t st = sc->state;
    while (i < len) {
        if (st == 0) {
            const char *nl = memchr(data + i, '\n', len - i);
            if (!nl) {
                i = len;
                break;
            }
            i = (uint32_t)(nl - data) + 1;
            if (!sc->first_line)
                sc->first_line = sc->scanned + i;
            st = 1;
            continue;
        }
        char ch = data[i++];
        if (ch == '\n') {
            sc->scanned += i;
            sc->state = 0;
            return sc->scanned;
        }
        if (ch == '\r' && st == 1)
            st = 2;
        else
            st = 0;
        if (st == 0 && ch != '\n') {
            /* back inside a line: continue with memchr */
        }
    }
    sc->scanned += i;
    sc->state = st;
    return 0;
}

/* ---- llhttp glue ------------------------------------------------------------------------ */

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_http_ctx *c = p->data;
    if (c->head) {
        c->head->method = at;
        c->head->method_len = (uint32_t)len;
    }
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_http_ctx *c = p->data;
    if (c->head) {
        if (!c->head->url)
            c->head->url = at;
        c->head->url_len = (uint32_t)(at + len - c->head->url);
    }
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_http_ctx *c = p->data;
    if (c->head) {
        if (!c->head->reason)
            c->head->reason = at;
        c->head->reason_len = (uint32_t)(at + len - c->head->reason);
    }
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_http_ctx *c = p->data;
    struct rlb_http_head *h = c->head;
    if (!h)
        return 0; /* trailers: ignored (forwarded raw) */
    if (h->n_hdrs > 0) {
        struct rlb_hdr *last = &h->hdrs[h->n_hdrs - 1];
        if (last->value == NULL && last->name + last->name_len == at) {
            last->name_len += (uint32_t)len; /* continuation of the same name */
            return 0;
        }
    }
    if (h->n_hdrs == RLB_MAX_HEADERS) {
        c->too_many_headers = true;
        return HPE_USER;
    }
    struct rlb_hdr *hd = &h->hdrs[h->n_hdrs++];
    hd->name = at;
    hd->name_len = (uint32_t)len;
    hd->value = NULL;
    hd->value_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_http_ctx *c = p->data;
    struct rlb_http_head *h = c->head;
    if (!h || h->n_hdrs == 0)
        return 0;
    struct rlb_hdr *hd = &h->hdrs[h->n_hdrs - 1];
    if (!hd->value)
        hd->value = at;
    hd->value_len = (uint32_t)(at + len - hd->value);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct rlb_http_ctx *c = p->data;
    c->headers_done = true;
    return c->skip_body ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_http_ctx *c = p->data;
    if (c->collect) {
        if (c->n_spans > 0 && c->spans[c->n_spans - 1].p + c->spans[c->n_spans - 1].len == at) {
            c->spans[c->n_spans - 1].len += (uint32_t)len;
            return 0;
        }
        if (c->n_spans == sizeof(c->spans) / sizeof(c->spans[0]))
            return HPE_USER; /* cannot happen with <= 64 chunks per buffer limit */
        c->spans[c->n_spans].p = at;
        c->spans[c->n_spans].len = (uint32_t)len;
        c->n_spans++;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct rlb_http_ctx *c = p->data;
    c->message_done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static int settings_ready;

const llhttp_settings_t *rlb_http1_settings(void)
{
    if (!settings_ready) {
        /* Idempotent; the first call happens on the main thread before workers start. */
        llhttp_settings_init(&settings);
        settings.on_method = on_method;
        settings.on_url = on_url;
        settings.on_status = on_status;
        settings.on_header_field = on_header_field;
        settings.on_header_value = on_header_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
        settings_ready = 1;
    }
    return &settings;
}

bool rlb_http1_is_token(const char *s, uint32_t len)
{
    /* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" /
     *         "|" / "~" / DIGIT / ALPHA */
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (len == 0)
        return false;
    for (uint32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            continue;
        if (c == 0 || !strchr(extra, c))
            return false;
    }
    return true;
}

static bool ieq(const char *a, uint32_t alen, const char *lname)
{
    size_t n = strlen(lname);
    return alen == n && strncasecmp(a, lname, n) == 0;
}

bool rlb_http1_name_is(const struct rlb_hdr *h, const char *lname)
{
    return ieq(h->name, h->name_len, lname);
}

const struct rlb_hdr *rlb_http1_find(const struct rlb_http_head *h, const char *lname)
{
    for (uint32_t i = 0; i < h->n_hdrs; i++)
        if (rlb_http1_name_is(&h->hdrs[i], lname))
            return &h->hdrs[i];
    return NULL;
}

/* Does the comma-separated list `v` contain token `tok` (case-insensitive)? */
static bool list_has(const char *v, uint32_t len, const char *tok)
{
    size_t tl = strlen(tok);
    uint32_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        uint32_t s = i;
        while (i < len && v[i] != ',')
            i++;
        uint32_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

int rlb_http1_parse_head(llhttp_t *p, struct rlb_http_ctx *ctx, char *buf, uint32_t len)
{
    struct rlb_http_head *h = ctx->head;
    h->method = h->url = h->reason = NULL;
    h->method_len = h->url_len = h->reason_len = 0;
    h->n_hdrs = 0;
    h->chunked = h->has_content_length = h->has_transfer_encoding = false;
    h->upgrade = h->expect_continue = false;
    h->bad_value = false;
    h->content_length = 0;
    h->head_len = len;
    ctx->headers_done = ctx->message_done = false;
    ctx->too_many_headers = false;
    int err = llhttp_execute(p, buf, len);
    if (err == HPE_PAUSED_UPGRADE || (err == HPE_PAUSED && ctx->message_done)) {
        /* Head (and, without a body, message) complete. */
    } else if (err != HPE_OK) {
        return err;
    }
    if (!ctx->headers_done)
        return HPE_INVALID_EOF_STATE;
    h->major = p->http_major;
    h->minor = p->http_minor;
    h->method_id = p->method;
    h->status = p->status_code;
    h->keep_alive = llhttp_should_keep_alive(p) != 0;
    bool conn_upgrade = false;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        struct rlb_hdr *hd = &h->hdrs[i];
        if (!hd->value)
            hd->value = hd->name + hd->name_len;
        /* Values point into buf (writable): fold line breaks into spaces, flag controls. */
        char *v = (char *)hd->value;
        for (uint32_t k = 0; k < hd->value_len; k++) {
            unsigned char ch = (unsigned char)v[k];
            if (ch == '\r' || ch == '\n')
                v[k] = ' ';
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                h->bad_value = true;
        }
        while (hd->value_len > 0 &&
               (hd->value[hd->value_len - 1] == ' ' || hd->value[hd->value_len - 1] == '\t'))
            hd->value_len--;
        switch (hd->name_len) {
        case 6:
            if (rlb_http1_name_is(hd, "expect") &&
                ieq(hd->value, hd->value_len, "100-continue"))
                h->expect_continue = true;
            break;
        case 10:
            if (rlb_http1_name_is(hd, "connection") && list_has(hd->value, hd->value_len,
                                                                "upgrade"))
                conn_upgrade = true;
            break;
        case 14:
            if (rlb_http1_name_is(hd, "content-length"))
                h->has_content_length = true;
            break;
        case 17:
            if (rlb_http1_name_is(hd, "transfer-encoding"))
                h->has_transfer_encoding = true;
            break;
        default:
            break;
        }
    }
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    h->upgrade = conn_upgrade && rlb_http1_find(h, "upgrade") != NULL;
    if (err == HPE_PAUSED_UPGRADE || err == HPE_PAUSED)
        llhttp_resume(p);
    return HPE_OK;
}

/* ---- serialisation ---------------------------------------------------------------------- */

struct out {
    char *p;
    char *end;
    bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->overflow || (size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* Decimal digits of v (no snprintf: this runs several times per request). */
static void put_u(struct out *o, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof(tmp) - i);
}

static void put_hdr(struct out *o, const struct rlb_hdr *h)
{
    put(o, h->name, h->name_len);
    put(o, ": ", 2);
    put(o, h->value, h->value_len);
    put(o, "\r\n", 2);
}

/* Is header `hd` hop-by-hop, given the Connection headers of `h`? */
static bool hop_by_hop(const struct rlb_http_head *h, const struct rlb_hdr *hd)
{
    switch (hd->name_len) {
    case 2:
        return rlb_http1_name_is(hd, "te");
    case 7:
        return rlb_http1_name_is(hd, "upgrade");
    case 10:
        if (rlb_http1_name_is(hd, "connection") || rlb_http1_name_is(hd, "keep-alive"))
            return true;
        break;
    case 16:
        if (rlb_http1_name_is(hd, "proxy-connection"))
            return true;
        break;
    default:
        break;
    }
    /* Named by a Connection header? (rare: only then pay for the scan) */
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *c = &h->hdrs[i];
        if (c->name_len == 10 && rlb_http1_name_is(c, "connection")) {
            char name[64];
            if (hd->name_len >= sizeof(name))
                continue;
            for (uint32_t k = 0; k < hd->name_len; k++) {
                char ch = hd->name[k];
                name[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
            }
            name[hd->name_len] = 0;
            /* Never let Connection strip the framing headers. */
            if (strcmp(name, "content-length") == 0 || strcmp(name, "transfer-encoding") == 0 ||
                strcmp(name, "host") == 0)
                return false;
            if (list_has(c->value, c->value_len, name))
                return true;
        }
    }
    return false;
}

unsigned rlb_http1_xff_count(const struct rlb_http_head *h)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *hd = &h->hdrs[i];
        if (hd->name_len != 15 || !rlb_http1_name_is(hd, "x-forwarded-for"))
            continue;
        bool any = false;
        for (uint32_t k = 0; k < hd->value_len; k++) {
            char ch = hd->value[k];
            if (ch == ',') {
                if (any)
                    n++;
                any = false;
            } else if (ch != ' ' && ch != '\t') {
                any = true;
            }
        }
        if (any)
            n++;
    }
    return n;
}

uint32_t rlb_http1_request_bound(const struct rlb_http_head *h)
{
    /* Everything received plus the headers ringlb adds (generous). */
    return h->head_len + 64 + 512 + (uint32_t)h->n_hdrs * 4;
}

static const char hexd[] = "0123456789abcdef";

static void put_hex(struct out *o, uint64_t v, int digits)
{
    char tmp[16];
    for (int i = digits - 1; i >= 0; i--) {
        tmp[i] = hexd[v & 15];
        v >>= 4;
    }
    put(o, tmp, (size_t)digits);
}

static void put_trace_part(struct out *o, const struct rlb_forward_info *fi)
{
    puts_(o, "1-");
    put_hex(o, fi->now_s & 0xffffffffu, 8);
    put(o, "-", 1);
    put_hex(o, fi->rand[0] & 0xffffffffffffull, 12);
    put_hex(o, fi->rand[1] & 0xffffffffffffull, 12);
}

/* Does the trace header value carry a valid Root=1-8hex-24hex field? */
static bool trace_has_root(const struct rlb_hdr *hd)
{
    const char *v = hd->value;
    uint32_t len = hd->value_len;
    for (uint32_t i = 0; i + 5 <= len; i++) {
        if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ') && strncmp(v + i, "Root=", 5) == 0) {
            uint32_t s = i + 5, e = s;
            while (e < len && v[e] != ';')
                e++;
            if (e - s != 35 || v[s] != '1' || v[s + 1] != '-' || v[s + 10] != '-')
                return false;
            for (uint32_t k = s + 2; k < e; k++)
                if (k != s + 10 && !strchr(hexd, v[k]) && !(v[k] >= 'A' && v[k] <= 'F'))
                    return false;
            return true;
        }
    }
    return false;
}

uint32_t rlb_http1_write_request(char *out, uint32_t cap, const struct rlb_http_head *h,
                                 const struct rlb_forward_info *fi)
{
    struct out o = {out, out + cap, false};
    put(&o, h->method, h->method_len);
    put(&o, " ", 1);
    put(&o, h->url, h->url_len);
    puts_(&o, " HTTP/1.1\r\n");

    /* Host first, as the ALB sends it. */
    const struct rlb_hdr *host = rlb_http1_find(h, "host");
    puts_(&o, "Host: ");
    if (!host) {
        puts_(&o, fi->listener_host);
    } else if (fi->preserve_host) {
        put(&o, host->value, host->value_len);
    } else {
        /* Split host and port, minding IPv6 literals. */
        const char *v = host->value;
        uint32_t n = host->value_len, hn = n;
        if (n > 0 && v[0] == '[') {
            const char *rb = memchr(v, ']', n);
            hn = rb ? (uint32_t)(rb - v) + 1 : n;
        } else {
            const char *colon = memchr(v, ':', n);
            if (colon)
                hn = (uint32_t)(colon - v);
        }
        bool has_port = hn < n && v[hn] == ':';
        if (fi->listener_port == 80 || fi->listener_port == 443) {
            put(&o, v, hn);
        } else if (has_port) {
            put(&o, v, n);
        } else {
            put(&o, v, hn);
            put(&o, ":", 1);
            put_u(&o, fi->listener_port);
        }
    }
    puts_(&o, "\r\n");

    const struct rlb_hdr *trace = NULL;
    bool xff_written = false;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *hd = &h->hdrs[i];
        switch (hd->name_len) {
        case 4:
            if (rlb_http1_name_is(hd, "host"))
                continue;
            break;
        case 15:
            if (rlb_http1_name_is(hd, "x-amzn-trace-id")) {
                if (!trace)
                    trace = hd;
                continue;
            }
            if (rlb_http1_name_is(hd, "x-forwarded-for")) {
                if (fi->xff == RLB_XFF_REMOVE)
                    continue;
                if (fi->xff == RLB_XFF_PRESERVE) {
                    put_hdr(&o, hd);
                    continue;
                }
                if (xff_written)
                    continue;
                /* append: one header, every incoming address then the client. */
                puts_(&o, "X-Forwarded-For: ");
                bool first = true;
                for (uint32_t k = i; k < h->n_hdrs; k++) {
                    const struct rlb_hdr *x = &h->hdrs[k];
                    if (x->name_len == 15 && rlb_http1_name_is(x, "x-forwarded-for") &&
                        x->value_len > 0) {
                        if (!first)
                            puts_(&o, ", ");
                        put(&o, x->value, x->value_len);
                        first = false;
                    }
                }
                if (!first)
                    puts_(&o, ", ");
                puts_(&o, fi->client_ip);
                if (fi->xff_client_port) {
                    put(&o, ":", 1);
                    put_u(&o, fi->client_port);
                }
                puts_(&o, "\r\n");
                xff_written = true;
                continue;
            }
            break;
        case 16:
            if (rlb_http1_name_is(hd, "x-forwarded-port") ||
                rlb_http1_name_is(hd, "proxy-connection"))
                continue;
            break;
        case 17:
            if (rlb_http1_name_is(hd, "x-forwarded-proto"))
                continue;
            break;
        default:
            break;
        }
        if (hop_by_hop(h, hd))
            continue;
        put_hdr(&o, hd);
    }
    if (fi->xff == RLB_XFF_APPEND && !xff_written) {
        puts_(&o, "X-Forwarded-For: ");
        puts_(&o, fi->client_ip);
        if (fi->xff_client_port) {
            put(&o, ":", 1);
            put_u(&o, fi->client_port);
        }
        puts_(&o, "\r\n");
    }
    puts_(&o, fi->https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    puts_(&o, "X-Forwarded-Port: ");
    put_u(&o, fi->listener_port);
    puts_(&o, "\r\nX-Amzn-Trace-Id: ");
    if (trace && trace_has_root(trace)) {
        puts_(&o, "Self=");
        put_trace_part(&o, fi);
        put(&o, ";", 1);
        put(&o, trace->value, trace->value_len);
    } else {
        puts_(&o, "Root=");
        put_trace_part(&o, fi);
    }
    puts_(&o, "\r\n");
    if (h->upgrade) {
        const struct rlb_hdr *up = rlb_http1_find(h, "upgrade");
        puts_(&o, "Connection: Upgrade\r\nUpgrade: ");
        put(&o, up->value, up->value_len);
        puts_(&o, "\r\n");
    }
    puts_(&o, "\r\n");
    return o.overflow ? 0 : (uint32_t)(o.p - out);
}

uint32_t rlb_http1_response_bound(const struct rlb_http_head *h)
{
    return h->head_len + 128;
}

uint32_t rlb_http1_write_response(char *out, uint32_t cap, const struct rlb_http_head *h,
                                  unsigned flags, const char *extra)
{
    struct out o = {out, out + cap, false};
    puts_(&o, "HTTP/1.1 ");
    put_u(&o, h->status);
    put(&o, " ", 1);
    if (h->reason_len)
        put(&o, h->reason, h->reason_len);
    else
        puts_(&o, rlb_http1_reason(h->status));
    puts_(&o, "\r\n");
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *hd = &h->hdrs[i];
        if (hop_by_hop(h, hd))
            continue;
        if ((flags & RLB_RESP_DECHUNK) && hd->name_len == 17 &&
            rlb_http1_name_is(hd, "transfer-encoding"))
            continue;
        put_hdr(&o, hd);
    }
    if (extra)
        puts_(&o, extra);
    if (h->status == 101) {
        const struct rlb_hdr *up = rlb_http1_find(h, "upgrade");
        puts_(&o, "Connection: Upgrade\r\n");
        if (up) {
            puts_(&o, "Upgrade: ");
            put(&o, up->value, up->value_len);
            puts_(&o, "\r\n");
        }
    } else if (flags & RLB_RESP_CLOSE) {
        puts_(&o, "Connection: close\r\n");
    } else if (flags & RLB_RESP_KEEPALIVE10) {
        puts_(&o, "Connection: keep-alive\r\n");
    }
    puts_(&o, "\r\n");
    return o.overflow ? 0 : (uint32_t)(o.p - out);
}

const char *rlb_http1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Time-out";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 460: return "Client Closed";
    case 463: return "X-Forwarded-For Header Too Long";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Temporarily Unavailable";
    case 504: return "Gateway Time-out";
    case 505: return "HTTP Version Not Supported";
    default:
        if (status >= 200 && status < 300) return "OK";
        return "Unknown";
    }
}

static _Thread_local time_t date_sec;
static _Thread_local char date_buf[32];

const char *rlb_http1_date(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != date_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(date_buf, sizeof(date_buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_sec = ts.tv_sec;
    }
    return date_buf;
}

const char *rlb_http1_date_at(uint64_t t)
{
    static _Thread_local char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

uint32_t rlb_http1_write_local(char *out, uint32_t cap, int status, const char *content_type,
                               const char *body, uint32_t body_len, const char *extra,
                               bool close, bool head_only)
{
    char page[512];
    const char *reason = rlb_http1_reason(status);
    if (!content_type && !body) {
        int n = snprintf(page, sizeof(page),
                         "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
                         "<center><h1>%d %s</h1></center>\r\n</body>\r\n</html>\r\n",
                         status, reason, status, reason);
        body = page;
        body_len = (uint32_t)n;
        content_type = "text/html";
    }
    struct out o = {out, out + cap, false};
    puts_(&o, "HTTP/1.1 ");
    put_u(&o, (uint64_t)status);
    put(&o, " ", 1);
    puts_(&o, reason);
    puts_(&o, "\r\nServer: awselb/2.0\r\nDate: ");
    puts_(&o, rlb_http1_date());
    puts_(&o, "\r\n");
    if (content_type) {
        puts_(&o, "Content-Type: ");
        puts_(&o, content_type);
        if (strncmp(content_type, "text/", 5) == 0 || strcmp(content_type, "application/json") == 0 ||
            strcmp(content_type, "application/javascript") == 0)
            puts_(&o, "; charset=utf-8");
        puts_(&o, "\r\n");
    }
    puts_(&o, "Content-Length: ");
    put_u(&o, body_len);
    puts_(&o, "\r\n");
    if (extra)
        puts_(&o, extra);
    puts_(&o, close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
    if (!head_only && body_len)
        put(&o, body, body_len);
    return o.overflow ? 0 : (uint32_t)(o.p - out);
}
