/* timer.c — hashed timing wheel (see timer.h).
 *
 * A timer sits in slot (expires / TICK) % SLOTS. Running the wheel visits every tick from the
 * last visited one up to now; in each visited slot the timers whose deadline has passed fire,
 * the others (a later round) stay. Deadlines in the past land in the next tick to visit.
 */
#include "ringlb/timer.h"

#include <string.h>

static inline size_t slot_of(uint64_t tick) { return (size_t)(tick & (RLB_TIMER_SLOTS - 1)); }

void rlb_timer_wheel_init(struct rlb_timer_wheel *w, uint64_t now_ms)
{
    memset(w, 0, sizeof(*w));
    w->now_ms = now_ms;
    w->next_tick = now_ms / RLB_TIMER_TICK_MS;
}

static void unlink_timer(struct rlb_timer *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void rlb_timer_arm(struct rlb_timer_wheel *w, struct rlb_timer *t, uint64_t expires_ms,
                   rlb_timer_cb cb)
{
    if (t->pprev)
        unlink_timer(t);
    else
        w->count++;
    t->expires_ms = expires_ms;
    t->cb = cb;
    if (expires_ms < w->hint_ms)
        w->hint_ms = expires_ms;
    uint64_t tick = expires_ms / RLB_TIMER_TICK_MS;
    if (tick < w->next_tick)
        tick = w->next_tick;
    struct rlb_timer **head = &w->slots[slot_of(tick)];
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
}

void rlb_timer_cancel(struct rlb_timer_wheel *w, struct rlb_timer *t)
{
    if (!t->pprev)
        return;
    unlink_timer(t);
    w->count--;
}

size_t rlb_timer_wheel_run(struct rlb_timer_wheel *w, uint64_t now_ms)
{
    size_t fired = 0;
    if (now_ms > w->now_ms)
        w->now_ms = now_ms;
    uint64_t last = w->now_ms / RLB_TIMER_TICK_MS;
    /* After a long stall, one full revolution visits every slot. */
    if (last >= w->next_tick + RLB_TIMER_SLOTS)
        w->next_tick = last - RLB_TIMER_SLOTS + 1;
    /* Ticks before `last` are complete: everything of this round in them is due. The current
     * tick is visited for what is due already, and stays the next one to visit. */
    while (w->next_tick <= last && w->count > 0) {
        struct rlb_timer **pp = &w->slots[slot_of(w->next_tick)];
        /* Detach the expired ones first: callbacks may re-arm into this very slot. */
        struct rlb_timer *due = NULL;
        while (*pp) {
            struct rlb_timer *t = *pp;
            if (t->expires_ms <= w->now_ms) {
                unlink_timer(t);
                w->count--;
                t->next = due;
                due = t;
            } else {
                pp = &t->next;
            }
        }
        bool current = w->next_tick == last;
        if (!current)
            w->next_tick++;
        while (due) {
            struct rlb_timer *t = due;
            due = t->next;
            t->next = NULL;
            fired++;
            t->cb(t, w->now_ms);
        }
        if (current)
            break;
    }
    if (w->count == 0)
        w->next_tick = last;
    return fired;
}

uint64_t rlb_timer_wheel_next_ms(struct rlb_timer_wheel *w, uint64_t max_ms)
{
    if (w->count == 0)
        return max_ms;
    if (w->hint_ms > w->now_ms)
        return w->hint_ms - w->now_ms < max_ms ? w->hint_ms - w->now_ms : max_ms;
    /* The bound was reached: search the slots up to max_ms ahead for the next deadline. */
    uint64_t limit = max_ms / RLB_TIMER_TICK_MS + 1;
    for (uint64_t i = 0; i < limit && i < RLB_TIMER_SLOTS; i++) {
        uint64_t tick = w->next_tick + i;
        const struct rlb_timer *t = w->slots[slot_of(tick)];
        if (!t)
            continue;
        uint64_t best = UINT64_MAX;
        for (; t; t = t->next)
            if (t->expires_ms < best)
                best = t->expires_ms;
        uint64_t end = (tick + 1) * RLB_TIMER_TICK_MS;
        if (best > end)
            continue; /* a later round */
        if (best <= w->now_ms)
            return 0; /* due: run the wheel; the bound stays unknown */
        w->hint_ms = best;
        return best - w->now_ms < max_ms ? best - w->now_ms : max_ms;
    }
    /* Nothing due before the end of the searched ticks (or now_ms + max_ms). */
    uint64_t searched = (w->next_tick + (limit < RLB_TIMER_SLOTS ? limit : RLB_TIMER_SLOTS)) *
                        RLB_TIMER_TICK_MS;
    w->hint_ms = searched < w->now_ms + max_ms ? searched : w->now_ms + max_ms;
    if (w->hint_ms <= w->now_ms)
        w->hint_ms = 0;
    return max_ms;
}
