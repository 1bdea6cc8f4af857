/* conn.c — client connections: request heads, local answers, and the client half of an
 * exchange.
 *
 * State machine (enum rlb_conn_state):
 *   HEAD      bytes accumulate until the framer finds the end of a head (header_timeout runs
 *             from the first byte; idle_timeout while nothing is pending). The head is parsed,
 *             validated (400/405/414/463/501/505), routed, and answered locally (LOCAL) or
 *             forwarded (EXCHANGE).
 *   EXCHANGE  the rewritten head and the body stream to the target; upstream.c relays the
 *             response and calls back when it is complete.
 *   LOCAL     a local response is queued; the rest of the request body is read and dropped so
 *             the connection stays usable.
 *   TUNNEL    after a 101: bytes both ways until either side closes.
 *   CLOSING   the last response is flushed, then our FIN, then a bounded wait for the client's.
 * After EXCHANGE/LOCAL the connection returns to HEAD and handles the next pipelined request.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/accesslog.h"
#include "ringlb/action.h"
#include "ringlb/balance.h"
#include "ringlb/desync.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/proxy.h"
#include "ringlb/router.h"
#include "ringlb/tls.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static void conn_on_recv(struct rlb_stream *s, int res);
static void conn_on_sent(struct rlb_stream *s, int res);
static void conn_on_free(struct rlb_stream *s);
static void conn_process(struct rlb_conn *c);
static void conn_close(struct rlb_conn *c, bool reset);
static void conn_arm_timer(struct rlb_conn *c);

static const struct rlb_stream_ops conn_ops = {
    .on_recv = conn_on_recv,
    .on_sent = conn_on_sent,
    .on_connect = NULL,
    .on_free = conn_on_free,
};

/* ---- exchanges (per-thread free list) --------------------------------------------------- */

static _Thread_local struct rlb_exchange *free_exchanges;

static struct rlb_exchange *exchange_new(struct rlb_conn *c)
{
    struct rlb_exchange *ex = free_exchanges;
    if (ex)
        free_exchanges = *(struct rlb_exchange **)ex;
    else
        ex = malloc(sizeof(*ex));
    if (!ex)
        return NULL;
    /* Every per-request field precedes the parsers: one memset resets them all. */
    memset(ex, 0, offsetof(struct rlb_exchange, req));
    memset(&ex->reqctx, 0, offsetof(struct rlb_http_ctx, spans));
    memset(&ex->respctx, 0, offsetof(struct rlb_http_ctx, spans));
    ex->c = c;
    ex->start_ms = c->st.w->now_ms;
    llhttp_init(&ex->req, HTTP_REQUEST, rlb_http1_settings());
    ex->req.data = &ex->reqctx;
    return ex;
}

/* Write the access log line of a finished (or abandoned) request. */
static void log_request(struct rlb_worker *w, struct rlb_exchange *ex)
{
    struct rlb_conn *c = ex->c;
    const struct rlb_exchange_log *lg = ex->log;
    struct rlb_accesslog_entry e;
    memset(&e, 0, sizeof(e));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e.time_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    e.request_creation_us = lg->created_rt_us;
    uint64_t now = w->now_us;
    bool https = c->tls != NULL;
    e.https = https;
    e.websocket = c->state == RLB_C_TUNNEL;
    const struct rlb_listener *lst = ex->lst ? ex->lst
                                    : c->wl->index >= 0 ? &w->snap->listeners[c->wl->index]
                                                        : NULL;
    e.elb = lst ? lst->cfg->name : "-";
    e.port = lst ? lst->cfg->port : 0;
    e.client = &c->peer.sa;
    e.target = ex->target && ex->sent_us ? ex->target->name : NULL;
    e.request_processing_us = ex->sent_us ? (int64_t)(ex->sent_us - ex->head_us) : -1;
    e.target_processing_us = ex->resp_us ? (int64_t)(ex->resp_us - ex->sent_us) : -1;
    e.response_processing_us = ex->resp_us ? (int64_t)(now - ex->resp_us) : -1;
    e.elb_status = ex->lb_status ? ex->lb_status : ex->target_status;
    e.target_status = ex->target_status;
    e.received_bytes = c->st.bytes_in - rlb_conn_in(c)->bytes - ex->bytes_in0;
    e.sent_bytes = c->st.bytes_out + rlb_conn_pending(c) - ex->bytes_out0;
    const char *p = lg->data;
    if (lg->method_len) {
        e.method = p;
        e.method_len = lg->method_len;
    }
    p += lg->method_len;
    e.uri = p;
    e.uri_len = lg->uri_len;
    p += lg->uri_len;
    e.host = lg->host_len ? p : NULL;
    e.host_len = lg->host_len;
    p += lg->host_len;
    e.user_agent = lg->ua_len ? p : NULL;
    e.user_agent_len = lg->ua_len;
    p += lg->ua_len;
    e.trace_id = lg->trace_len ? p : NULL;
    e.trace_id_len = lg->trace_len;
    e.http_major = lg->major;
    e.http_minor = lg->minor;
    struct rlb_tls_info ti;
    if (https && rlb_tls_handshake_done(c->tls)) {
        rlb_tls_get_info(c->tls, &ti);
        e.ssl_cipher = ti.cipher;
        e.ssl_protocol = ti.protocol;
        e.domain_name = ti.sni;
        e.chosen_cert = ti.cert_path;
    }
    e.target_group = ex->group ? ex->group->cfg->name : NULL;
    e.matched_rule_priority = ex->lst ? ex->rule_priority : RLB_ACCESSLOG_NO_RULE;
    e.actions = ex->actions;
    if (ex->desync_tier != RLB_DESYNC_COMPLIANT) {
        e.classification = rlb_desync_tier_name((enum rlb_desync_tier)ex->desync_tier);
        e.classification_reason =
            rlb_desync_reason_name((enum rlb_desync_reason)ex->desync_reason);
    }
    e.conn_trace_id = c->id;
    if (ex->redirect_url) {
        e.redirect_url = ex->redirect_url;
        e.redirect_url_len = (uint32_t)strlen(ex->redirect_url);
    }
    rlb_accesslog_write(w->alog, &e);
}

/* Keep what the access log needs of the head just parsed (only while logging is on). */
static void log_capture(struct rlb_exchange *ex, const struct rlb_http_head *h, int err)
{
    const struct rlb_hdr *host = err == HPE_OK ? rlb_http1_find(h, "host") : NULL;
    const struct rlb_hdr *ua = err == HPE_OK ? rlb_http1_find(h, "user-agent") : NULL;
    uint32_t ml = err == HPE_OK ? h->method_len : 0;
    uint32_t ul = err == HPE_OK ? h->url_len : 0;
    uint32_t hl = host ? host->value_len : 0;
    uint32_t al = ua ? (ua->value_len > 8192 ? 8192 : ua->value_len) : 0;
    struct rlb_exchange_log *lg = malloc(sizeof(*lg) + ml + ul + hl + al + 128);
    if (!lg)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lg->created_rt_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    lg->method_len = ml;
    lg->uri_len = ul;
    lg->host_len = hl;
    lg->ua_len = al;
    lg->trace_len = 0;
    lg->major = h->major;
    lg->minor = h->minor;
    char *p = lg->data;
    memcpy(p, h->method, ml);
    p += ml;
    memcpy(p, h->url, ul);
    p += ul;
    if (hl)
        memcpy(p, host->value, hl);
    p += hl;
    if (al)
        memcpy(p, ua->value, al);
    ex->log = lg;
}

/* Record the X-Amzn-Trace-Id value sent to the target (from the rewritten head). */
static void log_trace(struct rlb_exchange *ex, const char *head, uint32_t len)
{
    struct rlb_exchange_log *lg = ex->log;
    static const char key[] = "\r\nX-Amzn-Trace-Id: ";
    const char *k = memmem(head, len, key, sizeof(key) - 1);
    if (!lg || !k)
        return;
    const char *v = k + sizeof(key) - 1;
    const char *end = memchr(v, '\r', len - (uint32_t)(v - head));
    uint32_t n = end ? (uint32_t)(end - v) : 0;
    if (n > 127)
        n = 127;
    memcpy(lg->data + lg->method_len + lg->uri_len + lg->host_len + lg->ua_len, v, n);
    lg->trace_len = n;
}

static void exchange_free(struct rlb_worker *w, struct rlb_exchange *ex)
{
    if (ex->log) {
        log_request(w, ex);
        free(ex->log);
        ex->log = NULL;
        free(ex->redirect_url);
        ex->redirect_url = NULL;
    }
    rlb_bq_clear(&w->segs, &ex->retry);
    if (ex->target)
        atomic_fetch_sub_explicit(&ex->target->inflight, 1, memory_order_relaxed);
    if (ex->snap)
        rlb_worker_snap_done(w, ex->snap);
    *(struct rlb_exchange **)ex = free_exchanges;
    free_exchanges = ex;
}

/* Free the cached exchanges of this thread (worker exit). */
void rlb_conn_cache_destroy(void);
void rlb_conn_cache_destroy(void)
{
    while (free_exchanges) {
        struct rlb_exchange *ex = free_exchanges;
        free_exchanges = *(struct rlb_exchange **)ex;
        free(ex);
    }
}

/* ---- accept / close --------------------------------------------------------------------- */

void rlb_conn_accept(struct rlb_worker *w, struct rlb_wlistener *wl, int fd)
{
    if (w->draining || wl->index < 0) {
        close(fd);
        return;
    }
    const struct rlb_listener_cfg *lc = w->snap->listeners[wl->index].cfg;
    if (lc->max_connections) {
        unsigned n = w->snap->n_workers ? w->snap->n_workers : 1;
        uint32_t share = (lc->max_connections + n - 1) / n;
        if (wl->conns >= share) {
            rlb_metrics_rejected_conn(w->metrics, w->snap->listeners[wl->index].metric_id);
            close(fd);
            return;
        }
    }
    struct rlb_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    /* TCP_NODELAY comes from the listening socket (worker.c). */
    socklen_t plen = sizeof(c->peer);
    if (getpeername(fd, &c->peer.sa, &plen) != 0)
        memset(&c->peer, 0, sizeof(c->peer));
    rlb_stream_init(&c->st, w, &conn_ops, fd);
    c->wl = wl;
    struct rlb_tls_ctx *tctx = w->snap->listeners[wl->index].tls;
    if (lc->protocol == RLB_PROTO_HTTPS) {
        c->tls = tctx ? rlb_tls_new(tctx) : NULL;
        if (!c->tls) {
            close(fd);
            free(c);
            return;
        }
        /* The handshake must finish within header_timeout, like a request head. */
        c->head_start_ms = w->now_ms;
    }
    wl->conns++;
    c->created_ms = c->active_ms = w->now_ms;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    c->id = ((uint64_t)w->id << 48) | ++w->conn_ids;
    rlb_metrics_conn_open(w->metrics, RLB_METRICS_CLIENT);
    rlb_stream_want_recv(&c->st, true);
    conn_arm_timer(c);
}

static void conn_on_free(struct rlb_stream *s)
{
    struct rlb_conn *c = (struct rlb_conn *)s;
    if (c->tls) {
        rlb_bq_clear(&s->w->segs, &c->tls->plain_in);
        rlb_bq_clear(&s->w->segs, &c->tls->plain_out);
        rlb_tls_free(c->tls);
    }
    free(c);
}

/* Finish the current request: release what it holds and go back to reading heads. */
static void finish_request(struct rlb_conn *c)
{
    struct rlb_worker *w = c->st.w;
    if (c->ex) {
        if (c->ex->u)
            rlb_upstream_release(c->ex);
        exchange_free(w, c->ex);
        c->ex = NULL;
    }
    c->head_start_ms = 0;
    /* The keep-alive idle time starts now, not at the request's last byte. */
    c->active_ms = w->now_ms;
    memset(&c->scan, 0, sizeof(c->scan));
    if (c->close_after || w->draining)
        c->state = RLB_C_CLOSING;
    else
        c->state = RLB_C_HEAD;
}

static void conn_close(struct rlb_conn *c, bool reset)
{
    struct rlb_worker *w = c->st.w;
    if (c->st.flags & RLB_ST_CLOSED)
        return;
    rlb_log_debug("client connection closed: state %d, eof %d, %u bytes unsent", c->state,
                  c->eof, rlb_conn_pending(c));
    if (c->ex) {
        struct rlb_exchange *ex = c->ex;
        if (ex->u) {
            ex->u->reusable = false;
            rlb_upstream_release(ex);
        }
        exchange_free(w, ex);
        c->ex = NULL;
    }
    rlb_timer_cancel(&w->timers, &c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    w->n_conns--;
    rlb_metrics_conn_close(w->metrics, RLB_METRICS_CLIENT);
    c->wl->conns--;
    rlb_stream_close(&c->st, reset);
}

void rlb_conn_close_idle(struct rlb_worker *w)
{
    struct rlb_conn *c = w->conns;
    while (c) {
        struct rlb_conn *next = c->next;
        if (c->state == RLB_C_HEAD && rlb_conn_in(c)->bytes == 0 && !c->ex)
            conn_close(c, false);
        c = next;
    }
}

void rlb_conn_cut_unused(struct rlb_worker *w)
{
    struct rlb_conn *c = w->conns;
    while (c) {
        struct rlb_conn *next = c->next;
        struct rlb_exchange *ex = c->ex;
        if (ex && ex->u && ex->target &&
            atomic_load_explicit(&ex->target->state, memory_order_relaxed) == RLB_TARGET_UNUSED) {
            /* Draining timed out (the ALB answers 502). */
            if (!ex->resp_started)
                rlb_conn_lb_error(c, 502);
            else
                rlb_conn_abort(c);
        }
        c = next;
    }
}

void rlb_conn_close_all(struct rlb_worker *w)
{
    while (w->conns)
        conn_close(w->conns, false);
}

/* Flush, send our FIN, then wait (bounded) for the client's. */
static void begin_shutdown(struct rlb_conn *c)
{
    c->state = RLB_C_CLOSING;
    c->active_ms = c->st.w->now_ms;
    if (rlb_conn_pending(c) > 0)
        rlb_conn_flush(c); /* what was queued still goes out before the FIN */
    if (c->tls && !c->tls_notified && c->tls->plain_out.bytes == 0 &&
        rlb_tls_handshake_done(c->tls)) {
        /* TLS: close_notify before our FIN. */
        c->tls_notified = true;
        rlb_tls_shutdown(c->tls, &c->st.w->segs, &c->st.out);
        rlb_stream_send(&c->st);
    }
    if (rlb_conn_pending(c) == 0 && !(c->st.flags & RLB_ST_SEND_BUSY)) {
        if (c->eof) {
            conn_close(c, false);
            return;
        }
        shutdown(c->st.fd, SHUT_WR);
        rlb_bq_clear(&c->st.w->segs, rlb_conn_in(c));
        rlb_stream_want_recv(&c->st, true);
    }
    conn_arm_timer(c);
}

/* ---- timers ----------------------------------------------------------------------------- */

static uint64_t listener_ms(const struct rlb_conn *c, int which)
{
    const struct rlb_worker *w = c->st.w;
    if (c->wl->index < 0)
        return 1000;
    const struct rlb_listener_cfg *lc = w->snap->listeners[c->wl->index].cfg;
    switch (which) {
    case 0: return lc->idle_timeout_ms;
    case 1: return lc->header_timeout_ms;
    default: return lc->client_keep_alive_ms;
    }
}

static uint64_t conn_deadline(const struct rlb_conn *c)
{
    switch (c->state) {
    case RLB_C_HEAD:
        if (c->head_start_ms)
            return c->head_start_ms + listener_ms(c, 1);
        return c->active_ms + listener_ms(c, 0);
    case RLB_C_CLOSING:
        /* A slow reader gets the idle timeout for the rest of the response; after our FIN,
         * the client has RLB_LINGER_MS to close its side. */
        if (rlb_conn_pending(c) > 0)
            return c->active_ms + listener_ms(c, 0);
        return c->active_ms + RLB_LINGER_MS;
    case RLB_C_TUNNEL: {
        uint64_t a = c->active_ms;
        if (c->ex && c->ex->u && c->ex->u->active_ms > a)
            a = c->ex->u->active_ms;
        return a + listener_ms(c, 0);
    }
    default:
        return c->active_ms + listener_ms(c, 0);
    }
}

static void conn_timer_cb(struct rlb_timer *t, uint64_t now)
{
    struct rlb_conn *c = container_of(t, struct rlb_conn, timer);
    uint64_t deadline = conn_deadline(c);
    if (now < deadline) {
        rlb_timer_arm(&c->st.w->timers, &c->timer, deadline, conn_timer_cb);
        return;
    }
    switch (c->state) {
    case RLB_C_HEAD:
        if (c->tls && !rlb_tls_handshake_done(c->tls)) {
            /* A stalled handshake: nothing HTTP can be said yet. */
            conn_close(c, false);
            return;
        }
        if (c->head_start_ms) {
            rlb_conn_lb_error(c, 408);
            return;
        }
        if (rlb_conn_pending(c) > 0) {
            begin_shutdown(c); /* idle, but a response is still going out: finish it */
            return;
        }
        conn_close(c, false);
        return;
    case RLB_C_EXCHANGE:
        /* The target side has its own timer while a response is awaited. */
        if (c->ex && c->ex->req_done) {
            c->active_ms = now;
            conn_arm_timer(c);
            return;
        }
        /* A request body stalled for idle_timeout: 408 (the ALB's "client did not send
         * data before the idle timeout"), unless the response has begun. */
        if (c->ex && !c->ex->resp_started) {
            rlb_conn_lb_error(c, 408);
            return;
        }
        conn_close(c, false);
        return;
    default:
        conn_close(c, false);
        return;
    }
}

static void conn_arm_timer(struct rlb_conn *c)
{
    rlb_timer_arm(&c->st.w->timers, &c->timer, conn_deadline(c), conn_timer_cb);
}

/* ---- local responses -------------------------------------------------------------------- */

static int queue_block(struct rlb_conn *c, struct rlb_block *b, uint32_t len)
{
    struct rlb_seg *seg = rlb_seg_from_block(&c->st.w->segs, b, b->data, len);
    if (!seg) {
        rlb_block_unref(b);
        return -ENOMEM;
    }
    rlb_bq_push(rlb_conn_out(c), seg);
    return 0;
}

/* Queue a local response. `close` ends the connection after it. */
static void respond_local(struct rlb_conn *c, int status, const char *ctype, const char *body,
                          uint32_t body_len, const char *extra, bool close)
{
    bool head_only = c->ex && c->ex->is_head;
    uint32_t cap = 1024 + body_len + (extra ? (uint32_t)strlen(extra) : 0);
    struct rlb_block *b = rlb_block_new(cap);
    if (!b) {
        conn_close(c, true);
        return;
    }
    uint32_t n = rlb_http1_write_local(b->data, cap, status, ctype, body, body_len, extra, close,
                                       head_only);
    if (n == 0 || queue_block(c, b, n) < 0) {
        if (n == 0)
            rlb_block_unref(b);
        conn_close(c, true);
        return;
    }
    if (close)
        c->close_after = true;
    rlb_conn_flush(c);
}

void rlb_conn_lb_error(struct rlb_conn *c, int status)
{
    struct rlb_exchange *ex = c->ex;
    struct rlb_worker *w = c->st.w;
    uint32_t lid = ex && ex->lst ? ex->lst->metric_id
                   : c->wl->index >= 0 ? w->snap->listeners[c->wl->index].metric_id
                                       : RLB_METRICS_NONE;
    rlb_metrics_lb_response(w->metrics, lid, ex && ex->group ? ex->group->metric_id
                                                             : RLB_METRICS_NONE, status);
    if (ex)
        ex->lb_status = (uint16_t)status;
    if (ex && ex->u) {
        ex->u->reusable = false;
        rlb_upstream_release(ex);
    }
    /* Malformed input and timeouts end the connection; 5xx keep it when the request was
     * read completely. */
    bool close = !ex || !ex->req_done || !ex->client_keep_alive || status < 500 ||
                 c->st.w->draining;
    respond_local(c, status, NULL, NULL, 0, NULL, close);
    if (c->st.flags & RLB_ST_CLOSED)
        return;
    if (close) {
        /* Nothing more is read from this client: drop what it sent, finish, FIN. */
        rlb_bq_clear(&w->segs, rlb_conn_in(c));
        c->close_after = true;
        finish_request(c);
        begin_shutdown(c);
        return;
    }
    c->state = RLB_C_LOCAL;
    conn_process(c);
}

void rlb_conn_abort(struct rlb_conn *c)
{
    c->close_after = true;
    if (c->ex && c->ex->u) {
        c->ex->u->reusable = false;
        rlb_upstream_release(c->ex);
    }
    finish_request(c);
    begin_shutdown(c);
}

/* ---- request heads ---------------------------------------------------------------------- */

enum head_result { HEAD_MORE, HEAD_OK, HEAD_ERROR };

/* Find a complete head at the start of the connection's input. On HEAD_OK, buf and len give
 * the contiguous head (in place, or copied into *copy which the caller frees). On HEAD_ERROR
 * *status says which error. */
static enum head_result read_head(struct rlb_conn *c, const char **buf, uint32_t *len,
                                  struct rlb_block **copy, int *status)
{
    struct rlb_bq *in = rlb_conn_in(c);
    uint32_t found = 0, off = 0;
    for (struct rlb_seg *s = in->head; s && !found; s = s->next) {
        if (off + s->len > c->scan.scanned) {
            uint32_t skip = c->scan.scanned - off;
            found = rlb_http1_scan(&c->scan, s->data + skip, s->len - skip);
        }
        off += s->len;
    }
    uint32_t first = c->scan.first_line;
    if ((first && first > RLB_MAX_REQUEST_LINE + 2) ||
        (!first && c->scan.scanned > RLB_MAX_REQUEST_LINE)) {
        *status = 414;
        return HEAD_ERROR;
    }
    if (!found) {
        if (c->scan.scanned > RLB_MAX_REQUEST_HEAD) {
            *status = 400;
            return HEAD_ERROR;
        }
        return HEAD_MORE;
    }
    if (found > RLB_MAX_REQUEST_HEAD + 4) {
        *status = 400;
        return HEAD_ERROR;
    }
    *len = found;
    *copy = NULL;
    if (in->head->len >= found) {
        *buf = in->head->data;
    } else {
        struct rlb_block *b = rlb_block_new(found);
        if (!b) {
            *status = 503;
            return HEAD_ERROR;
        }
        rlb_bq_copyout(in, b->data, found);
        *buf = b->data;
        *copy = b;
    }
    return HEAD_OK;
}

/* Is the request line `METHOD SP TARGET SP HTTP/d.d` (well-formed, whatever the version)? */
static bool well_formed_version(const char *buf, uint32_t len)
{
    const char *nl = memchr(buf, '\n', len);
    uint32_t n = nl ? (uint32_t)(nl - buf) : len;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    const char *sp1 = memchr(buf, ' ', n);
    if (!sp1)
        return false;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(buf + n - sp1 - 1));
    if (!sp2)
        return false;
    const char *v = sp2 + 1;
    uint32_t vl = (uint32_t)(buf + n - v);
    return vl == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
           v[7] >= '0' && v[7] <= '9';
}

/* Is every coding of a Transfer-Encoding value chunked or identity? (Others get 501.) */
static bool known_codings(const char *v, uint32_t n)
{
    uint32_t k = 0;
    while (k < n) {
        while (k < n && (v[k] == ' ' || v[k] == ',' || v[k] == '\t'))
            k++;
        uint32_t s = k;
        while (k < n && v[k] != ',' && v[k] != ' ' && v[k] != '\t' && v[k] != ';')
            k++;
        uint32_t tl = k - s;
        if (tl && !((tl == 7 && strncasecmp(v + s, "chunked", 7) == 0) ||
                    (tl == 8 && strncasecmp(v + s, "identity", 8) == 0)))
            return false;
        while (k < n && v[k] != ',')
            k++; /* skip parameters */
    }
    return true;
}

/* Validate a parsed request head; returns 0 or the status to answer with. */
static int validate_request(struct rlb_http_head *h, int err, const char *buf, uint32_t len)
{
    if (err == HPE_INVALID_VERSION)
        return well_formed_version(buf, len) ? 505 : 400;
    if (err == HPE_INVALID_TRANSFER_ENCODING || err == HPE_UNEXPECTED_CONTENT_LENGTH) {
        /* A coding other than chunked/identity is 501; other TE trouble is malformed. */
        for (uint32_t i = 0; i < h->n_hdrs; i++) {
            const struct rlb_hdr *hd = &h->hdrs[i];
            if (hd->value && rlb_http1_name_is(hd, "transfer-encoding") &&
                !known_codings(hd->value, hd->value_len))
                return 501;
        }
        return 400;
    }
    if (err != HPE_OK)
        return 400;
    /* A CR that does not end a line: llhttp and ringlb's framing could disagree on where the
     * head ends, so it is refused in every mode. */
    for (const char *p = memchr(buf, '\r', len); p;
         p = memchr(p + 1, '\r', len - (uint32_t)(p + 1 - buf)))
        if (p + 1 >= buf + len || p[1] != '\n')
            return 400;
    if (h->bad_value)
        return 400;
    if (h->major != 1 || h->minor > 1)
        return 505;
    if (h->method_id == HTTP_TRACE)
        return 405;
    const struct rlb_hdr *host = NULL;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *hd = &h->hdrs[i];
        /* llhttp 8 in lenient builds accepts some non-token names ("Bad Header"): RFC 9112
         * says a server MUST reject those, so ringlb does, whatever the parser version. */
        if (!rlb_http1_is_token(hd->name, hd->name_len))
            return 400;
        if (hd->name_len + hd->value_len + 4 > RLB_MAX_HEADER_LINE)
            return 400;
        if (hd->name_len == 4 && rlb_http1_name_is(hd, "host")) {
            if (host && (host->value_len != hd->value_len ||
                         strncasecmp(host->value, hd->value, hd->value_len) != 0))
                return 400;
            host = hd;
        }
        if (hd->name_len == 17 && rlb_http1_name_is(hd, "transfer-encoding") &&
            !known_codings(hd->value, hd->value_len))
            return 501;
    }
    if (!host && h->minor == 1)
        return 400;
    if (rlb_http1_xff_count(h) > 30)
        return 463;
    return 0;
}

/* Dotted-quad text of an IPv4 address into ip (at least 16 bytes). glibc's inet_ntop formats
 * IPv4 with sprintf, which showed in the per-request profile; this is the same text. */
static void ipv4_text(const uint8_t b[4], char *ip)
{
    char *p = ip;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

static void format_peer(const struct rlb_conn *c, char *ip, size_t n, uint16_t *port)
{
    if (c->peer.sa.sa_family == AF_INET6) {
        const struct in6_addr *a = &c->peer.in6.sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            ipv4_text(&a->s6_addr[12], ip);
        else
            inet_ntop(AF_INET6, a, ip, (socklen_t)n);
        *port = ntohs(c->peer.in6.sin6_port);
    } else {
        ipv4_text((const uint8_t *)&c->peer.in4.sin_addr, ip);
        *port = ntohs(c->peer.in4.sin_port);
    }
}

/* Answer a redirect action. */
static void respond_redirect(struct rlb_conn *c, const struct rlb_action *a,
                             const struct rlb_route_request *rq,
                             const struct rlb_listener_cfg *lc)
{
    char loc[16384];
    memcpy(loc, "Location: ", 10);
    size_t n = rlb_action_redirect_url(a, lc, rq, loc + 10, sizeof(loc) - 12);
    if (n == 0) {
        rlb_conn_lb_error(c, 500);
        return;
    }
    memcpy(loc + 10 + n, "\r\n", 3);
    if (c->ex->log)
        c->ex->redirect_url = strndup(loc + 10, n);
    int status = a->redirect.status_code == 302 ? 302 : 301;
    respond_local(c, status, NULL, NULL, 0, loc, c->close_after);
}

/* Does the request carry `<canary header>: force` (name and value case-insensitive)? */
static bool canary_forced(const struct rlb_forward *f, const struct rlb_http_head *h)
{
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *x = &h->hdrs[i];
        if (x->name_len == f->canary_header_len && x->value_len == 5 &&
            strncasecmp(x->name, f->canary_header, x->name_len) == 0 &&
            strncasecmp(x->value, "force", 5) == 0)
            return true;
    }
    return false;
}

/* Start forwarding the parsed request in h (head bytes: the first `len` bytes of c->st.in). */
static void forward(struct rlb_conn *c, const struct rlb_action *a, struct rlb_forward *f,
                    struct rlb_http_head *h)
{
    struct rlb_bq *in = rlb_conn_in(c);
    struct rlb_worker *w = c->st.w;
    struct rlb_exchange *ex = c->ex;
    const struct rlb_listener_cfg *lc = ex->lst->cfg;
    struct rlb_group *g = NULL;
    bool sticky_hit = false;
    bool forced = f->canary && canary_forced(f, h);
    if (forced) {
        g = f->canary; /* a deployment's test traffic: the `to` group whatever the weights */
    } else if (a->forward.stickiness_enabled && f->n_groups > 1) {
        /* A valid AWSALBTG cookie names a group of this action: stay there while it has a
         * routable target. */
        size_t vlen;
        const char *v = rlb_cookie_find(h, RLB_STICKY_COOKIE, &vlen);
        uint64_t gid;
        if (v && rlb_sticky_decode(v, vlen, (uint64_t)time(NULL), &gid)) {
            for (size_t i = 0; i < f->n_groups; i++) {
                if (f->group_hash[i] == gid && f->weights[i] > 0) {
                    for (size_t k = 0; k < f->groups[i]->n_targets && !g; k++)
                        if (rlb_target_routable(f->groups[i]->targets[k]))
                            g = f->groups[i];
                    sticky_hit = g != NULL;
                    break;
                }
            }
        }
    }
    if (!g)
        g = rlb_balance_group(f, w->id);
    ex->group = g;
    if (g && a->forward.stickiness_enabled && !sticky_hit)
        rlb_metrics_non_sticky(w->metrics, g->metric_id);
    if (g && a->forward.stickiness_enabled && !forced) {
        for (size_t i = 0; i < f->n_groups; i++)
            if (f->groups[i] == g)
                ex->sticky_group = f->group_hash[i];
        ex->sticky_duration_s = a->forward.stickiness_duration_ms / 1000;
        if (!ex->sticky_duration_s)
            ex->sticky_duration_s = 1;
    }
    bool fail_open = false;
    struct rlb_target *t = NULL;
    bool tg_sticky = g && g->cfg->stickiness.enabled;
    if (tg_sticky) {
        /* Target stickiness (AWSALB): a valid cookie pins the client to its target while
         * that target stays routable. */
        size_t vlen;
        const char *v = rlb_cookie_find(h, "AWSALB", &vlen);
        uint64_t tid;
        if (v && rlb_sticky_decode(v, vlen, (uint64_t)time(NULL), &tid))
            for (size_t i = 0; i < g->n_targets && !t; i++)
                if (g->targets[i]->id_hash == tid && rlb_target_routable(g->targets[i]))
                    t = g->targets[i];
        if (!t)
            rlb_metrics_non_sticky(w->metrics, g->metric_id);
    }
    if (!t && g)
        t = rlb_balance_target(g, w->id, NULL, 0, &fail_open, rlb_worker_rand(w), w->now_ms);
    if (t && tg_sticky) {
        ex->sticky_target = t->id_hash;
        ex->target_sticky_s = g->cfg->stickiness.duration_ms / 1000;
        if (!ex->target_sticky_s)
            ex->target_sticky_s = 1;
    }
    if (!t) {
        rlb_conn_lb_error(c, 503);
        return;
    }
    rlb_metrics_request(w->metrics, ex->lst->metric_id, g->metric_id, t->slot);
    if (fail_open)
        rlb_metrics_unhealthy_routing(w->metrics, g->metric_id);
    char ip[INET6_ADDRSTRLEN];
    struct rlb_forward_info fi = {0};
    format_peer(c, ip, sizeof(ip), &fi.client_port);
    fi.client_ip = ip;
    fi.listener_port = lc->port;
    fi.listener_host = lc->listen;
    fi.https = lc->protocol == RLB_PROTO_HTTPS;
    fi.xff = lc->xff;
    fi.xff_client_port = lc->xff_client_port;
    fi.preserve_host = lc->preserve_host_header;
    fi.now_s = (uint64_t)time(NULL);
    fi.rand[0] = rlb_worker_rand(w);
    fi.rand[1] = rlb_worker_rand(w);
    uint32_t cap = rlb_http1_request_bound(h) + (uint32_t)strlen(lc->listen);
    struct rlb_block *b = rlb_block_new(cap);
    uint32_t n = b ? rlb_http1_write_request(b->data, cap, h, &fi) : 0;
    struct rlb_seg *seg = n ? rlb_seg_from_block(&w->segs, b, b->data, n) : NULL;
    if (!seg) {
        if (b)
            rlb_block_unref(b);
        rlb_conn_lb_error(c, 500);
        return;
    }
    ex->actions |= RLB_ACCESSLOG_ACT_FORWARD;
    if (ex->log)
        log_trace(ex, b->data, n);
    struct rlb_bq req = {0};
    rlb_bq_push(&req, seg);
    ex->group = g;
    ex->target = t;
    atomic_fetch_add_explicit(&t->inflight, 1, memory_order_relaxed);
    c->state = RLB_C_EXCHANGE;
    /* Body bytes already here go along; small complete requests are kept for a retry. */
    if (!ex->req_done) {
        while (in->bytes > 0 && !ex->req_done && req.bytes < RLB_RETRY_KEEP) {
            struct rlb_seg *s = in->head;
            int err = llhttp_execute(&ex->req, s->data, s->len);
            if (err == HPE_OK) {
                rlb_bq_move(&w->segs, in, &req, s->len);
            } else if (err == HPE_PAUSED && ex->reqctx.message_done) {
                uint32_t used = (uint32_t)(llhttp_get_error_pos(&ex->req) - s->data);
                rlb_bq_move(&w->segs, in, &req, used);
                llhttp_resume(&ex->req);
                ex->req_done = true;
            } else {
                rlb_bq_clear(&w->segs, &req);
                rlb_conn_lb_error(c, 400);
                return;
            }
        }
    }
    if (ex->req_done && req.bytes <= RLB_RETRY_KEEP) {
        if (rlb_bq_clone(&w->segs, &req, &ex->retry, req.bytes) == 0)
            ex->retryable = true;
        else
            rlb_bq_clear(&w->segs, &ex->retry);
    }
    if (rlb_upstream_start(ex, t, &req) < 0) {
        rlb_bq_clear(&w->segs, &req);
        rlb_conn_lb_error(c, 502);
        return;
    }
}

/* A complete head is at the start of c->st.in: parse, validate, route, act. */
static void handle_head(struct rlb_conn *c, const char *buf, uint32_t len,
                        struct rlb_block *copy)
{
    struct rlb_worker *w = c->st.w;
    struct rlb_http_head *h = &w->head;
    if (c->wl->index < 0) {
        /* Its listener was removed by a reload: no more requests here. */
        rlb_block_unref(copy);
        conn_close(c, false);
        return;
    }
    struct rlb_exchange *ex = exchange_new(c);
    if (!ex) {
        rlb_block_unref(copy);
        conn_close(c, true);
        return;
    }
    c->ex = ex;
    struct rlb_listener *lst = &w->snap->listeners[c->wl->index];
    /* Classify the raw bytes first: parsing normalises some of them in place. */
    struct rlb_desync_result dr = rlb_desync_classify(buf, len);
    ex->desync_tier = (uint8_t)dr.tier;
    ex->desync_reason = (uint8_t)dr.reason;
    if (dr.tier != RLB_DESYNC_COMPLIANT)
        rlb_metrics_desync(w->metrics, lst->metric_id, (enum rlb_metrics_desync)dr.tier);
    ex->reqctx.head = h;
    int err = rlb_http1_parse_head(&ex->req, &ex->reqctx, (char *)buf, len);
    int status = validate_request(h, err, buf, len);
    ex->reqctx.head = NULL;
    ex->head_us = w->now_us;
    /* Bytes before this request: what arrived, less what is still unread, less the head. */
    ex->bytes_in0 = c->st.bytes_in - rlb_conn_in(c)->bytes - len;
    ex->bytes_out0 = c->st.bytes_out + rlb_conn_pending(c);
    if (rlb_accesslog_on())
        log_capture(ex, h, err);
    ex->method = h->method_id;
    ex->is_head = err == HPE_OK && h->method_id == HTTP_HEAD;
    ex->http10 = h->minor == 0;
    ex->client_keep_alive = err == HPE_OK && h->keep_alive;
    ex->upgrade = h->upgrade;
    ex->req_done = ex->reqctx.message_done;
    c->requests++;
    c->head_start_ms = 0;
    /* The head bytes are parsed; from here on h points into buf, which stays valid until the
     * consume below (in place) or the copy is released. */
    if (status) {
        rlb_block_unref(copy);
        ex->req_done = false;
        rlb_conn_lb_error(c, status);
        return;
    }
    switch (rlb_desync_action(lst->cfg->desync_mode, dr.tier)) {
    case RLB_DESYNC_ACT_REJECT:
        rlb_block_unref(copy);
        ex->req_done = false;
        rlb_conn_lb_error(c, 400);
        return;
    case RLB_DESYNC_ACT_FORWARD_CLOSE:
        /* Ambiguous framing: serve it, then close both connections. */
        c->close_after = true;
        ex->desync_close = true;
        break;
    default:
        break;
    }
    if (w->draining || c->created_ms + listener_ms(c, 2) <= w->now_ms)
        c->close_after = true;
    if (!ex->client_keep_alive)
        c->close_after = true;
    struct rlb_snapshot *snap = w->snap;
    rlb_worker_snap_use(w, snap);
    ex->snap = snap;
    ex->lst = lst;
    struct rlb_route_request rq;
    rlb_route_request_from_head(&rq, h, &c->peer.sa);
    unsigned evaluated = 0;
    int ridx = rlb_router_match(ex->lst->router, &rq, &evaluated);
    rlb_metrics_rule_evaluations(w->metrics, ex->lst->metric_id, evaluated);
    ex->rule_priority = ridx >= 0 ? (int32_t)ex->lst->cfg->rules[ridx].priority : 0;
    const struct rlb_listener_cfg *lc = ex->lst->cfg;
    const struct rlb_action *a = ridx >= 0 ? &lc->rules[ridx].action : &lc->default_action;
    switch (a->type) {
    case RLB_ACTION_FORWARD: {
        struct rlb_forward *f = ridx >= 0 ? &ex->lst->rule_forwards[ridx]
                                          : &ex->lst->default_forward;
        forward(c, a, f, h);
        break;
    }
    case RLB_ACTION_REDIRECT:
        rlb_metrics_redirect(w->metrics);
        ex->actions |= RLB_ACCESSLOG_ACT_REDIRECT;
        ex->lb_status = a->redirect.status_code == 302 ? 302 : 301;
        respond_redirect(c, a, &rq, lc);
        if (!(c->st.flags & RLB_ST_CLOSED))
            c->state = RLB_C_LOCAL;
        break;
    case RLB_ACTION_FIXED_RESPONSE:
        rlb_metrics_fixed_response(w->metrics);
        ex->actions |= RLB_ACCESSLOG_ACT_FIXED;
        ex->lb_status = (uint16_t)a->fixed.status_code;
        respond_local(c, a->fixed.status_code, a->fixed.content_type ? a->fixed.content_type
                      : "text/plain", a->fixed.body ? a->fixed.body : "",
                      (uint32_t)a->fixed.body_len, NULL, c->close_after);
        if (!(c->st.flags & RLB_ST_CLOSED))
            c->state = RLB_C_LOCAL;
        break;
    }
    rlb_block_unref(copy);
}

/* ---- the state machine ------------------------------------------------------------------ */

/* Move request body bytes to the target while it can take them. */
static void pump_request(struct rlb_conn *c)
{
    struct rlb_bq *in = rlb_conn_in(c);
    struct rlb_worker *w = c->st.w;
    struct rlb_exchange *ex = c->ex;
    struct rlb_upconn *u = ex->u;
    bool moved = false;
    while (!ex->req_done && in->bytes > 0 && u->st.out.bytes < RLB_HIGH_WATER) {
        struct rlb_seg *s = in->head;
        int err = llhttp_execute(&ex->req, s->data, s->len);
        if (err == HPE_OK) {
            rlb_bq_move(&w->segs, in, &u->st.out, s->len);
        } else if (err == HPE_PAUSED && ex->reqctx.message_done) {
            uint32_t used = (uint32_t)(llhttp_get_error_pos(&ex->req) - s->data);
            rlb_bq_move(&w->segs, in, &u->st.out, used);
            llhttp_resume(&ex->req);
            ex->req_done = true;
        } else {
            /* Broken body framing (bad chunk): the target has a partial request. */
            if (!ex->resp_started) {
                rlb_conn_lb_error(c, 400);
            } else {
                rlb_conn_abort(c);
            }
            return;
        }
        moved = true;
    }
    if (moved)
        rlb_upstream_kick(u);
}

/* Read and drop the rest of a request body (local answers). Returns true when done. */
static bool discard_request(struct rlb_conn *c)
{
    struct rlb_bq *in = rlb_conn_in(c);
    struct rlb_worker *w = c->st.w;
    struct rlb_exchange *ex = c->ex;
    while (!ex->req_done && in->bytes > 0) {
        struct rlb_seg *s = in->head;
        int err = llhttp_execute(&ex->req, s->data, s->len);
        if (err == HPE_OK) {
            rlb_bq_consume(&w->segs, in, s->len);
        } else if (err == HPE_PAUSED && ex->reqctx.message_done) {
            uint32_t used = (uint32_t)(llhttp_get_error_pos(&ex->req) - s->data);
            rlb_bq_consume(&w->segs, in, used);
            llhttp_resume(&ex->req);
            ex->req_done = true;
        } else {
            c->close_after = true;
            rlb_bq_clear(&w->segs, in);
            ex->req_done = true;
        }
    }
    return ex->req_done;
}

static void conn_process(struct rlb_conn *c)
{
    struct rlb_bq *in = rlb_conn_in(c);
    struct rlb_worker *w = c->st.w;
    for (;;) {
        if (c->st.flags & RLB_ST_CLOSED)
            return;
        switch (c->state) {
        case RLB_C_HEAD: {
            if (in->bytes == 0) {
                if (c->eof || w->draining) {
                    conn_close(c, false);
                    return;
                }
                rlb_stream_want_recv(&c->st, true);
                conn_arm_timer(c);
                return;
            }
            const char *buf = NULL;
            uint32_t len = 0;
            struct rlb_block *copy = NULL;
            int status = 0;
            enum head_result r = read_head(c, &buf, &len, &copy, &status);
            if (r == HEAD_MORE) {
                if (c->eof) {
                    conn_close(c, false);
                    return;
                }
                if (!c->head_start_ms) {
                    c->head_start_ms = w->now_ms;
                    conn_arm_timer(c);
                }
                rlb_stream_want_recv(&c->st, true);
                return;
            }
            if (r == HEAD_ERROR) {
                rlb_bq_clear(&w->segs, in);
                rlb_conn_lb_error(c, status);
                return;
            }
            /* Keep the head bytes out of the body path: detach them first when in place. */
            struct rlb_bq headq = {0};
            if (!copy) {
                if (rlb_bq_move(&w->segs, in, &headq, len) < 0) {
                    conn_close(c, true);
                    return;
                }
                buf = headq.head->data;
            } else {
                rlb_bq_consume(&w->segs, in, len);
            }
            memset(&c->scan, 0, sizeof(c->scan));
            handle_head(c, buf, len, copy);
            rlb_bq_clear(&w->segs, &headq);
            continue;
        }
        case RLB_C_EXCHANGE:
            if (!c->ex)
                return;
            if (!c->ex->req_done && c->ex->u)
                pump_request(c);
            if (c->st.flags & RLB_ST_CLOSED || c->state != RLB_C_EXCHANGE)
                continue;
            /* Read on while the target can take more; between requests, read ahead a
             * little (pipelining) and notice the client closing. */
            if (c->ex->req_done)
                rlb_stream_want_recv(&c->st, in->bytes < RLB_MAX_REQUEST_HEAD && !c->eof);
            else
                rlb_stream_want_recv(&c->st, c->ex->u && c->ex->u->st.out.bytes <
                                                             RLB_HIGH_WATER && !c->eof);
            if (c->eof && !c->ex->req_done) {
                /* The client went away mid-request. */
                conn_close(c, false);
            }
            return;
        case RLB_C_LOCAL:
            if (!discard_request(c)) {
                if (c->eof) {
                    conn_close(c, false);
                    return;
                }
                rlb_stream_want_recv(&c->st, true);
                return;
            }
            finish_request(c);
            continue;
        case RLB_C_TUNNEL: {
            struct rlb_upconn *u = c->ex ? c->ex->u : NULL;
            if (!u) {
                conn_close(c, false);
                return;
            }
            if (in->bytes) {
                rlb_bq_move(&w->segs, in, &u->st.out, in->bytes);
                rlb_upstream_kick(u);
            }
            if (c->eof) {
                conn_close(c, false);
                return;
            }
            rlb_stream_want_recv(&c->st, u->st.out.bytes < RLB_HIGH_WATER);
            return;
        }
        case RLB_C_CLOSING:
            rlb_bq_clear(&w->segs, in);
            if (c->eof && rlb_conn_pending(c) == 0) {
                conn_close(c, false);
                return;
            }
            begin_shutdown(c);
            return;
        }
    }
}

void rlb_conn_resume(struct rlb_conn *c) { conn_process(c); }

void rlb_conn_flush(struct rlb_conn *c)
{
    if (c->tls && c->tls->plain_out.bytes > 0 && c->st.out.bytes < RLB_TLS_SEND_CHUNK &&
        !(c->st.flags & RLB_ST_CLOSED)) {
        /* Encrypt a bounded amount at a time: the rest waits in plain_out, where
         * rlb_conn_pending() still counts it for back-pressure. */
        int r = rlb_tls_send(c->tls, &c->st.w->segs, &c->tls->plain_out, RLB_TLS_SEND_CHUNK,
                             &c->st.out);
        if (r < 0 && r != -ENOTCONN) {
            rlb_bq_clear(&c->st.w->segs, &c->tls->plain_out);
            conn_close(c, true);
            return;
        }
    }
    rlb_stream_send(&c->st);
}

/* Decrypt what arrived on a TLS connection into its plaintext input; answer the handshake.
 * Returns false when the connection was closed. */
static bool tls_input(struct rlb_conn *c)
{
    struct rlb_worker *w = c->st.w;
    bool was_done = rlb_tls_handshake_done(c->tls);
    int r = rlb_tls_recv_bq(c->tls, &w->segs, &c->st.in, rlb_conn_in(c), &c->st.out);
    if (c->st.out.bytes)
        rlb_stream_send(&c->st);
    if (r < 0) {
        if (!was_done) {
            rlb_log_debug("TLS handshake failed: %s", rlb_tls_error_reason(c->tls));
            if (c->wl->index >= 0)
                rlb_metrics_tls_error(w->metrics, w->snap->listeners[c->wl->index].metric_id);
        }
        /* Let an alert go out, then close. */
        c->close_after = true;
        c->eof = true;
        rlb_bq_clear(&w->segs, rlb_conn_in(c));
        if (c->ex)
            rlb_conn_abort(c);
        else
            begin_shutdown(c);
        return false;
    }
    if (!was_done && rlb_tls_handshake_done(c->tls)) {
        /* Handshake complete: from now on header_timeout runs from the first request byte. */
        c->head_start_ms = 0;
        conn_arm_timer(c);
        if (c->tls->plain_out.bytes)
            rlb_conn_flush(c);
    }
    if (rlb_tls_peer_closed(c->tls))
        c->eof = true;
    return true;
}

void rlb_conn_exchange_done(struct rlb_conn *c)
{
    struct rlb_exchange *ex = c->ex;
    if (ex->resp_close)
        c->close_after = true;
    if (ex->u)
        rlb_upstream_release(ex);
    if (!ex->req_done) {
        /* The target answered before the whole request arrived: drop the rest. */
        c->state = RLB_C_LOCAL;
    } else {
        finish_request(c);
    }
    conn_process(c);
}

static void conn_on_recv(struct rlb_stream *s, int res)
{
    struct rlb_conn *c = (struct rlb_conn *)s;
    c->active_ms = s->w->now_ms;
    if (res > 0)
        rlb_metrics_bytes(s->w->metrics, (uint64_t)res);
    if (res < 0) {
        conn_close(c, false);
        return;
    }
    if (res == 0)
        c->eof = true;
    if (c->tls && res > 0 && !tls_input(c))
        return;
    conn_process(c);
}

static void conn_on_sent(struct rlb_stream *s, int res)
{
    struct rlb_conn *c = (struct rlb_conn *)s;
    c->active_ms = s->w->now_ms;
    if (res > 0)
        rlb_metrics_bytes(s->w->metrics, (uint64_t)res);
    if (res < 0) {
        conn_close(c, true); /* the client is gone (460) */
        return;
    }
    if (c->tls && c->tls->plain_out.bytes)
        rlb_conn_flush(c);
    if (c->state == RLB_C_CLOSING) {
        if (rlb_conn_pending(c) == 0)
            begin_shutdown(c);
        return;
    }
    if ((c->state == RLB_C_EXCHANGE || c->state == RLB_C_TUNNEL) && c->ex && c->ex->u &&
        rlb_conn_pending(c) < RLB_HIGH_WATER)
        rlb_upstream_resume(c->ex->u);
}
