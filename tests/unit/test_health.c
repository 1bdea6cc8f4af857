/* test_health.c — unit tests of target health and membership (src/health.c, src/targets.c).
 *
 * Covers the pure health state machine (thresholds, reasons, states it leaves alone), the
 * matcher, the check request's bytes, and the registration API against real snapshots built
 * from configuration text: runtime registration and its idempotence, deregistration into
 * draining and removal at the end of the delay (the main timer wheel run by hand), a delay of 0,
 * re-registration of a draining target, the overlay surviving a reload, unknown groups, and
 * targets of groups without health checks. No workers and no ring: publishing hands snapshots
 * to zero workers and the health checker is not started.
 */
#include "ringlb/health.h"
#include "ringlb/snapshot.h"
#include "ringlb/targets.h"
#include "ringlb/worker.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

/* --- state machine ------------------------------------------------------------------------- */

struct sm {
    int state, reason;
    struct rlb_health_counters c;
};

static struct sm sm_new(void)
{
    struct sm m = {RLB_TARGET_INITIAL, RLB_REASON_INITIAL_HEALTH_CHECKING, {0, 0}};
    return m;
}

static void feed(struct sm *m, enum rlb_health_result r)
{
    rlb_health_step(&m->state, &m->reason, &m->c, r, 3, 2); /* healthy 3, unhealthy 2 */
}

TEST(initial_to_healthy_on_first_success)
{
    struct sm m = sm_new();
    feed(&m, RLB_HEALTH_OK);
    CHECK_EQ_INT(m.state, RLB_TARGET_HEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_NONE);
}

TEST(initial_to_unhealthy_after_threshold)
{
    struct sm m = sm_new();
    feed(&m, RLB_HEALTH_TIMEOUT);
    CHECK_EQ_INT(m.state, RLB_TARGET_INITIAL);
    CHECK_EQ_INT(m.reason, RLB_REASON_INITIAL_HEALTH_CHECKING);
    feed(&m, RLB_HEALTH_TIMEOUT);
    CHECK_EQ_INT(m.state, RLB_TARGET_UNHEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_TIMEOUT);
}

TEST(initial_failure_then_success_is_healthy)
{
    struct sm m = sm_new();
    feed(&m, RLB_HEALTH_FAILED);
    feed(&m, RLB_HEALTH_OK);
    CHECK_EQ_INT(m.state, RLB_TARGET_HEALTHY);
}

TEST(healthy_to_unhealthy_needs_consecutive_failures)
{
    struct sm m = sm_new();
    feed(&m, RLB_HEALTH_OK);
    feed(&m, RLB_HEALTH_CODE_MISMATCH);
    CHECK_EQ_INT(m.state, RLB_TARGET_HEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_NONE);
    feed(&m, RLB_HEALTH_OK); /* the streak is broken */
    feed(&m, RLB_HEALTH_CODE_MISMATCH);
    CHECK_EQ_INT(m.state, RLB_TARGET_HEALTHY);
    feed(&m, RLB_HEALTH_CODE_MISMATCH);
    CHECK_EQ_INT(m.state, RLB_TARGET_UNHEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_RESPONSE_CODE_MISMATCH);
}

TEST(unhealthy_reason_follows_latest_failure)
{
    struct sm m = sm_new();
    feed(&m, RLB_HEALTH_FAILED);
    feed(&m, RLB_HEALTH_FAILED);
    CHECK_EQ_INT(m.reason, RLB_REASON_FAILED_HEALTH_CHECKS);
    feed(&m, RLB_HEALTH_TIMEOUT);
    CHECK_EQ_INT(m.state, RLB_TARGET_UNHEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_TIMEOUT);
    feed(&m, RLB_HEALTH_CODE_MISMATCH);
    CHECK_EQ_INT(m.reason, RLB_REASON_RESPONSE_CODE_MISMATCH);
}

TEST(unhealthy_to_healthy_needs_healthy_threshold)
{
    struct sm m = sm_new();
    feed(&m, RLB_HEALTH_FAILED);
    feed(&m, RLB_HEALTH_FAILED);
    feed(&m, RLB_HEALTH_OK);
    feed(&m, RLB_HEALTH_OK);
    CHECK_EQ_INT(m.state, RLB_TARGET_UNHEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_FAILED_HEALTH_CHECKS);
    feed(&m, RLB_HEALTH_FAILED); /* broken: start over */
    feed(&m, RLB_HEALTH_OK);
    feed(&m, RLB_HEALTH_OK);
    CHECK_EQ_INT(m.state, RLB_TARGET_UNHEALTHY);
    feed(&m, RLB_HEALTH_OK);
    CHECK_EQ_INT(m.state, RLB_TARGET_HEALTHY);
    CHECK_EQ_INT(m.reason, RLB_REASON_NONE);
}

TEST(other_states_are_left_alone)
{
    int states[] = {RLB_TARGET_DRAINING, RLB_TARGET_UNUSED, RLB_TARGET_UNAVAILABLE};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        struct sm m = {states[i], RLB_REASON_DEREGISTRATION_IN_PROGRESS, {0, 0}};
        feed(&m, RLB_HEALTH_OK);
        feed(&m, RLB_HEALTH_FAILED);
        feed(&m, RLB_HEALTH_FAILED);
        CHECK_EQ_INT(m.state, states[i]);
        CHECK_EQ_INT(m.reason, RLB_REASON_DEREGISTRATION_IN_PROGRESS);
    }
}

TEST(reason_names)
{
    CHECK(rlb_target_reason_name(RLB_REASON_NONE) == NULL);
    CHECK_EQ_STR(rlb_target_reason_name(RLB_REASON_INITIAL_HEALTH_CHECKING),
                 "Elb.InitialHealthChecking");
    CHECK_EQ_STR(rlb_target_reason_name(RLB_REASON_RESPONSE_CODE_MISMATCH),
                 "Target.ResponseCodeMismatch");
    CHECK_EQ_STR(rlb_target_reason_name(RLB_REASON_TIMEOUT), "Target.Timeout");
    CHECK_EQ_STR(rlb_target_reason_name(RLB_REASON_FAILED_HEALTH_CHECKS),
                 "Target.FailedHealthChecks");
    CHECK_EQ_STR(rlb_target_reason_name(RLB_REASON_DEREGISTRATION_IN_PROGRESS),
                 "Target.DeregistrationInProgress");
    CHECK_EQ_STR(rlb_target_reason_name(RLB_REASON_HEALTH_CHECK_DISABLED),
                 "Target.HealthCheckDisabled");
    CHECK_EQ_STR(rlb_target_state_name(RLB_TARGET_UNAVAILABLE), "unavailable");
}

/* --- matcher and request ------------------------------------------------------------------- */

TEST(matcher)
{
    struct { uint16_t lo, hi; } ranges[] = {{200, 200}, {202, 202}, {300, 399}};
    struct rlb_health_check_cfg hc = {0};
    hc.match_ranges = (void *)ranges;
    hc.n_match_ranges = 3;
    CHECK(rlb_health_match(&hc, 200));
    CHECK(rlb_health_match(&hc, 202));
    CHECK(!rlb_health_match(&hc, 201));
    CHECK(rlb_health_match(&hc, 301));
    CHECK(!rlb_health_match(&hc, 500));
}

TEST(request_bytes)
{
    struct rlb_sockaddr a;
    CHECK_EQ_INT(rlb_sockaddr_parse("127.0.0.1:8081", &a), 0);
    size_t len = 0;
    char *req = rlb_health_request("/health?x=1", &a, &len);
    CHECK(req != NULL);
    CHECK_EQ_INT(len, strlen(req));
    CHECK_EQ_STR(req, "GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"
                      "User-Agent: ELB-HealthChecker/2.0\r\nAccept: */*\r\n"
                      "Connection: close\r\n\r\n");
    free(req);
    CHECK_EQ_INT(rlb_sockaddr_parse("[::1]:9000", &a), 0);
    req = rlb_health_request("/a b\r\n", &a, &len);
    CHECK(req != NULL);
    CHECK(strncmp(req, "GET /a%20b%0D%0A HTTP/1.1\r\nHost: [::1]:9000\r\n", 44) == 0);
    free(req);
}

/* --- registration and draining ------------------------------------------------------------- */

static struct rlb_timer_wheel wheel;

static const char *const CFG_A =
    "listeners:\n"
    "  - name: l\n"
    "    listen: 127.0.0.1:18080\n"
    "    default_action: {forward: {target_groups: [{name: web}]}}\n"
    "target_groups:\n"
    "  - name: web\n"
    "    deregistration_delay: 2s\n"
    "    health_check: {path: /health, interval: 1s}\n"
    "    targets: [127.0.0.1:9001, 127.0.0.1:9002]\n"
    "  - name: quick\n"
    "    deregistration_delay: 0s\n"
    "    health_check: {enabled: false}\n"
    "    targets: [127.0.0.1:9101]\n";

/* Same groups; web lists 9001 and 9003 (9002 left the file). */
static const char *const CFG_B =
    "listeners:\n"
    "  - name: l\n"
    "    listen: 127.0.0.1:18080\n"
    "    default_action: {forward: {target_groups: [{name: web}]}}\n"
    "target_groups:\n"
    "  - name: web\n"
    "    deregistration_delay: 2s\n"
    "    health_check: {path: /health, interval: 1s}\n"
    "    targets: [127.0.0.1:9001, 127.0.0.1:9003]\n"
    "  - name: quick\n"
    "    deregistration_delay: 0s\n"
    "    health_check: {enabled: false}\n"
    "    targets: [127.0.0.1:9101]\n";

static struct rlb_snapshot *build(const char *text)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("t.yaml", text, strlen(text), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    rlb_config_errors_free(&errs);
    if (!cfg)
        return NULL;
    struct rlb_snapshot *cur = rlb_snapshot_current();
    return rlb_snapshot_build(cfg, cur, 1, cur ? cur->generation + 1 : 1);
}

static struct rlb_target *find(const char *group, int port)
{
    struct rlb_snapshot *s = rlb_snapshot_current();
    for (size_t g = 0; g < s->cfg->n_target_groups; g++) {
        if (strcmp(s->groups[g].cfg->name, group) != 0)
            continue;
        for (size_t i = 0; i < s->groups[g].n_targets; i++)
            if (rlb_sockaddr_port(&s->groups[g].targets[i]->addr) == port)
                return s->groups[g].targets[i];
    }
    return NULL;
}

static size_t count(const char *group)
{
    struct rlb_snapshot *s = rlb_snapshot_current();
    for (size_t g = 0; g < s->cfg->n_target_groups; g++)
        if (strcmp(s->groups[g].cfg->name, group) == 0)
            return s->groups[g].n_targets;
    return 0;
}

static struct rlb_sockaddr addr(const char *s)
{
    struct rlb_sockaddr a;
    memset(&a, 0, sizeof(a));
    rlb_sockaddr_parse(s, &a);
    return a;
}

static int state_of(const char *group, int port)
{
    struct rlb_target *t = find(group, port);
    return t ? atomic_load(&t->state) : -1;
}

static int reason_of(const char *group, int port)
{
    struct rlb_target *t = find(group, port);
    return t ? atomic_load(&t->reason) : -1;
}

/* Run the main wheel as if `ms` milliseconds had passed. */
static void advance(uint64_t ms)
{
    rlb_timer_wheel_run(&wheel, rlb_now_ms() + ms);
}

TEST(registration_lifecycle)
{
    rlb_timer_wheel_init(&wheel, rlb_now_ms());
    rlb_targets_init(&wheel);
    struct rlb_snapshot *s = build(CFG_A);
    CHECK(s != NULL);
    if (!s)
        return;
    rlb_targets_publish(s);
    CHECK_EQ_INT(count("web"), 2);
    CHECK_EQ_INT(state_of("web", 9001), RLB_TARGET_INITIAL);
    CHECK_EQ_INT(reason_of("web", 9001), RLB_REASON_INITIAL_HEALTH_CHECKING);
    CHECK_EQ_INT(state_of("quick", 9101), RLB_TARGET_UNAVAILABLE);
    CHECK_EQ_INT(reason_of("quick", 9101), RLB_REASON_HEALTH_CHECK_DISABLED);

    /* register a new target: new snapshot, state initial; again: nothing changes */
    struct rlb_sockaddr a4 = addr("127.0.0.1:9004");
    uint64_t gen = rlb_snapshot_current()->generation;
    CHECK_EQ_INT(rlb_targets_register("web", &a4, 1), 0);
    CHECK(rlb_snapshot_current()->generation == gen + 1);
    CHECK_EQ_INT(count("web"), 3);
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_INITIAL);
    struct rlb_target *t4 = find("web", 9004);
    atomic_store(&t4->state, RLB_TARGET_HEALTHY); /* as the health checker would */
    CHECK_EQ_INT(rlb_targets_register("web", &a4, 1), 0);
    CHECK(rlb_snapshot_current()->generation == gen + 1);
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_HEALTHY);
    CHECK_EQ_INT(rlb_targets_register("nope", &a4, 1), -ENOENT);
    CHECK_EQ_INT(rlb_targets_deregister("nope", &a4, 1), -ENOENT);

    /* a group without health checks: unavailable */
    struct rlb_sockaddr q2 = addr("127.0.0.1:9102");
    CHECK_EQ_INT(rlb_targets_register("quick", &q2, 1), 0);
    CHECK_EQ_INT(state_of("quick", 9102), RLB_TARGET_UNAVAILABLE);

    /* deregister: draining at once, still listed; removed when the delay is over */
    CHECK_EQ_INT(rlb_targets_deregister("web", &a4, 1), 0);
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_DRAINING);
    CHECK_EQ_INT(reason_of("web", 9004), RLB_REASON_DEREGISTRATION_IN_PROGRESS);
    CHECK_EQ_INT(count("web"), 3);
    CHECK_EQ_INT(rlb_targets_deregister("web", &a4, 1), 0); /* idempotent */
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_DRAINING);
    advance(1000);
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_DRAINING);
    /* re-registering a draining target starts it over */
    CHECK_EQ_INT(rlb_targets_register("web", &a4, 1), 0);
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_INITIAL);
    CHECK_EQ_INT(reason_of("web", 9004), RLB_REASON_INITIAL_HEALTH_CHECKING);
    advance(5000); /* the old deadline is cancelled */
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_INITIAL);

    /* deregister a static (file) target; the delay ends: unused, then gone */
    struct rlb_sockaddr a1 = addr("127.0.0.1:9001");
    CHECK_EQ_INT(rlb_targets_deregister("web", &a1, 1), 0);
    struct rlb_target *t1 = find("web", 9001);
    atomic_fetch_add(&t1->refs, 1); /* keep it to look at it after removal */
    CHECK_EQ_INT(atomic_load(&t1->state), RLB_TARGET_DRAINING);
    advance(2500);
    CHECK(find("web", 9001) == NULL);
    CHECK_EQ_INT(atomic_load(&t1->state), RLB_TARGET_UNUSED);
    CHECK_EQ_INT(atomic_load(&t1->reason), RLB_REASON_NOT_REGISTERED);
    rlb_target_unref(t1);
    CHECK_EQ_INT(count("web"), 2); /* 9002, 9004 */

    /* deregistration delay 0: removed at once */
    CHECK_EQ_INT(rlb_targets_deregister("quick", &q2, 1), 0);
    CHECK(find("quick", 9102) == NULL);
    CHECK_EQ_INT(count("quick"), 1);

    /* reload with CFG_B (9001, 9003): the runtime overlay is applied again (9001 stays
     * deregistered, 9004 stays registered), 9002 left the file and drains, 9003 is new */
    s = build(CFG_B);
    CHECK(s != NULL);
    if (!s)
        return;
    rlb_targets_publish(s);
    CHECK(find("web", 9001) == NULL);
    CHECK_EQ_INT(state_of("web", 9003), RLB_TARGET_INITIAL);
    CHECK_EQ_INT(state_of("web", 9004), RLB_TARGET_INITIAL);
    CHECK_EQ_INT(state_of("web", 9002), RLB_TARGET_DRAINING);
    CHECK_EQ_INT(reason_of("web", 9002), RLB_REASON_DEREGISTRATION_IN_PROGRESS);
    advance(2500);
    CHECK(find("web", 9002) == NULL);
    CHECK_EQ_INT(count("web"), 2); /* 9003, 9004 */

    /* registering a file target that was deregistered brings it back */
    CHECK_EQ_INT(rlb_targets_register("web", &a1, 1), 0);
    CHECK_EQ_INT(state_of("web", 9001), RLB_TARGET_INITIAL);
    CHECK_EQ_INT(count("web"), 3);

    rlb_snapshot_set_current(NULL);
    rlb_targets_destroy();
}

int main(void)
{
    RUN(initial_to_healthy_on_first_success);
    RUN(initial_to_unhealthy_after_threshold);
    RUN(initial_failure_then_success_is_healthy);
    RUN(healthy_to_unhealthy_needs_consecutive_failures);
    RUN(unhealthy_reason_follows_latest_failure);
    RUN(unhealthy_to_healthy_needs_healthy_threshold);
    RUN(other_states_are_left_alone);
    RUN(reason_names);
    RUN(matcher);
    RUN(request_bytes);
    RUN(registration_lifecycle);
    return TEST_SUMMARY();
}
