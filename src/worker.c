/* worker.c — worker threads and their io_uring event loop.
 *
 * Each iteration: pick up a newer snapshot from the inbox, act on stop requests, run due
 * timers, re-arm receivers that starved for buffers, free streams whose operations are done,
 * then submit everything queued and wait for at least one completion (bounded by the next
 * timer). Completions are dispatched on the tag in the low bits of their user_data.
 */
#include "ringlb/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/accesslog.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/proxy.h"

#define RLB_RING_ENTRIES 4096u
#define RLB_BUF_COUNT 1024u
#define RLB_BUF_SIZE (16u * 1024u)
#ifndef RLB_BUF_INCREMENTAL /* -DRLB_BUF_INCREMENTAL=0 for A/B measurements */
#define RLB_BUF_INCREMENTAL 1
#endif
#define RLB_BGID 1

void rlb_conn_cache_destroy(void);

static struct rlb_worker **workers;
static unsigned n_workers;

uint64_t rlb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t rlb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

unsigned rlb_workers_count(void) { return n_workers; }

struct io_uring_sqe *rlb_worker_sqe(struct rlb_worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    while (!sqe) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

void rlb_worker_close_fd(struct rlb_worker *w, int fd)
{
    /* SQEs are issued in order and each resolves its descriptor when issued, so everything
     * prepared before this close holds its own file reference by the time the number goes. */
    struct io_uring_sqe *sqe = rlb_worker_sqe(w);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, RLB_OP_IGNORE);
}

uint64_t rlb_worker_rand(struct rlb_worker *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

/* ---- snapshots -------------------------------------------------------------------------- */

static struct rlb_held_snapshot *held_find(struct rlb_worker *w, struct rlb_snapshot *s)
{
    for (unsigned i = 0; i < w->n_held; i++)
        if (w->held[i].snap == s)
            return &w->held[i];
    return NULL;
}

static void held_drop(struct rlb_worker *w, struct rlb_held_snapshot *h)
{
    struct rlb_snapshot *s = h->snap;
    *h = w->held[--w->n_held];
    rlb_snapshot_unref(s);
}

void rlb_worker_snap_use(struct rlb_worker *w, struct rlb_snapshot *s)
{
    struct rlb_held_snapshot *h = held_find(w, s);
    if (h)
        h->users++;
}

void rlb_worker_snap_done(struct rlb_worker *w, struct rlb_snapshot *s)
{
    struct rlb_held_snapshot *h = held_find(w, s);
    if (!h)
        return;
    if (--h->users == 0 && s != w->snap)
        held_drop(w, h);
}

/* ---- listeners -------------------------------------------------------------------------- */

static void arm_accept(struct rlb_wlistener *wl)
{
    struct io_uring_sqe *sqe = rlb_worker_sqe(wl->w);
    io_uring_prep_multishot_accept(sqe, wl->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)wl | RLB_OP_ACCEPT);
    wl->armed = true;
}

static int listen_socket(const struct rlb_sockaddr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux clones the listening
     * socket), which saves a setsockopt per client connection. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 4096) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static void listener_close(struct rlb_wlistener *wl)
{
    if (wl->closing)
        return;
    wl->closing = true;
    wl->index = -1;
    if (wl->armed) {
        struct io_uring_sqe *sqe = rlb_worker_sqe(wl->w);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)wl | RLB_OP_ACCEPT, 0);
        io_uring_sqe_set_data64(sqe, RLB_OP_IGNORE);
    }
    rlb_worker_close_fd(wl->w, wl->fd);
    wl->fd = -1;
}

/* Make the worker's listen sockets match w->snap. Returns 0 or the first bind error. */
static int listeners_sync(struct rlb_worker *w)
{
    const struct rlb_config *cfg = w->snap->cfg;
    int first_err = 0;
    for (struct rlb_wlistener *wl = w->listeners; wl; wl = wl->next)
        if (!wl->closing)
            wl->index = -1;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct rlb_listener_cfg *lc = &cfg->listeners[i];
        struct rlb_wlistener *found = NULL;
        for (struct rlb_wlistener *wl = w->listeners; wl; wl = wl->next) {
            if (!wl->closing && wl->addr.len == lc->addr.len &&
                memcmp(&wl->addr.ss, &lc->addr.ss, lc->addr.len) == 0) {
                found = wl;
                break;
            }
        }
        if (found) {
            found->index = (int)i;
            continue;
        }
        int fd = listen_socket(&lc->addr);
        if (fd < 0) {
            rlb_log_error("listener %s: cannot listen on %s: %s", lc->name, lc->listen,
                          strerror(-fd));
            if (!first_err)
                first_err = fd;
            continue;
        }
        struct rlb_wlistener *wl = calloc(1, sizeof(*wl));
        if (!wl) {
            close(fd);
            if (!first_err)
                first_err = -ENOMEM;
            continue;
        }
        wl->w = w;
        wl->fd = fd;
        wl->addr = lc->addr;
        wl->index = (int)i;
        wl->next = w->listeners;
        w->listeners = wl;
        arm_accept(wl);
    }
    for (struct rlb_wlistener *wl = w->listeners; wl; wl = wl->next)
        if (!wl->closing && wl->index < 0)
            listener_close(wl);
    return first_err;
}

static void take_inbox(struct rlb_worker *w)
{
    struct rlb_snapshot *s = atomic_exchange(&w->inbox, NULL);
    if (!s)
        return;
    if (w->n_held == RLB_MAX_HELD_SNAPSHOTS) {
        /* Too many old snapshots still in use: keep the newest pending for later. */
        struct rlb_snapshot *prev = atomic_exchange(&w->inbox, s);
        if (prev)
            rlb_snapshot_unref(prev);
        return;
    }
    struct rlb_snapshot *old = w->snap;
    w->held[w->n_held].snap = s;
    w->held[w->n_held].users = 0;
    w->n_held++;
    w->snap = s;
    if (!w->draining)
        listeners_sync(w);
    struct rlb_held_snapshot *h = old ? held_find(w, old) : NULL;
    if (h && h->users == 0)
        held_drop(w, h);
    /* Registration changes come as new snapshots: stop reusing connections to draining
     * targets, and end what is still in flight on targets whose delay is over. */
    rlb_upstream_prune(w);
    rlb_conn_cut_unused(w);
}

/* ---- the loop --------------------------------------------------------------------------- */

static void arm_wake(struct rlb_worker *w)
{
    struct io_uring_sqe *sqe = rlb_worker_sqe(w);
    io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)w | RLB_OP_WAKE);
    w->wake_armed = true;
}

static void free_closed(struct rlb_worker *w)
{
    while (w->to_free) {
        struct rlb_stream *s = w->to_free;
        w->to_free = s->starved_next;
        w->live_streams--;
        s->ops->on_free(s);
    }
}

static void dispatch(struct rlb_worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum rlb_op op = (enum rlb_op)(ud & RLB_OP_MASK);
    void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)RLB_OP_MASK);
    switch (op) {
    case RLB_OP_IGNORE:
        return;
    case RLB_OP_ACCEPT: {
        struct rlb_wlistener *wl = ptr;
        rlb_log_debug("worker %u: accept res=%d flags=%x", w->id, cqe->res, cqe->flags);
        if (cqe->res >= 0) {
            if (wl->closing)
                close(cqe->res);
            else
                rlb_conn_accept(w, wl, cqe->res);
        } else if (cqe->res != -ECANCELED && !wl->closing) {
            rlb_log_warn("accept: %s", strerror(-cqe->res));
        }
        if (!(cqe->flags & IORING_CQE_F_MORE)) {
            wl->armed = false;
            if (!wl->closing && !w->draining)
                arm_accept(wl);
        }
        return;
    }
    case RLB_OP_WAKE:
        w->wake_armed = false;
        if (!atomic_load(&w->stop))
            arm_wake(w);
        return;
    default:
        rlb_stream_complete(ptr, op, cqe->res, cqe->flags);
        return;
    }
}

static void start_drain(struct rlb_worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drain_deadline_ms = w->now_ms + w->snap->cfg->shutdown_timeout_ms;
    for (struct rlb_wlistener *wl = w->listeners; wl; wl = wl->next)
        listener_close(wl);
    rlb_conn_close_idle(w);
    rlb_upstream_close_idle(w);
}

/* Refresh the worker's cached clock (one clock_gettime). */
static void clock_tick(struct rlb_worker *w)
{
    w->now_us = rlb_now_us();
    w->now_ms = w->now_us / 1000u;
}

static void worker_loop(struct rlb_worker *w)
{
    uint64_t exit_deadline = 0;
    for (;;) {
        clock_tick(w);
        if (atomic_load_explicit(&w->inbox, memory_order_relaxed))
            take_inbox(w);
        int stop = atomic_load_explicit(&w->stop, memory_order_relaxed);
        if (stop) {
            start_drain(w);
            if (stop == 2 || w->now_ms >= w->drain_deadline_ms) {
                rlb_conn_close_all(w);
                rlb_upstream_close_idle(w);
            }
            if (w->n_conns == 0) {
                rlb_upstream_close_idle(w);
                if (!exit_deadline)
                    exit_deadline = w->now_ms + 2000;
                /* Leave once every stream's last operation has completed. */
                if (w->live_streams == 0 || w->now_ms >= exit_deadline) {
                    rlb_log_debug("worker %u: drained (%u streams left)", w->id,
                                  w->live_streams);
                    break;
                }
            }
        }
        rlb_timer_wheel_run(&w->timers, w->now_ms);
        rlb_stream_retry_starved(w);
        free_closed(w);

        uint64_t wait_ms = rlb_timer_wheel_next_ms(&w->timers, stop ? 50 : 1000);
        if (w->starved && wait_ms > 1)
            wait_ms = 1;
        struct __kernel_timespec ts = {
            .tv_sec = (long long)(wait_ms / 1000),
            .tv_nsec = (long long)(wait_ms % 1000) * 1000000,
        };
        struct io_uring_cqe *cqe = NULL;
        int ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY) {
            rlb_log_error("worker %u: io_uring wait: %s", w->id, strerror(-ret));
        }
        clock_tick(w);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            dispatch(w, cqe);
            seen++;
        }
        io_uring_cq_advance(&w->ring, seen);
        free_closed(w);
    }
}

static int ring_init(struct rlb_worker *w)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = RLB_RING_ENTRIES * 4;
    int ret = io_uring_queue_init_params(RLB_RING_ENTRIES, &w->ring, &p);
    if (ret < 0) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
        p.cq_entries = RLB_RING_ENTRIES * 4;
        ret = io_uring_queue_init_params(RLB_RING_ENTRIES, &w->ring, &p);
    }
    if (ret < 0) {
        memset(&p, 0, sizeof(p));
        ret = io_uring_queue_init_params(RLB_RING_ENTRIES, &w->ring, &p);
    }
    /* Enter the ring by its registered index: io_uring_enter then skips looking up (and
     * reference-counting) the ring's own descriptor, 1.5 % of the worker's CPU in perf.
     * Optional: older kernels simply keep the descriptor path. */
    if (ret == 0 && io_uring_register_ring_fd(&w->ring) < 0)
        rlb_log_debug("worker %u: ring descriptor not registered", w->id);
    return ret;
}

static void *worker_main(void *arg)
{
    struct rlb_worker *w = arg;
    w->now_ms = rlb_now_ms();
    int ret = ring_init(w);
    if (ret < 0) {
        rlb_log_error("worker %u: io_uring setup failed: %s", w->id, strerror(-ret));
        w->startup_error = ret;
        atomic_store(&w->ready, 1);
        return NULL;
    }
    ret = rlb_bufring_init(&w->bufs, &w->ring, RLB_BGID, RLB_BUF_COUNT, RLB_BUF_SIZE,
                           RLB_BUF_INCREMENTAL);
    if (ret < 0) {
        rlb_log_error("worker %u: buffer ring setup failed: %s", w->id, strerror(-ret));
        io_uring_queue_exit(&w->ring);
        w->startup_error = ret;
        atomic_store(&w->ready, 1);
        return NULL;
    }
    w->segs.ring = &w->bufs;
    rlb_timer_wheel_init(&w->timers, w->now_ms);
    w->rng[0] = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)w << 16) ^ 0x9e3779b97f4a7c15ull;
    w->rng[1] = rlb_now_ms() * 0xbf58476d1ce4e5b9ull + w->id;
    arm_wake(w);
    ret = listeners_sync(w);
    w->startup_error = ret;
    atomic_store(&w->ready, 1);
    if (ret == 0)
        worker_loop(w);

    /* Teardown: nothing is in flight any more (or the ring's exit cancels it). */
    rlb_conn_close_all(w);
    rlb_upstream_close_idle(w);
    free_closed(w);
    for (struct rlb_wlistener *wl = w->listeners; wl;) {
        struct rlb_wlistener *next = wl->next;
        if (!wl->closing)
            close(wl->fd);
        free(wl);
        wl = next;
    }
    w->listeners = NULL;
    io_uring_submit(&w->ring); /* the closes queued by rlb_worker_close_fd */
    rlb_bufring_destroy(&w->bufs, &w->ring);
    io_uring_queue_exit(&w->ring);
    rlb_stream_cache_destroy(w);
    rlb_segpool_destroy(&w->segs);
    rlb_conn_cache_destroy();
    return NULL;
}

int rlb_workers_start(unsigned n, struct rlb_snapshot *snap)
{
    workers = calloc(n, sizeof(*workers));
    if (!workers)
        return -ENOMEM;
    n_workers = 0;
    int err = 0;
    for (unsigned i = 0; i < n; i++) {
        struct rlb_worker *w = aligned_alloc(64, (sizeof(*w) + 63) & ~(size_t)63);
        if (!w) {
            err = -ENOMEM;
            break;
        }
        memset(w, 0, sizeof(*w));
        w->id = i;
        /* Owned by the metrics and access-log modules (freed by their shutdown). */
        w->metrics = rlb_metrics_shard_new();
        w->alog = rlb_accesslog_shard_new(0);
        if (!w->metrics || !w->alog) {
            free(w);
            err = -ENOMEM;
            break;
        }
        w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        rlb_snapshot_ref(snap);
        w->snap = snap;
        w->held[0].snap = snap;
        w->n_held = 1;
        if (w->wake_fd < 0 || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            err = -errno ? -errno : -EAGAIN;
            rlb_snapshot_unref(snap);
            if (w->wake_fd >= 0)
                close(w->wake_fd);
            free(w);
            break;
        }
        workers[n_workers++] = w;
        while (!atomic_load(&w->ready))
            usleep(1000);
        if (w->startup_error) {
            err = w->startup_error;
            break;
        }
    }
    if (err) {
        rlb_workers_stop(false);
        rlb_workers_join(5000);
    }
    return err;
}

static void wake(struct rlb_worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->wake_fd, &one, sizeof(one));
    (void)r;
}

void rlb_workers_publish(struct rlb_snapshot *snap)
{
    for (unsigned i = 0; i < n_workers; i++) {
        rlb_snapshot_ref(snap);
        struct rlb_snapshot *prev = atomic_exchange(&workers[i]->inbox, snap);
        if (prev)
            rlb_snapshot_unref(prev);
        wake(workers[i]);
    }
}

void rlb_workers_stop(bool graceful)
{
    for (unsigned i = 0; i < n_workers; i++) {
        int cur = atomic_load(&workers[i]->stop);
        int want = graceful ? 1 : 2;
        if (cur < want)
            atomic_store(&workers[i]->stop, want);
        wake(workers[i]);
    }
}

bool rlb_workers_join(uint64_t timeout_ms)
{
    uint64_t deadline = rlb_now_ms() + timeout_ms;
    for (unsigned i = 0; i < n_workers; i++) {
        struct rlb_worker *w = workers[i];
        while (!w->joined) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t now = rlb_now_ms();
            if (now >= deadline)
                return false;
            uint64_t left = deadline - now;
            if (left > 100)
                left = 100;
            ts.tv_nsec += (long)(left * 1000000);
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0)
                w->joined = true;
        }
    }
    for (unsigned i = 0; i < n_workers; i++) {
        struct rlb_worker *w = workers[i];
        while (w->n_held > 0)
            held_drop(w, &w->held[0]);
        struct rlb_snapshot *pending = atomic_exchange(&w->inbox, NULL);
        if (pending)
            rlb_snapshot_unref(pending);
        close(w->wake_fd);
        free(w->pools);
        free(w);
    }
    free(workers);
    workers = NULL;
    n_workers = 0;
    return true;
}
