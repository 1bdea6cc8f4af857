/* worker.h — worker threads: one io_uring event loop each.
 *
 * A worker owns its ring, provided buffers, timer wheel, listen sockets (SO_REUSEPORT, multishot
 * accept), client connections, idle target-connection pools and balancer slots. It shares
 * nothing mutable with other threads except its inbox (the next snapshot, handed over with an
 * atomic exchange) and its stop flags; the main thread wakes it through an eventfd.
 */
#ifndef RINGLB_WORKER_H
#define RINGLB_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringlb/buf.h"
#include "ringlb/http1.h"
#include "ringlb/snapshot.h"
#include "ringlb/stream.h"
#include "ringlb/timer.h"

struct rlb_conn;
struct rlb_upconn;
struct rlb_sendop;
struct rlb_metrics_shard;
struct rlb_accesslog_shard;

/* A listen socket of one worker. Owner: the worker. */
struct rlb_wlistener {
    struct rlb_wlistener *next;
    struct rlb_worker *w;
    int fd;
    char *name;              /* listener name */
    struct rlb_sockaddr addr;
    int index;               /* index in the worker's current snapshot, -1 when removed */
    bool armed;              /* multishot accept in flight */
    bool closing;
    uint32_t conns;          /* open client connections accepted here */
};

/* A snapshot held by this worker with the number of its requests using it. */
struct rlb_held_snapshot {
    struct rlb_snapshot *snap;
    uint32_t users;
};

/* Per-target idle connection list of this worker. */
struct rlb_idle_pool {
    struct rlb_upconn *head;
    uint32_t count;
};

#define RLB_MAX_HELD_SNAPSHOTS 16

struct rlb_worker {
    unsigned id;
    pthread_t thread;
    struct io_uring ring;
    struct rlb_bufring bufs;
    struct rlb_segpool segs;
    struct rlb_timer_wheel timers;
    uint64_t now_ms;            /* monotonic, refreshed each loop iteration */
    uint64_t now_us;            /* the same instant in µs: request timings read this cached
                                 * clock (as nginx does), not clock_gettime per request */
    int wake_fd;                /* eventfd the main thread writes to */
    uint64_t wake_buf;
    bool wake_armed;
    _Atomic(struct rlb_snapshot *) inbox; /* next snapshot (one reference), or NULL */
    _Atomic int stop;           /* 0 run, 1 drain gracefully, 2 stop now */
    int startup_error;          /* 0, or -errno when the worker could not start */
    _Atomic int ready;          /* 1 once listening (or failed) */

    struct rlb_snapshot *snap;  /* the newest snapshot (a reference held in `held`) */
    struct rlb_held_snapshot held[RLB_MAX_HELD_SNAPSHOTS];
    unsigned n_held;

    struct rlb_wlistener *listeners;
    struct rlb_conn *conns;     /* every open client connection (intrusive list) */
    uint32_t n_conns;
    uint32_t n_upconns;
    struct rlb_idle_pool *pools; /* indexed by target slot */
    uint32_t n_pools;

    struct rlb_stream *starved;     /* streams waiting for provided buffers */
    struct rlb_stream *to_free;     /* closed streams whose operations are done */
    struct rlb_sendop *free_sendops;
    uint32_t live_streams;      /* streams not yet freed (open or closing) */
    bool joined;                /* the thread has been joined (main thread's view) */
    bool draining;
    uint64_t drain_deadline_ms;
    uint64_t rng[2];            /* xorshift128+ state */
    struct rlb_metrics_shard *metrics;    /* this worker's counters (metrics.h) */
    struct rlb_accesslog_shard *alog;     /* this worker's access-log ring (accesslog.h) */
    uint64_t conn_ids;                    /* client connection ids (access log conn_trace_id) */

    struct rlb_http_head head;  /* scratch for parsing one head at a time */
};

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t rlb_now_ms(void);

/* Microseconds of CLOCK_MONOTONIC. */
uint64_t rlb_now_us(void);

/* Start `n` workers with snapshot `snap` (each worker takes its own reference). Blocks until
 * every worker is listening. Returns 0 or -errno (then nothing is left running). Main thread. */
int rlb_workers_start(unsigned n, struct rlb_snapshot *snap);

/* Hand `snap` to every worker (takes one reference per worker) and wake them. Main thread. */
void rlb_workers_publish(struct rlb_snapshot *snap);

/* Ask every worker to stop: graceful (drain in-flight requests) or immediate. Main thread. */
void rlb_workers_stop(bool graceful);

/* Wait for the workers to exit, at most `timeout_ms`; returns true when all exited (they are
 * then joined and freed). Main thread. */
bool rlb_workers_join(uint64_t timeout_ms);

/* Number of running workers. */
unsigned rlb_workers_count(void);

/* Get an SQE, submitting pending ones first when the ring is full. Never NULL. Worker. */
struct io_uring_sqe *rlb_worker_sqe(struct rlb_worker *w);

/* Close `fd` through the ring, after every operation already prepared on it. Workers share one
 * descriptor table and an unsubmitted SQE names its socket by number: a synchronous close()
 * would free the number for another thread's accept before that SQE is submitted, and the
 * stale operation would then act on someone else's connection. Worker. */
void rlb_worker_close_fd(struct rlb_worker *w, int fd);

/* 64 random bits from the worker's generator. Worker. */
uint64_t rlb_worker_rand(struct rlb_worker *w);

/* Mark that a request started/finished using snapshot `s` (keeps it alive). Worker. */
void rlb_worker_snap_use(struct rlb_worker *w, struct rlb_snapshot *s);
void rlb_worker_snap_done(struct rlb_worker *w, struct rlb_snapshot *s);

#endif
