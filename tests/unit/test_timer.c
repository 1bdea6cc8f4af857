/* Unit tests for the timing wheel (src/timer.c). */
#include "ringlb/timer.h"
#include "test.h"

static int fired_count;
static uint64_t fired_at[16];
static struct rlb_timer_wheel wheel;

static void on_fire(struct rlb_timer *t, uint64_t now)
{
    (void)t;
    if (fired_count < 16)
        fired_at[fired_count] = now;
    fired_count++;
}

TEST(fires_once_after_deadline)
{
    struct rlb_timer t = {0};
    fired_count = 0;
    rlb_timer_wheel_init(&wheel, 1000);
    rlb_timer_arm(&wheel, &t, 1100, on_fire);
    CHECK(rlb_timer_armed(&t));
    CHECK_EQ_INT(rlb_timer_wheel_run(&wheel, 1050), 0);
    CHECK_EQ_INT(fired_count, 0);
    CHECK_EQ_INT(rlb_timer_wheel_run(&wheel, 1100), 1);
    CHECK_EQ_INT(fired_count, 1);
    CHECK(!rlb_timer_armed(&t));
    CHECK_EQ_INT(rlb_timer_wheel_run(&wheel, 5000), 0);
    CHECK_EQ_INT(fired_count, 1);
}

TEST(cancel_prevents_firing)
{
    struct rlb_timer a = {0}, b = {0};
    fired_count = 0;
    rlb_timer_wheel_init(&wheel, 0);
    rlb_timer_arm(&wheel, &a, 100, on_fire);
    rlb_timer_arm(&wheel, &b, 100, on_fire);
    rlb_timer_cancel(&wheel, &a);
    rlb_timer_cancel(&wheel, &a); /* harmless twice */
    CHECK_EQ_INT(wheel.count, 1);
    rlb_timer_wheel_run(&wheel, 200);
    CHECK_EQ_INT(fired_count, 1);
    CHECK_EQ_INT(wheel.count, 0);
}

TEST(rearm_moves_timer)
{
    struct rlb_timer t = {0};
    fired_count = 0;
    rlb_timer_wheel_init(&wheel, 0);
    rlb_timer_arm(&wheel, &t, 50, on_fire);
    rlb_timer_arm(&wheel, &t, 500, on_fire);
    CHECK_EQ_INT(wheel.count, 1);
    rlb_timer_wheel_run(&wheel, 100);
    CHECK_EQ_INT(fired_count, 0);
    rlb_timer_wheel_run(&wheel, 499);
    CHECK_EQ_INT(fired_count, 0);
    rlb_timer_wheel_run(&wheel, 510);
    CHECK_EQ_INT(fired_count, 1);
    CHECK(fired_at[0] >= 500);
}

TEST(long_timers_wait_for_their_round)
{
    struct rlb_timer t = {0};
    uint64_t rev = (uint64_t)RLB_TIMER_SLOTS * RLB_TIMER_TICK_MS;
    fired_count = 0;
    rlb_timer_wheel_init(&wheel, 0);
    rlb_timer_arm(&wheel, &t, 2 * rev + 16, on_fire);
    for (uint64_t now = 0; now < 2 * rev; now += 100)
        rlb_timer_wheel_run(&wheel, now);
    CHECK_EQ_INT(fired_count, 0);
    rlb_timer_wheel_run(&wheel, 2 * rev + 20);
    CHECK_EQ_INT(fired_count, 1);
}

TEST(stall_longer_than_a_revolution_fires_everything)
{
    struct rlb_timer t[5];
    memset(t, 0, sizeof(t));
    fired_count = 0;
    rlb_timer_wheel_init(&wheel, 0);
    for (int i = 0; i < 5; i++)
        rlb_timer_arm(&wheel, &t[i], 10 + (uint64_t)i * 1000, on_fire);
    rlb_timer_wheel_run(&wheel, (uint64_t)RLB_TIMER_SLOTS * RLB_TIMER_TICK_MS * 3);
    CHECK_EQ_INT(fired_count, 5);
}

TEST(past_deadline_fires_on_next_run)
{
    struct rlb_timer t = {0};
    fired_count = 0;
    rlb_timer_wheel_init(&wheel, 10000);
    rlb_timer_arm(&wheel, &t, 5, on_fire);
    CHECK_EQ_INT(rlb_timer_wheel_next_ms(&wheel, 1000), 0);
    rlb_timer_wheel_run(&wheel, 10000);
    CHECK_EQ_INT(fired_count, 1);
}

static struct rlb_timer chain;
static void rearm_self(struct rlb_timer *t, uint64_t now)
{
    fired_count++;
    if (fired_count < 3)
        rlb_timer_arm(&wheel, t, now + 20, rearm_self);
}

TEST(callback_may_rearm_itself)
{
    fired_count = 0;
    memset(&chain, 0, sizeof(chain));
    rlb_timer_wheel_init(&wheel, 0);
    rlb_timer_arm(&wheel, &chain, 20, rearm_self);
    for (uint64_t now = 0; now <= 200; now += 4)
        rlb_timer_wheel_run(&wheel, now);
    CHECK_EQ_INT(fired_count, 3);
    CHECK(!rlb_timer_armed(&chain));
}

TEST(next_ms_reports_nearest)
{
    struct rlb_timer t = {0};
    rlb_timer_wheel_init(&wheel, 1000);
    CHECK_EQ_INT(rlb_timer_wheel_next_ms(&wheel, 500), 500);
    rlb_timer_arm(&wheel, &t, 1100, on_fire);
    uint64_t n = rlb_timer_wheel_next_ms(&wheel, 500);
    CHECK(n <= 100 && n >= 90);
    rlb_timer_cancel(&wheel, &t);
    rlb_timer_arm(&wheel, &t, 1000 + 100000, on_fire);
    /* The cached bound still says 1100: one early wake-up, then the search finds nothing. */
    n = rlb_timer_wheel_next_ms(&wheel, 500);
    CHECK(n <= 100);
    rlb_timer_wheel_run(&wheel, 1100);
    CHECK_EQ_INT(rlb_timer_wheel_next_ms(&wheel, 500), 500);
    /* A nearer timer armed later lowers the bound at once. */
    struct rlb_timer u = {0};
    rlb_timer_arm(&wheel, &u, 1130, on_fire);
    CHECK_EQ_INT(rlb_timer_wheel_next_ms(&wheel, 500), 30);
}

/* Whatever the arms, moves and cancels, the wait never passes the earliest deadline. */
TEST(next_ms_never_sleeps_past_a_deadline)
{
    static struct rlb_timer ts[64];
    memset(ts, 0, sizeof(ts));
    rlb_timer_wheel_init(&wheel, 5000);
    uint64_t now = 5000, rnd = 88172645463325252ull;
    fired_count = 0;
    for (int step = 0; step < 20000; step++) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        struct rlb_timer *t = &ts[rnd % 64];
        switch ((rnd >> 8) % 4) {
        case 0:
        case 1:
            rlb_timer_arm(&wheel, t, now + (rnd >> 16) % 3000, on_fire);
            break;
        case 2:
            rlb_timer_cancel(&wheel, t);
            break;
        default:
            now += (rnd >> 16) % 40;
            rlb_timer_wheel_run(&wheel, now);
        }
        uint64_t earliest = UINT64_MAX;
        for (int i = 0; i < 64; i++)
            if (rlb_timer_armed(&ts[i]) && ts[i].expires_ms < earliest)
                earliest = ts[i].expires_ms;
        uint64_t wait = rlb_timer_wheel_next_ms(&wheel, 1000);
        CHECK(wait <= 1000);
        if (earliest != UINT64_MAX) {
            uint64_t base = wheel.now_ms;
            CHECK(earliest <= base || base + wait <= earliest);
            if (earliest <= base)
                CHECK_EQ_INT(wait, 0);
        }
    }
}

int main(void)
{
    RUN(next_ms_never_sleeps_past_a_deadline);
    RUN(fires_once_after_deadline);
    RUN(cancel_prevents_firing);
    RUN(rearm_moves_timer);
    RUN(long_timers_wait_for_their_round);
    RUN(stall_longer_than_a_revolution_fires_everything);
    RUN(past_deadline_fires_on_next_run);
    RUN(callback_may_rearm_itself);
    RUN(next_ms_reports_nearest);
    return TEST_SUMMARY();
}
