/* upstream.c — connections to targets: connect, per-worker idle pools, response relay.
 *
 * A target connection is taken from the worker's idle pool for its target (LIFO, so the
 * warmest connection is reused and the others can time out) or opened with a connect linked
 * to a 10 s timeout. It carries one exchange at a time: the response head is framed, parsed
 * and rewritten for the client; 1xx interim responses are relayed; a 101 turns both sides
 * into a tunnel; the body streams as segments until llhttp reports the end of the message.
 *
 * Failure before any response byte: a pooled connection (the keep-alive race) is retried once
 * on a fresh connection when the whole request was kept; a refused connect moves to another
 * target of the group; otherwise the client gets 502 (or 504 on timeouts).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/action.h"
#include "ringlb/balance.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/proxy.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* How long an idle pooled connection is kept (the ALB keeps target connections up to the
 * idle timeout; 60 s is its default). */
#define RLB_POOL_IDLE_MS 60000u

static void up_on_recv(struct rlb_stream *s, int res);
static void up_on_sent(struct rlb_stream *s, int res);
static void up_on_connect(struct rlb_stream *s, int res);
static void up_on_free(struct rlb_stream *s);
static void up_process(struct rlb_upconn *u);

static const struct rlb_stream_ops up_ops = {
    .on_recv = up_on_recv,
    .on_sent = up_on_sent,
    .on_connect = up_on_connect,
    .on_free = up_on_free,
};

static void up_on_free(struct rlb_stream *s)
{
    struct rlb_upconn *u = (struct rlb_upconn *)s;
    rlb_target_unref(u->target);
    free(u);
}

static void pool_remove(struct rlb_worker *w, struct rlb_upconn *u)
{
    if (!u->pool_pprev)
        return;
    *u->pool_pprev = u->pool_next;
    if (u->pool_next)
        u->pool_next->pool_pprev = u->pool_pprev;
    w->pools[u->target->slot].count--;
    u->pool_next = NULL;
    u->pool_pprev = NULL;
}

static void up_close(struct rlb_upconn *u, bool reset)
{
    struct rlb_worker *w = u->st.w;
    if (u->st.flags & RLB_ST_CLOSED)
        return;
    pool_remove(w, u);
    rlb_timer_cancel(&w->timers, &u->timer);
    w->n_upconns--;
    rlb_metrics_conn_close(w->metrics, RLB_METRICS_TARGET);
    rlb_stream_close(&u->st, reset);
}

static uint64_t up_idle_ms(const struct rlb_upconn *u)
{
    if (u->ex)
        return u->ex->lst->cfg->idle_timeout_ms;
    return RLB_POOL_IDLE_MS;
}

static void up_timer_cb(struct rlb_timer *t, uint64_t now)
{
    struct rlb_upconn *u = container_of(t, struct rlb_upconn, timer);
    uint64_t deadline = u->active_ms + up_idle_ms(u);
    if (now < deadline) {
        rlb_timer_arm(&u->st.w->timers, &u->timer, deadline, up_timer_cb);
        return;
    }
    struct rlb_exchange *ex = u->ex;
    if (!ex) {
        up_close(u, false);
        return;
    }
    struct rlb_conn *c = ex->c;
    if (c->state == RLB_C_TUNNEL) {
        /* The client side's timer accounts for both directions. */
        u->active_ms = now;
        rlb_timer_arm(&u->st.w->timers, &u->timer, now + up_idle_ms(u), up_timer_cb);
        return;
    }
    if (!ex->req_done) {
        /* The client stopped sending its request body: its fault, not the target's. */
        rlb_conn_lb_error(c, 408);
    } else if (!ex->resp_head_done) {
        rlb_conn_lb_error(c, 504);
    } else {
        rlb_conn_abort(c);
    }
}

static struct rlb_idle_pool *pool_of(struct rlb_worker *w, uint32_t slot)
{
    if (slot >= w->n_pools) {
        uint32_t n = w->n_pools ? w->n_pools : 16;
        while (n <= slot)
            n *= 2;
        struct rlb_idle_pool *p = realloc(w->pools, n * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + w->n_pools, 0, (n - w->n_pools) * sizeof(*p));
        /* Lists hold pointers to their heads: fix them after the move. */
        for (uint32_t i = 0; i < w->n_pools; i++)
            if (p[i].head)
                p[i].head->pool_pprev = &p[i].head;
        w->pools = p;
        w->n_pools = n;
    }
    return &w->pools[slot];
}

static struct rlb_upconn *up_new(struct rlb_worker *w, struct rlb_target *t)
{
    int fd = socket(t->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct rlb_upconn *u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        return NULL;
    }
    rlb_stream_init(&u->st, w, &up_ops, fd);
    atomic_fetch_add(&t->refs, 1);
    u->target = t;
    u->reusable = true;
    u->active_ms = w->now_ms;
    w->n_upconns++;
    rlb_metrics_conn_open(w->metrics, RLB_METRICS_TARGET);
    rlb_stream_connect(&u->st, (const struct sockaddr *)&t->addr.ss, t->addr.len,
                       RLB_CONNECT_TIMEOUT_MS);
    rlb_stream_want_recv(&u->st, true);
    return u;
}

/* Bind `u` to `ex` and queue the request bytes. */
static void attach(struct rlb_exchange *ex, struct rlb_upconn *u, struct rlb_bq *req)
{
    struct rlb_worker *w = u->st.w;
    u->ex = ex;
    ex->u = u;
    u->requests++;
    u->active_ms = w->now_ms;
    ex->sent_us = w->now_us;
    memset(&u->scan, 0, sizeof(u->scan));
    ex->resp_started = ex->resp_head_done = ex->resp_done = false;
    rlb_bq_move(&w->segs, req, &u->st.out, req->bytes);
    rlb_timer_arm(&w->timers, &u->timer, w->now_ms + up_idle_ms(u), up_timer_cb);
    rlb_stream_want_recv(&u->st, true);
    rlb_stream_send(&u->st);
}

int rlb_upstream_start(struct rlb_exchange *ex, struct rlb_target *target, struct rlb_bq *req)
{
    struct rlb_worker *w = ex->c->st.w;
    struct rlb_idle_pool *pool = pool_of(w, target->slot);
    struct rlb_upconn *u = pool ? pool->head : NULL;
    if (u) {
        pool_remove(w, u);
    } else {
        u = up_new(w, target);
        if (!u)
            return -errno ? -errno : -ENOMEM;
    }
    attach(ex, u, req);
    return 0;
}

void rlb_upstream_release(struct rlb_exchange *ex)
{
    struct rlb_upconn *u = ex->u;
    if (!u)
        return;
    struct rlb_worker *w = u->st.w;
    ex->u = NULL;
    u->ex = NULL;
    int state = atomic_load_explicit(&u->target->state, memory_order_relaxed);
    bool keep = u->reusable && u->connected && ex->req_done && ex->resp_done &&
                !ex->desync_close &&
                u->st.in.bytes == 0 && u->st.out.bytes == 0 && !w->draining &&
                state != RLB_TARGET_DRAINING && state != RLB_TARGET_UNUSED;
    struct rlb_idle_pool *pool = keep ? pool_of(w, u->target->slot) : NULL;
    if (!pool) {
        up_close(u, false);
        return;
    }
    u->pool_next = pool->head;
    if (pool->head)
        pool->head->pool_pprev = &u->pool_next;
    pool->head = u;
    u->pool_pprev = &pool->head;
    pool->count++;
    u->active_ms = w->now_ms;
    rlb_timer_arm(&w->timers, &u->timer, w->now_ms + RLB_POOL_IDLE_MS, up_timer_cb);
    /* Keep reading: an idle connection closed by the target is noticed at once. */
    rlb_stream_want_recv(&u->st, true);
}

void rlb_upstream_prune(struct rlb_worker *w)
{
    for (uint32_t i = 0; i < w->n_pools; i++) {
        struct rlb_upconn *u = w->pools[i].head;
        if (!u)
            continue;
        int st = atomic_load_explicit(&u->target->state, memory_order_relaxed);
        if (st == RLB_TARGET_DRAINING || st == RLB_TARGET_UNUSED)
            while (w->pools[i].head)
                up_close(w->pools[i].head, false);
    }
}

void rlb_upstream_close_idle(struct rlb_worker *w)
{
    for (uint32_t i = 0; i < w->n_pools; i++)
        while (w->pools[i].head)
            up_close(w->pools[i].head, false);
}

void rlb_upstream_kick(struct rlb_upconn *u) { rlb_stream_send(&u->st); }

void rlb_upstream_resume(struct rlb_upconn *u)
{
    if (u->ex && !(u->st.flags & RLB_ST_CLOSED))
        up_process(u);
}

/* Try the request again: on a fresh connection to the same target (retry) or to another
 * target (connect refused). Returns true when a new attempt started. */
static bool try_again(struct rlb_upconn *u, struct rlb_target *t)
{
    struct rlb_exchange *ex = u->ex;
    struct rlb_worker *w = u->st.w;
    struct rlb_bq req = {0};
    if (ex->retryable) {
        if (rlb_bq_clone(&w->segs, &ex->retry, &req, ex->retry.bytes) < 0) {
            rlb_bq_clear(&w->segs, &req);
            return false;
        }
    } else if (!u->connected && u->st.out.bytes > 0) {
        /* Nothing was sent yet: what is queued is the whole request so far. */
        rlb_bq_move(&w->segs, &u->st.out, &req, u->st.out.bytes);
    } else {
        return false;
    }
    ex->u = NULL;
    u->ex = NULL;
    up_close(u, false);
    struct rlb_upconn *nu = up_new(w, t);
    if (!nu) {
        rlb_bq_clear(&w->segs, &req);
        return false;
    }
    if (t != ex->target) {
        atomic_fetch_sub_explicit(&ex->target->inflight, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&t->inflight, 1, memory_order_relaxed);
        ex->target = t;
    }
    attach(ex, nu, &req);
    return true;
}

static void up_on_connect(struct rlb_stream *s, int res)
{
    struct rlb_upconn *u = (struct rlb_upconn *)s;
    struct rlb_exchange *ex = u->ex;
    if (res == 0) {
        u->connected = true;
        u->active_ms = s->w->now_ms;
        return;
    }
    if (!ex) {
        up_close(u, false);
        return;
    }
    if (ex->group)
        rlb_metrics_target_conn_error(s->w->metrics, ex->group->metric_id);
    /* Refused or unreachable: skip this target for the request if another exists. */
    bool timeout = res == -ECANCELED || res == -ETIME || res == -ETIMEDOUT;
    if (!timeout && ex->n_tried < 4 && ex->group) {
        ex->tried_slots[ex->n_tried++] = u->target->slot;
        bool fail_open;
        struct rlb_target *t = rlb_balance_target(ex->group, s->w->id, ex->tried_slots,
                                                  ex->n_tried, &fail_open,
                                                  rlb_worker_rand(s->w), s->w->now_ms);
        if (t && try_again(u, t))
            return;
    }
    rlb_conn_lb_error(ex->c, timeout ? 504 : 502);
}

/* The connection broke (EOF, reset, send error) while bound to an exchange. */
static void up_failed(struct rlb_upconn *u, int res)
{
    struct rlb_exchange *ex = u->ex;
    struct rlb_conn *c = ex->c;
    u->reusable = false;
    if (c->state == RLB_C_TUNNEL) {
        rlb_conn_abort(c);
        return;
    }
    if (!ex->resp_started) {
        if (u->requests > 1 && !ex->retried && ex->retryable) {
            ex->retried = true;
            if (try_again(u, u->target))
                return;
        }
        rlb_conn_lb_error(c, 502);
        return;
    }
    if (ex->resp_head_done && res == 0) {
        /* A body delimited by the close completes now. */
        int err = llhttp_finish(&ex->resp);
        if (err == HPE_OK && !ex->respctx.message_done) {
            /* llhttp_finish() calls on_message_complete for close-delimited bodies. */
        }
        if (ex->respctx.message_done) {
            ex->resp_done = true;
            rlb_conn_flush(c);
            rlb_conn_exchange_done(c);
            return;
        }
    }
    if (!ex->resp_head_done) {
        rlb_conn_lb_error(c, 502);
        return;
    }
    rlb_conn_abort(c);
}

static void up_on_recv(struct rlb_stream *s, int res)
{
    struct rlb_upconn *u = (struct rlb_upconn *)s;
    if (!u->ex) {
        /* Idle in the pool: the target closed it, or sent bytes nobody asked for. */
        up_close(u, res != 0);
        return;
    }
    u->active_ms = s->w->now_ms;
    if (res <= 0) {
        up_failed(u, res);
        return;
    }
    if (!u->ex->resp_started) {
        u->ex->resp_started = true;
        rlb_bq_clear(&s->w->segs, &u->ex->retry);
        u->ex->retryable = false;
    }
    up_process(u);
}

static void up_on_sent(struct rlb_stream *s, int res)
{
    struct rlb_upconn *u = (struct rlb_upconn *)s;
    if (!u->ex)
        return;
    u->active_ms = s->w->now_ms;
    if (res < 0) {
        up_failed(u, res);
        return;
    }
    struct rlb_conn *c = u->ex->c;
    if ((c->state == RLB_C_EXCHANGE && !u->ex->req_done) || c->state == RLB_C_TUNNEL)
        if (u->st.out.bytes < RLB_HIGH_WATER)
            rlb_conn_resume(c);
}

/* Parse and relay one response head at the start of u->st.in. Returns 1 when a head was
 * handled, 0 when more bytes are needed, -1 when the exchange ended (error reported). */
static int relay_head(struct rlb_upconn *u)
{
    struct rlb_worker *w = u->st.w;
    struct rlb_exchange *ex = u->ex;
    struct rlb_conn *c = ex->c;
    struct rlb_bq *in = &u->st.in;
    uint32_t found = 0, off = 0;
    for (struct rlb_seg *s = in->head; s && !found; s = s->next) {
        if (off + s->len > u->scan.scanned) {
            uint32_t skip = u->scan.scanned - off;
            found = rlb_http1_scan(&u->scan, s->data + skip, s->len - skip);
        }
        off += s->len;
    }
    if (!found) {
        if (u->scan.scanned > RLB_MAX_RESPONSE_HEAD) {
            u->reusable = false;
            rlb_conn_lb_error(c, 502);
            return -1;
        }
        return 0;
    }
    if (found > RLB_MAX_RESPONSE_HEAD) {
        u->reusable = false;
        rlb_conn_lb_error(c, 502);
        return -1;
    }
    struct rlb_bq headq = {0};
    struct rlb_block *copy = NULL;
    char *buf;
    if (in->head->len >= found) {
        rlb_bq_move(&w->segs, in, &headq, found);
        buf = headq.head->data;
    } else {
        copy = rlb_block_new(found);
        if (!copy) {
            rlb_conn_lb_error(c, 502);
            return -1;
        }
        rlb_bq_copyout(in, copy->data, found);
        rlb_bq_consume(&w->segs, in, found);
        buf = copy->data;
    }
    memset(&u->scan, 0, sizeof(u->scan));
    struct rlb_http_head *h = &w->head;
    llhttp_init(&ex->resp, HTTP_RESPONSE, rlb_http1_settings());
    ex->resp.data = &ex->respctx;
    ex->respctx.head = h;
    ex->respctx.skip_body = ex->is_head;
    ex->respctx.collect = false;
    int err = rlb_http1_parse_head(&ex->resp, &ex->respctx, buf, found);
    ex->respctx.head = NULL;
    int ret = 1;
    if (err != HPE_OK || h->major != 1) {
        u->reusable = false;
        rlb_conn_lb_error(c, 502);
        ret = -1;
        goto out;
    }
    if (h->has_transfer_encoding && !h->chunked) {
        /* Transfer-Encoding whose last coding is not chunked: the length would be the
         * connection's close, which nothing downstream can check. Never relayed. */
        u->reusable = false;
        rlb_conn_lb_error(c, 502);
        ret = -1;
        goto out;
    }
    if (h->has_content_length && h->has_transfer_encoding) {
        /* Conflicting framing from a target is never relayed. */
        u->reusable = false;
        rlb_conn_lb_error(c, 502);
        ret = -1;
        goto out;
    }
    if (h->status >= 100 && h->status < 200 && h->status != 101) {
        /* Interim response: relay to HTTP/1.1 clients, then wait for the final one. */
        if (!ex->http10) {
            uint32_t cap = rlb_http1_response_bound(h);
            struct rlb_block *b = rlb_block_new(cap);
            uint32_t n = b ? rlb_http1_write_response(b->data, cap, h, 0, NULL) : 0;
            struct rlb_seg *seg = n ? rlb_seg_from_block(&w->segs, b, b->data, n) : NULL;
            if (seg)
                rlb_bq_push(rlb_conn_out(c), seg);
            else if (b)
                rlb_block_unref(b);
        }
        goto out;
    }
    unsigned flags = 0;
    bool tunnel = h->status == 101 && ex->upgrade;
    ex->target_status = h->status;
    ex->resp_us = w->now_us;
    if (ex->group)
        rlb_metrics_target_response(w->metrics, ex->group->metric_id, h->status,
                                    w->now_us - ex->sent_us);
    if (h->status == 101 && !ex->upgrade) {
        u->reusable = false;
        rlb_conn_lb_error(c, 502);
        ret = -1;
        goto out;
    }
    bool no_body = ex->is_head || h->status == 204 || h->status == 304 || tunnel;
    bool close_delimited = !no_body && !h->chunked && !h->has_content_length;
    if (!h->keep_alive || close_delimited)
        u->reusable = false;
    if (ex->http10 && h->chunked && !no_body) {
        ex->dechunk = true;
        ex->respctx.collect = true;
        flags |= RLB_RESP_DECHUNK;
        ex->resp_close = true; /* the end of a de-chunked body is the close */
    }
    if (close_delimited || c->close_after || w->draining)
        ex->resp_close = true;
    if (ex->resp_close)
        flags |= RLB_RESP_CLOSE;
    else if (ex->http10)
        flags |= RLB_RESP_KEEPALIVE10;
    char cookie[640];
    const char *extra = NULL;
    size_t used = 0;
    bool https = ex->lst->cfg->protocol == RLB_PROTO_HTTPS;
    if (ex->sticky_duration_s && !tunnel) {
        /* Target-group stickiness: (re)issue AWSALBTG naming the chosen group. */
        char v[RLB_STICKY_COOKIE_LEN + 1];
        uint64_t expires = (uint64_t)time(NULL) + ex->sticky_duration_s;
        rlb_sticky_encode(ex->sticky_group, expires, v);
        const char *date = rlb_http1_date_at(expires);
        used += (size_t)snprintf(cookie + used, sizeof(cookie) - used,
                                 "Set-Cookie: AWSALBTG=%s; Expires=%s; Path=/\r\n"
                                 "Set-Cookie: AWSALBTGCORS=%s; Expires=%s; Path=/; "
                                 "SameSite=None%s\r\n",
                                 v, date, v, date, https ? "; Secure" : "");
        extra = cookie;
    }
    if (ex->target_sticky_s && !tunnel && used < sizeof(cookie)) {
        /* Target stickiness (lb_cookie): AWSALB names the target. */
        char v[RLB_STICKY_COOKIE_LEN + 1];
        uint64_t expires = (uint64_t)time(NULL) + ex->target_sticky_s;
        rlb_sticky_encode(ex->sticky_target, expires, v);
        const char *date = rlb_http1_date_at(expires);
        snprintf(cookie + used, sizeof(cookie) - used,
                 "Set-Cookie: AWSALB=%s; Expires=%s; Path=/\r\n"
                 "Set-Cookie: AWSALBCORS=%s; Expires=%s; Path=/; SameSite=None%s\r\n",
                 v, date, v, date, https ? "; Secure" : "");
        extra = cookie;
    }
    uint32_t cap = rlb_http1_response_bound(h) + (extra ? (uint32_t)strlen(extra) : 0);
    struct rlb_block *b = rlb_block_new(cap);
    uint32_t n = b ? rlb_http1_write_response(b->data, cap, h, flags, extra) : 0;
    struct rlb_seg *seg = n ? rlb_seg_from_block(&w->segs, b, b->data, n) : NULL;
    if (!seg) {
        if (b)
            rlb_block_unref(b);
        rlb_conn_lb_error(c, 502);
        ret = -1;
        goto out;
    }
    rlb_bq_push(rlb_conn_out(c), seg);
    ex->resp_head_done = true;
    if (tunnel) {
        ex->resp_done = true;
        u->reusable = false;
        c->state = RLB_C_TUNNEL;
    } else if (ex->respctx.message_done) {
        ex->resp_done = true;
    }
out:
    rlb_bq_clear(&w->segs, &headq);
    rlb_block_unref(copy);
    return ret;
}

/* Move response body bytes to the client while it can take them. */
static int pump_response(struct rlb_upconn *u)
{
    struct rlb_worker *w = u->st.w;
    struct rlb_exchange *ex = u->ex;
    struct rlb_conn *c = ex->c;
    while (!ex->resp_done && u->st.in.bytes > 0 && rlb_conn_pending(c) < RLB_HIGH_WATER) {
        struct rlb_seg *s = u->st.in.head;
        ex->respctx.n_spans = 0;
        int err = llhttp_execute(&ex->resp, s->data, s->len);
        uint32_t used;
        if (err == HPE_OK) {
            used = s->len;
        } else if (err == HPE_PAUSED) {
            used = (uint32_t)(llhttp_get_error_pos(&ex->resp) - s->data);
            llhttp_resume(&ex->resp);
            if (ex->respctx.message_done)
                ex->resp_done = true;
        } else {
            u->reusable = false;
            rlb_conn_abort(c);
            return -1;
        }
        if (ex->dechunk) {
            for (uint32_t i = 0; i < ex->respctx.n_spans; i++) {
                struct rlb_seg *part = rlb_seg_clone(&w->segs, s, ex->respctx.spans[i].len);
                if (!part) {
                    rlb_conn_abort(c);
                    return -1;
                }
                part->data = (char *)ex->respctx.spans[i].p;
                rlb_bq_push(rlb_conn_out(c), part);
            }
            rlb_bq_consume(&w->segs, &u->st.in, used);
        } else {
            rlb_bq_move(&w->segs, &u->st.in, rlb_conn_out(c), used);
        }
    }
    if (ex->resp_done && u->st.in.bytes > 0)
        u->reusable = false; /* bytes after the end of a response: never reuse */
    return 0;
}

static void up_process(struct rlb_upconn *u)
{
    struct rlb_worker *w = u->st.w;
    struct rlb_exchange *ex = u->ex;
    struct rlb_conn *c = ex->c;
    if (c->state == RLB_C_TUNNEL) {
        if (u->st.in.bytes) {
            rlb_bq_move(&w->segs, &u->st.in, rlb_conn_out(c), u->st.in.bytes);
            rlb_conn_flush(c);
        }
        rlb_stream_want_recv(&u->st, rlb_conn_pending(c) < RLB_HIGH_WATER);
        return;
    }
    while (!ex->resp_head_done && u->st.in.bytes > 0) {
        int r = relay_head(u);
        if (r < 0)
            return;
        if (r == 0)
            break;
    }
    if (c->state == RLB_C_TUNNEL) {
        rlb_conn_flush(c);
        rlb_conn_resume(c);
        if (c->ex == ex && ex->u == u)
            up_process(u);
        return;
    }
    if (ex->resp_head_done && !ex->resp_done && pump_response(u) < 0)
        return;
    rlb_conn_flush(c);
    if (ex->resp_done) {
        rlb_conn_exchange_done(c);
        return;
    }
    rlb_stream_want_recv(&u->st, rlb_conn_pending(c) < RLB_HIGH_WATER);
}
