/* Unit tests for target choice (src/balance.c): round robin, least outstanding requests,
 * weighted random, fail-open and skipping refused targets. */
#include <stdlib.h>

#include "ringlb/balance.h"
#include "test.h"

#define N 3
static struct rlb_target t[N];
static struct rlb_target *tp[N];
static struct rlb_target_group_cfg gcfg;
static struct rlb_balance_slot slots[2];
static struct rlb_group g;
static uint64_t now_ms = 1000000;

static void setup(enum rlb_algorithm alg)
{
    memset(t, 0, sizeof(t));
    memset(slots, 0, sizeof(slots));
    memset(&gcfg, 0, sizeof(gcfg));
    gcfg.algorithm = alg;
    for (int i = 0; i < N; i++) {
        t[i].slot = (uint32_t)i;
        atomic_init(&t[i].state, RLB_TARGET_HEALTHY);
        atomic_init(&t[i].inflight, 0);
        tp[i] = &t[i];
    }
    g.cfg = &gcfg;
    g.targets = tp;
    g.n_targets = N;
    g.slots = slots;
}

static int pick(unsigned worker, const uint32_t *skip, unsigned n_skip, bool *fo, uint64_t r)
{
    struct rlb_target *x = rlb_balance_target(&g, worker, skip, n_skip, fo, r, now_ms);
    return x ? (int)(x - t) : -1;
}

TEST(round_robin_even_and_skips_unhealthy)
{
    setup(RLB_ALG_ROUND_ROBIN);
    bool fo;
    int counts[N] = {0};
    for (int i = 0; i < 300; i++)
        counts[pick(0, NULL, 0, &fo, 0)]++;
    CHECK(counts[0] == 100 && counts[1] == 100 && counts[2] == 100);
    CHECK(!fo);
    atomic_store(&t[1].state, RLB_TARGET_UNHEALTHY);
    for (int i = 0; i < 50; i++)
        CHECK(pick(0, NULL, 0, &fo, 0) != 1);
    atomic_store(&t[2].state, RLB_TARGET_DRAINING);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(pick(0, NULL, 0, &fo, 0), 0);
    uint32_t skip[1] = {0};
    /* target 0 refused: the only other non-draining one is 1 (unhealthy): fail open to it */
    CHECK_EQ_INT(pick(0, skip, 1, &fo, 0), 1);
}

TEST(fail_open_when_nothing_is_healthy)
{
    setup(RLB_ALG_ROUND_ROBIN);
    bool fo = false;
    for (int i = 0; i < N; i++)
        atomic_store(&t[i].state, RLB_TARGET_UNHEALTHY);
    atomic_store(&t[0].state, RLB_TARGET_DRAINING);
    int counts[N] = {0};
    for (int i = 0; i < 100; i++)
        counts[pick(0, NULL, 0, &fo, 0)]++;
    CHECK(fo);
    CHECK(counts[0] == 0 && counts[1] == 50 && counts[2] == 50);
    atomic_store(&t[1].state, RLB_TARGET_DRAINING);
    atomic_store(&t[2].state, RLB_TARGET_DRAINING);
    CHECK_EQ_INT(pick(0, NULL, 0, &fo, 0), -1);
}

TEST(least_outstanding_requests)
{
    setup(RLB_ALG_LEAST_OUTSTANDING);
    bool fo;
    atomic_store(&t[0].inflight, 5);
    atomic_store(&t[1].inflight, 1);
    atomic_store(&t[2].inflight, 3);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(pick(0, NULL, 0, &fo, 0), 1);
    /* ties rotate */
    atomic_store(&t[0].inflight, 2);
    atomic_store(&t[1].inflight, 2);
    atomic_store(&t[2].inflight, 2);
    int counts[N] = {0};
    for (int i = 0; i < 30; i++)
        counts[pick(1, NULL, 0, &fo, 0)]++;
    CHECK(counts[0] == 10 && counts[1] == 10 && counts[2] == 10);
    /* an unhealthy target with fewer requests is not chosen */
    atomic_store(&t[0].inflight, 0);
    atomic_store(&t[0].state, RLB_TARGET_UNHEALTHY);
    CHECK(pick(1, NULL, 0, &fo, 0) != 0);
}

TEST(weighted_random_spreads)
{
    setup(RLB_ALG_WEIGHTED_RANDOM);
    bool fo;
    int counts[N] = {0};
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        counts[pick(0, NULL, 0, &fo, x)]++;
    }
    for (int i = 0; i < N; i++)
        CHECK(counts[i] > 850 && counts[i] < 1150);
    atomic_store(&t[2].state, RLB_TARGET_UNHEALTHY);
    for (int i = 0; i < 100; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        CHECK(pick(0, NULL, 0, &fo, x) != 2);
    }
}

TEST(slow_start_ramps_linearly)
{
    setup(RLB_ALG_ROUND_ROBIN);
    gcfg.slow_start_ms = 30000;
    bool fo;
    /* targets 0 and 1 are long healthy; target 2 became healthy at now_ms */
    atomic_store(&t[0].routable_since_ms, 1);
    atomic_store(&t[1].routable_since_ms, 1);
    uint64_t x = 0x1234567;
    int shares[3];
    uint64_t at[3] = {0, 15000, 30000};
    for (int phase = 0; phase < 3; phase++) {
        atomic_store(&t[2].routable_since_ms, now_ms - at[phase]);
        int counts[N] = {0};
        for (int i = 0; i < 3000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            counts[pick(0, NULL, 0, &fo, x)]++;
        }
        shares[phase] = counts[2];
    }
    CHECK(shares[0] < 60);                      /* just healthy: almost nothing */
    CHECK(shares[1] > 500 && shares[1] < 950);  /* half way: about half a share */
    CHECK(shares[2] > 900 && shares[2] < 1100); /* ramp over: a full third */
    /* every target ramping (none past its ramp): no slow start, even split */
    for (int i = 0; i < N; i++)
        atomic_store(&t[i].routable_since_ms, now_ms);
    int counts[N] = {0};
    for (int i = 0; i < 300; i++)
        counts[pick(0, NULL, 0, &fo, (uint64_t)i * 7919)]++;
    CHECK(counts[0] == 100 && counts[1] == 100 && counts[2] == 100);
}

int main(void)
{
    RUN(round_robin_even_and_skips_unhealthy);
    RUN(fail_open_when_nothing_is_healthy);
    RUN(least_outstanding_requests);
    RUN(weighted_random_spreads);
    RUN(slow_start_ramps_linearly);
    return TEST_SUMMARY();
}
