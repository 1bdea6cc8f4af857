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
 * per-worker idle connection pools. Which targets a group has (the file's static targets, the
 * runtime registrations on top, and the targets still draining) is decided by targets.c
 * (targets.h); the configuration itself may be shared by several snapshots (a runtime
 * registration change rebuilds the snapshot around the same configuration).
 */
#ifndef RINGLB_SNAPSHOT_H
#define RINGLB_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"
#include "ringlb/timer.h"

struct rlb_router;
struct rlb_tls_ctx;

enum rlb_target_state {
    RLB_TARGET_INITIAL = 0,
    RLB_TARGET_HEALTHY,
    RLB_TARGET_UNHEALTHY,
    RLB_TARGET_DRAINING,
    RLB_TARGET_UNUSED,
    RLB_TARGET_UNAVAILABLE,
};

/* Why a target is in its state (the ALB's reason codes; rlb_target_reason_name()). */
enum rlb_target_reason {
    RLB_REASON_NONE = 0,                    /* healthy: no reason */
    RLB_REASON_INITIAL_HEALTH_CHECKING,     /* Elb.InitialHealthChecking */
    RLB_REASON_RESPONSE_CODE_MISMATCH,      /* Target.ResponseCodeMismatch */
    RLB_REASON_TIMEOUT,                     /* Target.Timeout */
    RLB_REASON_FAILED_HEALTH_CHECKS,        /* Target.FailedHealthChecks */
    RLB_REASON_DEREGISTRATION_IN_PROGRESS,  /* Target.DeregistrationInProgress */
    RLB_REASON_HEALTH_CHECK_DISABLED,       /* Target.HealthCheckDisabled */
    RLB_REASON_NOT_REGISTERED,              /* Target.NotRegistered (unused) */
};

struct rlb_health_target;

/* One registered target. Shared by every snapshot and worker; refcounted (atomic).
 * state/reason are written by the main thread only (health.c, targets.c) and read lock-free
 * by anyone; inflight is updated by the workers. The fields after the "main thread only"
 * mark are never read or written by a worker. */
struct rlb_target {
    _Atomic uint32_t refs;
    uint32_t slot;                  /* small stable id: index of per-worker idle pools */
    struct rlb_sockaddr addr;
    char name[64];                  /* "ip:port" */
    uint64_t id_hash;               /* stable opaque id of (group, ip:port): AWSALB cookies */
    char *group_name;               /* the target group it belongs to */
    _Atomic int state;              /* enum rlb_target_state */
    _Atomic int reason;             /* enum rlb_target_reason */
    _Atomic int32_t inflight;       /* requests in flight on all workers */
    _Atomic uint64_t routable_since_ms; /* rlb_now_ms() when it last became healthy (or was
                                         * created unavailable): start of its slow start */

    /* --- main thread only --- */
    struct rlb_health_target *health; /* active-check state (health.c); NULL when unchecked */
    uint64_t drain_deadline_ms;     /* draining: end of deregistration_delay; else 0 */
    struct rlb_timer drain_timer;   /* armed while draining (targets.c, main timer wheel) */
    uint64_t seen_gen;              /* scratch mark of targets.c when swapping snapshots */
};

/* Publish a new state and reason of `t` (reason first, so a reader that sees the new state
 * usually sees its reason too). Main thread. */
static inline void rlb_target_set_state(struct rlb_target *t, int state, int reason)
{
    atomic_store_explicit(&t->reason, reason, memory_order_relaxed);
    atomic_store_explicit(&t->state, state, memory_order_release);
}

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
    uint32_t metric_id;             /* rlb_metrics_group_id(cfg->name) */
};

/* A forward action resolved against the snapshot's groups: the file's groups and weights, or
 * the runtime override of weights.h (admin API, deployments) when one applies — then groups and
 * weights may differ from the configuration's action. */
struct rlb_forward {
    struct rlb_group **groups;
    uint32_t *weights;
    size_t n_groups;
    uint32_t total_weight;
    uint64_t *group_hash;           /* [n_groups]: stable id of each group (stickiness cookie) */
    int32_t *cur;                   /* smooth WRR current weights: [n_workers][cur_stride], each
                                     * worker's row on its own cache lines */
    uint32_t cur_stride;
    struct rlb_group *canary;       /* a deployment's `to` group while one runs on this action
                                     * (weights.h canary marks), else NULL */
    const char *canary_header;      /* header that forces `canary` (cfg->admin.canary_header) */
    uint32_t canary_header_len;
};

/* A listener's routing data. */
struct rlb_listener {
    const struct rlb_listener_cfg *cfg;
    struct rlb_forward *rule_forwards;  /* [cfg->n_rules], valid where the action is forward */
    struct rlb_forward default_forward; /* valid when the default action is forward */
    struct rlb_router *router;          /* compiled rule index (router.h) */
    struct rlb_tls_ctx *tls;            /* HTTPS listeners: certificates, SNI, policy (tls.h) */
    uint32_t metric_id;                 /* rlb_metrics_listener_id(cfg->name) */
};

struct rlb_config_share;

/* The snapshot. Owner: refcount (main thread's "current" reference + one per worker using it). */
struct rlb_snapshot {
    _Atomic uint32_t refs;
    uint64_t generation;
    struct rlb_config *cfg;
    struct rlb_config_share *cfg_share; /* refcounted owner of cfg (shared by rebuilds) */
    unsigned n_workers;
    struct rlb_listener *listeners;  /* [cfg->n_listeners] */
    struct rlb_group *groups;        /* [cfg->n_target_groups] */
};

/* Build a snapshot for `cfg` (takes ownership of cfg) with balancer slots for `n_workers`.
 * Each group's targets come from rlb_targets_resolve() (file targets, runtime registrations,
 * targets still draining); targets of `prev` (may be NULL) with the same group and address are
 * reused. Main thread. Returns NULL on ENOMEM (cfg is then freed). */
struct rlb_snapshot *rlb_snapshot_build(struct rlb_config *cfg, const struct rlb_snapshot *prev,
                                        unsigned n_workers, uint64_t generation);

/* Build a new snapshot around the configuration of `prev` (shared, not copied) with the same
 * worker count: only the target membership is resolved again (after a registration change or
 * the end of a draining delay). Main thread. Returns NULL on ENOMEM. */
struct rlb_snapshot *rlb_snapshot_rebuild(const struct rlb_snapshot *prev, uint64_t generation);

/* Why the last rlb_snapshot_build()/rlb_snapshot_rebuild() returned NULL (a TLS certificate
 * that cannot be loaded, or "out of memory"). Main thread only. */
const char *rlb_snapshot_last_error(void);

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

/* Create a target of group `group` at `addr` with one reference, in `state`/`reason`.
 * Main thread. Returns NULL on ENOMEM. */
struct rlb_target *rlb_target_new(const char *group, const struct rlb_sockaddr *addr, int state,
                                  int reason);

/* Name of a target state ("healthy", ...). */
const char *rlb_target_state_name(int state);

/* The ALB reason code of a reason ("Target.Timeout", ...); NULL for RLB_REASON_NONE. */
const char *rlb_target_reason_name(int reason);

/* Format the IP of `a` without port or brackets ("127.0.0.1", "::1") into out[n]. */
void rlb_sockaddr_ip(const struct rlb_sockaddr *a, char *out, size_t n);

/* The port of `a` (host byte order). */
uint16_t rlb_sockaddr_port(const struct rlb_sockaddr *a);

/* True when `a` and `b` are the same address and port. */
bool rlb_sockaddr_equal(const struct rlb_sockaddr *a, const struct rlb_sockaddr *b);

#endif
