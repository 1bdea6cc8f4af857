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

/* Is t a candidate: routable (or, failing open, registered and not draining)? */
static bool candidate(const struct rlb_target *t, bool open, const uint32_t *skip,
                      unsigned n_skip)
{
    if (skipped(t->slot, skip, n_skip))
        return false;
    if (!open)
        return rlb_target_routable(t);
    int s = atomic_load_explicit(&t->state, memory_order_relaxed);
    return s != RLB_TARGET_DRAINING && s != RLB_TARGET_UNUSED;
}

/* Slow start: how far (0..1024) target t is through its linear ramp at `now`. */
static uint32_t ramp_of(const struct rlb_target *t, uint64_t slow_ms, uint64_t now)
{
    uint64_t since = atomic_load_explicit(&t->routable_since_ms, memory_order_relaxed);
    if (since == 0 || now >= since + slow_ms)
        return 1024;
    return (uint32_t)((now - since) * 1024 / slow_ms);
}

/* Does a target still in its slow-start ramp take this request? It does with probability
 * ramp/1024 — but only while the group has a routable target past its ramp (as on the ALB,
 * a target does not enter slow start when no healthy target is out of it). */
static bool ramp_accepts(const struct rlb_group *g, const struct rlb_target *t, uint64_t now,
                         uint64_t r, bool *have_ramped, bool *checked)
{
    uint64_t slow = g->cfg->slow_start_ms;
    uint32_t ramp = ramp_of(t, slow, now);
    if (ramp >= 1024)
        return true;
    if (!*checked) {
        *checked = true;
        *have_ramped = false;
        for (size_t i = 0; i < g->n_targets; i++)
            if (rlb_target_routable(g->targets[i]) && ramp_of(g->targets[i], slow, now) >= 1024)
                *have_ramped = true;
    }
    if (!*have_ramped)
        return true;
    r ^= r >> 31;
    r *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(r >> 54) < ramp; /* 10 random bits against the ramp */
}

struct rlb_target *rlb_balance_target(struct rlb_group *g, unsigned worker,
                                      const uint32_t *skip, unsigned n_skip, bool *fail_open,
                                      uint64_t rnd, uint64_t now_ms)
{
    size_t n = g->n_targets;
    *fail_open = false;
    if (n == 0)
        return NULL;
    struct rlb_balance_slot *slot = &g->slots[worker];
    bool slow = g->cfg->slow_start_ms > 0;
    bool have_ramped = false, checked = false;
    for (int pass = 0; pass < 2; pass++) {
        bool open = pass == 1;
        uint64_t start = slot->rr;
        struct rlb_target *best = NULL;
        size_t best_k = 0;
        switch (g->cfg->algorithm) {
        case RLB_ALG_LEAST_OUTSTANDING: {
            /* Fewest requests in flight across every worker; ties go to the first one after
             * this worker's cursor, which rotates. */
            int32_t least = INT32_MAX;
            for (size_t k = 0; k < n; k++) {
                struct rlb_target *t = g->targets[(start + k) % n];
                if (!candidate(t, open, skip, n_skip))
                    continue;
                int32_t f = atomic_load_explicit(&t->inflight, memory_order_relaxed);
                if (f < least) {
                    least = f;
                    best = t;
                    best_k = k;
                }
            }
            break;
        }
        case RLB_ALG_WEIGHTED_RANDOM: {
            /* Uniform over the candidates: reservoir sampling in one pass. */
            size_t seen = 0;
            uint64_t r = rnd;
            for (size_t k = 0; k < n; k++) {
                struct rlb_target *t = g->targets[k];
                if (!candidate(t, open, skip, n_skip))
                    continue;
                if (slow && !open &&
                    !ramp_accepts(g, t, now_ms, rnd ^ (k * 0x632be59bd9b4e019ull), &have_ramped,
                                  &checked))
                    continue;
                seen++;
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                if ((r >> 33) % seen == 0) {
                    best = t;
                    best_k = (k + n - start % n) % n;
                }
            }
            break;
        }
        default: /* round robin */
            for (size_t k = 0; k < n; k++) {
                struct rlb_target *t = g->targets[(start + k) % n];
                if (!candidate(t, open, skip, n_skip))
                    continue;
                if (slow && !open &&
                    !ramp_accepts(g, t, now_ms, rnd + k * 0x632be59bd9b4e019ull, &have_ramped,
                                  &checked))
                    continue;
                best = t;
                best_k = k;
                break;
            }
            break;
        }
        if (best) {
            slot->rr = start + best_k + 1;
            *fail_open = open && !group_has(g, true);
            return best;
        }
    }
    return NULL;
}
