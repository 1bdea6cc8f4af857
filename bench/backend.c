/*
 * rlb-backend — the project's own fast HTTP/1.1 backend server.
 *
 * Demo target, integration-test target and benchmark target. One process, N worker threads;
 * each thread owns one SO_REUSEPORT listening socket per --listen address and its own epoll
 * (edge-triggered for connections). Requests are parsed with llhttp; every body (request or
 * response) is streamed through fixed-size buffers, so memory per connection stays bounded
 * whatever the body sizes. The bench path (GET / with keep-alive) copies one precomputed
 * response and allocates nothing.
 *
 *   rlb-backend --listen HOST:PORT [--listen HOST:PORT ...] [--listen-range HOST:P1-P2 ...]
 *               [--threads N] [--name NAME] [--idle-close-ms MS]
 *
 * --listen-range HOST:P1-P2 listens on every port P1..P2 of HOST (at most MAX_LISTEN listeners
 * in all): bench/run.sh --targets uses it for a target group of 1,000 targets.
 *
 * Endpoints (any method unless said; every response carries X-Backend: NAME):
 *   /                 200 "hello from NAME\n" (also every path not listed below)
 *   /health           200 "ok\n";    /health/fail  500 "fail\n"
 *   /headers          200 JSON {"method","target","version","headers":[[n,v]...],"body_bytes"}
 *   /echo             request body streamed back (CL -> same CL, chunked -> chunked)
 *   /sink             body discarded, 200 JSON {"bytes":N}
 *   /bytes/N          N body bytes ('x'; ?pattern=1 -> 'a'+(i%26)); ?chunked=1 or ?chunk=K
 *                     -> chunked encoding with K-byte chunks (default 16384)
 *   /status/N         status N with body "status N\n" (1xx/204/304: no body; after a 1xx the
 *                     connection is closed)
 *   /sleep/MS         200 "slept\n" after MS milliseconds (timer, other connections unaffected)
 *   /close            200 with Connection: close, then close
 *   /stats            200 JSON {"connections":accepted,"requests":total,"active":open}
 *   /ws               WebSocket echo (same opcode; ping answered with pong; close with close)
 *   /bad/garbage      "NOT HTTP AT ALL\r\n\r\n" then close
 *   /bad/bigheader    response whose head carries one 40 KiB header
 *   /bad/reset        RST without a response;   /bad/close  FIN without a response
 *   /bad/cl-conflict  response with two differing Content-Length headers, then close
 *   /bad/cl-te        response with Content-Length and Transfer-Encoding: chunked
 *   /bad/te-not-last  response with Transfer-Encoding: chunked, gzip (chunked not last)
 *   /bad/chunk-size   chunked response whose second chunk size is not hex, then close
 *   /bad/extra        keep-alive response followed by stray bytes on the connection
 * Expect: 100-continue is answered for /echo and /sink. HEAD gets the GET headers, no body.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <openssl/evp.h>

#define RBUF_SIZE    16384           /* input buffer per connection */
#define WBUF_INIT    8192            /* initial output buffer per connection */
#define WBUF_KEEP    (128 * 1024)    /* shrink the output buffer back when idle above this */
#define OUT_HIGH     (64 * 1024)     /* stop parsing/producing while this much output waits */
#define URL_MAX      8192            /* longest request target (414 beyond) */
#define HDR_MAX      (64 * 1024)     /* request head bytes (431 beyond) */
#define WS_KEY_MAX   64
#define LINGER_MS    2000            /* how long a closing connection drains input */
#define RUN_BUDGET   64              /* loop turns per connection before yielding */
#define MAX_LISTEN   4096            /* listening addresses (each thread opens all) */
#define MAX_EVENTS   256
#define MAX_SLEEP_MS (3600 * 1000)
#define BIG_HDR_LEN  (40 * 1024)
#define PAT_SIZE     (OUT_HIGH + 32)
#define DEF_CHUNK    16384

#define CL_CHUNKED   (-1)            /* resp_head: chunked (HTTP/1.1) or close-delimited */
#define CL_NONE      (-2)            /* resp_head: no length header, no body */

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

enum obj_kind { OBJ_LISTENER = 1, OBJ_CONN, OBJ_STOP };

enum route {
    R_HELLO, R_HEALTH, R_HEALTH_FAIL, R_HEADERS, R_ECHO, R_SINK, R_BYTES, R_STATUS, R_SLEEP,
    R_CLOSE, R_STATS, R_WS, R_BAD_GARBAGE, R_BAD_BIGHEADER, R_BAD_RESET, R_BAD_CLOSE,
    R_BAD_CL_CONFLICT, R_BAD_CL_TE, R_BAD_TE_NOT_LAST, R_BAD_CHUNK_SIZE, R_BAD_EXTRA,
    R_BAD_REQUEST,
};

enum conn_mode { M_HTTP, M_WS, M_LINGER };

enum hdr_which { H_OTHER, H_EXPECT, H_UPGRADE, H_WSKEY };

struct dlink {
    struct dlink *prev, *next;
};

struct worker;

struct listener {
    int kind;                        /* OBJ_LISTENER; first member (epoll tag) */
    int fd;
};

struct conn {
    int kind;                        /* OBJ_CONN; first member (epoll tag) */
    int fd;
    struct worker *w;
    struct dlink all;                /* worker's list of every connection */
    struct dlink idle;               /* worker's idle list (when --idle-close-ms > 0) */
    struct dlink ready;              /* worker's list of connections with work left */
    uint64_t idle_since;             /* ms, when it joined the idle list */
    uint64_t wake_at;                /* ms, timer deadline (sleep or linger) */
    size_t heap_idx;                 /* 1-based index in the worker's timer heap, 0 = none */
    llhttp_t parser;
    enum conn_mode mode;
    bool rready, wready;             /* edge-triggered readiness not yet consumed */
    bool peer_eof;                   /* the client sent FIN (read returned 0) */
    bool rdhup;                      /* epoll saw EPOLLRDHUP: read until 0, not short read */
    bool in_idle, in_ready;
    /* current request */
    bool in_msg;                     /* between message begin and message complete */
    bool keep_alive, is_head, http10;
    bool expect_continue, upgrade_ws, record_hdrs;
    bool rec_in_field, rec_in_value;
    bool resp_started, resp_chunked;
    bool close_after, rst_after;     /* close once the output is flushed (RST or FIN) */
    bool sleeping, gen_active, gen_pattern, ws_accepted;
    enum route route;
    int fatal_status;                /* status to answer a parse error with (0 = 400) */
    enum hdr_which hdr_which;
    uint64_t route_arg;              /* N of /bytes/N, /status/N, /sleep/MS */
    uint64_t chunk_size;             /* 0 = not chunked (for /bytes) */
    size_t hdr_bytes;
    uint64_t body_bytes;
    char fname[24];                  /* header name prefix, to spot the few we care about */
    size_t fname_len;
    char vbuf[WS_KEY_MAX + 1];
    size_t vlen;
    char ws_key[WS_KEY_MAX + 1];
    char *hbuf;                      /* recorded headers for /headers: [u32 len][bytes]... */
    size_t hlen, hcap, rec_len_off;
    /* body generator (/bytes) */
    uint64_t gen_left, gen_chunk_left, gen_off;
    /* websocket frame state */
    uint8_t ws_hdr[14];
    size_t ws_hdr_len;
    uint64_t ws_left;
    uint8_t ws_mask[4];
    unsigned ws_mask_off;
    bool ws_in_payload, ws_closing;
    /* output */
    char *wbuf;
    size_t wpos, wlen, wcap;
    /* input */
    size_t rpos, rlen;
    char url[URL_MAX];
    size_t url_len;
    char rbuf[RBUF_SIZE];
};

struct worker {
    int id;
    int epfd;
    pthread_t thread;
    struct listener *lis;            /* nlis, one per listening address */
    int nlis;
    struct dlink conns, idle, ready;
    struct conn **heap;
    size_t heap_len, heap_cap;
    uint64_t now;
};

struct listen_addr {
    char spec[256];
    struct sockaddr_storage ss;
    socklen_t sslen;
};

static struct {
    char name[128];
    uint64_t idle_close_ms;
    int nthreads;
    int stop_fd;
    char hello_body[192];
    size_t hello_body_len;
    char hello_resp[512];            /* full keep-alive HTTP/1.1 response for GET / */
    size_t hello_resp_len;
    char *big_hdr;                   /* "X-Big: bbb...\r\n" */
    char pattern[PAT_SIZE];          /* 'a'+(i%26) */
    char xs[PAT_SIZE];               /* 'x' */
} g;

static atomic_uint_fast64_t st_conns, st_reqs;
static atomic_int_fast64_t st_active;
static atomic_bool g_stop;
static const int stop_tag = OBJ_STOP;

/* ---------------------------------------------------------------------------------------- */
/* small helpers */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rlb-backend: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q)
        die("out of memory");
    return q;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void dl_init(struct dlink *h)
{
    h->prev = h->next = h;
}

static bool dl_empty(const struct dlink *h)
{
    return h->next == h;
}

static void dl_push_tail(struct dlink *h, struct dlink *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void dl_unlink(struct dlink *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Parses a decimal number of at most 18 digits; false when s[0..len) is anything else. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 18)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
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
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 418: return "I'm a teapot";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return "Unknown";
    }
}

/* ---------------------------------------------------------------------------------------- */
/* output buffer */

static size_t pending(const struct conn *c)
{
    return c->wlen - c->wpos;
}

/* Returns room for n more output bytes (compacting or growing the buffer). */
static char *out_reserve(struct conn *c, size_t n)
{
    if (c->wcap - c->wlen < n) {
        if (c->wpos > 0) {
            memmove(c->wbuf, c->wbuf + c->wpos, c->wlen - c->wpos);
            c->wlen -= c->wpos;
            c->wpos = 0;
        }
        if (c->wcap - c->wlen < n) {
            size_t cap = c->wcap * 2;
            if (cap < c->wlen + n)
                cap = c->wlen + n;
            c->wbuf = xrealloc(c->wbuf, cap);
            c->wcap = cap;
        }
    }
    return c->wbuf + c->wlen;
}

static void out_put(struct conn *c, const void *p, size_t n)
{
    memcpy(out_reserve(c, n), p, n);
    c->wlen += n;
}

static void out_str(struct conn *c, const char *s)
{
    out_put(c, s, strlen(s));
}

static void out_fmt(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    char *dst = out_reserve(c, 256);
    va_start(ap, fmt);
    int n = vsnprintf(dst, 256, fmt, ap);
    va_end(ap);
    if (n >= 256) {
        dst = out_reserve(c, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(dst, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (n > 0)
        c->wlen += (size_t)n;
}

/*
 * Writes a response head. clen >= 0: Content-Length; CL_CHUNKED: chunked for HTTP/1.1, else a
 * close-delimited body; CL_NONE: no length header (1xx/204/304). Decides keep-alive vs close:
 * a closing response sets close_after.
 */
static void resp_head(struct conn *c, int status, const char *ctype, int64_t clen,
                      const char *extra)
{
    c->resp_started = true;
    c->resp_chunked = false;
    if (!c->keep_alive)
        c->close_after = true;
    out_fmt(c, "HTTP/1.1 %d %s\r\nX-Backend: %s\r\n", status, reason(status), g.name);
    if (ctype)
        out_fmt(c, "Content-Type: %s\r\n", ctype);
    if (clen >= 0) {
        out_fmt(c, "Content-Length: %" PRId64 "\r\n", clen);
    } else if (clen == CL_CHUNKED) {
        if (c->http10) {
            c->close_after = true;
        } else {
            out_str(c, "Transfer-Encoding: chunked\r\n");
            c->resp_chunked = !c->is_head;
        }
    }
    if (extra)
        out_str(c, extra);
    if (status != 101) {
        if (c->close_after)
            out_str(c, "Connection: close\r\n");
        else if (c->http10)
            out_str(c, "Connection: keep-alive\r\n");
    }
    out_put(c, "\r\n", 2);
}

static void resp_simple(struct conn *c, int status, const char *ctype, const char *body,
                        size_t len)
{
    resp_head(c, status, ctype, (int64_t)len, NULL);
    if (!c->is_head)
        out_put(c, body, len);
}

/* ---------------------------------------------------------------------------------------- */
/* JSON writer: a counting pass (emit = false) gives Content-Length, a second pass writes. */

struct jw {
    struct conn *c;
    size_t n;
    bool emit;
};

static void jw_raw(struct jw *j, const char *s, size_t len)
{
    j->n += len;
    if (j->emit)
        out_put(j->c, s, len);
}

static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            n = 1;
            cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            n = 2;
            cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            n = 3;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

/* A JSON string; bytes >= 0x80 pass as UTF-8 when valid, else as \u00XX (Latin-1). */
static void jw_str(struct jw *j, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    bool utf8 = utf8_valid(u, len);
    size_t run = 0;
    jw_raw(j, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = u[i];
        char esc[8];
        const char *e = NULL;
        size_t elen = 2;
        if (ch == '"')
            e = "\\\"";
        else if (ch == '\\')
            e = "\\\\";
        else if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && !utf8)) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            e = esc;
            elen = 6;
        }
        if (!e)
            continue;
        jw_raw(j, s + run, i - run);
        jw_raw(j, e, elen);
        run = i + 1;
    }
    jw_raw(j, s + run, len - run);
    jw_raw(j, "\"", 1);
}

static uint32_t rec_len(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void headers_json(struct conn *c, struct jw *j)
{
    char tmp[64];
    const char *m = llhttp_method_name((llhttp_method_t)c->parser.method);
    jw_raw(j, "{\"method\":", 10);
    jw_str(j, m, strlen(m));
    jw_raw(j, ",\"target\":", 10);
    jw_str(j, c->url, c->url_len);
    int n = snprintf(tmp, sizeof tmp, ",\"version\":\"%u.%u\",\"headers\":[",
                     c->parser.http_major, c->parser.http_minor);
    jw_raw(j, tmp, (size_t)n);
    size_t off = 0;
    bool first = true;
    while (off + 4 <= c->hlen) {
        uint32_t nl = rec_len(c->hbuf + off);
        const char *name = c->hbuf + off + 4;
        off += 4 + nl;
        if (off + 4 > c->hlen)
            break;
        uint32_t vl = rec_len(c->hbuf + off);
        const char *val = c->hbuf + off + 4;
        off += 4 + vl;
        jw_raw(j, first ? "[" : ",[", first ? 1 : 2);
        first = false;
        jw_str(j, name, nl);
        jw_raw(j, ",", 1);
        jw_str(j, val, vl);
        jw_raw(j, "]", 1);
    }
    n = snprintf(tmp, sizeof tmp, "],\"body_bytes\":%" PRIu64 "}", c->body_bytes);
    jw_raw(j, tmp, (size_t)n);
}

/* ---------------------------------------------------------------------------------------- */
/* timers: a binary min-heap of connections keyed by wake_at */

static void heap_swap(struct worker *w, size_t a, size_t b)
{
    struct conn *t = w->heap[a];
    w->heap[a] = w->heap[b];
    w->heap[b] = t;
    w->heap[a]->heap_idx = a + 1;
    w->heap[b]->heap_idx = b + 1;
}

static void heap_up(struct worker *w, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p]->wake_at <= w->heap[i]->wake_at)
            break;
        heap_swap(w, i, p);
        i = p;
    }
}

static void heap_down(struct worker *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_len && w->heap[l]->wake_at < w->heap[m]->wake_at)
            m = l;
        if (r < w->heap_len && w->heap[r]->wake_at < w->heap[m]->wake_at)
            m = r;
        if (m == i)
            break;
        heap_swap(w, i, m);
        i = m;
    }
}

static void timer_set(struct conn *c, uint64_t at)
{
    struct worker *w = c->w;
    if (c->heap_idx)
        return;
    if (w->heap_len == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
        w->heap = xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    c->wake_at = at;
    w->heap[w->heap_len] = c;
    c->heap_idx = ++w->heap_len;
    heap_up(w, w->heap_len - 1);
}

static void timer_del(struct conn *c)
{
    struct worker *w = c->w;
    if (!c->heap_idx)
        return;
    size_t i = c->heap_idx - 1;
    c->heap_idx = 0;
    w->heap_len--;
    if (i == w->heap_len)
        return;
    w->heap[i] = w->heap[w->heap_len];
    w->heap[i]->heap_idx = i + 1;
    heap_up(w, i);
    heap_down(w, w->heap[i]->heap_idx - 1);
}

/* ---------------------------------------------------------------------------------------- */
/* connection lifetime */

static void idle_unlink(struct conn *c)
{
    if (c->in_idle) {
        dl_unlink(&c->idle);
        c->in_idle = false;
    }
}

static void conn_close(struct conn *c)
{
    idle_unlink(c);
    if (c->in_ready)
        dl_unlink(&c->ready);
    timer_del(c);
    dl_unlink(&c->all);
    close(c->fd);
    free(c->hbuf);
    free(c->wbuf);
    free(c);
    atomic_fetch_sub_explicit(&st_active, 1, memory_order_relaxed);
}

/*
 * Starts closing once the output is flushed: RST (returns true: c is freed), or FIN then drain
 * input until EOF (returns false).
 */
static bool conn_finish(struct conn *c)
{
    if (c->rst_after) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        conn_close(c);
        return true;
    }
    shutdown(c->fd, SHUT_WR);
    c->mode = M_LINGER;
    c->close_after = false;
    c->sleeping = false;
    c->gen_active = false;
    c->rpos = c->rlen = 0;
    timer_del(c);
    timer_set(c, c->w->now + LINGER_MS);
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* request routing and responses */

static void parse_query(struct conn *c, const char *q, size_t len)
{
    while (len > 0) {
        const char *amp = memchr(q, '&', len);
        size_t plen = amp ? (size_t)(amp - q) : len;
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen;
        const char *v = eq ? eq + 1 : q + plen;
        size_t vlen = eq ? plen - klen - 1 : 0;
        uint64_t n;
        if (klen == 7 && memcmp(q, "chunked", 7) == 0) {
            if (vlen != 1 || v[0] != '0')
                c->chunk_size = c->chunk_size ? c->chunk_size : DEF_CHUNK;
        } else if (klen == 5 && memcmp(q, "chunk", 5) == 0) {
            if (parse_u64(v, vlen, &n) && n > 0 && n <= (1u << 30))
                c->chunk_size = n;
        } else if (klen == 7 && memcmp(q, "pattern", 7) == 0) {
            c->gen_pattern = !(vlen == 1 && v[0] == '0');
        }
        if (!amp)
            break;
        len -= plen + 1;
        q = amp + 1;
    }
}

static bool path_is(const char *p, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return len == l && memcmp(p, lit, l) == 0;
}

static bool path_arg(const char *p, size_t len, const char *prefix, uint64_t *out)
{
    size_t l = strlen(prefix);
    return len > l && memcmp(p, prefix, l) == 0 && parse_u64(p + l, len - l, out);
}

static void route_request(struct conn *c)
{
    const char *p = c->url;
    size_t len = c->url_len;
    /* absolute-form: skip scheme://authority */
    if (len > 7 && (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0)) {
        const char *s = memchr(p, ':', len) + 3;
        const char *slash = memchr(s, '/', len - (size_t)(s - p));
        if (!slash)
            slash = p + len;
        len -= (size_t)(slash - p);
        p = slash;
    }
    const char *q = memchr(p, '?', len);
    size_t plen = q ? (size_t)(q - p) : len;
    const char *frag = memchr(p, '#', plen);
    if (frag)
        plen = (size_t)(frag - p);
    uint64_t n;
    c->route = R_HELLO;
    if (plen <= 1) {
        return;
    } else if (path_is(p, plen, "/health")) {
        c->route = R_HEALTH;
    } else if (path_is(p, plen, "/health/fail")) {
        c->route = R_HEALTH_FAIL;
    } else if (path_is(p, plen, "/headers")) {
        c->route = R_HEADERS;
        c->record_hdrs = true;
    } else if (path_is(p, plen, "/echo")) {
        c->route = R_ECHO;
    } else if (path_is(p, plen, "/sink")) {
        c->route = R_SINK;
    } else if (plen > 7 && memcmp(p, "/bytes/", 7) == 0) {
        c->route = R_BAD_REQUEST;
        if (path_arg(p, plen, "/bytes/", &n) && n <= (UINT64_C(1) << 50)) {
            c->route = R_BYTES;
            c->route_arg = n;
            if (q)
                parse_query(c, q + 1, len - plen - 1);
        }
    } else if (plen > 8 && memcmp(p, "/status/", 8) == 0) {
        c->route = R_BAD_REQUEST;
        if (path_arg(p, plen, "/status/", &n) && n >= 100 && n <= 599) {
            c->route = R_STATUS;
            c->route_arg = n;
        }
    } else if (plen > 7 && memcmp(p, "/sleep/", 7) == 0) {
        c->route = R_BAD_REQUEST;
        if (path_arg(p, plen, "/sleep/", &n) && n <= MAX_SLEEP_MS) {
            c->route = R_SLEEP;
            c->route_arg = n;
        }
    } else if (path_is(p, plen, "/close")) {
        c->route = R_CLOSE;
    } else if (path_is(p, plen, "/stats")) {
        c->route = R_STATS;
    } else if (path_is(p, plen, "/ws")) {
        c->route = R_WS;
    } else if (path_is(p, plen, "/bad/garbage")) {
        c->route = R_BAD_GARBAGE;
    } else if (path_is(p, plen, "/bad/bigheader")) {
        c->route = R_BAD_BIGHEADER;
    } else if (path_is(p, plen, "/bad/reset")) {
        c->route = R_BAD_RESET;
    } else if (path_is(p, plen, "/bad/close")) {
        c->route = R_BAD_CLOSE;
    } else if (path_is(p, plen, "/bad/cl-conflict")) {
        c->route = R_BAD_CL_CONFLICT;
    } else if (path_is(p, plen, "/bad/cl-te")) {
        c->route = R_BAD_CL_TE;
    } else if (path_is(p, plen, "/bad/te-not-last")) {
        c->route = R_BAD_TE_NOT_LAST;
    } else if (path_is(p, plen, "/bad/chunk-size")) {
        c->route = R_BAD_CHUNK_SIZE;
    } else if (path_is(p, plen, "/bad/extra")) {
        c->route = R_BAD_EXTRA;
    }
}

static void resp_hello(struct conn *c)
{
    if (c->keep_alive && !c->http10 && !c->is_head) {
        c->resp_started = true;
        out_put(c, g.hello_resp, g.hello_resp_len);
    } else {
        resp_simple(c, 200, "text/plain", g.hello_body, g.hello_body_len);
    }
}

static void resp_json(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void resp_json(struct conn *c, const char *fmt, ...)
{
    char body[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    resp_simple(c, 200, "application/json", body, (size_t)n);
}

static void resp_websocket(struct conn *c)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[WS_KEY_MAX + sizeof guid];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char acc[64];
    char extra[256];

    if (c->parser.method != HTTP_GET || !c->upgrade_ws || !c->ws_key[0] ||
        !c->parser.upgrade) {
        c->parser.upgrade = 0;
        c->close_after = true;
        static const char msg[] = "websocket upgrade required\n";
        resp_simple(c, 400, "text/plain", msg, sizeof msg - 1);
        return;
    }
    size_t klen = strlen(c->ws_key);
    memcpy(in, c->ws_key, klen);
    memcpy(in + klen, guid, sizeof guid - 1);
    if (!EVP_Digest(in, klen + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL))
        die("EVP_Digest(sha1) failed");
    EVP_EncodeBlock(acc, md, (int)mdlen);
    snprintf(extra, sizeof extra,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
             (const char *)acc);
    resp_head(c, 101, NULL, CL_NONE, extra);
    c->ws_accepted = true;
}

static void resp_status(struct conn *c, int st)
{
    char body[32];
    if (st < 200) {
        c->resp_started = true;
        out_fmt(c, "HTTP/1.1 %d %s\r\nX-Backend: %s\r\n\r\n", st, reason(st), g.name);
        c->close_after = true;
    } else if (st == 204 || st == 304) {
        resp_head(c, st, NULL, CL_NONE, NULL);
    } else {
        int n = snprintf(body, sizeof body, "status %d\n", st);
        resp_simple(c, st, "text/plain", body, (size_t)n);
    }
}

static void resp_bytes(struct conn *c)
{
    bool chunked = c->chunk_size > 0 && !c->http10;
    resp_head(c, 200, "application/octet-stream",
              chunked ? CL_CHUNKED : (int64_t)c->route_arg, NULL);
    if (c->is_head)
        return;
    c->gen_left = c->route_arg;
    c->gen_chunk_left = 0;
    c->gen_off = 0;
    c->gen_active = true;
}

/* Fills the output buffer from the /bytes generator up to OUT_HIGH. */
static void gen_fill(struct conn *c)
{
    const char *src = c->gen_pattern ? g.pattern : g.xs;
    while (pending(c) < OUT_HIGH) {
        if (c->gen_left == 0) {
            if (c->resp_chunked)
                out_put(c, "0\r\n\r\n", 5);
            c->gen_active = false;
            return;
        }
        if (c->resp_chunked && c->gen_chunk_left == 0) {
            c->gen_chunk_left = MIN(c->chunk_size, c->gen_left);
            out_fmt(c, "%" PRIx64 "\r\n", c->gen_chunk_left);
        }
        uint64_t lim = c->resp_chunked ? c->gen_chunk_left : c->gen_left;
        if (pending(c) >= OUT_HIGH)
            break;
        size_t n = (size_t)MIN(lim, (uint64_t)(OUT_HIGH - pending(c)));
        out_put(c, src + c->gen_off % 26, n);
        c->gen_off += n;
        c->gen_left -= n;
        if (c->resp_chunked) {
            c->gen_chunk_left -= n;
            if (c->gen_chunk_left == 0)
                out_put(c, "\r\n", 2);
        }
    }
}

/* The whole request has been read: answer it (or start answering it). */
static void request_done(struct conn *c)
{
    struct jw j = { .c = c };
    atomic_fetch_add_explicit(&st_reqs, 1, memory_order_relaxed);
    c->in_msg = false;
    switch (c->route) {
    case R_HELLO:
        resp_hello(c);
        break;
    case R_HEALTH:
        resp_simple(c, 200, "text/plain", "ok\n", 3);
        break;
    case R_HEALTH_FAIL:
        resp_simple(c, 500, "text/plain", "fail\n", 5);
        break;
    case R_HEADERS:
        headers_json(c, &j);
        resp_head(c, 200, "application/json", (int64_t)j.n, NULL);
        if (!c->is_head) {
            j.n = 0;
            j.emit = true;
            headers_json(c, &j);
        }
        break;
    case R_ECHO:
        if (!c->resp_started)
            resp_head(c, 200, "application/octet-stream", 0, NULL);
        else if (c->resp_chunked)
            out_put(c, "0\r\n\r\n", 5);
        break;
    case R_SINK:
        resp_json(c, "{\"bytes\":%" PRIu64 "}", c->body_bytes);
        break;
    case R_BYTES:
        resp_bytes(c);
        break;
    case R_STATUS:
        resp_status(c, (int)c->route_arg);
        break;
    case R_SLEEP:
        c->sleeping = true;
        timer_set(c, c->w->now + c->route_arg);
        break;
    case R_CLOSE:
        c->close_after = true;
        resp_simple(c, 200, "text/plain", "closing\n", 8);
        break;
    case R_STATS:
        resp_json(c, "{\"connections\":%" PRIuFAST64 ",\"requests\":%" PRIuFAST64
                  ",\"active\":%" PRIdFAST64 "}",
                  atomic_load_explicit(&st_conns, memory_order_relaxed),
                  atomic_load_explicit(&st_reqs, memory_order_relaxed),
                  atomic_load_explicit(&st_active, memory_order_relaxed));
        break;
    case R_WS:
        resp_websocket(c);
        break;
    case R_BAD_GARBAGE:
        c->resp_started = true;
        out_str(c, "NOT HTTP AT ALL\r\n\r\n");
        c->close_after = true;
        break;
    case R_BAD_BIGHEADER:
        resp_head(c, 200, "text/plain", 4, g.big_hdr);
        if (!c->is_head)
            out_put(c, "big\n", 4);
        break;
    case R_BAD_RESET:
        c->close_after = true;
        c->rst_after = true;
        break;
    case R_BAD_CLOSE:
        c->close_after = true;
        break;
    case R_BAD_CL_CONFLICT:
        c->resp_started = true;
        out_fmt(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Type: text/plain\r\n"
                "Content-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\n", g.name);
        if (!c->is_head)
            out_put(c, "hello", 5);
        c->close_after = true;
        break;
    case R_BAD_CL_TE:
        c->resp_started = true;
        out_fmt(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", g.name);
        c->close_after = true;
        break;
    case R_BAD_TE_NOT_LAST:
        c->resp_started = true;
        out_fmt(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
                "Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n", g.name);
        c->close_after = true;
        break;
    case R_BAD_CHUNK_SIZE:
        c->resp_started = true;
        out_fmt(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n", g.name);
        c->close_after = true;
        break;
    case R_BAD_EXTRA:
        c->resp_started = true;
        out_fmt(c, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Length: 5\r\n\r\nhello"
                "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled", g.name);
        break;
    case R_BAD_REQUEST:
        resp_simple(c, 400, "text/plain", "bad request\n", 12);
        break;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* llhttp callbacks */

static struct conn *pconn(llhttp_t *p)
{
    return p->data;
}

static void hbuf_put(struct conn *c, const void *p, size_t n)
{
    if (c->hcap - c->hlen < n) {
        size_t cap = c->hcap ? c->hcap * 2 : 4096;
        while (cap - c->hlen < n)
            cap *= 2;
        c->hbuf = xrealloc(c->hbuf, cap);
        c->hcap = cap;
    }
    memcpy(c->hbuf + c->hlen, p, n);
    c->hlen += n;
}

static void hbuf_close_rec(struct conn *c)
{
    uint32_t l = (uint32_t)(c->hlen - c->rec_len_off - 4);
    memcpy(c->hbuf + c->rec_len_off, &l, 4);
}

static int cb_message_begin(llhttp_t *p)
{
    struct conn *c = pconn(p);
    c->in_msg = true;
    c->route = R_HELLO;
    c->route_arg = 0;
    c->chunk_size = 0;
    c->gen_pattern = false;
    c->fatal_status = 0;
    c->url_len = 0;
    c->hdr_bytes = 0;
    c->body_bytes = 0;
    c->hlen = 0;
    c->ws_key[0] = 0;
    c->expect_continue = c->upgrade_ws = c->record_hdrs = false;
    c->rec_in_field = c->rec_in_value = false;
    c->resp_started = c->resp_chunked = false;
    c->keep_alive = true;
    c->is_head = c->http10 = false;
    c->hdr_which = H_OTHER;
    c->fname_len = c->vlen = 0;
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = pconn(p);
    if (c->url_len + len > URL_MAX) {
        c->fatal_status = 414;
        return -1;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int cb_url_complete(llhttp_t *p)
{
    route_request(pconn(p));
    return 0;
}

static int count_hdr(struct conn *c, size_t len)
{
    c->hdr_bytes += len;
    if (c->hdr_bytes > HDR_MAX) {
        c->fatal_status = 431;
        return -1;
    }
    return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = pconn(p);
    if (count_hdr(c, len))
        return -1;
    if (c->record_hdrs) {
        if (!c->rec_in_field) {
            c->rec_len_off = c->hlen;
            hbuf_put(c, "\0\0\0\0", 4);
            c->rec_in_field = true;
        }
        hbuf_put(c, at, len);
    }
    size_t n = MIN(len, sizeof c->fname - c->fname_len);
    memcpy(c->fname + c->fname_len, at, n);
    c->fname_len += n;
    return 0;
}

static int cb_header_field_complete(llhttp_t *p)
{
    struct conn *c = pconn(p);
    if (c->record_hdrs) {
        if (!c->rec_in_field) {
            c->rec_len_off = c->hlen;
            hbuf_put(c, "\0\0\0\0", 4);
        }
        hbuf_close_rec(c);
        c->rec_in_field = false;
    }
    c->hdr_which = H_OTHER;
    if (c->fname_len == 6 && strncasecmp(c->fname, "expect", 6) == 0)
        c->hdr_which = H_EXPECT;
    else if (c->fname_len == 7 && strncasecmp(c->fname, "upgrade", 7) == 0)
        c->hdr_which = H_UPGRADE;
    else if (c->fname_len == 17 && strncasecmp(c->fname, "sec-websocket-key", 17) == 0)
        c->hdr_which = H_WSKEY;
    c->fname_len = 0;
    c->vlen = 0;
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = pconn(p);
    if (count_hdr(c, len))
        return -1;
    if (c->record_hdrs) {
        if (!c->rec_in_value) {
            c->rec_len_off = c->hlen;
            hbuf_put(c, "\0\0\0\0", 4);
            c->rec_in_value = true;
        }
        hbuf_put(c, at, len);
    }
    if (c->hdr_which != H_OTHER) {
        size_t n = MIN(len, WS_KEY_MAX - c->vlen);
        memcpy(c->vbuf + c->vlen, at, n);
        c->vlen += n;
    }
    return 0;
}

static int cb_header_value_complete(llhttp_t *p)
{
    struct conn *c = pconn(p);
    if (c->record_hdrs) {
        if (!c->rec_in_value) {
            c->rec_len_off = c->hlen;
            hbuf_put(c, "\0\0\0\0", 4);
        }
        /* the field value excludes trailing whitespace (llhttp strips only leading) */
        while (c->hlen > c->rec_len_off + 4 &&
               (c->hbuf[c->hlen - 1] == ' ' || c->hbuf[c->hlen - 1] == '\t'))
            c->hlen--;
        hbuf_close_rec(c);
        c->rec_in_value = false;
    }
    c->vbuf[c->vlen] = 0;
    /* trim trailing whitespace (llhttp strips leading) */
    while (c->vlen > 0 && (c->vbuf[c->vlen - 1] == ' ' || c->vbuf[c->vlen - 1] == '\t'))
        c->vbuf[--c->vlen] = 0;
    switch (c->hdr_which) {
    case H_EXPECT:
        c->expect_continue = strcasecmp(c->vbuf, "100-continue") == 0;
        break;
    case H_UPGRADE:
        c->upgrade_ws = strcasestr(c->vbuf, "websocket") != NULL;
        break;
    case H_WSKEY:
        memcpy(c->ws_key, c->vbuf, c->vlen + 1);
        break;
    case H_OTHER:
        break;
    }
    c->hdr_which = H_OTHER;
    c->vlen = 0;
    return 0;
}

static int cb_headers_complete(llhttp_t *p)
{
    struct conn *c = pconn(p);
    c->is_head = p->method == HTTP_HEAD;
    c->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    c->keep_alive = llhttp_should_keep_alive(p);
    if (c->route != R_WS)
        p->upgrade = 0;                  /* answer as plain HTTP */
    bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    if ((c->route == R_ECHO || c->route == R_SINK) && c->expect_continue && !c->http10 &&
        has_body)
        out_str(c, "HTTP/1.1 100 Continue\r\n\r\n");
    if (c->route == R_ECHO) {
        if (p->flags & F_CHUNKED)
            resp_head(c, 200, "application/octet-stream", CL_CHUNKED, NULL);
        else
            resp_head(c, 200, "application/octet-stream",
                      (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : 0, NULL);
    }
    return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = pconn(p);
    c->body_bytes += len;
    if (c->route == R_ECHO && !c->is_head) {
        if (c->resp_chunked) {
            out_fmt(c, "%zx\r\n", len);
            out_put(c, at, len);
            out_put(c, "\r\n", 2);
        } else {
            out_put(c, at, len);
        }
    }
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    struct conn *c = pconn(p);
    request_done(c);
    if (c->ws_accepted)
        return 0;                        /* llhttp pauses with HPE_PAUSED_UPGRADE */
    return HPE_PAUSED;                   /* one request at a time (pipelining) */
}

static const llhttp_settings_t g_settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_url_complete = cb_url_complete,
    .on_header_field = cb_header_field,
    .on_header_field_complete = cb_header_field_complete,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

/* ---------------------------------------------------------------------------------------- */
/* input processing */

/* Bytes of the frame header being read: 2 until those are known, then the full length. */
static size_t ws_hdr_need(const struct conn *c)
{
    if (c->ws_hdr_len < 2)
        return 2;
    uint8_t l7 = c->ws_hdr[1] & 0x7f;
    return 2 + (l7 == 126 ? 2u : l7 == 127 ? 8u : 0u) + ((c->ws_hdr[1] & 0x80) ? 4u : 0u);
}

/* Echoes WebSocket frames from the input buffer, streaming payloads. */
static void ws_process(struct conn *c)
{
    while (c->rpos < c->rlen && pending(c) < OUT_HIGH && !c->close_after) {
        const uint8_t *in = (const uint8_t *)c->rbuf + c->rpos;
        size_t avail = c->rlen - c->rpos;
        if (!c->ws_in_payload) {
            size_t take = MIN(ws_hdr_need(c) - c->ws_hdr_len, avail);
            memcpy(c->ws_hdr + c->ws_hdr_len, in, take);
            c->ws_hdr_len += take;
            c->rpos += take;
            if (c->ws_hdr_len < ws_hdr_need(c))
                continue;
            uint8_t l7 = c->ws_hdr[1] & 0x7f;
            size_t off = 2;
            uint64_t plen = l7;
            if (l7 == 126) {
                plen = (uint64_t)c->ws_hdr[2] << 8 | c->ws_hdr[3];
                off = 4;
            } else if (l7 == 127) {
                plen = 0;
                for (int i = 0; i < 8; i++)
                    plen = plen << 8 | c->ws_hdr[2 + i];
                off = 10;
            }
            if (c->ws_hdr[1] & 0x80)
                memcpy(c->ws_mask, c->ws_hdr + off, 4);
            else
                memset(c->ws_mask, 0, 4);
            uint8_t b0 = c->ws_hdr[0];
            uint8_t op = b0 & 0x0f;
            if (op == 0x9)
                b0 = (uint8_t)((b0 & 0xf0) | 0xa);  /* ping -> pong */
            if (op == 0x8)
                c->ws_closing = true;
            uint8_t h[10];
            size_t hl;
            h[0] = b0;
            if (plen < 126) {
                h[1] = (uint8_t)plen;
                hl = 2;
            } else if (plen <= 0xffff) {
                h[1] = 126;
                h[2] = (uint8_t)(plen >> 8);
                h[3] = (uint8_t)plen;
                hl = 4;
            } else {
                h[1] = 127;
                for (int i = 0; i < 8; i++)
                    h[2 + i] = (uint8_t)(plen >> (56 - 8 * i));
                hl = 10;
            }
            out_put(c, h, hl);
            c->ws_hdr_len = 0;
            c->ws_left = plen;
            c->ws_mask_off = 0;
            c->ws_in_payload = true;
        } else {
            size_t n = (size_t)MIN(c->ws_left, (uint64_t)avail);
            uint8_t *dst = (uint8_t *)out_reserve(c, n);
            for (size_t i = 0; i < n; i++)
                dst[i] = in[i] ^ c->ws_mask[(c->ws_mask_off + i) & 3];
            c->wlen += n;
            c->ws_mask_off = (unsigned)((c->ws_mask_off + n) & 3);
            c->ws_left -= n;
            c->rpos += n;
        }
        if (c->ws_in_payload && c->ws_left == 0) {
            c->ws_in_payload = false;
            if (c->ws_closing)
                c->close_after = true;
        }
    }
}

/* Feeds buffered input to the parser; handles pauses and protocol errors. */
static void parse_input(struct conn *c)
{
    if (c->mode == M_WS) {
        ws_process(c);
        return;
    }
    const char *start = c->rbuf + c->rpos;
    llhttp_errno_t err = llhttp_execute(&c->parser, start, c->rlen - c->rpos);
    if (err == HPE_OK) {
        c->rpos = c->rlen;
        return;
    }
    const char *pos = llhttp_get_error_pos(&c->parser);
    if (err == HPE_PAUSED) {
        c->rpos = (size_t)(pos - c->rbuf);
        llhttp_resume(&c->parser);
        return;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        c->rpos = (size_t)(pos - c->rbuf);
        if (c->ws_accepted)
            c->mode = M_WS;
        else
            c->close_after = true;
        return;
    }
    /* protocol error: answer 400 (or 414/431) unless a response already started, then close */
    c->rpos = c->rlen;
    c->in_msg = false;
    c->close_after = true;
    c->gen_active = false;
    if (!c->resp_started) {
        int st = c->fatal_status ? c->fatal_status : 400;
        char body[64];
        int n = snprintf(body, sizeof body, "%s\n", reason(st));
        c->keep_alive = false;
        c->is_head = false;
        c->http10 = false;
        resp_simple(c, st, "text/plain", body, (size_t)n);
    }
}

static bool conn_is_idle(const struct conn *c)
{
    return c->mode == M_HTTP && !c->in_msg && pending(c) == 0 && !c->sleeping &&
           !c->gen_active && !c->close_after && c->rpos == c->rlen;
}

/* Nothing left to do until the next event: maybe join the idle list, shrink buffers. */
static void conn_park(struct conn *c)
{
    if (!conn_is_idle(c))
        return;
    if (c->wcap > WBUF_KEEP) {
        free(c->wbuf);
        c->wbuf = xrealloc(NULL, WBUF_INIT);
        c->wcap = WBUF_INIT;
        c->wpos = c->wlen = 0;
    }
    if (g.idle_close_ms && !c->in_idle) {
        c->idle_since = c->w->now;
        dl_push_tail(&c->w->idle, &c->idle);
        c->in_idle = true;
    }
}

/* Drains input of a connection that has sent its FIN; closes on EOF or error. */
static void conn_linger(struct conn *c)
{
    for (int i = 0; i < RUN_BUDGET; i++) {
        ssize_t n = recv(c->fd, c->rbuf, RBUF_SIZE, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            c->rready = false;
            return;
        }
        conn_close(c);
        return;
    }
    if (!c->in_ready) {
        dl_push_tail(&c->w->ready, &c->ready);
        c->in_ready = true;
    }
}

/* The connection state machine: write, produce, parse, read until blocked. */
static void conn_run(struct conn *c)
{
    for (int iter = 0;; iter++) {
        if (c->mode == M_LINGER) {
            if (c->rready)
                conn_linger(c);
            return;
        }
        if (iter >= RUN_BUDGET) {
            if (!c->in_ready) {
                dl_push_tail(&c->w->ready, &c->ready);
                c->in_ready = true;
            }
            return;
        }
        if (c->gen_active && pending(c) < OUT_HIGH)
            gen_fill(c);
        if (pending(c) > 0 && c->wready) {
            ssize_t n = send(c->fd, c->wbuf + c->wpos, pending(c), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN) {
                    conn_close(c);
                    return;
                }
                c->wready = false;
            } else {
                c->wpos += (size_t)n;
                if (pending(c) == 0)
                    c->wpos = c->wlen = 0;
                else
                    c->wready = false;   /* short write: the socket buffer is full */
            }
        }
        bool can_write = pending(c) > 0 && c->wready;
        /* close_after applies once the request is complete (an echo streams until then) */
        bool closing = c->close_after && !c->in_msg;
        if (closing && pending(c) == 0 && !c->gen_active && !c->sleeping) {
            if (conn_finish(c))
                return;                  /* closed (RST) */
            c->rready = true;
            continue;
        }
        if (c->sleeping)
            return;
        if (c->gen_active || closing || pending(c) >= OUT_HIGH) {
            if (can_write || (c->gen_active && pending(c) < OUT_HIGH))
                continue;
            return;
        }
        if (c->rpos < c->rlen) {
            parse_input(c);
            continue;
        }
        if (c->peer_eof) {
            if (pending(c) == 0) {
                conn_close(c);
                return;
            }
            if (can_write)
                continue;
            return;
        }
        if (!c->rready) {
            if (can_write)
                continue;
            conn_park(c);
            return;
        }
        c->rpos = c->rlen = 0;
        ssize_t n = recv(c->fd, c->rbuf, RBUF_SIZE, 0);
        if (n > 0) {
            c->rlen = (size_t)n;
            if ((size_t)n < RBUF_SIZE && !c->rdhup)
                c->rready = false;       /* short read: drained (edge-triggered) */
            idle_unlink(c);
        } else if (n == 0) {
            c->peer_eof = true;
            c->rready = false;
        } else if (errno == EAGAIN) {
            c->rready = false;
        } else if (errno != EINTR) {
            conn_close(c);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* worker */

static void accept_all(struct worker *w, struct listener *l)
{
    for (int i = 0; i < 128; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
            die("out of memory");
        c->kind = OBJ_CONN;
        c->fd = fd;
        c->w = w;
        c->mode = M_HTTP;
        c->wbuf = xrealloc(NULL, WBUF_INIT);
        c->wcap = WBUF_INIT;
        dl_init(&c->idle);
        dl_init(&c->ready);
        llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
        c->parser.data = c;
        dl_push_tail(&w->conns, &c->all);
        atomic_fetch_add_explicit(&st_conns, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st_active, 1, memory_order_relaxed);
        struct epoll_event ev = {
            .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
            .data.ptr = c,
        };
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            conn_close(c);
            continue;
        }
        if (g.idle_close_ms) {
            c->idle_since = w->now;
            dl_push_tail(&w->idle, &c->idle);
            c->in_idle = true;
        }
    }
}

static void timers_run(struct worker *w)
{
    while (w->heap_len > 0 && w->heap[0]->wake_at <= w->now) {
        struct conn *c = w->heap[0];
        timer_del(c);
        if (c->mode == M_LINGER) {
            conn_close(c);
        } else if (c->sleeping) {
            c->sleeping = false;
            resp_simple(c, 200, "text/plain", "slept\n", 6);
            conn_run(c);
        }
    }
    while (g.idle_close_ms && !dl_empty(&w->idle)) {
        struct conn *c = container_of(w->idle.next, struct conn, idle);
        if (c->idle_since + g.idle_close_ms > w->now)
            break;
        conn_close(c);
    }
}

static int worker_timeout(struct worker *w)
{
    uint64_t next = UINT64_MAX;
    if (!dl_empty(&w->ready))
        return 0;
    if (w->heap_len > 0)
        next = w->heap[0]->wake_at;
    if (g.idle_close_ms && !dl_empty(&w->idle)) {
        struct conn *c = container_of(w->idle.next, struct conn, idle);
        next = MIN(next, c->idle_since + g.idle_close_ms);
    }
    if (next == UINT64_MAX)
        return -1;
    uint64_t now = now_ms();
    return next <= now ? 0 : (int)MIN(next - now, (uint64_t)INT_MAX);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = (void *)&stop_tag };

    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, g.stop_fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    for (int i = 0; i < w->nlis; i++) {
        ev.events = EPOLLIN;
        ev.data.ptr = &w->lis[i];
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lis[i].fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }
    w->now = now_ms();
    while (!atomic_load(&g_stop)) {
        int n = epoll_wait(w->epfd, evs, MAX_EVENTS, worker_timeout(w));
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        w->now = now_ms();
        for (int i = 0; i < n; i++) {
            int kind = *(const int *)evs[i].data.ptr;
            if (kind == OBJ_LISTENER) {
                accept_all(w, evs[i].data.ptr);
            } else if (kind == OBJ_CONN) {
                struct conn *c = evs[i].data.ptr;
                uint32_t e = evs[i].events;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->rready = true;
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->rdhup = true;
                if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                    c->wready = true;
                conn_run(c);
            }
        }
        timers_run(w);
        struct dlink todo;
        dl_init(&todo);
        if (!dl_empty(&w->ready)) {
            todo.next = w->ready.next;
            todo.prev = w->ready.prev;
            todo.next->prev = &todo;
            todo.prev->next = &todo;
            dl_init(&w->ready);
        }
        while (!dl_empty(&todo)) {
            struct conn *c = container_of(todo.next, struct conn, ready);
            dl_unlink(&c->ready);
            c->in_ready = false;
            conn_run(c);
        }
    }
    while (!dl_empty(&w->conns))
        conn_close(container_of(w->conns.next, struct conn, all));
    for (int i = 0; i < w->nlis; i++)
        close(w->lis[i].fd);
    close(w->epfd);
    free(w->heap);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* startup */

static void resolve(struct listen_addr *la, const char *spec)
{
    char host[256];
    const char *port;
    if (strlen(spec) >= sizeof la->spec)
        die("listen address too long: %s", spec);
    snprintf(la->spec, sizeof la->spec, "%s", spec);
    if (spec[0] == '[') {
        const char *e = strchr(spec, ']');
        if (!e || e[1] != ':')
            die("bad listen address %s (want HOST:PORT or [V6]:PORT)", spec);
        snprintf(host, sizeof host, "%.*s", (int)(e - spec - 1), spec + 1);
        port = e + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon)
            die("bad listen address %s (want HOST:PORT)", spec);
        snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
        port = colon + 1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *res;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0)
        die("cannot resolve %s: %s", spec, gai_strerror(rc));
    memcpy(&la->ss, res->ai_addr, res->ai_addrlen);
    la->sslen = res->ai_addrlen;
    freeaddrinfo(res);
}

static int make_listener(struct listen_addr *la, bool reuseport)
{
    int fd = socket(la->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die("SO_REUSEPORT: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&la->ss, la->sslen) < 0)
        die("bind %s: %s", la->spec, strerror(errno));
    return fd;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/*
 * Binds one probe socket without SO_REUSEPORT first: it fails when anything (say a stale
 * backend with SO_REUSEPORT) holds the port, which would otherwise silently share traffic. It
 * also fixes the port when 0 was asked for.
 */
static void probe_addr(struct listen_addr *la)
{
    int fd = make_listener(la, false);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        die("getsockname: %s", strerror(errno));
    set_port(&la->ss, addr_port(&ss));
    close(fd);
}

static void usage(FILE *f)
{
    fputs("usage: rlb-backend --listen HOST:PORT [--listen HOST:PORT ...]\n"
          "                   [--listen-range HOST:PORT1-PORT2 ...] [--threads N]\n"
          "                   [--name NAME] [--idle-close-ms MS]\n", f);
}

static void build_static_responses(void)
{
    int n = snprintf(g.hello_body, sizeof g.hello_body, "hello from %s\n", g.name);
    g.hello_body_len = (size_t)n;
    n = snprintf(g.hello_resp, sizeof g.hello_resp,
                 "HTTP/1.1 200 OK\r\nX-Backend: %s\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %zu\r\n\r\n%s", g.name, g.hello_body_len, g.hello_body);
    g.hello_resp_len = (size_t)n;
    g.big_hdr = xrealloc(NULL, BIG_HDR_LEN + 16);
    memcpy(g.big_hdr, "X-Big: ", 7);
    memset(g.big_hdr + 7, 'b', BIG_HDR_LEN);
    memcpy(g.big_hdr + 7 + BIG_HDR_LEN, "\r\n", 3);
    for (size_t i = 0; i < PAT_SIZE; i++) {
        g.pattern[i] = (char)('a' + i % 26);
        g.xs[i] = 'x';
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "listen-range", required_argument, NULL, 'r' },
        { "threads", required_argument, NULL, 't' },
        { "name", required_argument, NULL, 'n' },
        { "idle-close-ms", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct listen_addr *addrs = calloc(MAX_LISTEN, sizeof *addrs);
    int naddrs = 0, opt;
    const char *name = NULL;
    uint64_t v;

    if (!addrs)
        die("out of memory");
    g.nthreads = 1;
    while ((opt = getopt_long(argc, argv, "l:r:t:n:i:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (naddrs == MAX_LISTEN)
                die("at most %d --listen", MAX_LISTEN);
            resolve(&addrs[naddrs++], optarg);
            break;
        case 'r': {
            /* HOST:P1-P2 -> HOST:P1 ... HOST:P2 */
            const char *colon = strrchr(optarg, ':');
            const char *dash = colon ? strchr(colon, '-') : NULL;
            uint64_t p1, p2;
            if (!dash || !parse_u64(colon + 1, (size_t)(dash - colon - 1), &p1) ||
                !parse_u64(dash + 1, strlen(dash + 1), &p2) || p1 < 1 || p2 < p1 ||
                p2 > 65535)
                die("bad --listen-range %s (want HOST:PORT1-PORT2)", optarg);
            if (p2 - p1 + 1 > (uint64_t)(MAX_LISTEN - naddrs))
                die("at most %d listening addresses", MAX_LISTEN);
            for (uint64_t port = p1; port <= p2; port++) {
                char spec[300];
                snprintf(spec, sizeof spec, "%.*s:%" PRIu64, (int)(colon - optarg), optarg,
                         port);
                resolve(&addrs[naddrs++], spec);
            }
            break;
        }
        case 't':
            if (!parse_u64(optarg, strlen(optarg), &v) || v < 1 || v > 1024)
                die("bad --threads %s", optarg);
            g.nthreads = (int)v;
            break;
        case 'n':
            name = optarg;
            break;
        case 'i':
            if (!parse_u64(optarg, strlen(optarg), &v))
                die("bad --idle-close-ms %s", optarg);
            g.idle_close_ms = v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (naddrs == 0 || optind != argc) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    for (int a = 0; a < naddrs; a++)
        probe_addr(&addrs[a]);
    if (name) {
        if (strlen(name) >= sizeof g.name)
            die("--name too long");
        snprintf(g.name, sizeof g.name, "%s", name);
    } else {
        snprintf(g.name, sizeof g.name, "backend-%u", addr_port(&addrs[0].ss));
    }
    build_static_responses();
    g.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g.stop_fd < 0)
        die("eventfd: %s", strerror(errno));

    struct worker *ws = calloc((size_t)g.nthreads, sizeof *ws);
    if (!ws)
        die("out of memory");
    for (int t = 0; t < g.nthreads; t++) {
        struct worker *w = &ws[t];
        w->id = t;
        dl_init(&w->conns);
        dl_init(&w->idle);
        dl_init(&w->ready);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0)
            die("epoll_create1: %s", strerror(errno));
        w->lis = calloc((size_t)naddrs, sizeof *w->lis);
        if (!w->lis)
            die("out of memory");
        for (int a = 0; a < naddrs; a++) {
            int fd = make_listener(&addrs[a], true);
            if (listen(fd, 4096) < 0)
                die("listen %s: %s", addrs[a].spec, strerror(errno));
            w->lis[a].kind = OBJ_LISTENER;
            w->lis[a].fd = fd;
        }
        w->nlis = naddrs;
    }
    for (int t = 0; t < g.nthreads; t++) {
        int rc = pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]);
        if (rc != 0)
            die("pthread_create: %s", strerror(rc));
    }
    for (int a = 0; a < naddrs; a++) {
        char host[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &addrs[a].ss;
        if (ss->ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host,
                      sizeof host);
            printf("listening [%s]:%u\n", host, addr_port(ss));
        } else {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof host);
            printf("listening %s:%u\n", host, addr_port(ss));
        }
    }
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    atomic_store(&g_stop, true);
    uint64_t one = 1;
    if (write(g.stop_fd, &one, sizeof one) < 0)
        die("eventfd write: %s", strerror(errno));
    for (int t = 0; t < g.nthreads; t++) {
        pthread_join(ws[t].thread, NULL);
        free(ws[t].lis);
    }
    free(ws);
    free(addrs);
    free(g.big_hdr);
    close(g.stop_fd);
    return 0;
}
