/* admin.c — admin HTTP server (see admin.h).
 *
 * Per connection: recv into a growing buffer until a complete head (and body, by
 * Content-Length) is there, answer, and keep the connection for the next request. Requests
 * over 1 MiB get 413; malformed ones 400. Everything runs on the main thread.
 *
 * JSON answers are built with json.h (libfyaml documents emitted in JSON mode).
 */
#include "ringlb/admin.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/health.h"
#include "ringlb/http1.h"
#include "ringlb/json.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/scaling.h"
#include "ringlb/snapshot.h"

#define ADMIN_MAX_REQUEST (1024u * 1024u + 65536u)

struct admin_conn {
    struct admin_conn *next;
    int fd;
    int pending;         /* operations in flight */
    bool closing;
    char *in;            /* received bytes */
    uint32_t in_len, in_cap;
    char *out;           /* response being sent */
    uint32_t out_len, out_off;
    bool close_after;
};

static int admin_fd = -1;
static bool admin_armed;
static struct admin_conn *admin_conns;

static inline uint64_t tag(void *p, enum rlb_main_op op) { return (uint64_t)(uintptr_t)p | op; }

static void arm_accept(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    io_uring_prep_multishot_accept(sqe, admin_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, RLB_MAIN_ADMIN_ACCEPT);
    admin_armed = true;
}

static struct io_uring_sqe *sqe_get(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

int rlb_admin_start(struct io_uring *ring, const struct rlb_config *cfg)
{
    if (!cfg->admin.listen)
        return 0;
    const struct rlb_sockaddr *a = &cfg->admin.addr;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 128) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    admin_fd = fd;
    arm_accept(ring);
    return 0;
}

static void conn_free(struct admin_conn *c)
{
    for (struct admin_conn **pp = &admin_conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_close(struct admin_conn *c)
{
    if (!c->closing) {
        c->closing = true;
        close(c->fd);
        c->fd = -1;
    }
    if (c->pending == 0)
        conn_free(c);
}

static void arm_recv(struct io_uring *ring, struct admin_conn *c)
{
    if (c->in_cap - c->in_len < 4096) {
        uint32_t ncap = c->in_cap ? c->in_cap * 2 : 8192;
        char *n = realloc(c->in, ncap);
        if (!n) {
            conn_close(c);
            return;
        }
        c->in = n;
        c->in_cap = ncap;
    }
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_RECV));
    c->pending++;
}

/* Queue a response; `extra` (NULL or "Name: value\r\n"...) is added to the head. */
static void send_response(struct io_uring *ring, struct admin_conn *c, int status,
                          const char *ctype, const char *body, size_t body_len, bool close,
                          const char *extra)
{
    size_t cap = 512 + (extra ? strlen(extra) : 0) + body_len;
    free(c->out);
    c->out = malloc(cap);
    if (!c->out) {
        conn_close(c);
        return;
    }
    int n = snprintf(c->out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: %s\r\n\r\n",
                     status, rlb_http1_reason(status), ctype, body_len, extra ? extra : "",
                     close ? "close" : "keep-alive");
    memcpy(c->out + n, body, body_len);
    c->out_len = (uint32_t)(n + (int)body_len);
    c->out_off = 0;
    c->close_after = close;
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_send(sqe, c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_SEND));
    c->pending++;
}

/* --- JSON answers (json.h: libfyaml documents) --------------------------------------------- */

/* A JSON answer being built; `ok` turns false at the first failure (out of memory). */
struct jdoc {
    struct rlb_json j;
    bool ok;
};

static struct fy_node *jcheck(struct jdoc *d, struct fy_node *n)
{
    if (!n)
        d->ok = false;
    return n;
}

static void jset(struct jdoc *d, struct fy_node *obj, const char *key, struct fy_node *v)
{
    if (!obj || rlb_json_set(&d->j, obj, key, v) < 0)
        d->ok = false;
}

static void jpush(struct jdoc *d, struct fy_node *arr, struct fy_node *v)
{
    if (!arr || rlb_json_push(arr, v) < 0)
        d->ok = false;
}

static struct fy_node *jstr(struct jdoc *d, const char *s)
{
    return jcheck(d, rlb_json_str(&d->j, s));
}

static struct fy_node *jint(struct jdoc *d, int64_t v) { return jcheck(d, rlb_json_int(&d->j, v)); }

static bool jdoc_init(struct jdoc *d)
{
    d->ok = rlb_json_init(&d->j) == 0;
    return d->ok;
}

/* Emit `root` as one-line JSON and send it (the document is freed); 500 when it could not be
 * built. */
static void send_json(struct io_uring *ring, struct admin_conn *c, int status, struct jdoc *d,
                      struct fy_node *root, bool close, const char *extra)
{
    char *text = d->ok && root ? rlb_json_emit(&d->j, root, false) : NULL;
    rlb_json_free(&d->j);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";
        send_response(ring, c, 500, "application/json", oom, sizeof(oom) - 1, true, NULL);
        return;
    }
    send_response(ring, c, status, "application/json", text, strlen(text), close, extra);
    free(text);
}

static void send_json_error_ex(struct io_uring *ring, struct admin_conn *c, int status,
                               const char *msg, bool close, const char *extra)
{
    struct jdoc d;
    if (!jdoc_init(&d)) {
        send_response(ring, c, status, "application/json", "{}\n", 3, true, extra);
        return;
    }
    struct fy_node *root = jcheck(&d, rlb_json_obj(&d.j));
    jset(&d, root, "error", jstr(&d, msg));
    send_json(ring, c, status, &d, root, close, extra);
}

static void send_json_error(struct io_uring *ring, struct admin_conn *c, int status,
                            const char *msg, bool close)
{
    send_json_error_ex(ring, c, status, msg, close, NULL);
}

/* --- GET /api/v1/target-groups ------------------------------------------------------------- */

static const char *algorithm_name(enum rlb_algorithm a)
{
    switch (a) {
    case RLB_ALG_LEAST_OUTSTANDING:
        return "least_outstanding_requests";
    case RLB_ALG_WEIGHTED_RANDOM:
        return "weighted_random";
    default:
        return "round_robin";
    }
}

/* The ALB's description text for a target's reason ("" when none). */
static void describe(const struct rlb_target *t, int reason, char *out, size_t n)
{
    out[0] = '\0';
    switch (reason) {
    case RLB_REASON_INITIAL_HEALTH_CHECKING:
        snprintf(out, n, "Initial health checks in progress");
        break;
    case RLB_REASON_RESPONSE_CODE_MISMATCH: {
        int code = rlb_health_last_code(t);
        if (code)
            snprintf(out, n, "Health checks failed with these codes: [%d]", code);
        else
            snprintf(out, n, "Health checks failed");
        break;
    }
    case RLB_REASON_TIMEOUT:
        snprintf(out, n, "Request timed out");
        break;
    case RLB_REASON_FAILED_HEALTH_CHECKS:
        snprintf(out, n, "Health checks failed");
        break;
    case RLB_REASON_DEREGISTRATION_IN_PROGRESS:
        snprintf(out, n, "Target deregistration is in progress");
        break;
    case RLB_REASON_HEALTH_CHECK_DISABLED:
        snprintf(out, n, "Health checks are disabled");
        break;
    case RLB_REASON_NOT_REGISTERED:
        snprintf(out, n, "Target is not registered to the target group");
        break;
    default:
        break;
    }
}

static struct fy_node *target_json(struct jdoc *d, const struct rlb_target *t)
{
    struct fy_node *m = jcheck(d, rlb_json_obj(&d->j));
    char ip[64], desc[128];
    rlb_sockaddr_ip(&t->addr, ip, sizeof(ip));
    int state = atomic_load_explicit(&t->state, memory_order_acquire);
    int reason = atomic_load_explicit(&t->reason, memory_order_relaxed);
    int32_t inflight = atomic_load_explicit(&t->inflight, memory_order_relaxed);
    const char *rname = rlb_target_reason_name(reason);
    describe(t, reason, desc, sizeof(desc));
    jset(d, m, "id", jstr(d, ip));
    jset(d, m, "port", jint(d, rlb_sockaddr_port(&t->addr)));
    jset(d, m, "state", jstr(d, rlb_target_state_name(state)));
    jset(d, m, "reason", rname ? jstr(d, rname) : jcheck(d, rlb_json_null(&d->j)));
    jset(d, m, "description", desc[0] ? jstr(d, desc) : jcheck(d, rlb_json_null(&d->j)));
    jset(d, m, "in_flight", jint(d, inflight > 0 ? inflight : 0));
    return m;
}

static struct fy_node *group_json(struct jdoc *d, const struct rlb_group *g)
{
    const struct rlb_target_group_cfg *gc = g->cfg;
    const struct rlb_health_check_cfg *hc = &gc->health_check;
    struct fy_node *m = jcheck(d, rlb_json_obj(&d->j));
    jset(d, m, "name", jstr(d, gc->name));
    jset(d, m, "protocol", jstr(d, gc->protocol == RLB_PROTO_HTTPS ? "HTTPS" : "HTTP"));
    jset(d, m, "port", jint(d, gc->port));
    jset(d, m, "algorithm", jstr(d, algorithm_name(gc->algorithm)));
    jset(d, m, "deregistration_delay_ms", jint(d, (int64_t)gc->deregistration_delay_ms));
    jset(d, m, "slow_start_ms", jint(d, (int64_t)gc->slow_start_ms));
    struct fy_node *h = jcheck(d, rlb_json_obj(&d->j));
    jset(d, h, "enabled", jcheck(d, rlb_json_bool(&d->j, hc->enabled)));
    jset(d, h, "protocol", jstr(d, "HTTP"));
    jset(d, h, "path", jstr(d, hc->path));
    jset(d, h, "port", hc->port ? jint(d, hc->port) : jstr(d, "traffic-port"));
    jset(d, h, "interval_ms", jint(d, (int64_t)hc->interval_ms));
    jset(d, h, "timeout_ms", jint(d, (int64_t)hc->timeout_ms));
    jset(d, h, "healthy_threshold", jint(d, hc->healthy_threshold));
    jset(d, h, "unhealthy_threshold", jint(d, hc->unhealthy_threshold));
    jset(d, h, "matcher", jstr(d, hc->matcher));
    jset(d, m, "health_check", h);
    struct fy_node *ts = jcheck(d, rlb_json_arr(&d->j));
    for (size_t i = 0; i < g->n_targets; i++)
        jpush(d, ts, target_json(d, g->targets[i]));
    jset(d, m, "targets", ts);
    return m;
}

/* GET /api/v1/target-groups (name == NULL) or /api/v1/target-groups/{name}. */
static void get_target_groups(struct io_uring *ring, struct admin_conn *c, const char *name,
                              bool close)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    const struct rlb_group *one = NULL;
    if (name) {
        for (size_t g = 0; s && g < s->cfg->n_target_groups; g++)
            if (strcmp(s->groups[g].cfg->name, name) == 0)
                one = &s->groups[g];
        if (!one) {
            char msg[128];
            snprintf(msg, sizeof(msg), "target group %.64s not found", name);
            send_json_error(ring, c, 404, msg, close);
            return;
        }
    }
    struct jdoc d;
    if (!jdoc_init(&d)) {
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    struct fy_node *root;
    if (one) {
        root = group_json(&d, one);
    } else {
        root = jcheck(&d, rlb_json_obj(&d.j));
        struct fy_node *arr = jcheck(&d, rlb_json_arr(&d.j));
        for (size_t g = 0; s && g < s->cfg->n_target_groups; g++)
            jpush(&d, arr, group_json(&d, &s->groups[g]));
        jset(&d, root, "target_groups", arr);
    }
    if (one)   /* the last complete metrics window, under CloudWatch names */
        jset(&d, root, "metrics", jcheck(&d, rlb_metrics_group_json_node(d.j.doc, one)));
    send_json(ring, c, 200, &d, root, close, NULL);
}

/* GET /metrics: Prometheus text exposition of every counter. */
static void get_metrics(struct io_uring *ring, struct admin_conn *c, bool close)
{
    size_t len = 0;
    char *text = rlb_metrics_render_string(rlb_snapshot_current(), &len);
    if (!text) {
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    send_response(ring, c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, close,
                  NULL);
    free(text);
}

/* GET /api/v1/scaling: the scaling advice of every group with a scaling block (scaling.h). */
static void get_scaling(struct io_uring *ring, struct admin_conn *c, bool close)
{
    struct jdoc d;
    if (!jdoc_init(&d)) {
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    send_json(ring, c, 200, &d, jcheck(&d, rlb_scaling_json(&d.j, 0)), close, NULL);
}

/* Route one complete request. */
static void handle(struct io_uring *ring, struct admin_conn *c, const char *method,
                   size_t mlen, const char *url, size_t ulen, bool keep_alive)
{
    const char *q = memchr(url, '?', ulen);
    size_t plen = q ? (size_t)(q - url) : ulen;
    bool get = mlen == 3 && memcmp(method, "GET", 3) == 0;
    static const char tg_prefix[] = "/api/v1/target-groups";
    const size_t tg_len = sizeof(tg_prefix) - 1;
    if (plen == 8 && memcmp(url, "/healthz", 8) == 0) {
        if (!get) {
            send_json_error_ex(ring, c, 405, "method not allowed", !keep_alive,
                               "Allow: GET\r\n");
            return;
        }
        send_response(ring, c, 200, "text/plain", "ok\n", 3, !keep_alive, NULL);
        return;
    }
    if (plen == 8 && memcmp(url, "/metrics", 8) == 0) {
        if (!get) {
            send_json_error_ex(ring, c, 405, "method not allowed", !keep_alive,
                               "Allow: GET\r\n");
            return;
        }
        get_metrics(ring, c, !keep_alive);
        return;
    }
    if (plen == 15 && memcmp(url, "/api/v1/scaling", 15) == 0) {
        if (!get) {
            send_json_error_ex(ring, c, 405, "method not allowed", !keep_alive,
                               "Allow: GET\r\n");
            return;
        }
        get_scaling(ring, c, !keep_alive);
        return;
    }
    if (plen >= tg_len && memcmp(url, tg_prefix, tg_len) == 0 &&
        (plen == tg_len || url[tg_len] == '/')) {
        /* /api/v1/target-groups or /api/v1/target-groups/{tg} */
        const char *rest = url + tg_len;
        size_t rlen = plen - tg_len;
        char name[128];
        name[0] = '\0';
        if (rlen > 0) {
            if (rlen < 2 || rlen - 1 >= sizeof(name) || memchr(rest + 1, '/', rlen - 1) ||
                memchr(rest + 1, '\0', rlen - 1)) {
                send_json_error(ring, c, 404, "not found", !keep_alive);
                return;
            }
            memcpy(name, rest + 1, rlen - 1);
            name[rlen - 1] = '\0';
        }
        if (!get) {
            send_json_error_ex(ring, c, 405, "method not allowed", !keep_alive,
                               "Allow: GET\r\n");
            return;
        }
        get_target_groups(ring, c, name[0] ? name : NULL, !keep_alive);
        return;
    }
    send_json_error(ring, c, 404, "not found", !keep_alive);
}

struct admin_parse {
    const char *method, *url;
    size_t mlen, ulen;
    bool done;
};

static int a_on_method(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    ap->method = at;
    ap->mlen = len;
    return 0;
}

static int a_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    if (!ap->url)
        ap->url = at;
    ap->ulen = (size_t)(at + len - ap->url);
    return 0;
}

static int a_on_complete(llhttp_t *p)
{
    struct admin_parse *ap = p->data;
    ap->done = true;
    return HPE_PAUSED;
}

static void process(struct io_uring *ring, struct admin_conn *c)
{
    static llhttp_settings_t st;
    static bool st_ready;
    if (!st_ready) {
        llhttp_settings_init(&st);
        st.on_method = a_on_method;
        st.on_url = a_on_url;
        st.on_message_complete = a_on_complete;
        st_ready = true;
    }
    llhttp_t p;
    struct admin_parse ap = {0};
    llhttp_init(&p, HTTP_REQUEST, &st);
    p.data = &ap;
    int err = llhttp_execute(&p, c->in, c->in_len);
    if (err == HPE_PAUSED && ap.done) {
        size_t used = (size_t)(llhttp_get_error_pos(&p) - c->in);
        bool ka = llhttp_should_keep_alive(&p);
        /* Copy what handle() needs before the buffer moves. */
        char method[16], url[2048];
        size_t ml = ap.mlen < sizeof(method) ? ap.mlen : sizeof(method) - 1;
        size_t ul = ap.ulen < sizeof(url) ? ap.ulen : sizeof(url) - 1;
        memcpy(method, ap.method, ml);
        memcpy(url, ap.url, ul);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
        handle(ring, c, method, ml, url, ul, ka);
        return;
    }
    if (err != HPE_OK) {
        send_json_error(ring, c, 400, "malformed request", true);
        return;
    }
    if (c->in_len > ADMIN_MAX_REQUEST) {
        send_json_error(ring, c, 413, "request too large", true);
        return;
    }
    arm_recv(ring, c);
}

void rlb_admin_complete(struct io_uring *ring, enum rlb_main_op op, void *ptr, int res)
{
    if (op == RLB_MAIN_ADMIN_ACCEPT) {
        if (res >= 0) {
            if (admin_fd < 0) {
                close(res);
                return;
            }
            struct admin_conn *c = calloc(1, sizeof(*c));
            if (!c) {
                close(res);
                return;
            }
            c->fd = res;
            c->next = admin_conns;
            admin_conns = c;
            arm_recv(ring, c);
        }
        return;
    }
    struct admin_conn *c = ptr;
    c->pending--;
    if (c->closing) {
        if (c->pending == 0)
            conn_free(c);
        return;
    }
    if (op == RLB_MAIN_ADMIN_RECV) {
        if (res <= 0) {
            conn_close(c);
            return;
        }
        c->in_len += (uint32_t)res;
        process(ring, c);
    } else if (op == RLB_MAIN_ADMIN_SEND) {
        if (res < 0) {
            conn_close(c);
            return;
        }
        c->out_off += (uint32_t)res;
        if (c->out_off < c->out_len) {
            struct io_uring_sqe *sqe = sqe_get(ring);
            io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off,
                               MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_SEND));
            c->pending++;
            return;
        }
        if (c->close_after) {
            conn_close(c);
            return;
        }
        if (c->in_len > 0)
            process(ring, c);
        else
            arm_recv(ring, c);
    }
}

void rlb_admin_stop(struct io_uring *ring)
{
    (void)ring;
    if (admin_fd >= 0) {
        shutdown(admin_fd, SHUT_RDWR);
        close(admin_fd);
        admin_fd = -1;
    }
    struct admin_conn *c = admin_conns;
    while (c) {
        struct admin_conn *next = c->next;
        if (!c->closing) {
            shutdown(c->fd, SHUT_RDWR);
        }
        c = next;
    }
}

void rlb_admin_destroy(void)
{
    while (admin_conns) {
        struct admin_conn *c = admin_conns;
        if (c->fd >= 0)
            close(c->fd);
        c->pending = 0;
        c->closing = true;
        conn_free(c);
    }
}
