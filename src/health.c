/* health.c — active HTTP health checks on the main thread's ring (see health.h).
 *
 * One struct rlb_health_target per checked target, linked from the target (t->health) and kept
 * in a list here. Its life:
 *
 *   idle --timer--> CONNECT --> SEND (until the request is out) --> RECV (until the status line)
 *     ^                 \              \                             \
 *     +------------------+--------------+-----------------------------+-- result: close the
 *                                                                         socket, step the state
 *                                                                         machine, back to idle
 *
 * Exactly one ring operation is in flight per check, each linked to a timeout that ends at the
 * check's deadline (start + health_check.timeout), so a silent target ends as -ECANCELED =
 * Target.Timeout. The next check is armed on the main wheel when a check starts (every
 * interval). A check state that is no longer wanted (target left the snapshot, draining,
 * checks disabled) is detached from its target at once; when an operation is still in flight
 * it is cancelled and the state is freed when that operation completes.
 */
#include "ringlb/health.h"

#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/admin.h"
#include "ringlb/log.h"
#include "ringlb/worker.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

enum hc_phase { HC_IDLE = 0, HC_CONNECT, HC_SEND, HC_RECV };

/* Check state of one target. Owner: health.c (main thread); linked from rlb_target.health while
 * the target is checked. Holds one reference to the target. */
struct rlb_health_target {
    struct rlb_health_target *next;
    struct rlb_health_target **pprev;
    struct rlb_target *t;
    const struct rlb_target_group_cfg *gc; /* in the held snapshot; NULL once removed */
    struct rlb_timer timer;             /* next check */
    struct rlb_health_counters counters;
    uint64_t interval_ms;               /* interval the timer runs with */
    uint64_t seen;                      /* sync epoch mark */
    int last_code;                      /* status of the latest answer, 0 when none */
    bool removed;                       /* detached; freed when no operation is in flight */
    bool op_pending;                    /* one ring operation in flight */
    /* the check in progress */
    enum hc_phase phase;
    int fd;
    uint64_t deadline_ms;
    struct __kernel_timespec ts;        /* linked timeout of the operation in flight */
    struct rlb_sockaddr to;
    char *req;
    size_t req_len, req_off;
    bool got_status;
    llhttp_t parser;
    char rbuf[512];
};

static struct io_uring *hring;
static struct rlb_timer_wheel *hwheel;
static struct rlb_health_target *checks;
static struct rlb_snapshot *held;
static uint64_t sync_epoch;
static uint64_t rng_state;
static bool stopped;

/* --- the pure parts ------------------------------------------------------------------------ */

static int reason_of(enum rlb_health_result r)
{
    switch (r) {
    case RLB_HEALTH_CODE_MISMATCH:
        return RLB_REASON_RESPONSE_CODE_MISMATCH;
    case RLB_HEALTH_TIMEOUT:
        return RLB_REASON_TIMEOUT;
    default:
        return RLB_REASON_FAILED_HEALTH_CHECKS;
    }
}

void rlb_health_step(int *state, int *reason, struct rlb_health_counters *c,
                     enum rlb_health_result r, uint32_t healthy_threshold,
                     uint32_t unhealthy_threshold)
{
    int st = *state;
    if (st != RLB_TARGET_INITIAL && st != RLB_TARGET_HEALTHY && st != RLB_TARGET_UNHEALTHY)
        return;
    if (healthy_threshold < 1)
        healthy_threshold = 1;
    if (unhealthy_threshold < 1)
        unhealthy_threshold = 1;
    if (r == RLB_HEALTH_OK) {
        c->fail_streak = 0;
        if (c->ok_streak < UINT32_MAX)
            c->ok_streak++;
        if (st != RLB_TARGET_UNHEALTHY || c->ok_streak >= healthy_threshold) {
            *state = RLB_TARGET_HEALTHY;
            *reason = RLB_REASON_NONE;
        }
        return;
    }
    c->ok_streak = 0;
    if (c->fail_streak < UINT32_MAX)
        c->fail_streak++;
    if (st == RLB_TARGET_UNHEALTHY || c->fail_streak >= unhealthy_threshold) {
        *state = RLB_TARGET_UNHEALTHY;
        *reason = reason_of(r);
    } else if (st == RLB_TARGET_INITIAL) {
        *reason = RLB_REASON_INITIAL_HEALTH_CHECKING;
    }
}

bool rlb_health_match(const struct rlb_health_check_cfg *hc, unsigned status)
{
    for (size_t i = 0; i < hc->n_match_ranges; i++)
        if (status >= hc->match_ranges[i].lo && status <= hc->match_ranges[i].hi)
            return true;
    return false;
}

char *rlb_health_request(const char *path, const struct rlb_sockaddr *to, size_t *len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t plen = strlen(path);
    size_t cap = plen * 3 + 256;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
    memcpy(out, "GET ", 4);
    n = 4;
    for (size_t i = 0; i < plen; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        } else {
            out[n++] = (char)ch;
        }
    }
    char ip[64];
    rlb_sockaddr_ip(to, ip, sizeof(ip));
    bool v6 = to->ss.ss_family == AF_INET6;
    int k = snprintf(out + n, cap - n,
                     " HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: ELB-HealthChecker/2.0\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     v6 ? "[" : "", ip, v6 ? "]" : "", rlb_sockaddr_port(to));
    *len = n + (size_t)k;
    return out;
}

/* --- check state --------------------------------------------------------------------------- */

static uint64_t rnd(void)
{
    /* xorshift64*: jitter only, no quality needed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t jitter(uint64_t interval_ms)
{
    uint64_t j = interval_ms / 4 < 250 ? interval_ms / 4 : 250;
    return rnd() % (j + 1);
}

static void hc_free(struct rlb_health_target *hc)
{
    if (hc->fd >= 0)
        close(hc->fd);
    *hc->pprev = hc->next;
    if (hc->next)
        hc->next->pprev = hc->pprev;
    free(hc->req);
    rlb_target_unref(hc->t);
    free(hc);
}

static void sqe_room(unsigned n)
{
    if (io_uring_sq_space_left(hring) < n)
        io_uring_submit(hring);
}

/* Detach `hc` from its target and stop it; freed now or when its operation completes. */
static void hc_remove(struct rlb_health_target *hc)
{
    if (hc->removed)
        return;
    hc->removed = true;
    hc->gc = NULL;
    rlb_timer_cancel(hwheel, &hc->timer);
    if (hc->t->health == hc)
        hc->t->health = NULL;
    if (hc->op_pending) {
        sqe_room(1);
        struct io_uring_sqe *sqe = io_uring_get_sqe(hring);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)hc | RLB_MAIN_HEALTH, 0);
        io_uring_sqe_set_data64(sqe, RLB_MAIN_IGNORE);
        return;
    }
    hc_free(hc);
}

static int on_status_complete(llhttp_t *p)
{
    struct rlb_health_target *hc = p->data;
    hc->got_status = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t *parser_settings(void)
{
    static llhttp_settings_t st;
    static bool ready;
    if (!ready) {
        llhttp_settings_init(&st);
        st.on_status_complete = on_status_complete;
        ready = true;
    }
    return &st;
}

/* Queue the operation of the current phase, linked to a timeout ending at the deadline. */
static void submit_op(struct rlb_health_target *hc)
{
    sqe_room(2); /* the operation and its linked timeout must go in one submission */
    struct io_uring_sqe *sqe = io_uring_get_sqe(hring);
    switch (hc->phase) {
    case HC_CONNECT:
        io_uring_prep_connect(sqe, hc->fd, (const struct sockaddr *)&hc->to.ss, hc->to.len);
        break;
    case HC_SEND:
        io_uring_prep_send(sqe, hc->fd, hc->req + hc->req_off, hc->req_len - hc->req_off,
                           MSG_NOSIGNAL);
        break;
    default:
        io_uring_prep_recv(sqe, hc->fd, hc->rbuf, sizeof(hc->rbuf), 0);
        break;
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)hc | RLB_MAIN_HEALTH);
    sqe->flags |= IOSQE_IO_LINK;
    uint64_t now = rlb_now_ms();
    uint64_t left = hc->deadline_ms > now ? hc->deadline_ms - now : 1;
    hc->ts.tv_sec = (long long)(left / 1000);
    hc->ts.tv_nsec = (long long)(left % 1000) * 1000000;
    struct io_uring_sqe *to = io_uring_get_sqe(hring);
    io_uring_prep_link_timeout(to, &hc->ts, 0);
    io_uring_sqe_set_data64(to, RLB_MAIN_IGNORE);
    hc->op_pending = true;
}

/* Does target t's group (in the current snapshot) have another healthy target past its
 * slow-start ramp? Without one, a target becoming healthy does not enter slow start (ALB). */
static bool has_ramped_peer(const struct rlb_target *t, const struct rlb_target_group_cfg *gc,
                            uint64_t now)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    for (size_t g = 0; s && g < s->cfg->n_target_groups; g++) {
        const struct rlb_group *grp = &s->groups[g];
        if (strcmp(grp->cfg->name, gc->name) != 0)
            continue;
        for (size_t i = 0; i < grp->n_targets; i++) {
            const struct rlb_target *o = grp->targets[i];
            if (o == t || atomic_load(&o->state) != RLB_TARGET_HEALTHY)
                continue;
            uint64_t since = atomic_load(&o->routable_since_ms);
            if (since == 0 || since + gc->slow_start_ms <= now)
                return true;
        }
    }
    return false;
}

static void finish(struct rlb_health_target *hc, enum rlb_health_result r)
{
    if (hc->fd >= 0) {
        close(hc->fd);
        hc->fd = -1;
    }
    hc->phase = HC_IDLE;
    struct rlb_target *t = hc->t;
    const struct rlb_health_check_cfg *cfg = &hc->gc->health_check;
    int old_state = atomic_load(&t->state), old_reason = atomic_load(&t->reason);
    int state = old_state, reason = old_reason;
    rlb_health_step(&state, &reason, &hc->counters, r, cfg->healthy_threshold,
                    cfg->unhealthy_threshold);
    if (state == old_state && reason == old_reason)
        return;
    if (state == RLB_TARGET_HEALTHY && old_state != RLB_TARGET_HEALTHY) {
        /* Start of its slow-start ramp (0 = no ramp: no other healthy target is past its
         * own, e.g. the first targets after start). */
        uint64_t now = rlb_now_ms();
        bool ramp = hc->gc->slow_start_ms > 0 && has_ramped_peer(t, hc->gc, now);
        atomic_store_explicit(&t->routable_since_ms, ramp ? now : 0, memory_order_relaxed);
    }
    rlb_target_set_state(t, state, reason);
    if (state != old_state) {
        const char *why = rlb_target_reason_name(reason);
        rlb_log_info("target %s in %s: %s -> %s%s%s%s", t->name, t->group_name,
                     rlb_target_state_name(old_state), rlb_target_state_name(state),
                     why ? " (" : "", why ? why : "", why ? ")" : "");
    }
}

static void start_check(struct rlb_health_target *hc, uint64_t now)
{
    if (hc->phase != HC_IDLE || hc->removed)
        return; /* the previous check is still running (timeout < interval: should not be) */
    const struct rlb_health_check_cfg *cfg = &hc->gc->health_check;
    hc->to = hc->t->addr;
    if (cfg->port) {
        if (hc->to.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&hc->to.ss)->sin_port = htons(cfg->port);
        else
            ((struct sockaddr_in6 *)&hc->to.ss)->sin6_port = htons(cfg->port);
    }
    free(hc->req);
    hc->req = rlb_health_request(cfg->path, &hc->to, &hc->req_len);
    if (!hc->req)
        return; /* out of memory: no result this round */
    int fd = socket(hc->to.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rlb_log_warn("health check of %s: socket: %s", hc->t->name, strerror(errno));
        return; /* our problem, not the target's: no result this round */
    }
    hc->fd = fd;
    hc->req_off = 0;
    hc->got_status = false;
    llhttp_init(&hc->parser, HTTP_RESPONSE, parser_settings());
    hc->parser.data = hc;
    hc->deadline_ms = now + cfg->timeout_ms;
    hc->phase = HC_CONNECT;
    submit_op(hc);
}

static void tick(struct rlb_timer *tm, uint64_t now_ms)
{
    struct rlb_health_target *hc = container_of(tm, struct rlb_health_target, timer);
    if (hc->removed || !hc->gc)
        return;
    hc->interval_ms = hc->gc->health_check.interval_ms;
    rlb_timer_arm(hwheel, &hc->timer, now_ms + hc->interval_ms, tick);
    start_check(hc, rlb_now_ms());
}

static enum rlb_health_result error_result(int res)
{
    return res == -ECANCELED || res == -ETIMEDOUT || res == -ETIME ? RLB_HEALTH_TIMEOUT
                                                                   : RLB_HEALTH_FAILED;
}

void rlb_health_complete(void *ptr, int res)
{
    struct rlb_health_target *hc = ptr;
    hc->op_pending = false;
    if (hc->removed) {
        hc_free(hc);
        return;
    }
    if (res < 0) {
        finish(hc, error_result(res));
        return;
    }
    switch (hc->phase) {
    case HC_CONNECT:
        hc->phase = HC_SEND;
        submit_op(hc);
        return;
    case HC_SEND:
        hc->req_off += (size_t)res;
        if (hc->req_off >= hc->req_len)
            hc->phase = HC_RECV;
        submit_op(hc);
        return;
    case HC_RECV: {
        if (res == 0) {
            finish(hc, RLB_HEALTH_FAILED); /* closed before a status line */
            return;
        }
        llhttp_errno_t err = llhttp_execute(&hc->parser, hc->rbuf, (size_t)res);
        if (hc->got_status) {
            hc->last_code = hc->parser.status_code;
            finish(hc, rlb_health_match(&hc->gc->health_check, hc->parser.status_code)
                           ? RLB_HEALTH_OK
                           : RLB_HEALTH_CODE_MISMATCH);
        } else if (err != HPE_OK) {
            finish(hc, RLB_HEALTH_FAILED);
        } else {
            submit_op(hc);
        }
        return;
    }
    default:
        return;
    }
}

/* --- following the snapshot ---------------------------------------------------------------- */

void rlb_health_init(struct io_uring *ring, struct rlb_timer_wheel *timers)
{
    hring = ring;
    hwheel = timers;
    rng_state = rlb_now_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() ^ 0x5bd1e995u;
    if (!rng_state)
        rng_state = 1;
}

static bool checked(const struct rlb_target_group_cfg *gc, const struct rlb_target *t)
{
    int st = atomic_load(&t->state);
    return gc->health_check.enabled &&
           (st == RLB_TARGET_INITIAL || st == RLB_TARGET_HEALTHY || st == RLB_TARGET_UNHEALTHY);
}

static void follow(struct rlb_target *t, const struct rlb_target_group_cfg *gc, uint64_t now)
{
    struct rlb_health_target *hc = t->health;
    uint64_t interval = gc->health_check.interval_ms;
    if (!hc) {
        hc = calloc(1, sizeof(*hc));
        if (!hc) {
            rlb_log_error("health check of %s: out of memory", t->name);
            return;
        }
        hc->fd = -1;
        hc->t = t;
        atomic_fetch_add(&t->refs, 1);
        t->health = hc;
        hc->next = checks;
        hc->pprev = &checks;
        if (checks)
            checks->pprev = &hc->next;
        checks = hc;
        hc->interval_ms = interval;
        rlb_timer_arm(hwheel, &hc->timer, now + jitter(interval), tick);
    } else if (hc->interval_ms != interval) {
        hc->interval_ms = interval;
        if (!rlb_timer_armed(&hc->timer) || hc->timer.expires_ms > now + interval)
            rlb_timer_arm(hwheel, &hc->timer, now + jitter(interval), tick);
    }
    hc->gc = gc;
    hc->seen = sync_epoch;
}

void rlb_health_sync(struct rlb_snapshot *s)
{
    if (!hring || !s)
        return;
    sync_epoch++;
    uint64_t now = rlb_now_ms();
    if (!stopped) {
        for (size_t g = 0; g < s->cfg->n_target_groups; g++) {
            const struct rlb_group *grp = &s->groups[g];
            for (size_t i = 0; i < grp->n_targets; i++)
                if (checked(grp->cfg, grp->targets[i]))
                    follow(grp->targets[i], grp->cfg, now);
        }
    }
    for (struct rlb_health_target *hc = checks, *next; hc; hc = next) {
        next = hc->next;
        if (!hc->removed && hc->seen != sync_epoch)
            hc_remove(hc);
    }
    if (held != s) {
        rlb_snapshot_ref(s);
        rlb_snapshot_unref(held);
        held = s;
    }
}

int rlb_health_last_code(const struct rlb_target *t)
{
    return t->health ? t->health->last_code : 0;
}

void rlb_health_stop(void)
{
    stopped = true;
    for (struct rlb_health_target *hc = checks, *next; hc; hc = next) {
        next = hc->next;
        hc_remove(hc);
    }
}

void rlb_health_destroy(void)
{
    while (checks) {
        struct rlb_health_target *hc = checks;
        if (!hc->removed && hc->t->health == hc)
            hc->t->health = NULL;
        hc_free(hc);
    }
    rlb_snapshot_unref(held);
    held = NULL;
    hring = NULL;
}
