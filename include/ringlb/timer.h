/* timer.h — a hashed timing wheel, one per thread.
 *
 * Timers are intrusive (embedded in the connection that owns them), so arming, moving and
 * cancelling never allocate and cost O(1). The wheel has RLB_TIMER_SLOTS slots of
 * RLB_TIMER_TICK_MS each; a timer further away than one revolution waits in its slot for its
 * round (each visit compares the deadline). Owner: one thread; never shared.
 */
#ifndef RINGLB_TIMER_H
#define RINGLB_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RLB_TIMER_TICK_MS 8u
#define RLB_TIMER_SLOTS 4096u

struct rlb_timer;
typedef void (*rlb_timer_cb)(struct rlb_timer *t, uint64_t now_ms);

/* One timer; zero-initialise before first use. Owned by the object that embeds it. */
struct rlb_timer {
    struct rlb_timer *next;   /* slot list */
    struct rlb_timer **pprev; /* NULL when not armed */
    uint64_t expires_ms;      /* deadline, monotonic milliseconds */
    rlb_timer_cb cb;          /* called once when the deadline has passed */
};

/* The wheel. Owner: one thread. */
struct rlb_timer_wheel {
    uint64_t now_ms;    /* time of the last rlb_timer_wheel_run() */
    uint64_t next_tick; /* first tick not processed yet */
    size_t count;       /* armed timers */
    uint64_t hint_ms;   /* no timer is due before this (a lower bound: cancelled or moved
                         * timers may leave it early); 0 when unknown */
    struct rlb_timer *slots[RLB_TIMER_SLOTS];
};

/* Initialise an empty wheel whose clock starts at now_ms. */
void rlb_timer_wheel_init(struct rlb_timer_wheel *w, uint64_t now_ms);

/* Arm (or re-arm) `t` to call `cb` at `expires_ms`. An armed timer is moved. */
void rlb_timer_arm(struct rlb_timer_wheel *w, struct rlb_timer *t, uint64_t expires_ms,
                   rlb_timer_cb cb);

/* Disarm `t` if armed; harmless otherwise. */
void rlb_timer_cancel(struct rlb_timer_wheel *w, struct rlb_timer *t);

/* True when `t` is armed. */
static inline bool rlb_timer_armed(const struct rlb_timer *t) { return t->pprev != NULL; }

/* Advance the wheel to now_ms and call every timer whose deadline is <= now_ms (each once;
 * a callback may arm or cancel any timer, including its own). Returns the number fired. */
size_t rlb_timer_wheel_run(struct rlb_timer_wheel *w, uint64_t now_ms);

/* Milliseconds until the wheel next needs running (at most `max_ms`); max_ms when no timer is
 * armed. O(1) while the cached lower bound of the next deadline lies ahead; a bounded search
 * of the slots otherwise (at most once per bound reached). */
uint64_t rlb_timer_wheel_next_ms(struct rlb_timer_wheel *w, uint64_t max_ms);

#endif
