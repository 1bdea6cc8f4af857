/* metrics.h — request counters (SPEC section 6): per-worker shards, aggregation, windows,
 * Prometheus text and the per-group "last complete window" JSON.
 *
 * Hot path. Each worker owns one struct rlb_metrics_shard and is the only thread that writes
 * it. Every counter is an _Atomic uint64_t updated with a relaxed load + relaxed store (a plain
 * load/add/store on x86, no lock prefix), so the main thread can read any counter at any time
 * with relaxed loads and sum the shards exactly. No lock, no allocation per request: the
 * functions below are a bounds check, one pointer load and an array index.
 *
 * Ids. Listeners and target groups are identified by NAME across reloads: the main thread
 * turns a name into a small stable integer with rlb_metrics_listener_id() /
 * rlb_metrics_group_id() when it builds a snapshot (the id is stored in the snapshot's listener
 * and group); a name keeps its id for the life of the process, so counters continue across
 * reloads. Targets are identified by their stable slot (struct rlb_target.slot). The
 * (listener, group) pair of RequestCount is looked up in a global open-addressing table filled
 * by rlb_metrics_snapshot_prepare() (and, should a pair be missing, inserted lock-free by the
 * worker on its first request).
 *
 * Memory. Per shard, every kind of entity lives in fixed chunks of RLB_METRICS_CHUNK entries
 * reached through a fixed array of chunk pointers: a chunk never moves once published, so the
 * main thread reads while workers write. Chunks are allocated by the main thread in
 * rlb_metrics_snapshot_prepare() before a snapshot is published (or, as a fallback, once by the
 * worker on first use). Each shard and each chunk is a separate 64-byte aligned allocation:
 * no cache line is shared between workers.
 *
 * Windows. The main thread calls rlb_metrics_tick() (at least every 100 ms); every `window`
 * (metrics.window, default 60 s) it snapshots each group's summed counters. The "last complete
 * window" of a group is the difference between the last two boundaries.
 */
#ifndef RINGLB_METRICS_H
#define RINGLB_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct rlb_snapshot;
struct rlb_group;
struct fy_document;
struct fy_node;

/* "No id": a group not known (yet) for an LB response, a name the registry could not take. */
#define RLB_METRICS_NONE UINT32_MAX

#define RLB_METRICS_CHUNK_SHIFT 6
#define RLB_METRICS_CHUNK (1u << RLB_METRICS_CHUNK_SHIFT)
#define RLB_METRICS_MAX_CHUNKS 1024u
/* Ids (listener, group, target slot, pair) are below this (65536). */
#define RLB_METRICS_MAX_IDS (RLB_METRICS_CHUNK * RLB_METRICS_MAX_CHUNKS)
/* Capacity of the (listener, group) pair table (power of two). */
#define RLB_METRICS_PAIR_CAP 16384u

/* Connection sides of ActiveConnectionCount / NewConnectionCount. */
enum rlb_metrics_side { RLB_METRICS_CLIENT = 0, RLB_METRICS_TARGET = 1 };

/* Desync classification (SPEC 3.3). Compliant requests are counted but not exported (the
 * CloudWatch metric counts non-compliant requests only). */
enum rlb_metrics_desync {
    RLB_METRICS_DESYNC_COMPLIANT = 0,
    RLB_METRICS_DESYNC_ACCEPTABLE,
    RLB_METRICS_DESYNC_AMBIGUOUS,
    RLB_METRICS_DESYNC_SEVERE,
    RLB_METRICS_DESYNC_N
};

/* LB response codes with their own series; anything else is code="other". */
#define RLB_METRICS_N_LB_CODES 14   /* 400 405 408 413 414 460 463 500 501 502 503 504 505 other */

/* Target response time histogram: upper bounds in microseconds (the last bucket is +Inf).
 * 1ms 2.5ms 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s 10s 30s 60s +Inf. */
#define RLB_METRICS_N_BUCKETS 16

/* One listener's counters on one worker. Owner: the worker's shard (written by the worker,
 * read by the main thread). */
struct rlb_metrics_listener_ctr {
    _Atomic uint64_t lb_responses[RLB_METRICS_N_LB_CODES]; /* HTTPCode_ELB_* by code */
    _Atomic uint64_t rejected;          /* RejectedConnectionCount */
    _Atomic uint64_t tls_errors;        /* ClientTLSNegotiationErrorCount */
    _Atomic uint64_t rule_evaluations;  /* RuleEvaluations */
    _Atomic uint64_t desync[RLB_METRICS_DESYNC_N];
};

/* One target group's counters on one worker. Owner: the worker's shard. The first
 * RLB_METRICS_WIN_FIELDS fields are the ones windows snapshot; keep them first and in order. */
struct rlb_metrics_group_ctr {
    _Atomic uint64_t requests;          /* RequestCount of the group (all listeners) */
    _Atomic uint64_t target_class[4];   /* HTTPCode_Target_2XX..5XX_Count */
    _Atomic uint64_t elb_class[2];      /* HTTPCode_ELB_4XX/5XX_Count attributed to the group */
    _Atomic uint64_t rt_buckets[RLB_METRICS_N_BUCKETS]; /* TargetResponseTime, not cumulative */
    _Atomic uint64_t rt_sum_us;         /* sum of response times, microseconds */
    _Atomic uint64_t conn_errors;       /* TargetConnectionErrorCount */
    _Atomic uint64_t non_sticky;        /* NonStickyRequestCount */
    _Atomic uint64_t unhealthy_routing; /* UnhealthyRoutingRequestCount (fail-open) */
};
#define RLB_METRICS_WIN_FIELDS (1 + 4 + 2 + RLB_METRICS_N_BUCKETS + 1)

/* A chunk of plain counters (target slots, (listener, group) pairs). Owner: a shard. */
struct rlb_metrics_count_chunk {
    _Atomic uint64_t v[RLB_METRICS_CHUNK];
};

/* One worker's metrics. Owner: the worker (the only writer); the main thread creates it with
 * rlb_metrics_shard_new() before the worker starts and reads it while the worker runs. */
struct rlb_metrics_shard {
    _Atomic int64_t active[2];          /* open connections by side (gauge) */
    _Atomic uint64_t new_conns[2];      /* NewConnectionCount by side */
    _Atomic uint64_t processed_bytes;   /* ProcessedBytes */
    _Atomic uint64_t redirects;         /* HTTP_Redirect_Count */
    _Atomic uint64_t fixed_responses;   /* HTTP_Fixed_Response_Count */
    _Atomic uint64_t lost;              /* increments that had no counter (id out of range,
                                         * no memory); exported as ringlb_metrics_lost_total */
    _Atomic(struct rlb_metrics_listener_ctr *) listeners[RLB_METRICS_MAX_CHUNKS];
    _Atomic(struct rlb_metrics_group_ctr *) groups[RLB_METRICS_MAX_CHUNKS];
    _Atomic(struct rlb_metrics_count_chunk *) targets[RLB_METRICS_MAX_CHUNKS];
    _Atomic(struct rlb_metrics_count_chunk *) pairs[RLB_METRICS_PAIR_CAP / RLB_METRICS_CHUNK];
    /* Where increments go when there is no real counter (never exported). */
    struct rlb_metrics_listener_ctr sink_listener;
    struct rlb_metrics_group_ctr sink_group;
    _Atomic uint64_t sink_count;
} __attribute__((aligned(64)));

/* The (listener, group) pair table. Owner: metrics.c; keys and ids are written once each
 * (main thread, or a worker's lock-free insert), read by workers. Internal. */
struct rlb_metrics_pair_table {
    _Atomic uint64_t keys[RLB_METRICS_PAIR_CAP];  /* ((listener << 32) | group) + 1; 0 = free */
    _Atomic uint32_t ids[RLB_METRICS_PAIR_CAP];   /* pair id (>= 1); 0 = being inserted */
};
extern struct rlb_metrics_pair_table rlb_metrics__pairs;

/* Slow paths of the inline functions (first use of a chunk, missing pair). Internal. */
struct rlb_metrics_listener_ctr *rlb_metrics__listener_slow(struct rlb_metrics_shard *s,
                                                            uint32_t id);
struct rlb_metrics_group_ctr *rlb_metrics__group_slow(struct rlb_metrics_shard *s, uint32_t id);
_Atomic uint64_t *rlb_metrics__target_slow(struct rlb_metrics_shard *s, uint32_t slot);
_Atomic uint64_t *rlb_metrics__pair_slow(struct rlb_metrics_shard *s, uint32_t listener,
                                         uint32_t group);

/* ---- hot path (worker, own shard only) ------------------------------------------------- */

/* Add `n` to a counter that only this thread writes. */
static inline void rlb_metrics__add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline struct rlb_metrics_listener_ctr *rlb_metrics__listener(struct rlb_metrics_shard *s,
                                                                     uint32_t id)
{
    struct rlb_metrics_listener_ctr *c = NULL;
    if (__builtin_expect(id < RLB_METRICS_MAX_IDS, 1))
        c = atomic_load_explicit(&s->listeners[id >> RLB_METRICS_CHUNK_SHIFT],
                                 memory_order_acquire);
    if (__builtin_expect(!c, 0))
        return rlb_metrics__listener_slow(s, id);
    return &c[id & (RLB_METRICS_CHUNK - 1)];
}

static inline struct rlb_metrics_group_ctr *rlb_metrics__group(struct rlb_metrics_shard *s,
                                                               uint32_t id)
{
    struct rlb_metrics_group_ctr *c = NULL;
    if (__builtin_expect(id < RLB_METRICS_MAX_IDS, 1))
        c = atomic_load_explicit(&s->groups[id >> RLB_METRICS_CHUNK_SHIFT],
                                 memory_order_acquire);
    if (__builtin_expect(!c, 0))
        return rlb_metrics__group_slow(s, id);
    return &c[id & (RLB_METRICS_CHUNK - 1)];
}

static inline _Atomic uint64_t *rlb_metrics__target(struct rlb_metrics_shard *s, uint32_t slot)
{
    struct rlb_metrics_count_chunk *c = NULL;
    if (__builtin_expect(slot < RLB_METRICS_MAX_IDS, 1))
        c = atomic_load_explicit(&s->targets[slot >> RLB_METRICS_CHUNK_SHIFT],
                                 memory_order_acquire);
    if (__builtin_expect(!c, 0))
        return rlb_metrics__target_slow(s, slot);
    return &c->v[slot & (RLB_METRICS_CHUNK - 1)];
}

static inline uint32_t rlb_metrics__pair_hash(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & (RLB_METRICS_PAIR_CAP - 1);
}

static inline _Atomic uint64_t *rlb_metrics__pair(struct rlb_metrics_shard *s, uint32_t listener,
                                                  uint32_t group)
{
    uint64_t key = (((uint64_t)listener << 32) | group) + 1;
    uint32_t h = rlb_metrics__pair_hash(key);
    if (atomic_load_explicit(&rlb_metrics__pairs.keys[h], memory_order_acquire) == key) {
        uint32_t id = atomic_load_explicit(&rlb_metrics__pairs.ids[h], memory_order_acquire);
        struct rlb_metrics_count_chunk *c =
            id ? atomic_load_explicit(&s->pairs[id >> RLB_METRICS_CHUNK_SHIFT],
                                      memory_order_acquire)
               : NULL;
        if (__builtin_expect(c != NULL, 1))
            return &c->v[id & (RLB_METRICS_CHUNK - 1)];
    }
    return rlb_metrics__pair_slow(s, listener, group);
}

/* Map an LB status code to its lb_responses index. */
static inline unsigned rlb_metrics_lb_code_index(int status)
{
    switch (status) {
    case 400: return 0;
    case 405: return 1;
    case 408: return 2;
    case 413: return 3;
    case 414: return 4;
    case 460: return 5;
    case 463: return 6;
    case 500: return 7;
    case 501: return 8;
    case 502: return 9;
    case 503: return 10;
    case 504: return 11;
    case 505: return 12;
    default: return 13;
    }
}

/* Bucket index of a response time in microseconds. */
static inline unsigned rlb_metrics_bucket_index(uint64_t us)
{
    static const uint64_t bounds[RLB_METRICS_N_BUCKETS - 1] = {
        1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
        1000000, 2500000, 5000000, 10000000, 30000000, 60000000};
    unsigned i = 0;
    while (i < RLB_METRICS_N_BUCKETS - 1 && us > bounds[i])
        i++;
    return i;
}

/* A target was chosen for a request (RequestCount): counts the (listener, group) pair, the
 * group and the target. Call once per request, not again on a retry. Worker. */
static inline void rlb_metrics_request(struct rlb_metrics_shard *s, uint32_t listener_id,
                                       uint32_t group_id, uint32_t target_slot)
{
    rlb_metrics__add(rlb_metrics__pair(s, listener_id, group_id), 1);
    rlb_metrics__add(&rlb_metrics__group(s, group_id)->requests, 1);
    rlb_metrics__add(rlb_metrics__target(s, target_slot), 1);
}

/* A target's response head arrived: status class (2xx..5xx; others are not counted) and
 * TargetResponseTime in microseconds (request sent → response head received). Worker. */
static inline void rlb_metrics_target_response(struct rlb_metrics_shard *s, uint32_t group_id,
                                               int status, uint64_t response_us)
{
    struct rlb_metrics_group_ctr *g = rlb_metrics__group(s, group_id);
    if (status >= 200 && status < 600)
        rlb_metrics__add(&g->target_class[status / 100 - 2], 1);
    rlb_metrics__add(&g->rt_buckets[rlb_metrics_bucket_index(response_us)], 1);
    rlb_metrics__add(&g->rt_sum_us, response_us);
}

/* The load balancer answered with `status` itself (HTTPCode_ELB_*). `group_id` is the group
 * the request was routed to when known (502/503/504 after routing), else RLB_METRICS_NONE;
 * only then does the code count in the group's window. Worker. */
static inline void rlb_metrics_lb_response(struct rlb_metrics_shard *s, uint32_t listener_id,
                                           uint32_t group_id, int status)
{
    rlb_metrics__add(
        &rlb_metrics__listener(s, listener_id)->lb_responses[rlb_metrics_lb_code_index(status)],
        1);
    if (group_id != RLB_METRICS_NONE && status >= 400 && status < 600)
        rlb_metrics__add(&rlb_metrics__group(s, group_id)->elb_class[status / 100 - 4], 1);
}

/* A connection opened (counts NewConnectionCount and the ActiveConnectionCount gauge). */
static inline void rlb_metrics_conn_open(struct rlb_metrics_shard *s, enum rlb_metrics_side side)
{
    rlb_metrics__add(&s->new_conns[side], 1);
    atomic_store_explicit(&s->active[side],
                          atomic_load_explicit(&s->active[side], memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* A connection counted by rlb_metrics_conn_open() closed. Worker. */
static inline void rlb_metrics_conn_close(struct rlb_metrics_shard *s,
                                          enum rlb_metrics_side side)
{
    atomic_store_explicit(&s->active[side],
                          atomic_load_explicit(&s->active[side], memory_order_relaxed) - 1,
                          memory_order_relaxed);
}

/* Bytes processed (received from or sent to clients, ProcessedBytes). Worker. */
static inline void rlb_metrics_bytes(struct rlb_metrics_shard *s, uint64_t n)
{
    rlb_metrics__add(&s->processed_bytes, n);
}

/* Connecting to a target of the group failed (TargetConnectionErrorCount). Worker. */
static inline void rlb_metrics_target_conn_error(struct rlb_metrics_shard *s, uint32_t group_id)
{
    rlb_metrics__add(&rlb_metrics__group(s, group_id)->conn_errors, 1);
}

/* A connection was refused because of max_connections (RejectedConnectionCount). Worker. */
static inline void rlb_metrics_rejected_conn(struct rlb_metrics_shard *s, uint32_t listener_id)
{
    rlb_metrics__add(&rlb_metrics__listener(s, listener_id)->rejected, 1);
}

/* A client TLS handshake failed (ClientTLSNegotiationErrorCount). Worker. */
static inline void rlb_metrics_tls_error(struct rlb_metrics_shard *s, uint32_t listener_id)
{
    rlb_metrics__add(&rlb_metrics__listener(s, listener_id)->tls_errors, 1);
}

/* A redirect action answered (HTTP_Redirect_Count). Worker. */
static inline void rlb_metrics_redirect(struct rlb_metrics_shard *s)
{
    rlb_metrics__add(&s->redirects, 1);
}

/* A fixed-response action answered (HTTP_Fixed_Response_Count). Worker. */
static inline void rlb_metrics_fixed_response(struct rlb_metrics_shard *s)
{
    rlb_metrics__add(&s->fixed_responses, 1);
}

/* `n` rules were evaluated for one request (RuleEvaluations). Worker. */
static inline void rlb_metrics_rule_evaluations(struct rlb_metrics_shard *s,
                                                uint32_t listener_id, uint32_t n)
{
    rlb_metrics__add(&rlb_metrics__listener(s, listener_id)->rule_evaluations, n);
}

/* A request was routed to the group without a valid stickiness cookie while the group has
 * stickiness on (NonStickyRequestCount). Worker. */
static inline void rlb_metrics_non_sticky(struct rlb_metrics_shard *s, uint32_t group_id)
{
    rlb_metrics__add(&rlb_metrics__group(s, group_id)->non_sticky, 1);
}

/* A request was routed fail-open (no healthy target; UnhealthyRoutingRequestCount). Worker. */
static inline void rlb_metrics_unhealthy_routing(struct rlb_metrics_shard *s, uint32_t group_id)
{
    rlb_metrics__add(&rlb_metrics__group(s, group_id)->unhealthy_routing, 1);
}

/* A request was classified (desync mitigation; call for every request or only for
 * non-compliant ones: compliant requests are not exported). Worker. */
static inline void rlb_metrics_desync(struct rlb_metrics_shard *s, uint32_t listener_id,
                                      enum rlb_metrics_desync cls)
{
    if ((unsigned)cls < RLB_METRICS_DESYNC_N)
        rlb_metrics__add(&rlb_metrics__listener(s, listener_id)->desync[cls], 1);
}

/* ---- main thread ------------------------------------------------------------------------ */

/* Initialise the module: window length (metrics.window) and the current monotonic time (the
 * first window ends at now_ms + window_ms). May be called again to start over only after
 * rlb_metrics_shutdown(). Main thread. Returns 0 or -ENOMEM. */
int rlb_metrics_init(uint64_t window_ms, uint64_t now_ms);

/* Change the window length (reload). The current window ends window_ms after the last
 * boundary (or now, when that is already past). Main thread. */
void rlb_metrics_set_window(uint64_t window_ms);

/* Free every shard, chunk and name; the module can be initialised again. Only once no worker
 * uses its shard any more. Main thread. */
void rlb_metrics_shutdown(void);

/* A new zeroed shard for one worker (registered for aggregation; owned by the module, freed by
 * rlb_metrics_shutdown()). Call before the worker starts. Returns NULL on ENOMEM. Main thread. */
struct rlb_metrics_shard *rlb_metrics_shard_new(void);

/* The stable id of a listener / target group name (created on first use; the same name always
 * gets the same id). Call when building a snapshot and store the id in the snapshot's
 * listener / group. Returns RLB_METRICS_NONE when no id is left or on ENOMEM (increments with
 * it are counted in ringlb_metrics_lost_total). Main thread. */
uint32_t rlb_metrics_listener_id(const char *name);
uint32_t rlb_metrics_group_id(const char *name);

/* Prepare counters for snapshot `s` before it is published: ids for its listeners and groups,
 * the (listener, group) pairs of its forward actions, chunks in every shard for those and for
 * its target slots, and the base of a target slot whose target changed (a slot reused by
 * another target starts its series at 0). Returns 0 or -ENOMEM (the workers then fall back to
 * allocating on first use). Main thread. */
int rlb_metrics_snapshot_prepare(const struct rlb_snapshot *s);

/* Close windows that are due at `now_ms` (monotonic ms). Call at least every 100 ms. Main
 * thread. */
void rlb_metrics_tick(uint64_t now_ms);

/* Number of windows closed since rlb_metrics_init() (0 = no complete window yet); a change
 * means a new "last complete window" (the scaling advisor decides once per window). Main
 * thread. */
uint64_t rlb_metrics_windows_closed(void);

/* A group's values over the last complete window. */
struct rlb_metrics_window {
    bool complete;             /* false until one whole window has passed */
    uint64_t window_ms;        /* length of that window */
    uint64_t requests;         /* RequestCount */
    uint64_t target[4];        /* HTTPCode_Target_2XX..5XX_Count */
    uint64_t elb[2];           /* HTTPCode_ELB_4XX/5XX_Count (requests routed to the group) */
    uint64_t rt_count;         /* responses timed */
    double rt_avg;             /* TargetResponseTime average, seconds (0 when rt_count = 0) */
    double rt_p50, rt_p90, rt_p99; /* percentiles, seconds, interpolated in the buckets */
};

/* The last complete window of group `name` into *out (zeros when the group is unknown).
 * Main thread. */
void rlb_metrics_group_window(const char *name, struct rlb_metrics_window *out);

/* RequestCountPerTarget: requests of the group in the last complete window ÷ `healthy`,
 * ÷ `registered` when none is healthy, 0 when none is registered. Main thread. */
double rlb_metrics_request_count_per_target(const char *group, uint32_t healthy,
                                            uint32_t registered);

/* Target counts of a snapshot group as the metrics see them: healthy (state healthy),
 * unhealthy (state unhealthy) and registered (not draining or unused). Any thread. */
void rlb_metrics_group_counts(const struct rlb_group *g, uint32_t *healthy, uint32_t *unhealthy,
                              uint32_t *registered);

/* Quantile q (0..1) of a histogram of non-cumulative bucket counts, by linear interpolation
 * inside the bucket holding rank q × count (lower bound 0 for the first bucket; the +Inf
 * bucket yields its lower bound, 60 s), in seconds; 0 when empty. */
double rlb_metrics_quantile(const uint64_t buckets[RLB_METRICS_N_BUCKETS], double q);

/* Build the JSON object of group `g`'s last complete window in `fyd` (not attached): keys
 * RequestCount, RequestCountPerTarget, HTTPCode_Target_2XX_Count .. 5XX, HTTPCode_ELB_4XX_Count,
 * HTTPCode_ELB_5XX_Count, TargetResponseTime (average; null without responses),
 * TargetResponseTime_p50/_p90/_p99, HealthyHostCount, UnHealthyHostCount, WindowSeconds,
 * Complete. Returns the mapping node or NULL on ENOMEM. Main thread. */
struct fy_node *rlb_metrics_group_json_node(struct fy_document *fyd, const struct rlb_group *g);

/* The same object as a malloc'd one-line JSON string (caller frees), or NULL. Main thread. */
char *rlb_metrics_group_json(const struct rlb_group *g);

/* Write the Prometheus text exposition (format 0.0.4) of every metric to `f`: counters summed
 * over the shards; per-target series and the healthy/unhealthy/RequestCountPerTarget gauges
 * for the targets and groups of `current` (may be NULL: then those are left out). Returns 0 or
 * -EIO. Main thread. */
int rlb_metrics_render(FILE *f, const struct rlb_snapshot *current);

/* rlb_metrics_render() into a malloc'd NUL-terminated string (caller frees); its length in
 * *len when len is not NULL. NULL on ENOMEM. Main thread. */
char *rlb_metrics_render_string(const struct rlb_snapshot *current, size_t *len);

#endif
