/* Unit tests for the metrics engine (src/metrics.c): exact sums across concurrently written
 * shards, windows on a fake clock, RequestCountPerTarget, the histogram, the Prometheus text
 * (parsed back) and the per-group JSON (parsed back with libfyaml). */
#include <libfyaml.h>
#include <pthread.h>
#include <stdlib.h>

#include "ringlb/config.h"
#include "ringlb/metrics.h"
#include "ringlb/snapshot.h"
#include "test.h"

static const char cfg_text[] =
    "listeners:\n"
    "  - name: public\n"
    "    listen: \"127.0.0.1:18080\"\n"
    "    protocol: HTTP\n"
    "    rules:\n"
    "      - priority: 10\n"
    "        conditions: { path_pattern: [\"/b/*\"] }\n"
    "        action: { forward: { target_groups: [ { name: blue, weight: 1 } ] } }\n"
    "    default_action:\n"
    "      forward: { target_groups: [ { name: green } ] }\n"
    "  - name: internal\n"
    "    listen: \"127.0.0.1:18081\"\n"
    "    protocol: HTTP\n"
    "    default_action:\n"
    "      forward: { target_groups: [ { name: blue } ] }\n"
    "target_groups:\n"
    "  - name: blue\n"
    "    targets: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003]\n"
    "  - name: green\n"
    "    health_check: { enabled: false }\n"
    "    targets: [127.0.0.1:9101]\n";

static struct rlb_snapshot *build_snapshot(const char *text, const struct rlb_snapshot *prev)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("test.yaml", text, strlen(text), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    rlb_config_errors_free(&errs);
    if (!cfg)
        return NULL;
    return rlb_snapshot_build(cfg, prev, 4, 1);
}

static const struct rlb_group *find_group(const struct rlb_snapshot *s, const char *name)
{
    for (size_t g = 0; g < s->cfg->n_target_groups; g++)
        if (strcmp(s->groups[g].cfg->name, name) == 0)
            return &s->groups[g];
    return NULL;
}

/* The value of the series written exactly as `series` (name and labels) in Prometheus text,
 * or -1 when absent. */
static double prom_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = eol ? eol + 1 : NULL;
    }
    return -1;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len == n && strncmp(p, line, n) == 0)
            return true;
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* Every line is a comment or `name{labels} value` with a parseable value. */
static bool prom_well_formed(const char *text)
{
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            return false;
        if (*p != '#') {
            const char *sp = memrchr(p, ' ', (size_t)(eol - p));
            if (!sp || sp == p)
                return false;
            char *end;
            strtod(sp + 1, &end);
            if (end != eol)
                return false;
        }
        p = eol + 1;
    }
    return true;
}

/* ---- concurrent writers, exact totals ---------------------------------------------------- */

#define N_THREADS 4
#define N_ITER 200000

static _Atomic int writers_done;

struct writer_arg {
    struct rlb_metrics_shard *shard;
    uint32_t lid, gid[2], slots[3];
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    for (uint32_t i = 0; i < N_ITER; i++) {
        uint32_t g = a->gid[i & 1];
        rlb_metrics_request(a->shard, a->lid, g, a->slots[i % 3]);
        rlb_metrics_target_response(a->shard, g, 200 + (int)(i % 4) * 100, i % 3000);
        if (i % 10 == 0)
            rlb_metrics_lb_response(a->shard, a->lid, g, 502);
        rlb_metrics_conn_open(a->shard, RLB_METRICS_CLIENT);
        rlb_metrics_bytes(a->shard, 100);
        rlb_metrics_conn_close(a->shard, RLB_METRICS_CLIENT);
    }
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

TEST(concurrent_shards_sum_exactly)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_snapshot *snap = build_snapshot(cfg_text, NULL);
    CHECK(snap != NULL);
    if (!snap)
        return;
    struct rlb_metrics_shard *shards[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        shards[i] = rlb_metrics_shard_new();
        CHECK(shards[i] != NULL);
    }
    CHECK_EQ_INT(rlb_metrics_snapshot_prepare(snap), 0);
    const struct rlb_group *blue = find_group(snap, "blue");
    struct writer_arg args[N_THREADS];
    pthread_t th[N_THREADS];
    atomic_store(&writers_done, 0);
    for (int i = 0; i < N_THREADS; i++) {
        args[i].shard = shards[i];
        args[i].lid = rlb_metrics_listener_id("public");
        args[i].gid[0] = rlb_metrics_group_id("blue");
        args[i].gid[1] = rlb_metrics_group_id("green");
        for (int k = 0; k < 3; k++)
            args[i].slots[k] = blue->targets[k]->slot;
        pthread_create(&th[i], NULL, writer, &args[i]);
    }
    /* Render while the workers write: well-formed and never decreasing. */
    double last = 0;
    for (int r = 0; r < 5 || atomic_load(&writers_done) < N_THREADS; r++) {
        char *text = rlb_metrics_render_string(snap, NULL);
        CHECK(text != NULL);
        if (!text)
            break;
        CHECK(prom_well_formed(text));
        double v = prom_value(text, "ringlb_requests_total{listener=\"public\","
                                    "target_group=\"blue\"}");
        CHECK(v >= last);
        last = v;
        free(text);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);

    char *text = rlb_metrics_render_string(snap, NULL);
    CHECK(text != NULL);
    if (!text)
        return;
    const double total = (double)N_THREADS * N_ITER;
    CHECK(prom_value(text, "ringlb_requests_total{listener=\"public\",target_group=\"blue\"}") ==
          total / 2);
    CHECK(prom_value(text, "ringlb_requests_total{listener=\"public\",target_group=\"green\"}") ==
          total / 2);
    /* (internal, blue) is a pair of the snapshot, never used: 0. */
    CHECK(prom_value(text, "ringlb_requests_total{listener=\"internal\",target_group=\"blue\"}") ==
          0);
    double per_target = 0;
    for (int k = 0; k < 3; k++) {
        char series[256];
        snprintf(series, sizeof(series),
                 "ringlb_target_requests_total{target_group=\"blue\",target=\"%s\"}",
                 blue->targets[k]->name);
        double v = prom_value(text, series);
        CHECK(v > 0);
        per_target += v;
    }
    CHECK(per_target == total);
    CHECK(prom_value(text, "ringlb_target_response_seconds_count{target_group=\"blue\"}") ==
          total / 2);
    CHECK(prom_value(text, "ringlb_target_response_seconds_bucket{target_group=\"blue\","
                           "le=\"+Inf\"}") == total / 2);
    CHECK(prom_value(text, "ringlb_target_responses_total{target_group=\"blue\",class=\"2xx\"}") ==
          total / 4);
    CHECK(prom_value(text, "ringlb_target_responses_total{target_group=\"green\",class=\"3xx\"}") ==
          total / 4);
    CHECK(prom_value(text, "ringlb_lb_responses_total{listener=\"public\",code=\"502\"}") ==
          total / 10);
    CHECK(prom_value(text, "ringlb_lb_responses_total{listener=\"public\",code=\"other\"}") == 0);
    CHECK(prom_value(text, "ringlb_new_connections_total{side=\"client\"}") == total);
    CHECK(prom_value(text, "ringlb_active_connections{side=\"client\"}") == 0);
    CHECK(prom_value(text, "ringlb_processed_bytes_total") == total * 100);
    CHECK(prom_value(text, "ringlb_metrics_lost_total") == 0);
    CHECK(has_line(text, "# TYPE ringlb_target_response_seconds histogram"));
    CHECK(has_line(text, "# TYPE ringlb_requests_total counter"));
    CHECK(has_line(text, "# TYPE ringlb_healthy_targets gauge"));
    CHECK(strstr(text, "# HELP ringlb_requests_total RequestCount") != NULL);
    CHECK(strstr(text, "# HELP ringlb_target_response_seconds TargetResponseTime") != NULL);
    free(text);
    rlb_snapshot_unref(snap);
    rlb_metrics_shutdown();
}

/* Pairs and chunks nobody prepared are created lock-free by the writers on first use. */
static void *unprepared_writer(void *p)
{
    struct writer_arg *a = p;
    for (uint32_t i = 0; i < 50000; i++)
        rlb_metrics_request(a->shard, a->lid, a->gid[i & 1], a->slots[i % 3]);
    return NULL;
}

TEST(unprepared_pairs_race)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct writer_arg args[N_THREADS];
    pthread_t th[N_THREADS];
    uint32_t lid = rlb_metrics_listener_id("race"), g0 = rlb_metrics_group_id("ra"),
             g1 = rlb_metrics_group_id("rb");
    for (int i = 0; i < N_THREADS; i++) {
        args[i].shard = rlb_metrics_shard_new();
        args[i].lid = lid;
        args[i].gid[0] = g0;
        args[i].gid[1] = g1;
        for (int k = 0; k < 3; k++)
            args[i].slots[k] = 1000 + (uint32_t)k * 64; /* three different chunks */
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_create(&th[i], NULL, unprepared_writer, &args[i]);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    char *text = rlb_metrics_render_string(NULL, NULL);
    CHECK(text != NULL);
    if (text) {
        CHECK(prom_value(text, "ringlb_requests_total{listener=\"race\",target_group=\"ra\"}") ==
              N_THREADS * 25000);
        CHECK(prom_value(text, "ringlb_requests_total{listener=\"race\",target_group=\"rb\"}") ==
              N_THREADS * 25000);
        CHECK(prom_value(text, "ringlb_metrics_lost_total") == 0);
        /* One series per pair, however many threads raced to insert it. */
        const char *ra = "ringlb_requests_total{listener=\"race\",target_group=\"ra\"}";
        const char *first = strstr(text, ra);
        CHECK(first && strstr(first + 1, ra) == NULL);
        free(text);
    }
    rlb_metrics_shutdown();
}

/* ---- windows on a fake clock, RequestCountPerTarget -------------------------------------- */

static void add_requests(struct rlb_metrics_shard *s, uint32_t lid, uint32_t gid, uint32_t slot,
                         int n)
{
    for (int i = 0; i < n; i++)
        rlb_metrics_request(s, lid, gid, slot);
}

TEST(windows_with_fake_clock)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 10000), 0);
    struct rlb_metrics_shard *s = rlb_metrics_shard_new();
    uint32_t lid = rlb_metrics_listener_id("l"), gid = rlb_metrics_group_id("g");
    CHECK_EQ_INT(lid, rlb_metrics_listener_id("l")); /* stable */
    struct rlb_metrics_window w;
    rlb_metrics_group_window("g", &w);
    CHECK(!w.complete);
    CHECK_EQ_INT(w.requests, 0);

    add_requests(s, lid, gid, 0, 10);
    rlb_metrics_target_response(s, gid, 200, 500);      /* bucket ≤ 1 ms */
    rlb_metrics_target_response(s, gid, 503, 1500000);  /* bucket ≤ 2.5 s */
    rlb_metrics_lb_response(s, lid, gid, 504);
    rlb_metrics_lb_response(s, lid, RLB_METRICS_NONE, 400); /* listener only */
    rlb_metrics_tick(10500);
    rlb_metrics_group_window("g", &w);
    CHECK(!w.complete);
    rlb_metrics_tick(11000);                               /* boundary 1: [10000, 11000] */
    rlb_metrics_group_window("g", &w);
    CHECK(w.complete);
    CHECK_EQ_INT(w.window_ms, 1000);
    CHECK_EQ_INT(w.requests, 10);
    CHECK_EQ_INT(w.target[0], 1);
    CHECK_EQ_INT(w.target[3], 1);
    CHECK_EQ_INT(w.elb[0], 0);
    CHECK_EQ_INT(w.elb[1], 1);
    CHECK_EQ_INT(w.rt_count, 2);
    CHECK(w.rt_avg > 0.75 && w.rt_avg < 0.7503);            /* (0.0005 + 1.5) / 2 */

    add_requests(s, lid, gid, 0, 6);
    rlb_metrics_tick(11999);
    rlb_metrics_group_window("g", &w);
    CHECK_EQ_INT(w.requests, 10);                          /* still the last complete one */
    rlb_metrics_tick(12000);
    rlb_metrics_group_window("g", &w);
    CHECK_EQ_INT(w.requests, 6);
    CHECK_EQ_INT(w.rt_count, 0);
    CHECK(w.rt_avg == 0);

    /* RequestCountPerTarget: ÷ healthy, ÷ registered when none healthy, 0 with none. */
    CHECK(rlb_metrics_request_count_per_target("g", 3, 3) == 2.0);
    CHECK(rlb_metrics_request_count_per_target("g", 2, 3) == 3.0);
    CHECK(rlb_metrics_request_count_per_target("g", 1, 3) == 6.0);
    CHECK(rlb_metrics_request_count_per_target("g", 0, 3) == 2.0);
    CHECK(rlb_metrics_request_count_per_target("g", 0, 0) == 0.0);
    CHECK(rlb_metrics_request_count_per_target("unknown", 1, 1) == 0.0);

    /* A late main thread: the window is longer and the next boundary realigns. */
    add_requests(s, lid, gid, 0, 4);
    rlb_metrics_tick(14500);
    rlb_metrics_group_window("g", &w);
    CHECK_EQ_INT(w.requests, 4);
    CHECK_EQ_INT(w.window_ms, 2500);
    rlb_metrics_tick(15000);
    rlb_metrics_group_window("g", &w);
    CHECK_EQ_INT(w.requests, 4);                           /* next boundary is 15500 */
    rlb_metrics_tick(15500);
    rlb_metrics_group_window("g", &w);
    CHECK_EQ_INT(w.requests, 0);

    /* A shorter window after a reload takes effect from the last boundary. */
    rlb_metrics_set_window(200);
    add_requests(s, lid, gid, 0, 1);
    rlb_metrics_tick(15700);
    rlb_metrics_group_window("g", &w);
    CHECK_EQ_INT(w.requests, 1);
    CHECK_EQ_INT(w.window_ms, 200);
    rlb_metrics_shutdown();
}

TEST(request_count_per_target_from_snapshot)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *s = rlb_metrics_shard_new();
    struct rlb_snapshot *snap = build_snapshot(cfg_text, NULL);
    CHECK(snap != NULL);
    if (!snap)
        return;
    rlb_metrics_snapshot_prepare(snap);
    const struct rlb_group *blue = find_group(snap, "blue");
    uint32_t lid = rlb_metrics_listener_id("public"), gid = rlb_metrics_group_id("blue");
    add_requests(s, lid, gid, blue->targets[0]->slot, 12);
    rlb_metrics_tick(1000);
    static const double expect[4] = {4.0, 12.0, 6.0, 4.0}; /* 0 healthy: ÷ 3 registered */
    for (int healthy = 0; healthy <= 3; healthy++) {
        for (int k = 0; k < 3; k++)
            atomic_store(&blue->targets[k]->state,
                         k < healthy ? RLB_TARGET_HEALTHY : RLB_TARGET_UNHEALTHY);
        char *text = rlb_metrics_render_string(snap, NULL);
        CHECK(text != NULL);
        if (!text)
            continue;
        double v = prom_value(text, "ringlb_request_count_per_target{target_group=\"blue\"}");
        if (v != expect[healthy])
            fprintf(stderr, "healthy %d: %g, expected %g\n", healthy, v, expect[healthy]);
        CHECK(v == expect[healthy]);
        CHECK(prom_value(text, "ringlb_healthy_targets{target_group=\"blue\"}") == healthy);
        CHECK(prom_value(text, "ringlb_unhealthy_targets{target_group=\"blue\"}") ==
              3 - healthy);
        free(text);
    }
    /* Draining targets are not registered for the division. */
    atomic_store(&blue->targets[0]->state, RLB_TARGET_DRAINING);
    atomic_store(&blue->targets[1]->state, RLB_TARGET_UNHEALTHY);
    atomic_store(&blue->targets[2]->state, RLB_TARGET_UNHEALTHY);
    uint32_t h, u, r;
    rlb_metrics_group_counts(blue, &h, &u, &r);
    CHECK_EQ_INT(h, 0);
    CHECK_EQ_INT(u, 2);
    CHECK_EQ_INT(r, 2);
    /* green has health checks off: every target "unavailable", divided by registered. */
    const struct rlb_group *green = find_group(snap, "green");
    rlb_metrics_group_counts(green, &h, &u, &r);
    CHECK_EQ_INT(h, 0);
    CHECK_EQ_INT(r, 1);
    rlb_snapshot_unref(snap);
    rlb_metrics_shutdown();
}

/* ---- histogram ---------------------------------------------------------------------------- */

TEST(histogram_quantiles)
{
    uint64_t b[RLB_METRICS_N_BUCKETS] = {0};
    CHECK(rlb_metrics_quantile(b, 0.5) == 0);
    b[0] = 100;                               /* 100 responses in (0, 1 ms] */
    double p50 = rlb_metrics_quantile(b, 0.5);
    CHECK(p50 > 0.000499 && p50 < 0.000501);
    b[0] = 50;
    b[2] = 50;                                /* 50 in (2.5 ms, 5 ms] */
    double p90 = rlb_metrics_quantile(b, 0.9);
    CHECK(p90 > 0.00449 && p90 < 0.00451);    /* 2.5 + 2.5 × 40/50 ms */
    p50 = rlb_metrics_quantile(b, 0.5);
    CHECK(p50 > 0.000999 && p50 < 0.001001);
    memset(b, 0, sizeof(b));
    b[RLB_METRICS_N_BUCKETS - 1] = 3;         /* beyond 60 s: the lower bound */
    CHECK(rlb_metrics_quantile(b, 0.99) == 60.0);
    CHECK_EQ_INT(rlb_metrics_bucket_index(0), 0);
    CHECK_EQ_INT(rlb_metrics_bucket_index(1000), 0);
    CHECK_EQ_INT(rlb_metrics_bucket_index(1001), 1);
    CHECK_EQ_INT(rlb_metrics_bucket_index(60000000), RLB_METRICS_N_BUCKETS - 2);
    CHECK_EQ_INT(rlb_metrics_bucket_index(60000001), RLB_METRICS_N_BUCKETS - 1);

    /* The histogram's count equals the requests timed; buckets are cumulative in the text. */
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *s = rlb_metrics_shard_new();
    uint32_t gid = rlb_metrics_group_id("h");
    for (int i = 0; i < 1000; i++)
        rlb_metrics_target_response(s, gid, 200, (uint64_t)i * 1000); /* 0..999 ms */
    char *text = rlb_metrics_render_string(NULL, NULL);
    CHECK(text != NULL);
    if (text) {
        CHECK(prom_value(text, "ringlb_target_response_seconds_count{target_group=\"h\"}") ==
              1000);
        CHECK(prom_value(text, "ringlb_target_response_seconds_bucket{target_group=\"h\","
                               "le=\"0.001\"}") == 2);     /* 0 and 1 ms */
        CHECK(prom_value(text, "ringlb_target_response_seconds_bucket{target_group=\"h\","
                               "le=\"0.1\"}") == 101);
        CHECK(prom_value(text, "ringlb_target_response_seconds_bucket{target_group=\"h\","
                               "le=\"1\"}") == 1000);
        CHECK(has_line(text, "ringlb_target_response_seconds_sum{target_group=\"h\"} "
                             "499.500000"));
        free(text);
    }
    rlb_metrics_tick(1000);
    struct rlb_metrics_window w;
    rlb_metrics_group_window("h", &w);
    CHECK_EQ_INT(w.rt_count, 1000);
    CHECK(w.rt_p50 > 0.45 && w.rt_p50 < 0.55);
    CHECK(w.rt_p99 > 0.9 && w.rt_p99 <= 1.0);
    rlb_metrics_shutdown();
}

/* ---- Prometheus details ------------------------------------------------------------------- */

TEST(prometheus_escaping_and_lost)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *s = rlb_metrics_shard_new();
    uint32_t lid = rlb_metrics_listener_id("we\"ird\\name\nx");
    rlb_metrics_rejected_conn(s, lid);
    rlb_metrics_tls_error(s, lid);
    rlb_metrics_rule_evaluations(s, lid, 7);
    rlb_metrics_desync(s, lid, RLB_METRICS_DESYNC_AMBIGUOUS);
    rlb_metrics_desync(s, lid, RLB_METRICS_DESYNC_COMPLIANT);
    rlb_metrics_redirect(s);
    rlb_metrics_fixed_response(s);
    rlb_metrics_fixed_response(s);
    uint32_t gid = rlb_metrics_group_id("g");
    rlb_metrics_target_conn_error(s, gid);
    rlb_metrics_non_sticky(s, gid);
    rlb_metrics_unhealthy_routing(s, gid);
    rlb_metrics_unhealthy_routing(s, gid);
    rlb_metrics_lb_response(s, lid, RLB_METRICS_NONE, 418);
    /* Increments with no id are counted as lost, never a crash. */
    rlb_metrics_request(s, RLB_METRICS_NONE, RLB_METRICS_NONE, UINT32_MAX);
    rlb_metrics_conn_open(s, RLB_METRICS_TARGET);
    char *text = rlb_metrics_render_string(NULL, NULL);
    CHECK(text != NULL);
    if (!text)
        return;
    CHECK(prom_well_formed(text));
    const char *l = "{listener=\"we\\\"ird\\\\name\\nx\"}";
    char series[256];
    snprintf(series, sizeof(series), "ringlb_rejected_connections_total%s", l);
    CHECK(prom_value(text, series) == 1);
    snprintf(series, sizeof(series), "ringlb_client_tls_negotiation_errors_total%s", l);
    CHECK(prom_value(text, series) == 1);
    snprintf(series, sizeof(series), "ringlb_rule_evaluations_total%s", l);
    CHECK(prom_value(text, series) == 7);
    CHECK(prom_value(text, "ringlb_desync_requests_total{listener=\"we\\\"ird\\\\name\\nx\","
                           "classification=\"Ambiguous\"}") == 1);
    CHECK(prom_value(text, "ringlb_desync_requests_total{listener=\"we\\\"ird\\\\name\\nx\","
                           "classification=\"Compliant\"}") == -1);
    CHECK(prom_value(text, "ringlb_lb_responses_total{listener=\"we\\\"ird\\\\name\\nx\","
                           "code=\"other\"}") == 1);
    CHECK(prom_value(text, "ringlb_redirects_total") == 1);
    CHECK(prom_value(text, "ringlb_fixed_responses_total") == 2);
    CHECK(prom_value(text, "ringlb_target_connection_errors_total{target_group=\"g\"}") == 1);
    CHECK(prom_value(text, "ringlb_non_sticky_requests_total{target_group=\"g\"}") == 1);
    CHECK(prom_value(text, "ringlb_unhealthy_routing_requests_total{target_group=\"g\"}") == 2);
    CHECK(prom_value(text, "ringlb_active_connections{side=\"target\"}") == 1);
    CHECK(prom_value(text, "ringlb_new_connections_total{side=\"target\"}") == 1);
    CHECK(prom_value(text, "ringlb_metrics_lost_total") == 3);
    free(text);
    rlb_metrics_shutdown();
}

/* A target slot reused by another target starts its series at 0. */
TEST(reused_target_slot_starts_at_zero)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *s = rlb_metrics_shard_new();
    static const char a[] = "listeners:\n"
                            "  - { name: l, listen: \"127.0.0.1:18090\", protocol: HTTP,\n"
                            "      default_action: { forward: { target_groups: [{name: g}] } } }\n"
                            "target_groups:\n"
                            "  - { name: g, deregistration_delay: 0s,\n"
                            "      targets: [127.0.0.1:7001] }\n";
    static const char b[] = "listeners:\n"
                            "  - { name: l, listen: \"127.0.0.1:18090\", protocol: HTTP,\n"
                            "      default_action: { forward: { target_groups: [{name: g}] } } }\n"
                            "target_groups:\n"
                            "  - { name: g, deregistration_delay: 0s,\n"
                            "      targets: [127.0.0.1:7002] }\n";
    static const char c[] = "listeners:\n"
                            "  - { name: l, listen: \"127.0.0.1:18090\", protocol: HTTP,\n"
                            "      default_action: { forward: { target_groups: [{name: g}] } } }\n"
                            "target_groups:\n"
                            "  - { name: g, deregistration_delay: 0s,\n"
                            "      targets: [127.0.0.1:7002, 127.0.0.1:7003] }\n";
    struct rlb_snapshot *s1 = build_snapshot(a, NULL);
    CHECK(s1 != NULL);
    if (!s1)
        return;
    rlb_snapshot_set_current(s1);
    rlb_metrics_snapshot_prepare(s1);
    uint32_t old_slot = s1->groups[0].targets[0]->slot;
    uint32_t lid = rlb_metrics_listener_id("l"), gid = rlb_metrics_group_id("g");
    add_requests(s, lid, gid, old_slot, 5);
    struct rlb_snapshot *s2 = build_snapshot(b, s1);
    rlb_metrics_snapshot_prepare(s2);
    rlb_snapshot_set_current(s2);        /* frees s1 and its target: the slot is free */
    struct rlb_snapshot *s3 = build_snapshot(c, s2);
    rlb_metrics_snapshot_prepare(s3);
    rlb_snapshot_set_current(s3);
    const struct rlb_target *t3 = s3->groups[0].targets[1];
    CHECK_EQ_INT(t3->slot, old_slot);
    char *text = rlb_metrics_render_string(s3, NULL);
    CHECK(text != NULL);
    if (text) {
        CHECK(prom_value(text, "ringlb_target_requests_total{target_group=\"g\","
                               "target=\"127.0.0.1:7003\"}") == 0);
        CHECK(prom_value(text, "ringlb_target_requests_total{target_group=\"g\","
                               "target=\"127.0.0.1:7001\"}") == -1);
        /* Group and pair counters continue across the reloads. */
        CHECK(prom_value(text, "ringlb_requests_total{listener=\"l\",target_group=\"g\"}") == 5);
        free(text);
    }
    add_requests(s, lid, gid, old_slot, 2);
    text = rlb_metrics_render_string(s3, NULL);
    if (text) {
        CHECK(prom_value(text, "ringlb_target_requests_total{target_group=\"g\","
                               "target=\"127.0.0.1:7003\"}") == 2);
        free(text);
    }
    rlb_snapshot_set_current(NULL);
    rlb_metrics_shutdown();
}

/* ---- JSON --------------------------------------------------------------------------------- */

static const char *json_scalar(struct fy_node *root, const char *key)
{
    struct fy_node *n = fy_node_mapping_lookup_by_string(root, key, FY_NT);
    return n && fy_node_is_scalar(n) ? fy_node_get_scalar0(n) : NULL;
}

TEST(group_json_is_valid)
{
    CHECK_EQ_INT(rlb_metrics_init(1000, 0), 0);
    struct rlb_metrics_shard *s = rlb_metrics_shard_new();
    struct rlb_snapshot *snap = build_snapshot(cfg_text, NULL);
    CHECK(snap != NULL);
    if (!snap)
        return;
    rlb_metrics_snapshot_prepare(snap);
    const struct rlb_group *blue = find_group(snap, "blue");
    const struct rlb_group *green = find_group(snap, "green");
    atomic_store(&blue->targets[0]->state, RLB_TARGET_HEALTHY);
    atomic_store(&blue->targets[1]->state, RLB_TARGET_HEALTHY);
    atomic_store(&blue->targets[2]->state, RLB_TARGET_UNHEALTHY);
    uint32_t lid = rlb_metrics_listener_id("public"), gid = rlb_metrics_group_id("blue");
    add_requests(s, lid, gid, blue->targets[0]->slot, 9);
    for (int i = 0; i < 9; i++)
        rlb_metrics_target_response(s, gid, i < 7 ? 200 : 404, 20000);
    rlb_metrics_lb_response(s, lid, gid, 502);
    rlb_metrics_tick(1000);

    char *json = rlb_metrics_group_json(blue);
    CHECK(json != NULL);
    if (!json)
        return;
    struct fy_parse_cfg pcfg = {.flags = FYPCF_JSON_FORCE};
    struct fy_document *doc = fy_document_build_from_string(&pcfg, json, FY_NT);
    CHECK(doc != NULL);
    if (!doc) {
        fprintf(stderr, "not JSON: %s\n", json);
        free(json);
        return;
    }
    struct fy_node *root = fy_document_root(doc);
    CHECK(root && fy_node_is_mapping(root));
    CHECK_EQ_STR(json_scalar(root, "RequestCount"), "9");
    CHECK_EQ_STR(json_scalar(root, "RequestCountPerTarget"), "4.5");
    CHECK_EQ_STR(json_scalar(root, "HTTPCode_Target_2XX_Count"), "7");
    CHECK_EQ_STR(json_scalar(root, "HTTPCode_Target_4XX_Count"), "2");
    CHECK_EQ_STR(json_scalar(root, "HTTPCode_ELB_5XX_Count"), "1");
    CHECK_EQ_STR(json_scalar(root, "HTTPCode_ELB_4XX_Count"), "0");
    CHECK_EQ_STR(json_scalar(root, "HealthyHostCount"), "2");
    CHECK_EQ_STR(json_scalar(root, "UnHealthyHostCount"), "1");
    CHECK_EQ_STR(json_scalar(root, "Complete"), "true");
    const char *avg = json_scalar(root, "TargetResponseTime");
    CHECK(avg && strtod(avg, NULL) == 0.02);
    const char *p90 = json_scalar(root, "TargetResponseTime_p90");
    CHECK(p90 && strtod(p90, NULL) > 0.01 && strtod(p90, NULL) <= 0.025);
    /* Unquoted numbers in the text. */
    CHECK(strstr(json, "\"RequestCount\": 9") != NULL || strstr(json, "\"RequestCount\":9"));
    fy_document_destroy(doc);
    free(json);

    /* No responses: response times are null, counts 0. */
    json = rlb_metrics_group_json(green);
    CHECK(json != NULL);
    if (json) {
        doc = fy_document_build_from_string(&pcfg, json, FY_NT);
        CHECK(doc != NULL);
        if (doc) {
            root = fy_document_root(doc);
            CHECK_EQ_STR(json_scalar(root, "RequestCount"), "0");
            CHECK_EQ_STR(json_scalar(root, "TargetResponseTime"), "null");
            fy_document_destroy(doc);
        }
        CHECK(strstr(json, "null") != NULL);
        free(json);
    }
    rlb_snapshot_unref(snap);
    rlb_metrics_shutdown();
}

int main(void)
{
    RUN(concurrent_shards_sum_exactly);
    RUN(unprepared_pairs_race);
    RUN(windows_with_fake_clock);
    RUN(request_count_per_target_from_snapshot);
    RUN(histogram_quantiles);
    RUN(prometheus_escaping_and_lost);
    RUN(reused_target_slot_starts_at_zero);
    RUN(group_json_is_valid);
    return TEST_SUMMARY();
}
