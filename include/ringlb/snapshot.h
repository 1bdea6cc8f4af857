/* snapshot.h — the immutable runtime view every worker routes with.
 *
 * A snapshot binds one parsed configuration (config.h) to the shared target objects and holds
 * the per-worker balancer slots. It is built and published by the main thread; workers pick up
 * the newest one with one atomic load per event-loop iteration and keep the older ones alive
 * (one reference per worker) until their last request using it finishes. Nothing in a
 * snapshot changes after publication except: per-target atomics (state, in-flight) and the
 * per-worker balancer slots, each written by its own worker only.
 *
 * Targets (struct rlb_target) are shared across snapshots: a target that exists in the old and
 * the new configuration (same group, same address) keeps its object, its health state and its
 * per-worker idle connection pools.
 */
#ifndef RINGLB_SNAPSHOT_H
#define RINGLB_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"

struct rlb_router;

enum rlb_target_state {
    RLB_TARGET_INITIAL = 0,
    RLB_TARGET_HEALTHY,
    RLB_TARGET_UNHEALTHY,
    RLB_TARGET_DRAINING,
    RLB_TARGET_UNUSED,
    RLB_TARGET_UNAVAILABLE,
};

/* One registered target. Shared by every snapshot and worker; refcounted (atomic). */
struct rlb_target {
    _Atomic uint32_t refs;
    uint32_t slot;                  /* small stable id: index of per-worker idle pools */
    struct rlb_sockaddr addr;
    char name[64];                  /* "ip:port" */
    char *group_name;               /* the target group it belongs to */
    _Atomic int state;              /* enum rlb_target_state */
    _Atomic int32_t inflight;       /* requests in flight on all workers */
};

/* Per-worker balancer slot; padded to its own cache line. */
struct rlb_balance_slot {
    uint64_t rr;                    /* round-robin cursor */
    char pad[64 - 8];
} __attribute__((aligned(64)));

/* A target group as routed in this snapshot. */
struct rlb_group {
    const struct rlb_target_group_cfg *cfg;
    struct rlb_target **targets;
    size_t n_targets;
    struct rlb_balance_slot *slots; /* [n_workers] */
};

/* A forward action resolved against the snapshot's groups. */
struct rlb_forward {
    struct rlb_group **groups;
    uint32_t *weights;
    size_t n_groups;
    uint32_t total_weight;
    uint64_t *group_hash;           /* [n_groups]: stable id of each group (stickiness cookie) */
    int32_t *cur;                   /* smooth WRR current weights: [n_workers][cur_stride], each
                                     * worker's row on its own cache lines */
    uint32_t cur_stride;
};

/* A listener's routing data. */
struct rlb_listener {
    const struct rlb_listener_cfg *cfg;
    struct rlb_forward *rule_forwards;  /* [cfg->n_rules], valid where the action is forward */
    struct rlb_forward default_forward; /* valid when the default action is forward */
    struct rlb_router *router;          /* compiled rule index (router.h) */
};

/* The snapshot. Owner: refcount (main thread's "current" reference + one per worker using it). */
struct rlb_snapshot {
    _Atomic uint32_t refs;
    uint64_t generation;
    struct rlb_config *cfg;
    unsigned n_workers;
    struct rlb_listener *listeners;  /* [cfg->n_listeners] */
    struct rlb_group *groups;        /* [cfg->n_target_groups] */
};

/* Build a snapshot for `cfg` (takes ownership of cfg) with balancer slots for `n_workers`.
 * Targets of `prev` (may be NULL) with the same group and address are reused. Main thread.
 * Returns NULL on ENOMEM (cfg is then freed). */
struct rlb_snapshot *rlb_snapshot_build(struct rlb_config *cfg, const struct rlb_snapshot *prev,
                                        unsigned n_workers, uint64_t generation);

/* Make `s` the current snapshot (the caller's reference moves to the global slot) and
 * release the previous current one. Workers learn of it through rlb_workers_publish().
 * Main thread only. */
void rlb_snapshot_set_current(struct rlb_snapshot *s);

/* The current snapshot (no reference taken). Main thread only. */
struct rlb_snapshot *rlb_snapshot_current(void);

/* Take one more reference to `s`. Any thread. */
void rlb_snapshot_ref(struct rlb_snapshot *s);

/* Drop a reference; the last one frees the snapshot, its config and its target references.
 * Any thread. */
void rlb_snapshot_unref(struct rlb_snapshot *s);

/* Drop one reference to a target; the last frees it and returns its slot id. Any thread. */
void rlb_target_unref(struct rlb_target *t);

/* Upper bound (exclusive) of target slot ids handed out so far. Any thread. */
uint32_t rlb_target_slot_limit(void);

/* Name of a target state ("healthy", ...). */
const char *rlb_target_state_name(int state);

#endif
