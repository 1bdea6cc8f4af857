/* balance.c — group and target selection (see balance.h). */
#include "ringlb/balance.h"

#include <stdint.h>

bool rlb_target_routable(const struct rlb_target *t)
{
    int s = atomic_load_explicit(&t->state, memory_order_relaxed);
    return s == RLB_TARGET_HEALTHY || s == RLB_TARGET_UNAVAILABLE;
}

static bool group_has(const struct rlb_group *g, bool routable_only)
{
    for (size_t i = 0; i < g->n_targets; i++) {
        int s = atomic_load_explicit(&g->targets[i]->state, memory_order_relaxed);
        if (routable_only ? rlb_target_routable(g->targets[i])
                          : (s != RLB_TARGET_DRAINING && s != RLB_TARGET_UNUSED))
            return true;
    }
    return false;
}

struct rlb_group *rlb_balance_group(struct rlb_forward *f, unsigned worker)
{
    if (f->n_groups == 1)
        return group_has(f->groups[0], false) ? f->groups[0] : NULL;
    int32_t *cur = f->cur + (size_t)worker * f->cur_stride;
    /* Pass 1: groups with routable targets; pass 2 (fail open): any registered target. */
    for (int pass = 0; pass < 2; pass++) {
        int32_t total = 0;
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < f->n_groups; i++) {
            if (f->weights[i] == 0 || !group_has(f->groups[i], pass == 0))
                continue;
            cur[i] += (int32_t)f->weights[i];
            total += (int32_t)f->weights[i];
            if (best == SIZE_MAX || cur[i] > cur[best])
                best = i;
        }
        if (best != SIZE_MAX) {
            cur[best] -= total;
            return f->groups[best];
        }
    }
    return NULL;
}

static bool skipped(uint32_t slot, const uint32_t *skip, unsigned n_skip)
{
    for (unsigned i = 0; i < n_skip; i++)
        if (skip[i] == slot)
            return true;
    return false;
}

struct rlb_target *rlb_balance_target(struct rlb_group *g, unsigned worker,
                                      const uint32_t *skip, unsigned n_skip, bool *fail_open)
{
    size_t n = g->n_targets;
    *fail_open = false;
    if (n == 0)
        return NULL;
    struct rlb_balance_slot *slot = &g->slots[worker];
    uint64_t start = slot->rr;
    for (size_t k = 0; k < n; k++) {
        struct rlb_target *t = g->targets[(start + k) % n];
        if (rlb_target_routable(t) && !skipped(t->slot, skip, n_skip)) {
            slot->rr = start + k + 1;
            return t;
        }
    }
    /* Fail open: no routable target; use every registered, non-draining one. */
    for (size_t k = 0; k < n; k++) {
        struct rlb_target *t = g->targets[(start + k) % n];
        int s = atomic_load_explicit(&t->state, memory_order_relaxed);
        if (s != RLB_TARGET_DRAINING && s != RLB_TARGET_UNUSED &&
            !skipped(t->slot, skip, n_skip)) {
            slot->rr = start + k + 1;
            *fail_open = !group_has(g, true);
            return t;
        }
    }
    return NULL;
}
