/* Unit tests for the scaling advisor (src/scaling.c): the pure decision function (formula,
 * clamping, cooldowns, the 10 % scale-in margin, no healthy / no registered target, bounds
 * changed by a reload), then the advisor on a real snapshot with a fake metrics clock — the
 * hook's environment, one hook at a time with the latest advice delivered afterwards, the hook
 * timeout, GET /api/v1/scaling's JSON and the Prometheus gauge. */
#include <libfyaml.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/config.h"
#include "ringlb/json.h"
#include "ringlb/metrics.h"
#include "ringlb/scaling.h"
#include "ringlb/snapshot.h"
#include "test.h"

/* A decision input with the usual test values: target 600, [1, 20], cooldowns 300 s. */
static struct rlb_scaling_input input(uint32_t healthy, double metric, uint64_t now_ms)
{
    struct rlb_scaling_input in = {
        .target_value = 600,
        .min = 1,
        .max = 20,
        .scale_out_cooldown_ms = 300000,
        .scale_in_cooldown_ms = 300000,
        .healthy = healthy,
        .registered = healthy,
        .metric = metric,
        .now_ms = now_ms,
    };
    return in;
}

static struct rlb_scaling_decision decide(struct rlb_scaling_state *st,
                                          struct rlb_scaling_input in)
{
    struct rlb_scaling_decision d;
    rlb_scaling_decide(&in, st, &d);
    return d;
}

/* ---- the decision ------------------------------------------------------------------------- */

TEST(first_decision_at_target_holds)
{
    struct rlb_scaling_state st = {0};
    struct rlb_scaling_decision d = decide(&st, input(2, 600, 1000));
    CHECK_EQ_INT(d.desired, 2);
    CHECK_EQ_INT(d.previous, 2);
    CHECK_EQ_INT(d.computed, 2);
    CHECK(!d.changed);
    CHECK_EQ_INT(d.action, RLB_SCALING_HOLD);
    CHECK(st.valid);
    CHECK(strstr(d.reason, "at target") != NULL);
}

TEST(scale_out_at_once_then_cooldown)
{
    struct rlb_scaling_state st = {0};
    /* 2 healthy × 1200 / 600 = 4. */
    struct rlb_scaling_decision d = decide(&st, input(2, 1200, 1000));
    CHECK_EQ_INT(d.desired, 4);
    CHECK(d.changed);
    CHECK_EQ_INT(d.action, RLB_SCALING_OUT);
    CHECK(strstr(d.reason, "scale out") != NULL);
    /* Still 2 healthy (new targets starting), same load: 4 again, nothing changes. */
    d = decide(&st, input(2, 1200, 61000));
    CHECK_EQ_INT(d.desired, 4);
    CHECK(!d.changed);
    /* More load inside the scale-out cooldown: held. */
    d = decide(&st, input(2, 1800, 121000));
    CHECK_EQ_INT(d.computed, 6);
    CHECK_EQ_INT(d.desired, 4);
    CHECK(!d.changed);
    CHECK(strstr(d.reason, "scale_out_cooldown") != NULL);
    CHECK_EQ_INT(rlb_scaling_out_cooldown_left(&st, 300000, 121000), 180000);
    /* The cooldown is over 300 s after the last scale-out advice. */
    d = decide(&st, input(2, 1800, 301000));
    CHECK_EQ_INT(d.desired, 6);
    CHECK_EQ_INT(d.action, RLB_SCALING_OUT);
    CHECK_EQ_INT(rlb_scaling_out_cooldown_left(&st, 300000, 301000), 300000);
}

TEST(clamped_to_min_and_max)
{
    struct rlb_scaling_state st = {0};
    struct rlb_scaling_decision d = decide(&st, input(4, 6000, 0)); /* 40 → max 20 */
    CHECK_EQ_INT(d.computed, 20);
    CHECK_EQ_INT(d.desired, 20);
    CHECK(strstr(d.reason, "capped at max") != NULL);
    struct rlb_scaling_state st2 = {0};
    struct rlb_scaling_input in = input(3, 0, 0);
    in.min = 2;
    in.scale_in_cooldown_ms = 0;
    d = decide(&st2, in); /* no traffic: 0 → min 2 */
    CHECK_EQ_INT(d.computed, 2);
    CHECK_EQ_INT(d.desired, 2);
    CHECK_EQ_INT(d.action, RLB_SCALING_IN);
}

TEST(scale_in_needs_ten_percent_margin)
{
    /* 20 healthy at 570 (95 % of target): the formula says 19, but 570 > 540. */
    struct rlb_scaling_state st = {0};
    struct rlb_scaling_input in = input(20, 570, 0);
    in.scale_in_cooldown_ms = 0;
    struct rlb_scaling_decision d = decide(&st, in);
    CHECK_EQ_INT(d.computed, 19);
    CHECK_EQ_INT(d.desired, 20);
    CHECK(!d.changed);
    CHECK(strstr(d.reason, "not 10% below") != NULL);
    /* Exactly 10 % below (540): allowed. 20 × 540 / 600 = 18. */
    in.metric = 540;
    in.now_ms = 60000;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 18);
    CHECK_EQ_INT(d.action, RLB_SCALING_IN);
}

TEST(scale_in_cooldown_from_start_and_from_last_change)
{
    struct rlb_scaling_state st = {0};
    /* Low traffic from the first window: scale-in waits a cooldown from the start. */
    struct rlb_scaling_decision d = decide(&st, input(4, 100, 10000));
    CHECK_EQ_INT(d.computed, 1);
    CHECK_EQ_INT(d.desired, 4);
    CHECK(strstr(d.reason, "scale_in_cooldown") != NULL);
    CHECK_EQ_INT(rlb_scaling_in_cooldown_left(&st, 300000, 70000), 240000);
    d = decide(&st, input(4, 100, 309999));
    CHECK_EQ_INT(d.desired, 4);
    d = decide(&st, input(4, 100, 310000));
    CHECK_EQ_INT(d.desired, 1);
    CHECK_EQ_INT(d.action, RLB_SCALING_IN);
    /* A scale-out restarts the scale-in cooldown. */
    d = decide(&st, input(1, 1200, 400000));
    CHECK_EQ_INT(d.desired, 2);
    d = decide(&st, input(2, 100, 460000));
    CHECK_EQ_INT(d.desired, 2);
    CHECK(strstr(d.reason, "scale_in_cooldown") != NULL);
    d = decide(&st, input(2, 100, 700000));
    CHECK_EQ_INT(d.desired, 1);
    /* Scale-in does not hold back a scale-out (its own cooldown only). */
    d = decide(&st, input(1, 1800, 701000));
    CHECK_EQ_INT(d.desired, 3);
}

TEST(advice_above_current_is_not_lowered_while_load_is_high)
{
    struct rlb_scaling_state st = {0};
    decide(&st, input(2, 1800, 0)); /* → 6 */
    CHECK_EQ_INT(st.desired, 6);
    /* The scaler has not added anything yet and the load eased a little: 4 would do, but the
     * metric (per current target) is still above target: no scale-in. */
    struct rlb_scaling_input in = input(2, 1200, 400000);
    in.scale_in_cooldown_ms = 0;
    struct rlb_scaling_decision d = decide(&st, in);
    CHECK_EQ_INT(d.computed, 4);
    CHECK_EQ_INT(d.desired, 6);
    CHECK(!d.changed);
    /* Six targets up, load low: scale in. */
    in = input(6, 200, 500000);
    in.scale_in_cooldown_ms = 0;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 2);
}

TEST(no_healthy_target_uses_registered_and_never_scales_in)
{
    struct rlb_scaling_state st = {0};
    struct rlb_scaling_input in = input(0, 1000, 0); /* metric ÷ 3 registered */
    in.registered = 3;
    in.target_value = 500;
    struct rlb_scaling_decision d = decide(&st, in);
    CHECK_EQ_INT(d.current, 3);
    CHECK_EQ_INT(d.desired, 6);
    CHECK_EQ_INT(d.action, RLB_SCALING_OUT);
    in.metric = 10;
    in.now_ms = 10000000; /* every cooldown is over */
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 6);
    CHECK(!d.changed);
    CHECK(strstr(d.reason, "no healthy target") != NULL);
}

TEST(no_registered_target)
{
    /* min 0, nothing registered, no demand: 0 stays 0. */
    struct rlb_scaling_state st = {0};
    struct rlb_scaling_input in = input(0, 0, 0);
    in.min = 0;
    struct rlb_scaling_decision d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 0);
    CHECK(!d.changed);
    /* Requests answered 503 for lack of a target: scale from zero. */
    in.unserved = 5;
    in.now_ms = 1000;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 1);
    CHECK_EQ_INT(d.action, RLB_SCALING_OUT);
    CHECK(strstr(d.reason, "no target registered") != NULL);
    in.unserved = 1300; /* ceil(1300 / 600) = 3 */
    in.now_ms = 400000;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 3);
    /* Every target deregistered with an advice of 3: not lowered (no healthy target). */
    in.unserved = 0;
    in.now_ms = 10000000;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 3);
    /* min 2 and nothing at all: desired is min. */
    struct rlb_scaling_state st2 = {0};
    in = input(0, 0, 0);
    in.min = 2;
    d = decide(&st2, in);
    CHECK_EQ_INT(d.desired, 2);
    CHECK_EQ_INT(d.action, RLB_SCALING_OUT);
}

TEST(bounds_changed_by_reload)
{
    struct rlb_scaling_state st = {0};
    decide(&st, input(5, 6000, 0)); /* → 20 (max) */
    CHECK_EQ_INT(st.desired, 20);
    struct rlb_scaling_input in = input(5, 6000, 1000); /* inside both cooldowns */
    in.max = 8;
    struct rlb_scaling_decision d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 8);
    CHECK_EQ_INT(d.action, RLB_SCALING_IN);
    CHECK(strstr(d.reason, "above max") != NULL);
    in.min = in.max = 12;
    in.now_ms = 2000;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 12);
    CHECK_EQ_INT(d.action, RLB_SCALING_OUT);
}

TEST(formula_tolerates_rounding)
{
    /* 3 × (600 / 3 computed in floating point) / 200 must be 3, not 4. */
    struct rlb_scaling_state st = {0};
    struct rlb_scaling_input in = input(3, 600.0 / 3.0 * (1 + 1e-15), 0);
    in.target_value = 200;
    struct rlb_scaling_decision d = decide(&st, in);
    CHECK_EQ_INT(d.computed, 3);
    CHECK(!d.changed);
    /* Just over: 3 × 201 / 200 = 3.015 → 4. */
    in.metric = 201;
    d = decide(&st, in);
    CHECK_EQ_INT(d.desired, 4);
}

/* ---- the advisor on a snapshot -------------------------------------------------------------- */

static char hook_out[64];

static struct rlb_snapshot *build_snapshot(const char *hook)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "listeners:\n"
             "  - name: public\n"
             "    listen: \"127.0.0.1:18090\"\n"
             "    protocol: HTTP\n"
             "    default_action:\n"
             "      forward: { target_groups: [ { name: web } ] }\n"
             "target_groups:\n"
             "  - name: web\n"
             "    targets: [127.0.0.1:9001, 127.0.0.1:9002]\n"
             "    scaling: { target_value: 10, min: 1, max: 8, scale_out_cooldown: 0s,\n"
             "               scale_in_cooldown: 0s, hook: \"%s\" }\n"
             "  - name: plain\n"
             "    health_check: { enabled: false }\n"
             "    targets: [127.0.0.1:9101]\n"
             "    scaling: { target_value: 100, max: 3 }\n",
             hook);
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("test.yaml", text, strlen(text), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    rlb_config_errors_free(&errs);
    return cfg ? rlb_snapshot_build(cfg, NULL, 1, 1) : NULL;
}

static void add_requests(struct rlb_metrics_shard *s, const struct rlb_snapshot *snap, int n)
{
    uint32_t lid = rlb_metrics_listener_id("public"), gid = rlb_metrics_group_id("web");
    for (int i = 0; i < n; i++)
        rlb_metrics_request(s, lid, gid, snap->groups[0].targets[i % 2]->slot);
}

/* Tick (real hooks, fake metrics clock) until no hook runs, at most 10 s of real time. */
static bool wait_hooks(const struct rlb_snapshot *snap, uint64_t now_ms)
{
    for (int i = 0; i < 1000; i++) {
        rlb_scaling_tick(snap, now_ms);
        if (rlb_scaling_hooks_running() == 0)
            return true;
        usleep(10000);
    }
    return false;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static char *scaling_json(uint64_t now_ms)
{
    struct rlb_json j;
    if (rlb_json_init(&j) < 0)
        return NULL;
    struct fy_node *root = rlb_scaling_json(&j, now_ms);
    char *text = root ? rlb_json_emit(&j, root, false) : NULL;
    rlb_json_free(&j);
    return text;
}

TEST(advisor_runs_the_hook_with_the_advice)
{
    snprintf(hook_out, sizeof(hook_out), "/tmp/ringlb-test-scaling-XXXXXX");
    int fd = mkstemp(hook_out);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    char hook[256];
    snprintf(hook, sizeof(hook),
             "echo $RINGLB_TARGET_GROUP $RINGLB_DESIRED $RINGLB_CURRENT $RINGLB_PREVIOUS "
             ">> %s; sleep 0.2",
             hook_out);
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *shard = rlb_metrics_shard_new();
    struct rlb_snapshot *snap = build_snapshot(hook);
    CHECK(snap != NULL);
    if (!snap || !shard)
        return;
    rlb_metrics_snapshot_prepare(snap);
    rlb_scaling_init();
    for (size_t k = 0; k < snap->groups[0].n_targets; k++)
        atomic_store(&snap->groups[0].targets[k]->state, RLB_TARGET_HEALTHY);

    rlb_scaling_tick(snap, 500);
    char *text = scaling_json(500);
    CHECK(text && strstr(text, "\"desired\": null") != NULL);
    CHECK(text && strstr(text, "waiting for the first complete metrics window") != NULL);
    free(text);

    /* Window 1: 60 requests over 2 healthy targets = 30 per target, target 10 → 6. */
    add_requests(shard, snap, 60);
    rlb_metrics_tick(1000);
    rlb_scaling_tick(snap, 1000);
    CHECK_EQ_INT(rlb_scaling_hooks_running(), 1);
    /* Window 2 while the hook runs: 16 requests → 2 (advice changes: delivered afterwards). */
    add_requests(shard, snap, 16);
    rlb_metrics_tick(2000);
    rlb_scaling_tick(snap, 2000);
    /* Window 3: still 16 per window... the hook gets the latest advice once. */
    CHECK(wait_hooks(snap, 2000));
    CHECK(wait_hooks(snap, 2000));
    char *out = read_file(hook_out);
    CHECK(out != NULL);
    if (out)
        CHECK_EQ_STR(out, "web 6 2 2\nweb 2 2 6\n");

    text = scaling_json(2000);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "\"target_group\": \"web\"") != NULL);
        CHECK(strstr(text, "\"desired\": 2") != NULL);
        CHECK(strstr(text, "\"metric_value\": 8") != NULL);
        CHECK(strstr(text, "\"runs\": 2") != NULL);
        CHECK(strstr(text, "\"last_exit_status\": 0") != NULL);
        /* "plain": health checks off, 1 unavailable target counts as in service. */
        CHECK(strstr(text, "\"target_group\": \"plain\"") != NULL);
        CHECK(strstr(text, "\"hook\": null") != NULL);
        CHECK(strstr(text, "web") < strstr(text, "plain"));
        free(text);
    }
    char *prom = rlb_metrics_render_string(snap, NULL);
    CHECK(prom && strstr(prom, "\nringlb_scaling_desired_targets{target_group=\"web\"} 2\n"));
    CHECK(prom && strstr(prom, "\nringlb_scaling_desired_targets{target_group=\"plain\"} 1\n"));
    CHECK(prom && strstr(prom, "# TYPE ringlb_scaling_desired_targets gauge\n"));
    free(prom);

    rlb_scaling_stop();
    rlb_snapshot_unref(snap);
    rlb_metrics_shutdown();
    unlink(hook_out);
}

TEST(hook_timeout_terminates_it)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *shard = rlb_metrics_shard_new();
    struct rlb_snapshot *snap = build_snapshot("sleep 30; sleep 30");
    CHECK(snap != NULL);
    if (!snap || !shard)
        return;
    rlb_metrics_snapshot_prepare(snap);
    rlb_scaling_init();
    rlb_scaling_set_hook_timeout(100);
    for (size_t k = 0; k < snap->groups[0].n_targets; k++)
        atomic_store(&snap->groups[0].targets[k]->state, RLB_TARGET_HEALTHY);
    add_requests(shard, snap, 60);
    rlb_metrics_tick(1000);
    rlb_scaling_tick(snap, 1000);
    CHECK_EQ_INT(rlb_scaling_hooks_running(), 1);
    rlb_scaling_tick(snap, 1050);          /* not yet */
    CHECK_EQ_INT(rlb_scaling_hooks_running(), 1);
    rlb_scaling_tick(snap, 1100);          /* SIGTERM to the hook's process group */
    CHECK(wait_hooks(snap, 1100));
    char *text = scaling_json(1100);
    CHECK(text && strstr(text, "\"timeouts\": 1") != NULL);
    CHECK(text && strstr(text, "\"last_signal\": 15") != NULL);
    CHECK(text && strstr(text, "\"failures\": 1") != NULL);
    free(text);
    rlb_scaling_set_hook_timeout(0);
    rlb_scaling_stop();
    rlb_snapshot_unref(snap);
    rlb_metrics_shutdown();
}

int main(void)
{
    RUN(first_decision_at_target_holds);
    RUN(scale_out_at_once_then_cooldown);
    RUN(clamped_to_min_and_max);
    RUN(scale_in_needs_ten_percent_margin);
    RUN(scale_in_cooldown_from_start_and_from_last_change);
    RUN(advice_above_current_is_not_lowered_while_load_is_high);
    RUN(no_healthy_target_uses_registered_and_never_scales_in);
    RUN(no_registered_target);
    RUN(bounds_changed_by_reload);
    RUN(formula_tolerates_rounding);
    RUN(advisor_runs_the_hook_with_the_advice);
    RUN(hook_timeout_terminates_it);
    return TEST_SUMMARY();
}
