/* admin.c — admin HTTP server (see admin.h).
 *
 * Per connection: recv into a growing buffer until a complete head (and body, by
 * Content-Length) is there, answer, and keep the connection for the next request. Requests
 * over 1 MiB get 413; malformed ones 400. Everything runs on the main thread.
 *
 * JSON answers are built with json.h (libfyaml documents emitted in JSON mode).
 */
#include "ringlb/admin.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/cluster.h"
#include "ringlb/config_json.h"
#include "ringlb/dashboard.h"
#include "ringlb/deploy.h"
#include "ringlb/health.h"
#include "ringlb/http1.h"
#include "ringlb/json.h"
#include "ringlb/json_read.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/scaling.h"
#include "ringlb/snapshot.h"
#include "ringlb/state.h"
#include "ringlb/targets.h"
#include "ringlb/weights.h"

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
    bool continue_sent;  /* "100 Continue" sent for the request being received */
    bool lingering;      /* response sent, write side shut: reading until EOF, then close */
    uint32_t drained;    /* bytes discarded while lingering */
    struct __kernel_timespec linger_ts; /* bound of each lingering recv */
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

/* The descriptor is closed through the ring, after any operation still queued on it: the
 * workers share the descriptor table (see rlb_worker_close_fd). */
static void conn_close(struct io_uring *ring, struct admin_conn *c)
{
    if (!c->closing) {
        c->closing = true;
        struct io_uring_sqe *sqe = sqe_get(ring);
        io_uring_prep_close(sqe, c->fd);
        io_uring_sqe_set_data64(sqe, RLB_MAIN_IGNORE);
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
            conn_close(ring, c);
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

#define ADMIN_LINGER_MAX (8u * 1024u * 1024u) /* discard at most this much after a close */
#define ADMIN_LINGER_MS 1000                   /* and wait at most this long per read */

/* Read and discard (lingering close), each read bounded by a linked timeout. */
static void arm_linger(struct io_uring *ring, struct admin_conn *c)
{
    if (io_uring_sq_space_left(ring) < 2)
        io_uring_submit(ring);
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_recv(sqe, c->fd, c->in, c->in_cap, 0);
    io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_RECV));
    sqe->flags |= IOSQE_IO_LINK;
    c->pending++;
    c->linger_ts.tv_sec = ADMIN_LINGER_MS / 1000;
    c->linger_ts.tv_nsec = (ADMIN_LINGER_MS % 1000) * 1000000LL;
    sqe = sqe_get(ring);
    io_uring_prep_link_timeout(sqe, &c->linger_ts, 0);
    io_uring_sqe_set_data64(sqe, RLB_MAIN_IGNORE);
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
        conn_close(ring, c);
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
    if (rlb_cluster_enabled()) /* states are this instance's own health-check view */
        jset(&d, root, "instance", jcheck(&d, rlb_json_str(&d.j, rlb_cluster_instance())));
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

/* --- access control ------------------------------------------------------------------------ */

static unsigned char token_digest[32]; /* SHA-256 of the admin token */
static bool token_required;             /* admin.token_file is set */

/* SHA-256 of s[n] into out; false when OpenSSL fails (callers then refuse access). */
static bool digest(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32;
}

bool rlb_admin_token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char da[32], db[32];
    if (!digest(a, alen, da) || !digest(b, blen, db))
        return false;
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

int rlb_admin_token_load(const char *path, char **out, char *err, size_t errlen)
{
    return rlb_admin_secret_load("admin.token_file", path, out, err, errlen);
}

int rlb_admin_secret_load(const char *what, const char *path, char **out, char *err,
                          size_t errlen)
{
    char buf[4097];
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
            return -e;
        }
        if (r == 0 || (n += (size_t)r) == sizeof(buf))
            break;
    }
    close(fd);
    int rc = 0;
    size_t lo = 0, hi = n;
    while (lo < hi && isspace((unsigned char)buf[lo]))
        lo++;
    while (hi > lo && isspace((unsigned char)buf[hi - 1]))
        hi--;
    if (n == sizeof(buf)) {
        snprintf(err, errlen, "%s %s: longer than %zu bytes", what, path,
                 sizeof(buf) - 1);
        rc = -EFBIG;
    } else if (lo == hi) {
        snprintf(err, errlen, "%s %s is empty", what, path);
        rc = -EINVAL;
    }
    for (size_t i = lo; rc == 0 && i < hi; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch < 0x21 || ch == 0x7f) {
            snprintf(err, errlen, "%s %s: the secret holds whitespace or control "
                     "characters", what, path);
            rc = -EINVAL;
        }
    }
    if (rc == 0 && !(*out = strndup(buf + lo, hi - lo)))
        rc = -ENOMEM;
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

void rlb_admin_set_token(char *token)
{
    token_required = false;
    OPENSSL_cleanse(token_digest, sizeof(token_digest));
    if (token) {
        size_t n = strlen(token);
        /* A digest failure leaves token_required set with a digest nobody can match. */
        if (!digest(token, n, token_digest))
            memset(token_digest, 0xff, sizeof(token_digest));
        token_required = true;
        OPENSSL_cleanse(token, n);
        free(token);
    }
}

/* --- request, reload hook, state ----------------------------------------------------------- */

/* One complete request, as handle() sees it (copies or pointers valid during handle()). */
struct admin_req {
    const char *auth;       /* Authorization value, or NULL */
    size_t auth_len;
    const char *body;       /* request body (may be NULL when empty) */
    size_t body_len;
};

static rlb_admin_reload_fn reload_fn;
static void *reload_arg;

void rlb_admin_set_reload(rlb_admin_reload_fn fn, void *arg)
{
    reload_fn = fn;
    reload_arg = arg;
}

int rlb_admin_state_save(void)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    if (!s || !s->cfg->state_file || rlb_cluster_enabled())
        return 0; /* a fleet keeps its state in etcd (cluster.h) */
    return rlb_state_save(s->cfg->state_file);
}

int rlb_admin_set_weights(const char *listener, uint32_t priority, const struct rlb_weight *w,
                          size_t n, char *err, size_t errlen)
{
    if (rlb_cluster_enabled())
        return rlb_cluster_weights(listener, priority, w, n, err, errlen);
    int rc = rlb_weights_set(listener, priority, w, n, err, errlen);
    if (rc < 0)
        return rc;
    rc = rlb_admin_state_save();
    if (rc < 0) {
        snprintf(err, errlen, "weights applied, but state_file cannot be written: %s",
                 strerror(-rc));
        return -EIO;
    }
    return 0;
}

/* Percent-decode one path segment s[n] into out[outn]; false when empty, too long, or it
 * decodes to '/' or NUL. */
static bool seg_decode(const char *s, size_t n, char *out, size_t outn)
{
    size_t o = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return false;
            if (!isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
                return false;
            char hex[3] = {s[i + 1], s[i + 2], 0};
            ch = (unsigned char)strtoul(hex, NULL, 16);
            i += 2;
            if (ch == '/' || ch == 0)
                return false;
        }
        if (o + 1 >= outn)
            return false;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return true;
}

/* The value of query parameter `key` (percent-decoded, '+' kept) into out[outn]. */
static bool query_param(const char *q, size_t qlen, const char *key, char *out, size_t outn)
{
    size_t kl = strlen(key);
    size_t i = 0;
    while (i < qlen) {
        size_t end = i;
        while (end < qlen && q[end] != '&')
            end++;
        if (end - i > kl && memcmp(q + i, key, kl) == 0 && q[i + kl] == '=')
            return seg_decode(q + i + kl + 1, end - i - kl - 1, out, outn);
        i = end + 1;
    }
    return false;
}

/* Does the request carry the admin token (Bearer header; for GET / also ?token=)? */
static bool authorized(const struct admin_req *rq, bool get_root, const char *query,
                       size_t qlen)
{
    if (!token_required)
        return true;
    unsigned char d[32];
    if (rq->auth && rq->auth_len > 7 && strncasecmp(rq->auth, "Bearer ", 7) == 0) {
        const char *t = rq->auth + 7;
        size_t tl = rq->auth_len - 7;
        while (tl && *t == ' ') {
            t++;
            tl--;
        }
        return tl && digest(t, tl, d) && CRYPTO_memcmp(d, token_digest, sizeof(d)) == 0;
    }
    char qt[4096];
    if (get_root && query && query_param(query, qlen, "token", qt, sizeof(qt))) {
        bool ok = digest(qt, strlen(qt), d) && CRYPTO_memcmp(d, token_digest, sizeof(d)) == 0;
        OPENSSL_cleanse(qt, sizeof(qt));
        return ok;
    }
    return false;
}

/* --- POST /api/v1/reload, GET /api/v1/config ------------------------------------------------ */

static void post_reload(struct io_uring *ring, struct admin_conn *c, bool close)
{
    if (!reload_fn) {
        send_json_error(ring, c, 500, "reload is not available", close);
        return;
    }
    struct rlb_config_errors errs = {0};
    uint64_t gen = 0;
    int rc = reload_fn(reload_arg, &errs, &gen);
    struct jdoc d;
    if (!jdoc_init(&d)) {
        rlb_config_errors_free(&errs);
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    struct fy_node *root = jcheck(&d, rlb_json_obj(&d.j));
    if (rc == 0) {
        jset(&d, root, "generation", jcheck(&d, rlb_json_uint(&d.j, gen)));
        rlb_config_errors_free(&errs);
        send_json(ring, c, 200, &d, root, close, NULL);
        return;
    }
    size_t total = 32;
    for (size_t i = 0; i < errs.n; i++)
        total += strlen(errs.msgs[i]) + 1;
    char *joined = malloc(total);
    if (joined) {
        joined[0] = '\0';
        for (size_t i = 0; i < errs.n; i++) {
            if (i)
                strcat(joined, "\n");
            strcat(joined, errs.msgs[i]);
        }
        if (errs.n == 0)
            strcpy(joined, "reload failed");
    }
    jset(&d, root, "error", jstr(&d, joined ? joined : "reload failed"));
    struct fy_node *arr = jcheck(&d, rlb_json_arr(&d.j));
    for (size_t i = 0; i < errs.n; i++)
        jpush(&d, arr, jstr(&d, errs.msgs[i]));
    jset(&d, root, "errors", arr);
    free(joined);
    rlb_config_errors_free(&errs);
    send_json(ring, c, 400, &d, root, close, NULL);
}

static void get_config(struct io_uring *ring, struct admin_conn *c, bool close)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    struct jdoc d;
    if (!s || !jdoc_init(&d)) {
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    struct fy_node *root = jcheck(&d, rlb_json_obj(&d.j));
    jset(&d, root, "generation", jcheck(&d, rlb_json_uint(&d.j, s->generation)));
    jset(&d, root, "config", jcheck(&d, rlb_config_json(&d.j, s->cfg)));
    jset(&d, root, "runtime", jcheck(&d, rlb_state_json(&d.j)));
    send_json(ring, c, 200, &d, root, close, NULL);
}

/* --- target registration ------------------------------------------------------------------- */

static const struct rlb_group *find_group(const struct rlb_snapshot *s, const char *name)
{
    for (size_t g = 0; s && g < s->cfg->n_target_groups; g++)
        if (strcmp(s->groups[g].cfg->name, name) == 0)
            return &s->groups[g];
    return NULL;
}

/* Parse {"targets":[{"id":IP,"port":N},...]} into a malloc'd address array. Returns the
 * count, or -1 with a message in err. */
static ssize_t parse_targets_body(const struct admin_req *rq, uint16_t default_port,
                                  struct rlb_sockaddr **out, char *err, size_t errlen)
{
    static const char *const keys[] = {"targets", NULL};
    static const char *const tkeys[] = {"id", "port", NULL};
    char why[160];
    struct fy_document *doc = rlb_json_parse(rq->body, rq->body_len, err, errlen);
    if (!doc)
        return -1;
    struct fy_node *root = fy_document_root(doc);
    struct fy_node *ts = rlb_json_get(root, "targets");
    ssize_t n = -1;
    struct rlb_sockaddr *addrs = NULL;
    if (!rlb_json_is_obj(root)) {
        snprintf(err, errlen, "expected an object {\"targets\":[...]}");
        goto out;
    }
    if (rlb_json_check_keys(root, keys, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        goto out;
    }
    int count = rlb_json_is_arr(ts) ? fy_node_sequence_item_count(ts) : -1;
    if (count <= 0) {
        snprintf(err, errlen, "targets: expected a non-empty array");
        goto out;
    }
    addrs = calloc((size_t)count, sizeof(*addrs));
    if (!addrs) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < count; i++) {
        struct fy_node *t = fy_node_sequence_get_by_index(ts, i);
        const char *id;
        size_t idl;
        int64_t port = default_port;
        char ip[64], hp[80];
        if (!rlb_json_is_obj(t)) {
            snprintf(err, errlen, "targets[%d]: expected an object", i);
            goto out;
        }
        if (rlb_json_check_keys(t, tkeys, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "targets[%d]: %s", i, why);
            goto out;
        }
        if (rlb_json_get_str(rlb_json_get(t, "id"), &id, &idl) < 0 || idl == 0 ||
            idl >= sizeof(ip)) {
            snprintf(err, errlen, "targets[%d].id: expected an IP address string", i);
            goto out;
        }
        memcpy(ip, id, idl);
        ip[idl] = '\0';
        struct fy_node *pn = rlb_json_get(t, "port");
        if (pn && rlb_json_get_int(pn, 1, 65535, &port) < 0) {
            snprintf(err, errlen, "targets[%d].port: expected an integer 1..65535", i);
            goto out;
        }
        if (strchr(ip, '[') || strchr(ip, ']') || strchr(ip, '%') ||
            (size_t)snprintf(hp, sizeof(hp), strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip,
                             (long long)port) >= sizeof(hp) ||
            rlb_sockaddr_parse(hp, &addrs[i]) < 0) {
            snprintf(err, errlen, "targets[%d].id: \"%s\" is not an IP address", i, ip);
            goto out;
        }
    }
    n = count;
out:
    fy_document_destroy(doc);
    if (n < 0)
        free(addrs);
    else
        *out = addrs;
    return n;
}

/* POST /api/v1/target-groups/{tg}/targets[/deregister]. */
static void post_targets(struct io_uring *ring, struct admin_conn *c, const char *name,
                         bool deregister, const struct admin_req *rq, bool close)
{
    const struct rlb_group *g = find_group(rlb_snapshot_current(), name);
    char err[300];
    if (!g) {
        snprintf(err, sizeof(err), "target group %.64s not found", name);
        send_json_error(ring, c, 404, err, close);
        return;
    }
    struct rlb_sockaddr *addrs = NULL;
    ssize_t n = parse_targets_body(rq, g->cfg->port, &addrs, err, sizeof(err));
    if (n < 0) {
        send_json_error(ring, c, 400, err, close);
        return;
    }
    int rc = rlb_cluster_enabled()
                 ? rlb_cluster_targets(name, addrs, (size_t)n, !deregister, err, sizeof(err))
             : deregister ? rlb_targets_deregister(name, addrs, (size_t)n)
                          : rlb_targets_register(name, addrs, (size_t)n);
    free(addrs);
    if (rc == -EAGAIN) {
        send_json_error(ring, c, 503, err, close);
        return;
    }
    if (rc == -ENOENT) {
        snprintf(err, sizeof(err), "target group %.64s not found", name);
        send_json_error(ring, c, 404, err, close);
        return;
    }
    if (rc < 0) {
        send_json_error(ring, c, 500, "out of memory", close);
        return;
    }
    rc = rlb_admin_state_save();
    if (rc < 0) {
        snprintf(err, sizeof(err), "%s applied, but state_file cannot be written: %s",
                 deregister ? "deregistration" : "registration", strerror(-rc));
        send_json_error(ring, c, 500, err, close);
        return;
    }
    get_target_groups(ring, c, name, close);
}

/* --- listeners and rules ------------------------------------------------------------------- */

static const struct rlb_listener *find_listener(const struct rlb_snapshot *s, const char *name)
{
    for (size_t i = 0; s && i < s->cfg->n_listeners; i++)
        if (strcmp(s->listeners[i].cfg->name, name) == 0)
            return &s->listeners[i];
    return NULL;
}

/* "default" -> 0, "1".."50000" -> the number; false otherwise. */
static bool parse_priority(const char *s, uint32_t *out)
{
    if (strcmp(s, "default") == 0) {
        *out = 0;
        return true;
    }
    if (!*s || strlen(s) > 5 || s[0] == '0')
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    unsigned long v = strtoul(s, NULL, 10);
    if (v < 1 || v > 50000)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Index of the rule with `priority` in l (-1: the default action), or -2 when none. */
static ssize_t rule_index(const struct rlb_listener *l, uint32_t priority)
{
    if (priority == 0)
        return -1;
    for (size_t r = 0; r < l->cfg->n_rules; r++)
        if (l->cfg->rules[r].priority == priority)
            return (ssize_t)r;
    return -2;
}

/* A forward action as routed now: the snapshot's groups and weights, whether they are runtime
 * weights, and the file's groups and weights when they differ. */
static struct fy_node *forward_json(struct jdoc *d, const struct rlb_snapshot *s,
                                    const struct rlb_listener *l, uint32_t priority,
                                    const struct rlb_action *a, const struct rlb_forward *f)
{
    struct fy_node *o = jcheck(d, rlb_json_obj(&d->j));
    struct fy_node *gs = jcheck(d, rlb_json_arr(&d->j));
    for (size_t i = 0; i < f->n_groups; i++) {
        struct fy_node *g = jcheck(d, rlb_json_obj(&d->j));
        jset(d, g, "name", jstr(d, f->groups[i]->cfg->name));
        jset(d, g, "weight", jint(d, f->weights[i]));
        jset(d, g, "share", jcheck(d, rlb_json_num(&d->j, f->total_weight
                                                              ? (double)f->weights[i] /
                                                                    f->total_weight
                                                              : 0.0)));
        jpush(d, gs, g);
    }
    jset(d, o, "target_groups", gs);
    struct fy_node *st = jcheck(d, rlb_json_obj(&d->j));
    char dur[32];
    jset(d, st, "enabled", jcheck(d, rlb_json_bool(&d->j, a->forward.stickiness_enabled)));
    jset(d, st, "duration",
         jstr(d, rlb_config_json_duration(a->forward.stickiness_duration_ms, dur, sizeof(dur))));
    jset(d, o, "stickiness", st);
    const struct rlb_weights_override *ov = rlb_weights_find(l->cfg->name, priority);
    bool runtime = ov && rlb_weights_applies(s->cfg, ov);
    jset(d, o, "runtime_weights", jcheck(d, rlb_json_bool(&d->j, runtime)));
    if (runtime) {
        struct fy_node *cg = jcheck(d, rlb_json_arr(&d->j));
        for (size_t i = 0; i < a->forward.n_groups; i++) {
            const struct rlb_forward_group *fg = &a->forward.groups[i];
            struct fy_node *g = jcheck(d, rlb_json_obj(&d->j));
            jset(d, g, "name", jstr(d, fg->name));
            jset(d, g, "weight", jint(d, fg->weight_set ? fg->weight : 1));
            jpush(d, cg, g);
        }
        jset(d, o, "configured_target_groups", cg);
    }
    return o;
}

/* One rule (r >= 0) or the default action (r == -1) of listener l. */
static struct fy_node *rule_json(struct jdoc *d, const struct rlb_snapshot *s,
                                 const struct rlb_listener *l, ssize_t r)
{
    struct fy_node *o = jcheck(d, rlb_json_obj(&d->j));
    const struct rlb_action *a = r >= 0 ? &l->cfg->rules[r].action : &l->cfg->default_action;
    uint32_t priority = r >= 0 ? l->cfg->rules[r].priority : 0;
    if (r >= 0) {
        jset(d, o, "priority", jint(d, priority));
        jset(d, o, "conditions",
             jcheck(d, rlb_config_json_conditions(&d->j, &l->cfg->rules[r].conditions)));
    } else {
        jset(d, o, "priority", jstr(d, "default"));
    }
    if (a->type == RLB_ACTION_FORWARD) {
        const struct rlb_forward *f = r >= 0 ? &l->rule_forwards[r] : &l->default_forward;
        struct fy_node *act = jcheck(d, rlb_json_obj(&d->j));
        jset(d, act, "forward", forward_json(d, s, l, priority, a, f));
        jset(d, o, "action", act);
    } else {
        jset(d, o, "action", jcheck(d, rlb_config_json_action(&d->j, a)));
    }
    return o;
}

/* GET /api/v1/listeners */
static void get_listeners(struct io_uring *ring, struct admin_conn *c, bool close)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    struct jdoc d;
    if (!s || !jdoc_init(&d)) {
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    struct fy_node *root = jcheck(&d, rlb_json_obj(&d.j));
    struct fy_node *arr = jcheck(&d, rlb_json_arr(&d.j));
    for (size_t i = 0; i < s->cfg->n_listeners; i++) {
        const struct rlb_listener_cfg *lc = &s->cfg->listeners[i];
        struct fy_node *o = jcheck(&d, rlb_json_obj(&d.j));
        jset(&d, o, "name", jstr(&d, lc->name));
        jset(&d, o, "listen", jstr(&d, lc->listen));
        jset(&d, o, "protocol", jstr(&d, lc->protocol == RLB_PROTO_HTTPS ? "HTTPS" : "HTTP"));
        jset(&d, o, "rules", jint(&d, (int64_t)lc->n_rules));
        jpush(&d, arr, o);
    }
    jset(&d, root, "listeners", arr);
    send_json(ring, c, 200, &d, root, close, NULL);
}

/* GET /api/v1/listeners/{l}/rules (r == -3: all) or one rule's current state. */
static void send_rules(struct io_uring *ring, struct admin_conn *c, int status,
                       const struct rlb_listener *l, ssize_t only, bool close)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    struct jdoc d;
    if (!jdoc_init(&d)) {
        send_json_error(ring, c, 500, "out of memory", true);
        return;
    }
    struct fy_node *root;
    if (only >= -1) {
        root = rule_json(&d, s, l, only);
    } else {
        root = jcheck(&d, rlb_json_obj(&d.j));
        jset(&d, root, "listener", jstr(&d, l->cfg->name));
        struct fy_node *arr = jcheck(&d, rlb_json_arr(&d.j));
        for (size_t r = 0; r < l->cfg->n_rules; r++)
            jpush(&d, arr, rule_json(&d, s, l, (ssize_t)r));
        jset(&d, root, "rules", arr);
        jset(&d, root, "default_action", rule_json(&d, s, l, -1));
    }
    send_json(ring, c, status, &d, root, close, NULL);
}

/* Parse {"target_groups":[{"name":N,"weight":W},...]}. Returns the count (w[] points into
 * *docp, which the caller destroys) or -1 with a message. */
static ssize_t parse_weights_body(const struct admin_req *rq, struct fy_document **docp,
                                  struct rlb_weight **out, char *err, size_t errlen)
{
    static const char *const keys[] = {"target_groups", NULL};
    static const char *const gkeys[] = {"name", "weight", NULL};
    char why[160];
    struct fy_document *doc = rlb_json_parse(rq->body, rq->body_len, err, errlen);
    *docp = doc;
    if (!doc)
        return -1;
    struct fy_node *root = fy_document_root(doc);
    if (!rlb_json_is_obj(root)) {
        snprintf(err, errlen, "expected an object {\"target_groups\":[...]}");
        return -1;
    }
    if (rlb_json_check_keys(root, keys, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    struct fy_node *gs = rlb_json_get(root, "target_groups");
    int count = rlb_json_is_arr(gs) ? fy_node_sequence_item_count(gs) : -1;
    if (count <= 0) {
        snprintf(err, errlen, "target_groups: expected a non-empty array");
        return -1;
    }
    struct rlb_weight *w = calloc((size_t)count, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < count; i++) {
        struct fy_node *g = fy_node_sequence_get_by_index(gs, i);
        const char *name;
        size_t nl;
        int64_t v;
        if (!rlb_json_is_obj(g)) {
            snprintf(err, errlen, "target_groups[%d]: expected an object", i);
            goto bad;
        }
        if (rlb_json_check_keys(g, gkeys, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "target_groups[%d]: %s", i, why);
            goto bad;
        }
        if (rlb_json_get_str(rlb_json_get(g, "name"), &name, &nl) < 0 || nl == 0 ||
            !(w[i].group = fy_node_get_scalar0(rlb_json_get(g, "name")))) {
            snprintf(err, errlen, "target_groups[%d].name: expected a target group name", i);
            goto bad;
        }
        if (rlb_json_get_int(rlb_json_get(g, "weight"), 0, RLB_WEIGHT_MAX, &v) < 0) {
            snprintf(err, errlen, "target_groups[%d].weight: expected an integer 0..%u", i,
                     RLB_WEIGHT_MAX);
            goto bad;
        }
        w[i].weight = (uint32_t)v;
    }
    *out = w;
    return count;
bad:
    free(w);
    return -1;
}

/* PUT or DELETE /api/v1/listeners/{l}/rules/{priority}/forward. */
static void change_forward(struct io_uring *ring, struct admin_conn *c, bool put,
                           const char *lname, const char *prio, const struct admin_req *rq,
                           bool close)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    const struct rlb_listener *l = find_listener(s, lname);
    uint32_t priority;
    char err[300];
    if (!l) {
        snprintf(err, sizeof(err), "listener %.64s not found", lname);
        send_json_error(ring, c, 404, err, close);
        return;
    }
    if (!parse_priority(prio, &priority) || rule_index(l, priority) == -2) {
        snprintf(err, sizeof(err), "listener %.64s has no rule %.32s", lname, prio);
        send_json_error(ring, c, 404, err, close);
        return;
    }
    int rc;
    if (put) {
        struct fy_document *doc = NULL;
        struct rlb_weight *w = NULL;
        ssize_t n = parse_weights_body(rq, &doc, &w, err, sizeof(err));
        rc = n < 0 ? -EBADMSG
                   : rlb_admin_set_weights(lname, priority, w, (size_t)n, err, sizeof(err));
        free(w);
        if (doc)
            fy_document_destroy(doc);
    } else {
        const struct rlb_action *a = priority ? &l->cfg->rules[rule_index(l, priority)].action
                                              : &l->cfg->default_action;
        if (a->type != RLB_ACTION_FORWARD) {
            snprintf(err, sizeof(err), "not a forward action");
            rc = -EOPNOTSUPP;
        } else if (rlb_cluster_enabled()) {
            rc = rlb_cluster_weights(lname, priority, NULL, 0, err, sizeof(err));
        } else {
            rc = rlb_weights_remove(lname, priority);
            if (rc == -ENOENT)
                rc = 0; /* no runtime weights: nothing to do (idempotent) */
            else if (rc == 0 && rlb_admin_state_save() < 0)
                rc = -EIO;
            if (rc == -ENOMEM)
                snprintf(err, sizeof(err), "out of memory");
            if (rc == -EIO)
                snprintf(err, sizeof(err), "weights removed, but state_file cannot be written");
        }
    }
    if (rc < 0) {
        int status = rc == -ENOENT ? 404 : rc == -EOPNOTSUPP || rc == -EBUSY ? 409
                   : rc == -EINVAL || rc == -EBADMSG ? 400 : rc == -EAGAIN ? 503 : 500;
        send_json_error(ring, c, status, err, close);
        return;
    }
    s = rlb_snapshot_current(); /* republished */
    l = find_listener(s, lname);
    send_rules(ring, c, 200, l, rule_index(l, priority), close);
}

/* --- routing ------------------------------------------------------------------------------- */

#define MAX_SEGS 8

/* An embedded dashboard file (dashboard.h): its bytes, content type and security headers. */
static void send_asset(struct io_uring *ring, struct admin_conn *c,
                       const struct rlb_dashboard_asset *a, bool close)
{
    char extra[512];
    if (rlb_dashboard_headers(a, extra, sizeof(extra)) < 0) {
        send_json_error(ring, c, 500, "dashboard headers too long", close);
        return;
    }
    send_response(ring, c, 200, a->content_type, (const char *)a->file->data, a->file->len,
                  close, extra);
}

static void method_not_allowed(struct io_uring *ring, struct admin_conn *c, const char *allow,
                               bool close)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    send_json_error_ex(ring, c, 405, "method not allowed", close, extra);
}

/* Route one complete request. */
static void handle(struct io_uring *ring, struct admin_conn *c, const char *method,
                   size_t mlen, const char *url, size_t ulen, bool keep_alive,
                   const struct admin_req *rq)
{
    const char *q = memchr(url, '?', ulen);
    size_t plen = q ? (size_t)(q - url) : ulen;
    bool get = mlen == 3 && memcmp(method, "GET", 3) == 0;
    bool post = mlen == 4 && memcmp(method, "POST", 4) == 0;
    bool put = mlen == 3 && memcmp(method, "PUT", 3) == 0;
    bool del = mlen == 6 && memcmp(method, "DELETE", 6) == 0;
    bool close = !keep_alive;
    struct rlb_dashboard_asset asset;
    /* The dashboard's script, style sheet and icon (GET /dashboard/...) are served without
     * the token: static bytes of the build, no data of this instance (dashboard.h). The page
     * itself (GET /) and every API call it makes keep the token rule below. */
    if (get && plen > 1 && rlb_dashboard_lookup(url, plen, &asset) && !asset.needs_token) {
        send_asset(ring, c, &asset, close);
        return;
    }
    if (!authorized(rq, get && plen == 1 && url[0] == '/', q ? q + 1 : NULL,
                    q ? ulen - plen - 1 : 0)) {
        send_json_error_ex(ring, c, 401, "unauthorized: missing or wrong admin token", close,
                           "WWW-Authenticate: Bearer realm=\"ringlb\"\r\n");
        return;
    }
    if (plen == 1 && url[0] == '/') { /* the dashboard page */
        if (!get)
            method_not_allowed(ring, c, "GET", close);
        else if (rlb_dashboard_lookup(url, plen, &asset))
            send_asset(ring, c, &asset, close);
        else
            send_json_error(ring, c, 404, "not found", close);
        return;
    }
    if (plen == 8 && memcmp(url, "/healthz", 8) == 0) {
        if (!get) {
            method_not_allowed(ring, c, "GET", close);
            return;
        }
        send_response(ring, c, 200, "text/plain", "ok\n", 3, close, NULL);
        return;
    }
    if (plen == 8 && memcmp(url, "/metrics", 8) == 0) {
        if (!get) {
            method_not_allowed(ring, c, "GET", close);
            return;
        }
        get_metrics(ring, c, close);
        return;
    }
    if (plen == 15 && memcmp(url, "/api/v1/scaling", 15) == 0) {
        if (!get) {
            method_not_allowed(ring, c, "GET", close);
            return;
        }
        get_scaling(ring, c, close);
        return;
    }
    /* /api/v1/...: split into percent-decoded segments. */
    char segbuf[MAX_SEGS][160];
    const char *seg[MAX_SEGS];
    size_t n = 0;
    size_t i = 1;
    if (plen < 1 || url[0] != '/')
        goto not_found;
    while (i <= plen && plen > 1) {
        size_t end = i;
        while (end < plen && url[end] != '/')
            end++;
        if (n == MAX_SEGS || !seg_decode(url + i, end - i, segbuf[n], sizeof(segbuf[n])))
            goto not_found;
        seg[n] = segbuf[n];
        n++;
        i = end + 1;
        if (end == plen)
            break;
    }
    if (n < 3 || strcmp(seg[0], "api") != 0 || strcmp(seg[1], "v1") != 0)
        goto not_found;
    if (n == 3 && strcmp(seg[2], "config") == 0) {
        if (!get)
            method_not_allowed(ring, c, "GET", close);
        else
            get_config(ring, c, close);
        return;
    }
    if (n == 3 && strcmp(seg[2], "reload") == 0) {
        if (!post)
            method_not_allowed(ring, c, "POST", close);
        else
            post_reload(ring, c, close);
        return;
    }
    if (strcmp(seg[2], "target-groups") == 0) {
        if (n <= 4) {
            if (!get)
                method_not_allowed(ring, c, "GET", close);
            else
                get_target_groups(ring, c, n == 4 ? seg[3] : NULL, close);
            return;
        }
        bool dereg = n == 6 && strcmp(seg[5], "deregister") == 0;
        if (strcmp(seg[4], "targets") != 0 || n > 6 || (n == 6 && !dereg))
            goto not_found;
        if (!post)
            method_not_allowed(ring, c, "POST", close);
        else
            post_targets(ring, c, seg[3], dereg, rq, close);
        return;
    }
    if (strcmp(seg[2], "listeners") == 0) {
        if (n == 3) {
            if (!get)
                method_not_allowed(ring, c, "GET", close);
            else
                get_listeners(ring, c, close);
            return;
        }
        if (n == 5 && strcmp(seg[4], "rules") == 0) {
            const struct rlb_listener *l = find_listener(rlb_snapshot_current(), seg[3]);
            if (!get) {
                method_not_allowed(ring, c, "GET", close);
            } else if (!l) {
                char err[128];
                snprintf(err, sizeof(err), "listener %.64s not found", seg[3]);
                send_json_error(ring, c, 404, err, close);
            } else {
                send_rules(ring, c, 200, l, -3, close);
            }
            return;
        }
        if (n == 7 && strcmp(seg[4], "rules") == 0 && strcmp(seg[6], "forward") == 0) {
            if (!put && !del)
                method_not_allowed(ring, c, "PUT, DELETE", close);
            else
                change_forward(ring, c, put, seg[3], seg[5], rq, close);
            return;
        }
    }
    if (strcmp(seg[2], "deployments") == 0 && n <= 5) {
        bool stop = n == 5 && strcmp(seg[4], "stop") == 0;
        if (n == 5 && !stop)
            goto not_found;
        if (n == 3 ? !get && !post : n == 4 ? !get : !post) {
            method_not_allowed(ring, c, n == 3 ? "GET, POST" : n == 4 ? "GET" : "POST", close);
            return;
        }
        enum rlb_deploy_op op = n == 3 ? (get ? RLB_DEPLOY_LIST : RLB_DEPLOY_CREATE)
                              : n == 4 ? RLB_DEPLOY_GET : RLB_DEPLOY_STOP;
        char *text = NULL;
        int status = rlb_deploy_request(op, n > 3 ? seg[3] : NULL, rq->body, rq->body_len,
                                        &text);
        if (!text) {
            send_json_error(ring, c, 500, "out of memory", close);
            return;
        }
        send_response(ring, c, status, "application/json", text, strlen(text), close, NULL);
        free(text);
        return;
    }
not_found:
    send_json_error(ring, c, 404, "not found", close);
}

#define ADMIN_MAX_BODY (1024u * 1024u)

struct admin_parse {
    const char *method, *url;
    size_t mlen, ulen;
    const char *field, *value;      /* header being parsed */
    size_t flen, vlen;
    const char *auth;               /* Authorization value */
    size_t auth_len;
    bool expect_continue;           /* Expect: 100-continue */
    bool headers_done;
    bool too_large;                 /* body over ADMIN_MAX_BODY */
    bool oom;
    char *body;                     /* collected body (malloc'd) */
    size_t body_len, body_cap;
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
    rlb_span_extend(&ap->url, &ap->ulen, at, len);
    return 0;
}

static int a_on_field(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    rlb_span_extend(&ap->field, &ap->flen, at, len);
    return 0;
}

static int a_on_value(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    rlb_span_extend(&ap->value, &ap->vlen, at, len);
    return 0;
}

static int a_on_value_complete(llhttp_t *p)
{
    struct admin_parse *ap = p->data;
    if (ap->field && ap->flen == 13 && strncasecmp(ap->field, "authorization", 13) == 0) {
        ap->auth = ap->value ? ap->value : "";
        ap->auth_len = ap->vlen;
    } else if (ap->field && ap->flen == 6 && strncasecmp(ap->field, "expect", 6) == 0) {
        ap->expect_continue = ap->vlen == 12 && strncasecmp(ap->value, "100-continue", 12) == 0;
    }
    ap->field = ap->value = NULL;
    ap->flen = ap->vlen = 0;
    return 0;
}

static int a_on_headers_complete(llhttp_t *p)
{
    struct admin_parse *ap = p->data;
    ap->headers_done = true;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > ADMIN_MAX_BODY) {
        ap->too_large = true;
        return -1;
    }
    return 0;
}

static int a_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    if (ap->body_len + len > ADMIN_MAX_BODY) {
        ap->too_large = true;
        return -1;
    }
    if (ap->body_len + len > ap->body_cap) {
        size_t ncap = ap->body_cap ? ap->body_cap : 4096;
        while (ncap < ap->body_len + len)
            ncap *= 2;
        char *nb = realloc(ap->body, ncap);
        if (!nb) {
            ap->oom = true;
            return -1;
        }
        ap->body = nb;
        ap->body_cap = ncap;
    }
    memcpy(ap->body + ap->body_len, at, len);
    ap->body_len += len;
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
        st.on_header_field = a_on_field;
        st.on_header_value = a_on_value;
        st.on_header_value_complete = a_on_value_complete;
        st.on_headers_complete = a_on_headers_complete;
        st.on_body = a_on_body;
        st.on_message_complete = a_on_complete;
        st_ready = true;
    }
    llhttp_t p;
    struct admin_parse ap = {0};
    llhttp_init(&p, HTTP_REQUEST, &st);
    p.data = &ap;
    int err = llhttp_execute(&p, c->in, c->in_len);
    if (ap.too_large) {
        free(ap.body);
        send_json_error(ring, c, 413, "request body larger than 1 MiB", true);
        return;
    }
    if (err == HPE_PAUSED && ap.done) {
        size_t used = (size_t)(llhttp_get_error_pos(&p) - c->in);
        bool ka = llhttp_should_keep_alive(&p);
        /* Copy what handle() needs before the buffer moves. */
        char method[16], url[2048], auth[4200];
        size_t ml = ap.mlen < sizeof(method) ? ap.mlen : sizeof(method) - 1;
        size_t ul = ap.ulen < sizeof(url) ? ap.ulen : sizeof(url) - 1;
        size_t al = ap.auth_len < sizeof(auth) ? ap.auth_len : sizeof(auth) - 1;
        memcpy(method, ap.method, ml);
        memcpy(url, ap.url, ul);
        if (ap.auth)
            memcpy(auth, ap.auth, al);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
        c->continue_sent = false;
        struct admin_req rq = {.auth = ap.auth ? auth : NULL, .auth_len = al,
                               .body = ap.body, .body_len = ap.body_len};
        handle(ring, c, method, ml, url, ul, ka, &rq);
        OPENSSL_cleanse(auth, sizeof(auth));
        free(ap.body);
        return;
    }
    free(ap.body);
    if (ap.oom) {
        send_json_error(ring, c, 500, "out of memory", true);
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
    if (ap.headers_done && ap.expect_continue && !c->continue_sent) {
        /* The client waits for this before sending its body (curl does for bigger ones). */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct io_uring_sqe *sqe = sqe_get(ring);
        io_uring_prep_send(sqe, c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, RLB_MAIN_IGNORE);
        c->continue_sent = true;
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
        if (c->lingering) {
            c->drained += res > 0 ? (uint32_t)res : 0;
            if (res <= 0 || c->drained > ADMIN_LINGER_MAX)
                conn_close(ring, c);
            else
                arm_linger(ring, c);
            return;
        }
        if (res <= 0) {
            conn_close(ring, c);
            return;
        }
        c->in_len += (uint32_t)res;
        process(ring, c);
    } else if (op == RLB_MAIN_ADMIN_SEND) {
        if (res < 0) {
            conn_close(ring, c);
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
            /* Do not close with unread request bytes (a rejected body): the kernel would
             * answer them with a reset that can destroy the response before the client
             * reads it. Shut the write side and read until EOF (bounded), then close. */
            shutdown(c->fd, SHUT_WR);
            c->lingering = true;
            c->in_len = 0;
            arm_linger(ring, c);
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
    rlb_admin_set_token(NULL);
    while (admin_conns) {
        struct admin_conn *c = admin_conns;
        if (c->fd >= 0)
            close(c->fd);
        c->pending = 0;
        c->closing = true;
        conn_free(c);
    }
}
