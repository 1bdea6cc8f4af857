/* targets.c — target membership: the runtime overlay, registration, draining (see targets.h).
 *
 * State kept here (main thread only):
 *   - the overlay: one entry per (group, address) a runtime call has touched, saying whether
 *     the last call registered or deregistered it;
 *   - per target (fields of struct rlb_target marked "main thread only"): the draining deadline
 *     and its timer on the main thread's wheel.
 *
 * A target's life: created by rlb_targets_resolve() (initial, or unavailable without health
 * checks) -> health.c moves it between initial/healthy/unhealthy -> leaving the group makes it
 * draining (timer armed) -> at the deadline it becomes unused and a rebuilt snapshot without it
 * is published -> freed when the last snapshot (and the health checker) let go of it.
 */
#include "ringlb/targets.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ringlb/health.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/worker.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* One overlay entry. Owner: the overlay array below; main thread. */
struct overlay_entry {
    char *group;
    struct rlb_sockaddr addr;
    bool registered;          /* last runtime call: register (true) or deregister (false) */
};

static struct overlay_entry *overlay;
static size_t n_overlay, cap_overlay;
static struct rlb_timer_wheel *wheel;
static uint64_t publish_epoch;

void rlb_targets_init(struct rlb_timer_wheel *timers) { wheel = timers; }

static struct overlay_entry *overlay_find(const char *group, const struct rlb_sockaddr *addr)
{
    for (size_t i = 0; i < n_overlay; i++)
        if (strcmp(overlay[i].group, group) == 0 && rlb_sockaddr_equal(&overlay[i].addr, addr))
            return &overlay[i];
    return NULL;
}

static int overlay_set(const char *group, const struct rlb_sockaddr *addr, bool registered)
{
    struct overlay_entry *e = overlay_find(group, addr);
    if (e) {
        e->registered = registered;
        return 0;
    }
    if (n_overlay == cap_overlay) {
        size_t ncap = cap_overlay ? cap_overlay * 2 : 16;
        struct overlay_entry *n = realloc(overlay, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        overlay = n;
        cap_overlay = ncap;
    }
    char *g = strdup(group);
    if (!g)
        return -ENOMEM;
    overlay[n_overlay++] = (struct overlay_entry){.group = g, .addr = *addr,
                                                  .registered = registered};
    return 0;
}

int rlb_targets_overlay_set(const char *group, const struct rlb_sockaddr *addr, bool registered)
{
    return overlay_set(group, addr, registered);
}

size_t rlb_targets_overlay_count(void) { return n_overlay; }

bool rlb_targets_overlay_at(size_t i, const char **group, struct rlb_sockaddr *addr,
                            bool *registered)
{
    if (i >= n_overlay)
        return false;
    *group = overlay[i].group;
    *addr = overlay[i].addr;
    *registered = overlay[i].registered;
    return true;
}

void rlb_targets_destroy(void)
{
    for (size_t i = 0; i < n_overlay; i++)
        free(overlay[i].group);
    free(overlay);
    overlay = NULL;
    n_overlay = cap_overlay = 0;
}

static const struct rlb_group *group_of(const struct rlb_snapshot *s, const char *name)
{
    if (!s)
        return NULL;
    for (size_t g = 0; g < s->cfg->n_target_groups; g++)
        if (strcmp(s->groups[g].cfg->name, name) == 0)
            return &s->groups[g];
    return NULL;
}

static struct rlb_target *member_of(const struct rlb_group *g, const struct rlb_sockaddr *addr)
{
    if (!g)
        return NULL;
    for (size_t i = 0; i < g->n_targets; i++)
        if (rlb_sockaddr_equal(&g->targets[i]->addr, addr))
            return g->targets[i];
    return NULL;
}

static int republish(void);

static void drain_end(struct rlb_timer *tm, uint64_t now_ms)
{
    struct rlb_target *t = container_of(tm, struct rlb_target, drain_timer);
    (void)now_ms;
    rlb_target_set_state(t, RLB_TARGET_UNUSED, RLB_REASON_NOT_REGISTERED);
    rlb_log_info("target %s in %s: deregistration delay over, removed", t->name, t->group_name);
    if (republish() < 0 && wheel) /* out of memory: try again in a second */
        rlb_timer_arm(wheel, &t->drain_timer, rlb_now_ms() + 1000, drain_end);
}

static void drain_stop(struct rlb_target *t)
{
    if (wheel)
        rlb_timer_cancel(wheel, &t->drain_timer);
    t->drain_deadline_ms = 0;
}

/* Start draining `t` (delay > 0) or mark it unused at once (delay 0). */
static void drain_start(struct rlb_target *t, uint64_t delay_ms, uint64_t now)
{
    if (delay_ms == 0) {
        drain_stop(t);
        rlb_target_set_state(t, RLB_TARGET_UNUSED, RLB_REASON_NOT_REGISTERED);
        rlb_log_info("target %s in %s: deregistered, removed (no deregistration delay)",
                     t->name, t->group_name);
        return;
    }
    rlb_target_set_state(t, RLB_TARGET_DRAINING, RLB_REASON_DEREGISTRATION_IN_PROGRESS);
    t->drain_deadline_ms = now + delay_ms;
    if (wheel)
        rlb_timer_arm(wheel, &t->drain_timer, t->drain_deadline_ms, drain_end);
    rlb_log_info("target %s in %s: draining for %llums", t->name, t->group_name,
                 (unsigned long long)delay_ms);
}

/* The target for a registered address: reused from the previous group (a draining one starts
 * over) or created. Returns a new reference, or NULL on ENOMEM. */
static struct rlb_target *take(const struct rlb_target_group_cfg *gc, const struct rlb_group *pg,
                               const struct rlb_sockaddr *addr)
{
    bool checks = gc->health_check.enabled;
    struct rlb_target *t = member_of(pg, addr);
    if (!t)
        return rlb_target_new(gc->name, addr,
                              checks ? RLB_TARGET_INITIAL : RLB_TARGET_UNAVAILABLE,
                              checks ? RLB_REASON_INITIAL_HEALTH_CHECKING
                                     : RLB_REASON_HEALTH_CHECK_DISABLED);
    atomic_fetch_add(&t->refs, 1);
    int st = atomic_load(&t->state);
    if (t->drain_deadline_ms || st == RLB_TARGET_DRAINING || st == RLB_TARGET_UNUSED) {
        drain_stop(t);
        rlb_log_info("target %s in %s: registered again", t->name, t->group_name);
        st = -1; /* start over below */
    }
    if (!checks) {
        if (st != RLB_TARGET_UNAVAILABLE) {
            atomic_store(&t->routable_since_ms, rlb_now_ms());
            rlb_target_set_state(t, RLB_TARGET_UNAVAILABLE, RLB_REASON_HEALTH_CHECK_DISABLED);
        }
    } else if (st == RLB_TARGET_UNAVAILABLE || st == -1) {
        rlb_target_set_state(t, RLB_TARGET_INITIAL, RLB_REASON_INITIAL_HEALTH_CHECKING);
    }
    return t;
}

static bool in_list(struct rlb_target *const *arr, size_t n, const struct rlb_sockaddr *addr)
{
    for (size_t i = 0; i < n; i++)
        if (rlb_sockaddr_equal(&arr[i]->addr, addr))
            return true;
    return false;
}

int rlb_targets_resolve(const struct rlb_target_group_cfg *gc, const struct rlb_snapshot *prev,
                        struct rlb_target ***out, size_t *n_out)
{
    const struct rlb_group *pg = group_of(prev, gc->name);
    size_t cap = gc->n_targets + n_overlay + (pg ? pg->n_targets : 0) + 1;
    struct rlb_target **arr = calloc(cap, sizeof(*arr));
    size_t n = 0;
    if (!arr)
        return -ENOMEM;
    /* The file's targets, minus the runtime deregistrations. */
    for (size_t i = 0; i < gc->n_targets; i++) {
        const struct rlb_sockaddr *a = &gc->targets[i].addr;
        const struct overlay_entry *e = overlay_find(gc->name, a);
        if ((e && !e->registered) || in_list(arr, n, a))
            continue;
        if (!(arr[n] = take(gc, pg, a)))
            goto fail;
        n++;
    }
    /* Plus the runtime registrations. */
    for (size_t i = 0; i < n_overlay; i++) {
        const struct overlay_entry *e = &overlay[i];
        if (!e->registered || strcmp(e->group, gc->name) != 0 || in_list(arr, n, &e->addr))
            continue;
        if (!(arr[n] = take(gc, pg, &e->addr)))
            goto fail;
        n++;
    }
    /* Plus the previous members that are no longer registered, while they drain. */
    uint64_t now = rlb_now_ms();
    for (size_t i = 0; pg && i < pg->n_targets; i++) {
        struct rlb_target *t = pg->targets[i];
        if (in_list(arr, n, &t->addr))
            continue;
        if (atomic_load(&t->state) == RLB_TARGET_UNUSED)
            continue;
        if (t->drain_deadline_ms) {
            if (now >= t->drain_deadline_ms) {
                rlb_target_set_state(t, RLB_TARGET_UNUSED, RLB_REASON_NOT_REGISTERED);
                continue;
            }
        } else {
            drain_start(t, gc->deregistration_delay_ms, now);
            if (atomic_load(&t->state) == RLB_TARGET_UNUSED)
                continue;
        }
        atomic_fetch_add(&t->refs, 1);
        arr[n++] = t;
    }
    *out = arr;
    *n_out = n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        rlb_target_unref(arr[i]);
    free(arr);
    return -ENOMEM;
}

void rlb_targets_publish(struct rlb_snapshot *s)
{
    struct rlb_snapshot *prev = rlb_snapshot_current();
    if (prev && prev != s) {
        /* Targets leaving with the old snapshot must not keep a timer on the wheel. */
        publish_epoch++;
        for (size_t g = 0; g < s->cfg->n_target_groups; g++)
            for (size_t i = 0; i < s->groups[g].n_targets; i++)
                s->groups[g].targets[i]->seen_gen = publish_epoch;
        for (size_t g = 0; g < prev->cfg->n_target_groups; g++) {
            for (size_t i = 0; i < prev->groups[g].n_targets; i++) {
                struct rlb_target *t = prev->groups[g].targets[i];
                if (t->seen_gen != publish_epoch && wheel)
                    rlb_timer_cancel(wheel, &t->drain_timer);
            }
        }
    }
    rlb_metrics_snapshot_prepare(s);
    rlb_snapshot_set_current(s);
    rlb_workers_publish(s);
    rlb_health_sync(s);
}

/* Rebuild the current snapshot (same configuration, membership resolved again) and publish
 * it. Returns 0 or -ENOMEM (the current snapshot then stays). */
static int republish(void)
{
    struct rlb_snapshot *cur = rlb_snapshot_current();
    if (!cur)
        return 0;
    struct rlb_snapshot *s = rlb_snapshot_rebuild(cur, cur->generation + 1);
    if (!s) {
        rlb_log_error("target registration change: out of memory");
        return -ENOMEM;
    }
    rlb_targets_publish(s);
    return 0;
}

int rlb_targets_register(const char *group, const struct rlb_sockaddr *addrs, size_t n)
{
    const struct rlb_group *g = group_of(rlb_snapshot_current(), group);
    if (!g)
        return -ENOENT;
    bool changed = false;
    for (size_t i = 0; i < n; i++) {
        if (overlay_set(group, &addrs[i], true) < 0)
            return -ENOMEM;
        struct rlb_target *t = member_of(g, &addrs[i]);
        int st = t ? atomic_load(&t->state) : RLB_TARGET_UNUSED;
        if (!t || st == RLB_TARGET_DRAINING || st == RLB_TARGET_UNUSED)
            changed = true;
    }
    return changed ? republish() : 0;
}

int rlb_targets_deregister(const char *group, const struct rlb_sockaddr *addrs, size_t n)
{
    struct rlb_snapshot *cur = rlb_snapshot_current();
    const struct rlb_group *g = group_of(cur, group);
    if (!g)
        return -ENOENT;
    bool removed = false;
    uint64_t now = rlb_now_ms();
    for (size_t i = 0; i < n; i++) {
        if (overlay_set(group, &addrs[i], false) < 0)
            return -ENOMEM;
        struct rlb_target *t = member_of(g, &addrs[i]);
        if (!t || t->drain_deadline_ms)
            continue;
        int st = atomic_load(&t->state);
        if (st == RLB_TARGET_DRAINING || st == RLB_TARGET_UNUSED)
            continue;
        drain_start(t, g->cfg->deregistration_delay_ms, now);
        removed |= atomic_load(&t->state) == RLB_TARGET_UNUSED;
    }
    rlb_health_sync(cur); /* draining targets are no longer checked */
    return removed ? republish() : 0;
}
