/* scaling.h — target-tracking scaling advice (SPEC section 6), as Application Auto Scaling
 * does it for ECS services on ALBRequestCountPerTarget.
 *
 * For every target group with a `scaling` block, once per metrics window (metrics.window,
 * 60 s by default) the advisor reads the group's RequestCountPerTarget of the last complete
 * window (metrics.h) and computes
 *
 *     desired = ceil(current × metric / target_value), clamped to [min, max]
 *
 * where `current` is the number of healthy targets. The advice (the desired count) then moves:
 *   - up as soon as desired > current, unless scale_out_cooldown has not passed since the last
 *     scale-out advice;
 *   - down only when the metric is at least 10 % below target_value (metric <= 0.9 ×
 *     target_value) and scale_in_cooldown has passed since the last change of the advice (or
 *     since the advisor started tracking the group, when the advice never changed);
 *   - into [min, max] at once when it is outside (after a reload changed the bounds).
 *
 * No healthy target: `current` becomes the number of registered targets (they get the traffic
 * fail-open, and RequestCountPerTarget is divided by them); scale-out works as usual, scale-in
 * is suspended (unhealthy targets are no evidence of low load). Health checks disabled: targets
 * are `unavailable` and routed to as if healthy, so they count as healthy here. No registered
 * target at all: the demand is the number of requests the group had to answer 5xx itself
 * (503, no target) in the window; with any, desired = max(1, ceil(demand / target_value))
 * clamped, which lets a group scaled to zero (min: 0) come back; without, desired = min.
 *
 * When the advice changes, the optional `hook` runs: `/bin/sh -c HOOK` forked from the main
 * thread (posix_spawn), in its own process group, stdin /dev/null, stdout to ringlb's stderr,
 * with RINGLB_TARGET_GROUP, RINGLB_DESIRED, RINGLB_CURRENT (plus RINGLB_PREVIOUS,
 * RINGLB_METRIC_VALUE, RINGLB_TARGET_VALUE, RINGLB_REASON) in its environment. One hook runs
 * per group at a time: a change while it runs is delivered when it ends (the latest advice
 * only). A hook still running after the timeout (30 s) gets SIGTERM, 2 s later SIGKILL (its
 * whole process group). Children are reaped with waitpid(WNOHANG) from rlb_scaling_tick(), so
 * nothing ever waits for a hook; workers are never involved.
 *
 * Threads: everything here runs on the main thread.
 */
#ifndef RINGLB_SCALING_H
#define RINGLB_SCALING_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct rlb_json;
struct rlb_snapshot;
struct fy_node;

/* Default time a hook may run before it is terminated. */
#define RLB_SCALING_HOOK_TIMEOUT_MS 30000u
/* Grace between SIGTERM and SIGKILL of a hook that timed out. */
#define RLB_SCALING_HOOK_KILL_GRACE_MS 2000u

/* What one decision is made from. Owner: the caller (stack). */
struct rlb_scaling_input {
    double target_value;           /* requests per target per window (> 0) */
    uint32_t min, max;             /* bounds of the advice */
    uint64_t scale_out_cooldown_ms;
    uint64_t scale_in_cooldown_ms;
    uint32_t healthy;              /* healthy targets (unavailable ones when checks are off) */
    uint32_t registered;           /* registered targets (not draining, not unused) */
    double metric;                 /* RequestCountPerTarget of the last complete window */
    uint64_t unserved;             /* requests of the window the LB answered 5xx for the group
                                    * (used only when no target is registered) */
    uint64_t now_ms;               /* monotonic time of the decision */
};

/* What a decision did to the advice. */
enum rlb_scaling_action {
    RLB_SCALING_HOLD = 0,          /* advice unchanged */
    RLB_SCALING_OUT,               /* advice raised */
    RLB_SCALING_IN,                /* advice lowered */
};

/* The advice of one group, carried from one decision to the next. Zero-initialise before the
 * first decision. Owner: the caller (scaling.c keeps one per group; tests their own). */
struct rlb_scaling_state {
    bool valid;                    /* an advice exists (a decision was made) */
    uint32_t desired;              /* the advice */
    bool started;                  /* started_ms is set */
    uint64_t started_ms;           /* first decision: the reference of the first scale-in */
    bool changed;                  /* the advice changed at least once */
    uint64_t last_change_ms;       /* last change (either direction) */
    bool scaled_out;               /* a scale-out advice was given at least once */
    uint64_t last_scale_out_ms;    /* last scale-out advice */
};

/* The result of one decision. */
struct rlb_scaling_decision {
    enum rlb_scaling_action action;
    bool changed;                  /* desired != previous */
    uint32_t current;              /* the count the formula used (healthy, else registered) */
    uint32_t computed;             /* ceil(current × metric / target_value) clamped */
    uint32_t previous;             /* advice before this decision (current for the first) */
    uint32_t desired;              /* advice after this decision */
    char reason[200];              /* why, in words (ASCII) */
};

/* Decide the advice for one window: reads `in`, updates `st` (the advice, cooldown marks) and
 * describes the outcome in `out`. Pure: no clock, no I/O, no global state. */
void rlb_scaling_decide(const struct rlb_scaling_input *in, struct rlb_scaling_state *st,
                        struct rlb_scaling_decision *out);

/* Remaining time of a group's cooldowns at `now_ms` (0 when not active). */
uint64_t rlb_scaling_out_cooldown_left(const struct rlb_scaling_state *st, uint64_t cooldown_ms,
                                       uint64_t now_ms);
uint64_t rlb_scaling_in_cooldown_left(const struct rlb_scaling_state *st, uint64_t cooldown_ms,
                                      uint64_t now_ms);

/* Start the advisor (no state yet). Returns 0. Main thread. */
int rlb_scaling_init(void);

/* Run the advisor: reap finished hooks, terminate hooks past their timeout, follow the scaling
 * blocks of snapshot `s` (may be NULL) and, when the metrics module closed a window since the
 * last call, decide every group and start hooks for changed advice. Never blocks. Call once per
 * main-loop iteration, after rlb_metrics_tick(). Main thread. */
void rlb_scaling_tick(const struct rlb_snapshot *s, uint64_t now_ms);

/* Stop the advisor: hooks still running are sent SIGTERM (their process group) and left to
 * finish on their own; every state is freed. Main thread. */
void rlb_scaling_stop(void);

/* Change the hook timeout (tests; 0 = the default). Main thread. */
void rlb_scaling_set_hook_timeout(uint64_t timeout_ms);

/* The body of GET /api/v1/scaling: {"target_groups":[...]} with, per group with a scaling
 * block, its metric value, healthy/registered/current counts, computed and desired counts,
 * action and reason, last change, cooldown state and hook state. `now_ms` is the monotonic
 * time for the cooldown countdowns (0 = the time of the last rlb_scaling_tick()). Nodes belong
 * to `j`. Returns the object, or NULL on ENOMEM. Main thread. */
struct fy_node *rlb_scaling_json(struct rlb_json *j, uint64_t now_ms);

/* Write the ringlb_scaling_desired_targets{target_group} gauge family (Prometheus text) to
 * `f`: one series per group with a scaling block and an advice. Main thread. */
void rlb_scaling_render_prometheus(FILE *f);

/* Number of hooks currently running (tests). Main thread. */
unsigned rlb_scaling_hooks_running(void);

#endif
