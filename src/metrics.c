/* metrics.c — metric ids, shard chunks, aggregation, windows, Prometheus text and JSON.
 *
 * Threads. Workers write their own shard through the inline functions of metrics.h; their
 * only calls into this file are the slow paths (first use of a chunk, a (listener, group) pair
 * the main thread did not insert), which are lock-free. Everything else runs on the main
 * thread: the name registries, target slot identities, windows and rendering, all of which
 * read the shards with relaxed (chunk pointers: acquire) loads.
 *
 * Exactness. A counter is written by one thread only, so the sum of the shards read at any
 * instant is a value the counter really had: after N requests have finished, it says N.
 *
 * Target slots are reused after a target is freed. The main thread remembers which target
 * (group name, "ip:port") a slot last belonged to; when rlb_metrics_snapshot_prepare() or a
 * scrape sees a different one, it records the slot's current sum as the new target's base, so
 * its series starts at 0. The old target's increments all happened before its slot was given
 * back (the slot free list is mutex-protected), hence before the base is read.
 *
 * Windows. Boundaries are every `window` ms of the monotonic clock from rlb_metrics_init().
 * At each one the first RLB_METRICS_WIN_FIELDS counters of every group are summed and kept
 * ("cur"; the previous "cur" becomes "prev"). The last complete window is cur − prev; when
 * the main thread was late by more than a window, that window is simply longer (its length is
 * reported). A group first seen during a window has a partial first window.
 */
#include "ringlb/metrics.h"

#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "ringlb/accesslog.h"
#include "ringlb/cluster.h"
#include "ringlb/scaling.h"
#include "ringlb/snapshot.h"

#define LISTENER_FIELDS (sizeof(struct rlb_metrics_listener_ctr) / sizeof(uint64_t))
#define GROUP_FIELDS (sizeof(struct rlb_metrics_group_ctr) / sizeof(uint64_t))
_Static_assert(sizeof(struct rlb_metrics_listener_ctr) ==
                   (RLB_METRICS_N_LB_CODES + 3 + RLB_METRICS_DESYNC_N) * sizeof(uint64_t),
               "listener counters are a plain array of uint64");
_Static_assert(sizeof(struct rlb_metrics_group_ctr) ==
                   (RLB_METRICS_WIN_FIELDS + 3) * sizeof(uint64_t),
               "group counters are a plain array of uint64");
_Static_assert(offsetof(struct rlb_metrics_group_ctr, conn_errors) ==
                   RLB_METRICS_WIN_FIELDS * sizeof(uint64_t),
               "window fields come first");

/* Field indexes inside struct rlb_metrics_group_ctr viewed as an array. */
enum {
    GF_REQUESTS = 0,
    GF_TARGET = 1,
    GF_ELB = 5,
    GF_BUCKETS = 7,
    GF_SUM = 7 + RLB_METRICS_N_BUCKETS,
    GF_CONN_ERRORS,
    GF_NON_STICKY,
    GF_UNHEALTHY_ROUTING,
};
/* Field indexes inside struct rlb_metrics_listener_ctr. */
enum {
    LF_LB = 0,
    LF_REJECTED = RLB_METRICS_N_LB_CODES,
    LF_TLS,
    LF_RULES,
    LF_DESYNC,
};

#define MAX_SHARDS 1024u
#define PAIR_CHUNKS (RLB_METRICS_PAIR_CAP / RLB_METRICS_CHUNK)
/* Refuse new pairs beyond this load of the table (keeps probes short). */
#define PAIR_MAX_LOAD (RLB_METRICS_PAIR_CAP / 4 * 3)

static const char *const lb_code_names[RLB_METRICS_N_LB_CODES] = {
    "400", "405", "408", "413", "414", "460", "463",
    "500", "501", "502", "503", "504", "505", "other"};
static const char *const class_names[4] = {"2xx", "3xx", "4xx", "5xx"};
static const char *const desync_names[RLB_METRICS_DESYNC_N] = {"Compliant", "Acceptable",
                                                               "Ambiguous", "Severe"};
/* Bucket upper bounds as Prometheus `le` labels and in seconds. */
static const char *const bucket_le[RLB_METRICS_N_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5",   "1",      "2.5",   "5",    "10",    "30",   "60",  "+Inf"};
static const double bucket_s[RLB_METRICS_N_BUCKETS - 1] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

struct rlb_metrics_pair_table rlb_metrics__pairs;

/* Pair id → its key, written before the id is published; 0 while being inserted. */
static _Atomic uint64_t pair_info[RLB_METRICS_PAIR_CAP + 1];
static _Atomic uint32_t n_pairs;  /* ids handed out so far (ids are 1..n_pairs) */

static struct rlb_metrics_shard *shards[MAX_SHARDS];
static _Atomic unsigned n_shards;

/* A name → id registry. Owner: the main thread. */
struct name_reg {
    char **names;         /* [n] by id */
    uint32_t n, cap;
    uint32_t *index;      /* open addressing: id + 1, 0 = empty; [index_cap] */
    uint32_t index_cap;   /* power of two, > 2 n */
};

static struct name_reg listener_names, group_names;

/* Which target a slot last counted for. Owner: the main thread. */
struct slot_ident {
    char *group;          /* NULL = never seen */
    char name[64];
    uint64_t base;        /* the slot's sum when this target took it */
};
static struct slot_ident *slot_idents;
static uint32_t n_slot_idents;

/* Windows. Owner: the main thread. */
static struct {
    bool initialised;
    uint64_t window_ms;
    uint64_t prev_ms, last_ms, next_ms;  /* last two boundaries and the next one */
    uint64_t boundaries;                 /* boundaries passed since init */
    uint64_t (*prev)[RLB_METRICS_WIN_FIELDS]; /* [cap] by group id */
    uint64_t (*cur)[RLB_METRICS_WIN_FIELDS];
    uint32_t cap;
} win;

/* ---- chunks and slow paths (any thread) ------------------------------------------------- */

static void *chunk_publish(void *slotp, size_t size)
{
    _Atomic(void *) *slot = slotp;
    void *c = atomic_load_explicit(slot, memory_order_acquire);
    if (c)
        return c;
    size_t rounded = (size + 63) & ~(size_t)63;
    void *n = aligned_alloc(64, rounded);
    if (!n)
        return NULL;
    memset(n, 0, rounded);
    void *expected = NULL;
    if (!atomic_compare_exchange_strong_explicit(slot, &expected, n, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        free(n);
        return expected;
    }
    return n;
}

static void lost(struct rlb_metrics_shard *s) { rlb_metrics__add(&s->lost, 1); }

struct rlb_metrics_listener_ctr *rlb_metrics__listener_slow(struct rlb_metrics_shard *s,
                                                            uint32_t id)
{
    if (id < RLB_METRICS_MAX_IDS) {
        struct rlb_metrics_listener_ctr *c =
            chunk_publish(&s->listeners[id >> RLB_METRICS_CHUNK_SHIFT],
                          sizeof(*c) * RLB_METRICS_CHUNK);
        if (c)
            return &c[id & (RLB_METRICS_CHUNK - 1)];
    }
    lost(s);
    return &s->sink_listener;
}

struct rlb_metrics_group_ctr *rlb_metrics__group_slow(struct rlb_metrics_shard *s, uint32_t id)
{
    if (id < RLB_METRICS_MAX_IDS) {
        struct rlb_metrics_group_ctr *c = chunk_publish(
            &s->groups[id >> RLB_METRICS_CHUNK_SHIFT], sizeof(*c) * RLB_METRICS_CHUNK);
        if (c)
            return &c[id & (RLB_METRICS_CHUNK - 1)];
    }
    lost(s);
    return &s->sink_group;
}

_Atomic uint64_t *rlb_metrics__target_slow(struct rlb_metrics_shard *s, uint32_t slot)
{
    if (slot < RLB_METRICS_MAX_IDS) {
        struct rlb_metrics_count_chunk *c = chunk_publish(
            &s->targets[slot >> RLB_METRICS_CHUNK_SHIFT], sizeof(*c));
        if (c)
            return &c->v[slot & (RLB_METRICS_CHUNK - 1)];
    }
    lost(s);
    return &s->sink_count;
}

/* Find the id of pair (listener, group), inserting it when missing. Lock-free; returns 0 when
 * the table is full. Any thread. */
static uint32_t pair_id(uint32_t listener, uint32_t group)
{
    uint64_t key = (((uint64_t)listener << 32) | group) + 1;
    uint32_t h = rlb_metrics__pair_hash(key);
    for (uint32_t n = 0; n < RLB_METRICS_PAIR_CAP; n++, h = (h + 1) & (RLB_METRICS_PAIR_CAP - 1)) {
        uint64_t k = atomic_load_explicit(&rlb_metrics__pairs.keys[h], memory_order_acquire);
        if (k == 0) {
            if (atomic_load_explicit(&n_pairs, memory_order_relaxed) >= PAIR_MAX_LOAD)
                return 0;
            uint64_t expected = 0;
            if (atomic_compare_exchange_strong_explicit(&rlb_metrics__pairs.keys[h], &expected,
                                                        key, memory_order_acq_rel,
                                                        memory_order_acquire)) {
                uint32_t id = atomic_fetch_add_explicit(&n_pairs, 1, memory_order_relaxed) + 1;
                atomic_store_explicit(&pair_info[id], key, memory_order_release);
                atomic_store_explicit(&rlb_metrics__pairs.ids[h], id, memory_order_release);
                return id;
            }
            k = expected;
        }
        if (k == key) {
            /* Another thread is between claiming the key and publishing its id. */
            uint32_t id, spins = 0;
            while (!(id = atomic_load_explicit(&rlb_metrics__pairs.ids[h],
                                               memory_order_acquire))) {
                if (++spins > 1000)
                    sched_yield();
            }
            return id;
        }
    }
    return 0;
}

_Atomic uint64_t *rlb_metrics__pair_slow(struct rlb_metrics_shard *s, uint32_t listener,
                                         uint32_t group)
{
    uint32_t id = (listener == RLB_METRICS_NONE || group == RLB_METRICS_NONE)
                      ? 0 : pair_id(listener, group);
    if (id) {
        struct rlb_metrics_count_chunk *c =
            chunk_publish(&s->pairs[id >> RLB_METRICS_CHUNK_SHIFT], sizeof(*c));
        if (c)
            return &c->v[id & (RLB_METRICS_CHUNK - 1)];
    }
    lost(s);
    return &s->sink_count;
}

/* ---- shards ----------------------------------------------------------------------------- */

struct rlb_metrics_shard *rlb_metrics_shard_new(void)
{
    unsigned n = atomic_load_explicit(&n_shards, memory_order_relaxed);
    if (n >= MAX_SHARDS)
        return NULL;
    struct rlb_metrics_shard *s = aligned_alloc(64, sizeof(*s));
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    shards[n] = s;
    atomic_store_explicit(&n_shards, n + 1, memory_order_release);
    return s;
}

/* ---- sums (main thread) ----------------------------------------------------------------- */

static void sum_listener(uint32_t id, uint64_t out[LISTENER_FIELDS])
{
    memset(out, 0, sizeof(uint64_t) * LISTENER_FIELDS);
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    for (unsigned i = 0; i < ns; i++) {
        struct rlb_metrics_listener_ctr *c = atomic_load_explicit(
            &shards[i]->listeners[id >> RLB_METRICS_CHUNK_SHIFT], memory_order_acquire);
        if (!c)
            continue;
        const _Atomic uint64_t *f = (const _Atomic uint64_t *)&c[id & (RLB_METRICS_CHUNK - 1)];
        for (size_t k = 0; k < LISTENER_FIELDS; k++)
            out[k] += atomic_load_explicit(&f[k], memory_order_relaxed);
    }
}

static void sum_group(uint32_t id, uint64_t out[GROUP_FIELDS])
{
    memset(out, 0, sizeof(uint64_t) * GROUP_FIELDS);
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    for (unsigned i = 0; i < ns; i++) {
        struct rlb_metrics_group_ctr *c = atomic_load_explicit(
            &shards[i]->groups[id >> RLB_METRICS_CHUNK_SHIFT], memory_order_acquire);
        if (!c)
            continue;
        const _Atomic uint64_t *f = (const _Atomic uint64_t *)&c[id & (RLB_METRICS_CHUNK - 1)];
        for (size_t k = 0; k < GROUP_FIELDS; k++)
            out[k] += atomic_load_explicit(&f[k], memory_order_relaxed);
    }
}

static uint64_t sum_count(size_t chunks_offset, uint32_t id)
{
    uint64_t v = 0;
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    for (unsigned i = 0; i < ns; i++) {
        _Atomic(struct rlb_metrics_count_chunk *) *arr =
            (void *)((char *)shards[i] + chunks_offset);
        struct rlb_metrics_count_chunk *c =
            atomic_load_explicit(&arr[id >> RLB_METRICS_CHUNK_SHIFT], memory_order_acquire);
        if (c)
            v += atomic_load_explicit(&c->v[id & (RLB_METRICS_CHUNK - 1)], memory_order_relaxed);
    }
    return v;
}

static uint64_t sum_target(uint32_t slot)
{
    return slot < RLB_METRICS_MAX_IDS
               ? sum_count(offsetof(struct rlb_metrics_shard, targets), slot) : 0;
}

static uint64_t sum_pair(uint32_t id)
{
    return sum_count(offsetof(struct rlb_metrics_shard, pairs), id);
}

static uint64_t sum_scalar(size_t offset)
{
    uint64_t v = 0;
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    for (unsigned i = 0; i < ns; i++)
        v += atomic_load_explicit((_Atomic uint64_t *)((char *)shards[i] + offset),
                                  memory_order_relaxed);
    return v;
}

/* ---- name registries (main thread) ------------------------------------------------------ */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static uint32_t names_find(const struct name_reg *r, const char *name)
{
    if (!r->index_cap)
        return RLB_METRICS_NONE;
    for (uint32_t h = name_hash(name) & (r->index_cap - 1);; h = (h + 1) & (r->index_cap - 1)) {
        uint32_t v = r->index[h];
        if (!v)
            return RLB_METRICS_NONE;
        if (strcmp(r->names[v - 1], name) == 0)
            return v - 1;
    }
}

static int names_reindex(struct name_reg *r, uint32_t cap)
{
    uint32_t *idx = calloc(cap, sizeof(*idx));
    if (!idx)
        return -ENOMEM;
    for (uint32_t id = 0; id < r->n; id++) {
        uint32_t h = name_hash(r->names[id]) & (cap - 1);
        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = id + 1;
    }
    free(r->index);
    r->index = idx;
    r->index_cap = cap;
    return 0;
}

static uint32_t names_get(struct name_reg *r, const char *name)
{
    uint32_t id = names_find(r, name);
    if (id != RLB_METRICS_NONE)
        return id;
    if (r->n >= RLB_METRICS_MAX_IDS)
        return RLB_METRICS_NONE;
    if (r->n == r->cap) {
        uint32_t ncap = r->cap ? r->cap * 2 : 16;
        char **nn = realloc(r->names, ncap * sizeof(*nn));
        if (!nn)
            return RLB_METRICS_NONE;
        r->names = nn;
        r->cap = ncap;
    }
    if ((r->n + 1) * 2 >= r->index_cap &&
        names_reindex(r, r->index_cap ? r->index_cap * 2 : 64) < 0)
        return RLB_METRICS_NONE;
    char *copy = strdup(name);
    if (!copy)
        return RLB_METRICS_NONE;
    id = r->n++;
    r->names[id] = copy;
    uint32_t h = name_hash(name) & (r->index_cap - 1);
    while (r->index[h])
        h = (h + 1) & (r->index_cap - 1);
    r->index[h] = id + 1;
    return id;
}

static void names_free(struct name_reg *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        free(r->names[i]);
    free(r->names);
    free(r->index);
    memset(r, 0, sizeof(*r));
}

/* Make room for the window state of group ids < n. */
static int win_reserve(uint32_t n)
{
    if (n <= win.cap)
        return 0;
    uint32_t ncap = win.cap ? win.cap : 16;
    while (ncap < n)
        ncap *= 2;
    void *p = realloc(win.prev, ncap * sizeof(*win.prev));
    if (!p)
        return -ENOMEM;
    win.prev = p;
    p = realloc(win.cur, ncap * sizeof(*win.cur));
    if (!p)
        return -ENOMEM;
    win.cur = p;
    memset(win.prev + win.cap, 0, (ncap - win.cap) * sizeof(*win.prev));
    memset(win.cur + win.cap, 0, (ncap - win.cap) * sizeof(*win.cur));
    win.cap = ncap;
    return 0;
}

uint32_t rlb_metrics_listener_id(const char *name) { return names_get(&listener_names, name); }

uint32_t rlb_metrics_group_id(const char *name)
{
    uint32_t id = names_get(&group_names, name);
    if (id != RLB_METRICS_NONE && win_reserve(id + 1) < 0)
        return RLB_METRICS_NONE;
    return id;
}

/* ---- target slot identities (main thread) ----------------------------------------------- */

/* Check that `t` is the target slot t->slot counts for; else make it so (base = current). */
static struct slot_ident *slot_ident_of(const struct rlb_target *t)
{
    uint32_t slot = t->slot;
    if (slot >= RLB_METRICS_MAX_IDS)
        return NULL;
    if (slot >= n_slot_idents) {
        uint32_t n = n_slot_idents ? n_slot_idents : 64;
        while (n <= slot)
            n *= 2;
        struct slot_ident *p = realloc(slot_idents, n * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + n_slot_idents, 0, (n - n_slot_idents) * sizeof(*p));
        slot_idents = p;
        n_slot_idents = n;
    }
    struct slot_ident *si = &slot_idents[slot];
    const char *group = t->group_name ? t->group_name : "";
    if (si->group && strcmp(si->group, group) == 0 && strcmp(si->name, t->name) == 0)
        return si;
    char *g = strdup(group);
    if (!g)
        return NULL;
    free(si->group);
    si->group = g;
    snprintf(si->name, sizeof(si->name), "%s", t->name);
    si->base = sum_target(slot);
    return si;
}

/* ---- init, prepare, tick (main thread) -------------------------------------------------- */

int rlb_metrics_init(uint64_t window_ms, uint64_t now_ms)
{
    win.initialised = true;
    win.window_ms = window_ms ? window_ms : 60000;
    win.prev_ms = win.last_ms = now_ms;
    win.next_ms = now_ms + win.window_ms;
    win.boundaries = 0;
    return win_reserve(16);
}

void rlb_metrics_set_window(uint64_t window_ms)
{
    if (!window_ms || window_ms == win.window_ms)
        return;
    win.window_ms = window_ms;
    win.next_ms = win.last_ms + window_ms;
}

void rlb_metrics_shutdown(void)
{
    unsigned ns = atomic_load(&n_shards);
    for (unsigned i = 0; i < ns; i++) {
        struct rlb_metrics_shard *s = shards[i];
        for (unsigned c = 0; c < RLB_METRICS_MAX_CHUNKS; c++) {
            free(atomic_load(&s->listeners[c]));
            free(atomic_load(&s->groups[c]));
            free(atomic_load(&s->targets[c]));
        }
        for (unsigned c = 0; c < PAIR_CHUNKS; c++)
            free(atomic_load(&s->pairs[c]));
        free(s);
        shards[i] = NULL;
    }
    atomic_store(&n_shards, 0);
    memset(&rlb_metrics__pairs, 0, sizeof(rlb_metrics__pairs));
    memset(pair_info, 0, sizeof(pair_info));
    atomic_store(&n_pairs, 0);
    names_free(&listener_names);
    names_free(&group_names);
    for (uint32_t i = 0; i < n_slot_idents; i++)
        free(slot_idents[i].group);
    free(slot_idents);
    slot_idents = NULL;
    n_slot_idents = 0;
    free(win.prev);
    free(win.cur);
    memset(&win, 0, sizeof(win));
}

int rlb_metrics_snapshot_prepare(const struct rlb_snapshot *s)
{
    int ret = 0;
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    const struct rlb_config *cfg = s->cfg;
    for (size_t g = 0; g < cfg->n_target_groups; g++) {
        const struct rlb_group *grp = &s->groups[g];
        uint32_t gid = rlb_metrics_group_id(grp->cfg->name);
        if (gid == RLB_METRICS_NONE) {
            ret = -ENOMEM;
            continue;
        }
        for (unsigned i = 0; i < ns; i++)
            if (!chunk_publish(&shards[i]->groups[gid >> RLB_METRICS_CHUNK_SHIFT],
                               sizeof(struct rlb_metrics_group_ctr) * RLB_METRICS_CHUNK))
                ret = -ENOMEM;
        for (size_t k = 0; k < grp->n_targets; k++) {
            const struct rlb_target *t = grp->targets[k];
            if (!slot_ident_of(t))
                ret = -ENOMEM;
            if (t->slot >= RLB_METRICS_MAX_IDS)
                continue;
            for (unsigned i = 0; i < ns; i++)
                if (!chunk_publish(&shards[i]->targets[t->slot >> RLB_METRICS_CHUNK_SHIFT],
                                   sizeof(struct rlb_metrics_count_chunk)))
                    ret = -ENOMEM;
        }
    }
    for (size_t l = 0; l < cfg->n_listeners; l++) {
        const struct rlb_listener *lst = &s->listeners[l];
        uint32_t lid = rlb_metrics_listener_id(lst->cfg->name);
        if (lid == RLB_METRICS_NONE) {
            ret = -ENOMEM;
            continue;
        }
        for (unsigned i = 0; i < ns; i++)
            if (!chunk_publish(&shards[i]->listeners[lid >> RLB_METRICS_CHUNK_SHIFT],
                               sizeof(struct rlb_metrics_listener_ctr) * RLB_METRICS_CHUNK))
                ret = -ENOMEM;
        for (size_t r = 0; r <= lst->cfg->n_rules; r++) {
            const struct rlb_forward *f =
                r < lst->cfg->n_rules ? &lst->rule_forwards[r] : &lst->default_forward;
            const struct rlb_action *a =
                r < lst->cfg->n_rules ? &lst->cfg->rules[r].action : &lst->cfg->default_action;
            if (a->type != RLB_ACTION_FORWARD || !f->groups)
                continue;
            for (size_t k = 0; k < f->n_groups; k++) {
                uint32_t gid = rlb_metrics_group_id(f->groups[k]->cfg->name);
                uint32_t pid = gid == RLB_METRICS_NONE ? 0 : pair_id(lid, gid);
                if (!pid) {
                    ret = -ENOMEM;
                    continue;
                }
                for (unsigned i = 0; i < ns; i++)
                    if (!chunk_publish(&shards[i]->pairs[pid >> RLB_METRICS_CHUNK_SHIFT],
                                       sizeof(struct rlb_metrics_count_chunk)))
                        ret = -ENOMEM;
            }
        }
    }
    return ret;
}

void rlb_metrics_tick(uint64_t now_ms)
{
    if (!win.initialised || now_ms < win.next_ms)
        return;
    uint64_t g[GROUP_FIELDS];
    for (uint32_t id = 0; id < group_names.n && id < win.cap; id++) {
        sum_group(id, g);
        memcpy(win.prev[id], win.cur[id], sizeof(win.prev[id]));
        memcpy(win.cur[id], g, sizeof(win.cur[id]));
    }
    win.prev_ms = win.last_ms;
    win.last_ms = now_ms;
    win.boundaries++;
    win.next_ms += win.window_ms;
    if (win.next_ms <= now_ms)
        win.next_ms = now_ms + win.window_ms;
}

/* ---- windows (main thread) -------------------------------------------------------------- */

uint64_t rlb_metrics_windows_closed(void) { return win.boundaries; }

double rlb_metrics_quantile(const uint64_t buckets[RLB_METRICS_N_BUCKETS], double q)
{
    uint64_t count = 0;
    for (int i = 0; i < RLB_METRICS_N_BUCKETS; i++)
        count += buckets[i];
    if (!count)
        return 0;
    double rank = q * (double)count;
    uint64_t cum = 0;
    for (int i = 0; i < RLB_METRICS_N_BUCKETS; i++) {
        if (buckets[i] && (double)(cum + buckets[i]) >= rank) {
            double lo = i ? bucket_s[i - 1] : 0;
            if (i == RLB_METRICS_N_BUCKETS - 1)
                return lo;
            double hi = bucket_s[i];
            double frac = (rank - (double)cum) / (double)buckets[i];
            if (frac < 0)
                frac = 0;
            return lo + (hi - lo) * frac;
        }
        cum += buckets[i];
    }
    return bucket_s[RLB_METRICS_N_BUCKETS - 2];
}

void rlb_metrics_group_window(const char *name, struct rlb_metrics_window *out)
{
    memset(out, 0, sizeof(*out));
    out->window_ms = win.last_ms - win.prev_ms;
    out->complete = win.boundaries > 0;
    uint32_t id = names_find(&group_names, name);
    if (id == RLB_METRICS_NONE || id >= win.cap || !out->complete)
        return;
    uint64_t d[RLB_METRICS_WIN_FIELDS];
    for (int k = 0; k < RLB_METRICS_WIN_FIELDS; k++)
        d[k] = win.cur[id][k] - win.prev[id][k];
    out->requests = d[GF_REQUESTS];
    for (int k = 0; k < 4; k++)
        out->target[k] = d[GF_TARGET + k];
    out->elb[0] = d[GF_ELB];
    out->elb[1] = d[GF_ELB + 1];
    for (int k = 0; k < RLB_METRICS_N_BUCKETS; k++)
        out->rt_count += d[GF_BUCKETS + k];
    if (out->rt_count) {
        out->rt_avg = (double)d[GF_SUM] / 1e6 / (double)out->rt_count;
        out->rt_p50 = rlb_metrics_quantile(&d[GF_BUCKETS], 0.50);
        out->rt_p90 = rlb_metrics_quantile(&d[GF_BUCKETS], 0.90);
        out->rt_p99 = rlb_metrics_quantile(&d[GF_BUCKETS], 0.99);
    }
}

double rlb_metrics_request_count_per_target(const char *group, uint32_t healthy,
                                            uint32_t registered)
{
    uint32_t div = healthy ? healthy : registered;
    if (!div)
        return 0;
    struct rlb_metrics_window w;
    rlb_metrics_group_window(group, &w);
    return (double)w.requests / (double)div;
}

void rlb_metrics_group_counts(const struct rlb_group *g, uint32_t *healthy, uint32_t *unhealthy,
                              uint32_t *registered)
{
    uint32_t h = 0, u = 0, r = 0;
    for (size_t i = 0; i < g->n_targets; i++) {
        int st = atomic_load_explicit(&g->targets[i]->state, memory_order_relaxed);
        if (st == RLB_TARGET_HEALTHY)
            h++;
        else if (st == RLB_TARGET_UNHEALTHY)
            u++;
        if (st != RLB_TARGET_DRAINING && st != RLB_TARGET_UNUSED)
            r++;
    }
    if (healthy)
        *healthy = h;
    if (unhealthy)
        *unhealthy = u;
    if (registered)
        *registered = r;
}

/* ---- JSON (main thread) ----------------------------------------------------------------- */

static int map_add(struct fy_document *fyd, struct fy_node *m, const char *key,
                   struct fy_node *v)
{
    struct fy_node *k = fy_node_create_scalar(fyd, key, FY_NT);
    if (!k || !v || fy_node_mapping_append(m, k, v) != 0) {
        fy_node_free(k);
        fy_node_free(v);
        return -ENOMEM;
    }
    return 0;
}

static int map_u64(struct fy_document *fyd, struct fy_node *m, const char *key, uint64_t v)
{
    return map_add(fyd, m, key, fy_node_create_scalarf(fyd, "%llu", (unsigned long long)v));
}

/* A number (never NaN/inf) or JSON null when `present` is false. */
static int map_num(struct fy_document *fyd, struct fy_node *m, const char *key, double v,
                   bool present)
{
    if (!present || !isfinite(v))
        return map_add(fyd, m, key, fy_node_create_scalar(fyd, "null", FY_NT));
    return map_add(fyd, m, key, fy_node_create_scalarf(fyd, "%.9g", v));
}

struct fy_node *rlb_metrics_group_json_node(struct fy_document *fyd, const struct rlb_group *g)
{
    struct rlb_metrics_window w;
    const char *name = g->cfg->name;
    rlb_metrics_group_window(name, &w);
    uint32_t healthy, unhealthy, registered;
    rlb_metrics_group_counts(g, &healthy, &unhealthy, &registered);
    struct fy_node *m = fy_node_create_mapping(fyd);
    if (!m)
        return NULL;
    static const char *const tkeys[4] = {"HTTPCode_Target_2XX_Count", "HTTPCode_Target_3XX_Count",
                                         "HTTPCode_Target_4XX_Count",
                                         "HTTPCode_Target_5XX_Count"};
    int err = map_u64(fyd, m, "RequestCount", w.requests);
    err |= map_num(fyd, m, "RequestCountPerTarget",
                   rlb_metrics_request_count_per_target(name, healthy, registered), true);
    for (int k = 0; k < 4; k++)
        err |= map_u64(fyd, m, tkeys[k], w.target[k]);
    err |= map_u64(fyd, m, "HTTPCode_ELB_4XX_Count", w.elb[0]);
    err |= map_u64(fyd, m, "HTTPCode_ELB_5XX_Count", w.elb[1]);
    err |= map_num(fyd, m, "TargetResponseTime", w.rt_avg, w.rt_count > 0);
    err |= map_num(fyd, m, "TargetResponseTime_p50", w.rt_p50, w.rt_count > 0);
    err |= map_num(fyd, m, "TargetResponseTime_p90", w.rt_p90, w.rt_count > 0);
    err |= map_num(fyd, m, "TargetResponseTime_p99", w.rt_p99, w.rt_count > 0);
    err |= map_u64(fyd, m, "HealthyHostCount", healthy);
    err |= map_u64(fyd, m, "UnHealthyHostCount", unhealthy);
    err |= map_num(fyd, m, "WindowSeconds", (double)w.window_ms / 1000.0, true);
    err |= map_add(fyd, m, "Complete",
                   fy_node_create_scalar(fyd, w.complete ? "true" : "false", FY_NT));
    if (err) {
        fy_node_free(m);
        return NULL;
    }
    return m;
}

char *rlb_metrics_group_json(const struct rlb_group *g)
{
    struct fy_document *fyd = fy_document_create(NULL);
    if (!fyd)
        return NULL;
    char *out = NULL;
    struct fy_node *m = rlb_metrics_group_json_node(fyd, g);
    if (m && fy_document_set_root(fyd, m) == 0)
        out = fy_emit_document_to_string(fyd, FYECF_MODE_JSON_ONELINE);
    else
        fy_node_free(m);
    fy_document_destroy(fyd);
    if (out) {
        size_t n = strlen(out);
        while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
            out[--n] = 0;
    }
    return out;
}

/* ---- Prometheus text (main thread) ------------------------------------------------------ */

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '"')
            fputs("\\\"", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `name{k1="v1",k2="v2"} ` — up to two labels (NULL key: none). */
static void series(FILE *f, const char *name, const char *k1, const char *v1, const char *k2,
                   const char *v2)
{
    fputs(name, f);
    if (k1) {
        fprintf(f, "{%s=\"", k1);
        put_escaped(f, v1);
        fputc('"', f);
        if (k2) {
            fprintf(f, ",%s=\"", k2);
            put_escaped(f, v2);
            fputc('"', f);
        }
        fputc('}', f);
    }
    fputc(' ', f);
}

static void value_u64(FILE *f, uint64_t v) { fprintf(f, "%llu\n", (unsigned long long)v); }

static void value_double(FILE *f, double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        fprintf(f, "%.0f\n", v);
    else
        fprintf(f, "%.9g\n", v);
}

/* One counter per listener: field `field` of the listener counters. */
static void listener_family(FILE *f, const char *name, const char *help, size_t field)
{
    uint64_t v[LISTENER_FIELDS];
    family(f, name, "counter", help);
    for (uint32_t id = 0; id < listener_names.n; id++) {
        sum_listener(id, v);
        series(f, name, "listener", listener_names.names[id], NULL, NULL);
        value_u64(f, v[field]);
    }
}

/* One counter per group: field `field` of the group counters. */
static void group_family(FILE *f, const char *name, const char *help, size_t field)
{
    uint64_t v[GROUP_FIELDS];
    family(f, name, "counter", help);
    for (uint32_t id = 0; id < group_names.n; id++) {
        sum_group(id, v);
        series(f, name, "target_group", group_names.names[id], NULL, NULL);
        value_u64(f, v[field]);
    }
}

int rlb_metrics_render(FILE *f, const struct rlb_snapshot *current)
{
    uint64_t v[GROUP_FIELDS], lv[LISTENER_FIELDS];
    const size_t n_cur_groups = current ? current->cfg->n_target_groups : 0;

    family(f, "ringlb_requests_total", "counter",
           "RequestCount: requests for which a target was chosen, by listener and target group.");
    uint32_t np = atomic_load_explicit(&n_pairs, memory_order_acquire);
    for (uint32_t id = 1; id <= np && id <= RLB_METRICS_PAIR_CAP; id++) {
        uint64_t key = atomic_load_explicit(&pair_info[id], memory_order_acquire);
        if (!key)
            continue;
        key--;
        uint32_t lid = (uint32_t)(key >> 32), gid = (uint32_t)key;
        if (lid >= listener_names.n || gid >= group_names.n)
            continue;
        series(f, "ringlb_requests_total", "listener", listener_names.names[lid],
               "target_group", group_names.names[gid]);
        value_u64(f, sum_pair(id));
    }

    family(f, "ringlb_target_requests_total", "counter",
           "Per-target request count (RequestCount by target).");
    for (size_t g = 0; g < n_cur_groups; g++) {
        const struct rlb_group *grp = &current->groups[g];
        for (size_t k = 0; k < grp->n_targets; k++) {
            const struct rlb_target *t = grp->targets[k];
            struct slot_ident *si = slot_ident_of(t);
            series(f, "ringlb_target_requests_total", "target_group", grp->cfg->name, "target",
                   t->name);
            value_u64(f, si ? sum_target(t->slot) - si->base : 0);
        }
    }

    family(f, "ringlb_request_count_per_target", "gauge",
           "RequestCountPerTarget: requests of the group in the last complete window divided "
           "by its healthy targets (registered targets when none is healthy).");
    for (size_t g = 0; g < n_cur_groups; g++) {
        const struct rlb_group *grp = &current->groups[g];
        uint32_t h, r;
        rlb_metrics_group_counts(grp, &h, NULL, &r);
        series(f, "ringlb_request_count_per_target", "target_group", grp->cfg->name, NULL,
               NULL);
        value_double(f, rlb_metrics_request_count_per_target(grp->cfg->name, h, r));
    }

    family(f, "ringlb_target_responses_total", "counter",
           "HTTPCode_Target_2XX/3XX/4XX/5XX_Count: responses generated by targets, by class.");
    for (uint32_t id = 0; id < group_names.n; id++) {
        sum_group(id, v);
        for (int c = 0; c < 4; c++) {
            series(f, "ringlb_target_responses_total", "target_group", group_names.names[id],
                   "class", class_names[c]);
            value_u64(f, v[GF_TARGET + c]);
        }
    }

    family(f, "ringlb_lb_responses_total", "counter",
           "HTTPCode_ELB_4XX/5XX_Count: responses generated by the load balancer, by code.");
    for (uint32_t id = 0; id < listener_names.n; id++) {
        sum_listener(id, lv);
        for (int c = 0; c < RLB_METRICS_N_LB_CODES; c++) {
            series(f, "ringlb_lb_responses_total", "listener", listener_names.names[id],
                   "code", lb_code_names[c]);
            value_u64(f, lv[LF_LB + c]);
        }
    }

    family(f, "ringlb_target_response_seconds", "histogram",
           "TargetResponseTime: seconds from the request leaving the load balancer to the "
           "target's response head.");
    for (uint32_t id = 0; id < group_names.n; id++) {
        sum_group(id, v);
        uint64_t cum = 0;
        for (int b = 0; b < RLB_METRICS_N_BUCKETS; b++) {
            cum += v[GF_BUCKETS + b];
            series(f, "ringlb_target_response_seconds_bucket", "target_group",
                   group_names.names[id], "le", bucket_le[b]);
            value_u64(f, cum);
        }
        series(f, "ringlb_target_response_seconds_sum", "target_group", group_names.names[id],
               NULL, NULL);
        fprintf(f, "%llu.%06llu\n", (unsigned long long)(v[GF_SUM] / 1000000),
                (unsigned long long)(v[GF_SUM] % 1000000));
        series(f, "ringlb_target_response_seconds_count", "target_group",
               group_names.names[id], NULL, NULL);
        value_u64(f, cum);
    }

    family(f, "ringlb_healthy_targets", "gauge", "HealthyHostCount: healthy targets.");
    for (size_t g = 0; g < n_cur_groups; g++) {
        uint32_t h;
        rlb_metrics_group_counts(&current->groups[g], &h, NULL, NULL);
        series(f, "ringlb_healthy_targets", "target_group", current->groups[g].cfg->name, NULL,
               NULL);
        value_u64(f, h);
    }
    family(f, "ringlb_unhealthy_targets", "gauge", "UnHealthyHostCount: unhealthy targets.");
    for (size_t g = 0; g < n_cur_groups; g++) {
        uint32_t u;
        rlb_metrics_group_counts(&current->groups[g], NULL, &u, NULL);
        series(f, "ringlb_unhealthy_targets", "target_group", current->groups[g].cfg->name,
               NULL, NULL);
        value_u64(f, u);
    }

    static const char *const sides[2] = {"client", "target"};
    family(f, "ringlb_active_connections", "gauge",
           "ActiveConnectionCount: open connections, client and target side.");
    for (int s = 0; s < 2; s++) {
        int64_t a = (int64_t)sum_scalar(offsetof(struct rlb_metrics_shard, active) +
                                        (size_t)s * sizeof(int64_t));
        series(f, "ringlb_active_connections", "side", sides[s], NULL, NULL);
        fprintf(f, "%lld\n", (long long)a);
    }
    family(f, "ringlb_new_connections_total", "counter",
           "NewConnectionCount: new connections, client and target side.");
    for (int s = 0; s < 2; s++) {
        series(f, "ringlb_new_connections_total", "side", sides[s], NULL, NULL);
        value_u64(f, sum_scalar(offsetof(struct rlb_metrics_shard, new_conns) +
                                (size_t)s * sizeof(uint64_t)));
    }
    family(f, "ringlb_processed_bytes_total", "counter",
           "ProcessedBytes: bytes received from and sent to clients.");
    series(f, "ringlb_processed_bytes_total", NULL, NULL, NULL, NULL);
    value_u64(f, sum_scalar(offsetof(struct rlb_metrics_shard, processed_bytes)));

    if (rlb_cluster_enabled()) {
        family(f, "ringlb_cluster_connected", "gauge",
               "1 while this instance reaches etcd (cluster block), else 0.");
        series(f, "ringlb_cluster_connected", NULL, NULL, NULL, NULL);
        value_u64(f, rlb_cluster_connected());
        family(f, "ringlb_cluster_leader", "gauge",
               "1 on the fleet's leader (deployment controller, scaling hook), else 0.");
        series(f, "ringlb_cluster_leader", NULL, NULL, NULL, NULL);
        value_u64(f, rlb_cluster_leader());
    }

    group_family(f, "ringlb_target_connection_errors_total",
                 "TargetConnectionErrorCount: failed connections to targets.", GF_CONN_ERRORS);
    listener_family(f, "ringlb_rejected_connections_total",
                    "RejectedConnectionCount: connections refused (max_connections).",
                    LF_REJECTED);
    listener_family(f, "ringlb_client_tls_negotiation_errors_total",
                    "ClientTLSNegotiationErrorCount: failed client TLS handshakes.", LF_TLS);

    family(f, "ringlb_redirects_total", "counter", "HTTP_Redirect_Count: redirect actions.");
    series(f, "ringlb_redirects_total", NULL, NULL, NULL, NULL);
    value_u64(f, sum_scalar(offsetof(struct rlb_metrics_shard, redirects)));
    family(f, "ringlb_fixed_responses_total", "counter",
           "HTTP_Fixed_Response_Count: fixed-response actions.");
    series(f, "ringlb_fixed_responses_total", NULL, NULL, NULL, NULL);
    value_u64(f, sum_scalar(offsetof(struct rlb_metrics_shard, fixed_responses)));

    listener_family(f, "ringlb_rule_evaluations_total",
                    "RuleEvaluations: listener rules evaluated.", LF_RULES);
    group_family(f, "ringlb_non_sticky_requests_total",
                 "NonStickyRequestCount: requests routed without a valid stickiness cookie.",
                 GF_NON_STICKY);

    family(f, "ringlb_desync_requests_total", "counter",
           "DesyncMitigationMode_NonCompliant_Request_Count: non-compliant requests by "
           "classification.");
    for (uint32_t id = 0; id < listener_names.n; id++) {
        sum_listener(id, lv);
        for (int c = RLB_METRICS_DESYNC_ACCEPTABLE; c < RLB_METRICS_DESYNC_N; c++) {
            series(f, "ringlb_desync_requests_total", "listener", listener_names.names[id],
                   "classification", desync_names[c]);
            value_u64(f, lv[LF_DESYNC + c]);
        }
    }
    group_family(f, "ringlb_unhealthy_routing_requests_total",
                 "UnhealthyRoutingRequestCount: requests routed fail-open (no healthy target).",
                 GF_UNHEALTHY_ROUTING);

    struct rlb_accesslog_stats as;
    rlb_accesslog_get_stats(&as);
    family(f, "ringlb_access_log_lines_total", "counter",
           "Access log lines formatted (no CloudWatch equivalent).");
    series(f, "ringlb_access_log_lines_total", NULL, NULL, NULL, NULL);
    value_u64(f, as.lines);
    family(f, "ringlb_access_log_dropped_total", "counter",
           "Access log lines dropped because a worker's buffer was full or the write failed "
           "(no CloudWatch equivalent).");
    series(f, "ringlb_access_log_dropped_total", NULL, NULL, NULL, NULL);
    value_u64(f, as.dropped + as.lost_lines);
    family(f, "ringlb_access_log_write_errors_total", "counter",
           "Failed access log writes (no CloudWatch equivalent).");
    series(f, "ringlb_access_log_write_errors_total", NULL, NULL, NULL, NULL);
    value_u64(f, as.write_errors);

    rlb_scaling_render_prometheus(f); /* ringlb_scaling_desired_targets (scaling.c) */

    family(f, "ringlb_metrics_lost_total", "counter",
           "Metric increments without a counter (id space or memory exhausted; no CloudWatch "
           "equivalent).");
    series(f, "ringlb_metrics_lost_total", NULL, NULL, NULL, NULL);
    value_u64(f, sum_scalar(offsetof(struct rlb_metrics_shard, lost)));

    return ferror(f) ? -EIO : 0;
}

char *rlb_metrics_render_string(const struct rlb_snapshot *current, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    int ret = rlb_metrics_render(f, current);
    if (fclose(f) != 0 || ret < 0) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = n;
    return buf;
}
