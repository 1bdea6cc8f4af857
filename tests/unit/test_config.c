/* test_config.c — unit tests of the configuration loader (src/config.c).
 *
 * Covers the duration and address parsers, every default, the reference and demo files, JSON
 * input, each class of validation error with its exact FILE:LINE:COL, error collection, the ALB
 * quota report and the `ringlb check` command. Runs from tests/unit (fixtures are relative).
 */
#include "ringlb/config.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#define MS_S 1000ULL

/* The smallest valid file; the error cases below are built by hand around it. */
static const char *const MINIMAL = "listeners:\n"
                                   "  - name: l\n"
                                   "    listen: 127.0.0.1:8080\n"
                                   "    default_action: {fixed_response: {status_code: 404}}\n";

static struct rlb_config *load(const char *text, struct rlb_config_errors *errs)
{
    return rlb_config_load_string("t.yaml", text, strlen(text), errs);
}

/* True when some message of `errs` starts with "t.yaml:<loc>: " and contains `needle`. */
static bool has_error(const struct rlb_config_errors *errs, const char *loc, const char *needle)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "t.yaml:%s: ", loc);
    for (size_t i = 0; i < errs->n; i++) {
        if (strncmp(errs->msgs[i], prefix, strlen(prefix)) == 0 &&
            strstr(errs->msgs[i], needle)) {
            return true;
        }
    }
    return false;
}

static void dump_errors(const struct rlb_config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        fprintf(stderr, "    got: %s\n", errs->msgs[i]);
    }
}

/* Load `text`, expect failure with an error at `loc` containing `needle`. */
static bool expect_error(const char *text, const char *loc, const char *needle)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(text, &errs);
    bool ok = cfg == NULL && has_error(&errs, loc, needle);
    if (!ok) {
        fprintf(stderr, "  expected error %s: ...%s...\n", loc, needle);
        dump_errors(&errs);
    }
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
    return ok;
}

static uint16_t port_of(const struct rlb_sockaddr *a)
{
    if (a->ss.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

TEST(test_duration_parse)
{
    uint64_t ms = 0;
    CHECK(rlb_duration_parse("250ms", &ms) == 0 && ms == 250);
    CHECK(rlb_duration_parse("5s", &ms) == 0 && ms == 5 * MS_S);
    CHECK(rlb_duration_parse("10m", &ms) == 0 && ms == 600 * MS_S);
    CHECK(rlb_duration_parse("1h", &ms) == 0 && ms == 3600 * MS_S);
    CHECK(rlb_duration_parse("1d", &ms) == 0 && ms == 86400 * MS_S);
    CHECK(rlb_duration_parse("30", &ms) == 0 && ms == 30 * MS_S);
    CHECK(rlb_duration_parse("0", &ms) == 0 && ms == 0);
    CHECK(rlb_duration_parse("0s", &ms) == 0 && ms == 0);
    CHECK_EQ_INT(rlb_duration_parse("-5s", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("s", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("5x", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("5 s", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse(" 5s", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("1.5s", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("+5", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("5sec", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("99999999999999999999", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse("18446744073709551d", &ms), -EINVAL);
    CHECK_EQ_INT(rlb_duration_parse(NULL, &ms), -EINVAL);
}

TEST(test_sockaddr_parse)
{
    struct rlb_sockaddr a;
    CHECK(rlb_sockaddr_parse("127.0.0.1:8080", &a) == 0);
    CHECK_EQ_INT(a.ss.ss_family, AF_INET);
    CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in));
    CHECK_EQ_INT(port_of(&a), 8080);
    CHECK(rlb_sockaddr_parse("0.0.0.0:1", &a) == 0 && port_of(&a) == 1);
    CHECK(rlb_sockaddr_parse("[::1]:65535", &a) == 0);
    CHECK_EQ_INT(a.ss.ss_family, AF_INET6);
    CHECK_EQ_INT(a.len, sizeof(struct sockaddr_in6));
    CHECK_EQ_INT(port_of(&a), 65535);
    CHECK(rlb_sockaddr_parse("[::]:443", &a) == 0);
    CHECK_EQ_INT(rlb_sockaddr_parse("127.0.0.1:0", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("127.0.0.1:65536", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("127.0.0.1", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("127.0.0.1:", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("127.0.0.1:80x", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("localhost:80", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("::1:80", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("[127.0.0.1]:80", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("[::1]80", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("256.0.0.1:80", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse(":80", &a), -EINVAL);
    CHECK_EQ_INT(rlb_sockaddr_parse("", &a), -EINVAL);
}

TEST(test_defaults)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(MINIMAL, &errs);
    CHECK(cfg != NULL);
    CHECK_EQ_INT(errs.n, 0);
    if (!cfg) {
        dump_errors(&errs);
        rlb_config_errors_free(&errs);
        return;
    }
    CHECK_EQ_STR(cfg->path, "t.yaml");
    CHECK_EQ_INT(cfg->threads, 0);
    CHECK_EQ_INT(cfg->shutdown_timeout_ms, 30 * MS_S);
    CHECK(cfg->state_file == NULL);
    CHECK(cfg->admin.listen == NULL && cfg->admin.token_file == NULL);
    CHECK_EQ_STR(cfg->admin.canary_header, "X-Ringlb-Canary");
    CHECK(cfg->access_log.path == NULL);
    CHECK_EQ_INT(cfg->metrics.window_ms, 60 * MS_S);
    CHECK(cfg->user == NULL && cfg->stickiness_key_file == NULL);
    CHECK(!cfg->cluster.present);
    CHECK_EQ_INT(cfg->n_target_groups, 0);
    CHECK_EQ_INT(cfg->n_listeners, 1);
    const struct rlb_listener_cfg *l = &cfg->listeners[0];
    CHECK_EQ_STR(l->name, "l");
    CHECK_EQ_STR(l->listen, "127.0.0.1:8080");
    CHECK_EQ_INT(l->port, 8080);
    CHECK_EQ_INT(port_of(&l->addr), 8080);
    CHECK_EQ_INT(l->protocol, RLB_PROTO_HTTP);
    CHECK_EQ_INT(l->n_certificates, 0);
    CHECK_EQ_INT(l->idle_timeout_ms, 60 * MS_S);
    CHECK_EQ_INT(l->client_keep_alive_ms, 3600 * MS_S);
    CHECK_EQ_INT(l->header_timeout_ms, 10 * MS_S);
    CHECK_EQ_INT(l->xff, RLB_XFF_APPEND);
    CHECK(!l->xff_client_port && !l->preserve_host_header && !l->drop_invalid_header_fields);
    CHECK_EQ_INT(l->desync_mode, RLB_DESYNC_DEFENSIVE);
    CHECK_EQ_INT(l->max_connections, 0);
    CHECK_EQ_INT(l->n_rules, 0);
    CHECK_EQ_INT(l->default_action.type, RLB_ACTION_FIXED_RESPONSE);
    CHECK_EQ_INT(l->default_action.fixed.status_code, 404);
    CHECK(l->default_action.fixed.content_type == NULL);
    CHECK(l->default_action.fixed.body == NULL);
    CHECK_EQ_INT(l->loc.line, 2);
    CHECK_EQ_INT(l->loc.col, 5);
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);

    /* target-group, admin and cluster defaults */
    const char *text = "admin: {}\n"
                       "cluster: {etcd: [http://127.0.0.1:2379]}\n"
                       "listeners:\n"
                       "  - name: l\n"
                       "    listen: \"[::1]:8443\"\n"
                       "    protocol: HTTPS\n"
                       "    tls: {certificates: [{cert: c.pem, key: k.pem}]}\n"
                       "    default_action: {forward: {target_groups: [{name: tg}]}}\n"
                       "target_groups:\n"
                       "  - name: tg\n"
                       "    targets: [10.0.0.1, \"10.0.0.2:8081\", {address: \"::1\"}]\n"
                       "    health_check: {interval: 4s}\n"
                       "    scaling: {target_value: 600, max: 10}\n";
    cfg = load(text, &errs);
    CHECK(cfg != NULL);
    if (!cfg) {
        dump_errors(&errs);
        rlb_config_errors_free(&errs);
        return;
    }
    CHECK_EQ_STR(cfg->admin.listen, "127.0.0.1:9901");
    CHECK_EQ_INT(port_of(&cfg->admin.addr), 9901);
    CHECK(cfg->cluster.present);
    CHECK_EQ_STR(cfg->cluster.prefix, "/ringlb/");
    CHECK(cfg->cluster.instance != NULL && cfg->cluster.instance[0] != '\0');
    CHECK_EQ_INT(cfg->cluster.lease_ttl_ms, 5 * MS_S);
    l = &cfg->listeners[0];
    CHECK_EQ_INT(l->protocol, RLB_PROTO_HTTPS);
    CHECK_EQ_INT(l->addr.ss.ss_family, AF_INET6);
    CHECK_EQ_STR(l->security_policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
    CHECK_EQ_INT(l->n_certificates, 1);
    CHECK_EQ_STR(l->certificates[0].cert, "c.pem");
    const struct rlb_action *a = &l->default_action;
    CHECK_EQ_INT(a->type, RLB_ACTION_FORWARD);
    CHECK_EQ_INT(a->forward.n_groups, 1);
    CHECK_EQ_INT(a->forward.groups[0].weight, 1);
    CHECK(!a->forward.groups[0].weight_set);
    CHECK_EQ_INT(a->forward.groups[0].group_index, 0);
    CHECK(!a->forward.stickiness_enabled);
    CHECK_EQ_INT(a->forward.stickiness_duration_ms, 86400 * MS_S);
    const struct rlb_target_group_cfg *tg = &cfg->target_groups[0];
    CHECK_EQ_INT(tg->protocol, RLB_PROTO_HTTP);
    CHECK_EQ_INT(tg->port, 80);
    CHECK_EQ_INT(tg->algorithm, RLB_ALG_ROUND_ROBIN);
    CHECK_EQ_INT(tg->deregistration_delay_ms, 300 * MS_S);
    CHECK_EQ_INT(tg->slow_start_ms, 0);
    CHECK(!tg->stickiness.enabled);
    CHECK_EQ_STR(tg->stickiness.type, "lb_cookie");
    CHECK_EQ_INT(tg->stickiness.duration_ms, 86400 * MS_S);
    CHECK(tg->health_check.enabled);
    CHECK_EQ_STR(tg->health_check.path, "/");
    CHECK_EQ_INT(tg->health_check.port, 0);
    CHECK_EQ_INT(tg->health_check.interval_ms, 4 * MS_S);
    CHECK_EQ_INT(tg->health_check.timeout_ms, 2 * MS_S); /* half of a short interval */
    CHECK_EQ_INT(tg->health_check.healthy_threshold, 5);
    CHECK_EQ_INT(tg->health_check.unhealthy_threshold, 2);
    CHECK_EQ_STR(tg->health_check.matcher, "200");
    CHECK_EQ_INT(tg->health_check.n_match_ranges, 1);
    CHECK(tg->health_check.match_ranges[0].lo == 200 && tg->health_check.match_ranges[0].hi == 200);
    CHECK_EQ_INT(tg->n_targets, 3);
    CHECK_EQ_STR(tg->targets[0].id, "10.0.0.1");
    CHECK_EQ_INT(tg->targets[0].port, 80);
    CHECK_EQ_INT(port_of(&tg->targets[0].addr), 80);
    CHECK_EQ_STR(tg->targets[1].id, "10.0.0.2");
    CHECK_EQ_INT(tg->targets[1].port, 8081);
    CHECK_EQ_STR(tg->targets[2].id, "::1");
    CHECK_EQ_INT(tg->targets[2].addr.ss.ss_family, AF_INET6);
    CHECK_EQ_INT(tg->targets[2].port, 80);
    CHECK(tg->scaling.present);
    CHECK_EQ_STR(tg->scaling.metric, "request_count_per_target");
    CHECK(tg->scaling.target_value == 600.0);
    CHECK_EQ_INT(tg->scaling.min, 1);
    CHECK_EQ_INT(tg->scaling.max, 10);
    CHECK_EQ_INT(tg->scaling.scale_out_cooldown_ms, 300 * MS_S);
    CHECK_EQ_INT(tg->scaling.scale_in_cooldown_ms, 300 * MS_S);
    CHECK(tg->scaling.hook == NULL);
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

TEST(test_reference_file)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load("../../conf/ringlb.yaml", &errs);
    CHECK(cfg != NULL);
    CHECK_EQ_INT(errs.n, 0);
    if (!cfg) {
        dump_errors(&errs);
        rlb_config_errors_free(&errs);
        return;
    }
    CHECK_EQ_INT(cfg->threads, 0);
    CHECK_EQ_STR(cfg->access_log.path, "-");
    CHECK_EQ_STR(cfg->cluster.instance, "lb-a");
    CHECK_EQ_STR(cfg->cluster.auth_user, "ringlb");
    CHECK_EQ_INT(cfg->n_listeners, 2);
    const struct rlb_listener_cfg *l = &cfg->listeners[0];
    CHECK_EQ_INT(l->n_certificates, 2);
    CHECK_EQ_INT(l->n_rules, 3);
    CHECK(l->rules[0].priority == 10 && l->rules[1].priority == 20 && l->rules[2].priority == 30);
    const struct rlb_conditions *rc = &l->rules[0].conditions;
    CHECK_EQ_INT(rc->n_host_header, 2);
    CHECK_EQ_STR(rc->host_header[1], "*.api.example.com");
    CHECK_EQ_INT(rc->n_method, 3);
    CHECK_EQ_INT(rc->n_source_ip, 2);
    CHECK_EQ_INT(rc->source_ip[0].family, AF_INET);
    CHECK_EQ_INT(rc->source_ip[0].prefix, 8);
    CHECK_EQ_INT(rc->source_ip[0].addr[0], 10);
    CHECK_EQ_INT(rc->source_ip[1].family, AF_INET6);
    CHECK_EQ_INT(rc->source_ip[1].prefix, 128);
    CHECK_EQ_INT(rc->source_ip[1].addr[15], 1);
    CHECK_EQ_INT(rc->n_http_header, 1);
    CHECK_EQ_STR(rc->http_header[0].name, "X-Canary");
    CHECK_EQ_STR(rc->http_header[0].values[0], "on");
    CHECK_EQ_INT(rc->n_query_string, 2);
    CHECK_EQ_STR(rc->query_string[0].key, "version");
    CHECK(rc->query_string[1].key == NULL);
    CHECK_EQ_STR(rc->query_string[1].value, "beta");
    const struct rlb_action *a = &l->rules[0].action;
    CHECK_EQ_INT(a->type, RLB_ACTION_FORWARD);
    CHECK_EQ_INT(a->forward.n_groups, 2);
    CHECK_EQ_INT(a->forward.groups[0].weight, 95);
    CHECK_EQ_INT(a->forward.groups[1].group_index, 1);
    CHECK(a->forward.stickiness_enabled);
    CHECK_EQ_INT(a->forward.stickiness_duration_ms, 3600 * MS_S);
    a = &l->rules[1].action;
    CHECK_EQ_INT(a->type, RLB_ACTION_REDIRECT);
    CHECK_EQ_INT(a->redirect.status_code, 301);
    CHECK_EQ_STR(a->redirect.protocol, "HTTPS");
    CHECK_EQ_STR(a->redirect.path, "/#{path}");
    a = &l->rules[2].action;
    CHECK_EQ_INT(a->type, RLB_ACTION_FIXED_RESPONSE);
    CHECK_EQ_INT(a->fixed.status_code, 503);
    CHECK_EQ_STR(a->fixed.content_type, "text/plain");
    CHECK_EQ_INT(a->fixed.body_len, 9);
    CHECK_EQ_INT(cfg->n_target_groups, 2);
    const struct rlb_target_group_cfg *tg = &cfg->target_groups[1];
    CHECK_EQ_INT(tg->algorithm, RLB_ALG_LEAST_OUTSTANDING);
    CHECK_EQ_INT(tg->health_check.timeout_ms, 5 * MS_S);
    CHECK(tg->health_check.n_match_ranges == 1 && tg->health_check.match_ranges[0].hi == 299);
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

TEST(test_demo_file)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load("../../conf/demo.yaml", &errs);
    CHECK(cfg != NULL);
    if (!cfg) {
        dump_errors(&errs);
        rlb_config_errors_free(&errs);
        return;
    }
    CHECK_EQ_STR(cfg->admin.listen, "127.0.0.1:9901");
    CHECK_EQ_INT(cfg->threads, 0);
    CHECK_EQ_INT(cfg->shutdown_timeout_ms, 5 * MS_S);
    CHECK_EQ_INT(cfg->n_listeners, 1);
    const struct rlb_listener_cfg *l = &cfg->listeners[0];
    CHECK_EQ_STR(l->name, "demo");
    CHECK_EQ_INT(l->port, 8080);
    CHECK_EQ_INT(l->n_rules, 1);
    CHECK_EQ_INT(l->rules[0].priority, 10);
    CHECK_EQ_STR(l->rules[0].conditions.path_pattern[0], "/static/*");
    CHECK_EQ_INT(l->rules[0].action.fixed.status_code, 200);
    CHECK_EQ_STR(l->rules[0].action.fixed.body, "static content\n");
    CHECK_EQ_INT(l->default_action.type, RLB_ACTION_FORWARD);
    CHECK_EQ_STR(l->default_action.forward.groups[0].name, "web");
    CHECK_EQ_INT(cfg->n_target_groups, 1);
    const struct rlb_target_group_cfg *tg = &cfg->target_groups[0];
    CHECK_EQ_STR(tg->name, "web");
    CHECK_EQ_INT(tg->n_targets, 2);
    CHECK_EQ_INT(tg->targets[1].port, 9002);
    CHECK_EQ_STR(tg->health_check.path, "/health");
    CHECK_EQ_INT(tg->health_check.interval_ms, 5 * MS_S);
    CHECK(tg->health_check.timeout_ms < tg->health_check.interval_ms);
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

TEST(test_example_files)
{
    static const char *const files[] = {
        "../../conf/examples/blue-green.yaml",
        "../../conf/examples/https.yaml",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct rlb_config_errors errs = {0};
        struct rlb_config *cfg = rlb_config_load(files[i], &errs);
        if (!cfg) {
            fprintf(stderr, "  %s:\n", files[i]);
            dump_errors(&errs);
        }
        CHECK(cfg != NULL);
        rlb_config_free(cfg);
        rlb_config_errors_free(&errs);
    }
}

TEST(test_json_input)
{
    const char *json = "{\n"
                       "  \"threads\": 4,\n"
                       "  \"shutdown_timeout\": 10,\n"
                       "  \"listeners\": [\n"
                       "    {\"name\": \"j\", \"listen\": \"127.0.0.1:8081\",\n"
                       "     \"rules\": [{\"priority\": 2, \"conditions\": {\"path_pattern\": "
                       "[\"/a\"]},\n"
                       "                \"action\": {\"fixed_response\": {\"status_code\": "
                       "\"200\"}}}],\n"
                       "     \"default_action\": {\"forward\": {\"target_groups\": "
                       "[{\"name\": \"g\", \"weight\": 3}]}}}\n"
                       "  ],\n"
                       "  \"target_groups\": [{\"name\": \"g\",\n"
                       "                     \"targets\": [\"127.0.0.1:9000\"]}]\n"
                       "}\n";
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(json, &errs);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_EQ_INT(cfg->threads, 4);
        CHECK_EQ_INT(cfg->shutdown_timeout_ms, 10 * MS_S);
        CHECK_EQ_INT(cfg->listeners[0].rules[0].action.fixed.status_code, 200);
        CHECK_EQ_INT(cfg->listeners[0].default_action.forward.groups[0].weight, 3);
        CHECK(cfg->listeners[0].default_action.forward.groups[0].weight_set);
    } else {
        dump_errors(&errs);
    }
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);

    /* JSON with an unknown key: the position is still exact */
    CHECK(expect_error("{\"listeners\": [], \"bogus\": 1}", "1:19", "unknown key 'bogus'"));
}

TEST(test_unknown_keys)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%sbogus: 1\n", MINIMAL);
    CHECK(expect_error(buf, "5:1", "unknown key 'bogus'"));
    snprintf(buf, sizeof(buf), "%s    idel_timeout: 5s\n", MINIMAL);
    CHECK(expect_error(buf, "5:5", "listeners[0]: unknown key 'idel_timeout'"));
    CHECK(expect_error("admin: {listen: 127.0.0.1:1, tokenfile: x}\n"
                       "listeners: []\n",
                       "1:30", "admin: unknown key 'tokenfile'"));
    snprintf(buf, sizeof(buf),
             "%starget_groups:\n"
             "  - name: g\n"
             "    health_check:\n"
             "      intervall: 5s\n",
             MINIMAL);
    CHECK(expect_error(buf, "8:7", "target_groups[0].health_check: unknown key 'intervall'"));
}

/* One error case: a listener body (indented 4) appended to a fixed head, and a target group. */
struct err_case {
    const char *listener_extra; /* lines added to the listener (after line 3) */
    const char *tail;           /* lines after the listeners section */
    const char *loc;
    const char *needle;
};

static const char *const HEAD = "listeners:\n"                   /* 1 */
                                "  - name: l\n"                  /* 2 */
                                "    listen: 127.0.0.1:8080\n";  /* 3 */

static const char *const DEFAULT_ACTION =
    "    default_action: {fixed_response: {status_code: 404}}\n";

static const char *const TG = "target_groups:\n"
                              "  - name: g\n";

TEST(test_error_cases)
{
    static const struct err_case cases[] = {
        /* listener scalars, line 4 */
        {"    idle_timeout: 5x\n", NULL, "4:19", "invalid duration \"5x\""},
        {"    idle_timeout: -1\n", NULL, "4:19", "invalid duration"},
        {"    header_timeout: 0s\n", NULL, "4:21", "out of range"},
        {"    protocol: http\n", NULL, "4:15", "invalid value \"http\" (allowed: HTTP, HTTPS)"},
        {"    xff: keep\n", NULL, "4:10", "allowed: append, preserve, remove"},
        {"    desync_mitigation_mode: strict\n", NULL, "4:29", "defensive, monitor, strictest"},
        {"    xff_client_port: maybe\n", NULL, "4:22", "expected true or false"},
        {"    max_connections: -1\n", NULL, "4:22", "expected an integer"},
        {"    protocol: HTTPS\n", NULL, "2:5", "an HTTPS listener needs tls.certificates"},
        {"    protocol: HTTPS\n    tls: {certificates: []}\n", NULL, "5:11",
         "the list must not be empty"},
        {"    protocol: HTTPS\n    tls: {certificates: [{cert: a}]}\n", NULL, "5:27",
         "missing required key 'key'"},
        {"    tls: {certificates: [{cert: a, key: b}]}\n", NULL, "4:11",
         "tls is only allowed on HTTPS listeners"},
        {"    protocol: HTTPS\n    tls: {certificates: [{cert: a, key: b}], security_policy: x}\n",
         NULL, "5:63", "security_policy: invalid value"},
        /* rules */
        {"    rules:\n      - priority: 0\n        conditions: {path_pattern: [/a]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "5:19", "priority: 0 is out of range 1..50000"},
        {"    rules:\n      - priority: 50001\n        conditions: {path_pattern: [/a]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "5:19", "out of range 1..50000"},
        {"    rules:\n      - conditions: {path_pattern: [/a]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "5:9", "missing required key 'priority'"},
        {"    rules:\n      - priority: 1\n        conditions: {}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:9", "at least one condition"},
        {"    rules:\n      - priority: 1\n        conditions: {host_header: []}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:22", "host_header: the list must not be empty"},
        {"    rules:\n      - priority: 1\n        conditions: {host_header: [\"a b\"]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:36", "host_header[0]: invalid value \"a b\""},
        {"    rules:\n      - priority: 1\n        conditions: {source_ip: [10.0.0.0/33]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:34", "source_ip[0]: invalid value \"10.0.0.0/33\""},
        {"    rules:\n      - priority: 1\n        conditions: {source_ip: [\"::1/129\"]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:34", "invalid value"},
        {"    rules:\n      - priority: 1\n        conditions: {source_ip: [10.0.0.1]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:34", "a CIDR"},
        {"    rules:\n      - priority: 1\n        conditions: {http_request_method: [get]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:44", "invalid value \"get\""},
        {"    rules:\n      - priority: 1\n        conditions: {http_header: [{name: X-A}]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:37", "missing required key 'values'"},
        {"    rules:\n      - priority: 1\n        conditions: {query_string: [{key: a}]}\n"
         "        action: {fixed_response: {status_code: 200}}\n",
         NULL, "6:38", "missing required key 'value'"},
        {"    rules:\n      - priority: 1\n        conditions: {path_pattern: [/a]}\n",
         NULL, "5:9", "missing required key 'action'"},
        /* actions */
        {"    default_action: {}\n", NULL, "4:5", "expected exactly one of forward"},
        {"    default_action: {forward: {target_groups: [{name: nope}]}}\n", NULL, "4:55",
         "unknown target group \"nope\""},
        {"    default_action: {forward: {target_groups: [{name: g, weight: 1000}]}}\n", TG,
         "4:66", "1000 is out of range 0..999"},
        {"    default_action: {forward: {target_groups: [{name: g}, {name: h}]}}\n",
         "target_groups:\n  - name: g\n  - name: h\n", "4:60",
         "only one target group of a forward action may omit its weight"},
        {"    default_action: {forward: {target_groups: [{name: g, weight: 0}]}}\n", TG, "4:49",
         "at least one target group needs a weight above 0"},
        {"    default_action: {forward: {target_groups: [{name: g}, {name: g, weight: 2}]}}\n",
         TG, "4:66", "listed twice"},
        {"    default_action: {forward: {target_groups: []}}\n", NULL, "4:32",
         "the list must not be empty"},
        {"    default_action: {forward: {}}\n", NULL, "4:22",
         "missing required key 'target_groups'"},
        {"    default_action: {redirect: {protocol: HTTPS, status_code: HTTP_303}}\n", NULL,
         "4:63", "expected HTTP_301 or HTTP_302"},
        {"    default_action: {redirect: {protocol: HTTPS}}\n", NULL, "4:33",
         "missing required key 'status_code'"},
        {"    default_action: {redirect: {protocol: FTP, status_code: HTTP_301}}\n", NULL,
         "4:43", "expected HTTP, HTTPS or #{protocol}"},
        {"    default_action: {redirect: {port: \"0\", status_code: HTTP_301}}\n", NULL, "4:39",
         "expected #{port} or a port"},
        {"    default_action: {redirect: {path: \"x\", status_code: HTTP_301}}\n", NULL, "4:39",
         "must start with '/'"},
        {"    default_action: {redirect: {status_code: HTTP_301}}\n", NULL, "4:33",
         "would not change the URL"},
        {"    default_action: {redirect: {protocol: \"#{protocol}\", host: \"#{host}\", "
         "port: \"#{port}\", path: \"/#{path}\", query: \"#{query}\", status_code: HTTP_302}}\n",
         NULL, "4:33", "would not change the URL"},
        {"    default_action: {redirect: {protocol: HTTP, port: 8080, status_code: HTTP_301}}\n",
         NULL, "4:33", "would not change the URL"},
        {"    protocol: HTTPS\n    tls: {certificates: [{cert: a, key: b}]}\n"
         "    default_action: {redirect: {protocol: HTTP, status_code: HTTP_301}}\n",
         NULL, "6:43", "an HTTPS listener cannot redirect to HTTP"},
        {"    default_action: {fixed_response: {status_code: 302}}\n", NULL, "4:52",
         "302 is not a 2XX, 4XX or 5XX code"},
        {"    default_action: {fixed_response: {status_code: 600}}\n", NULL, "4:52",
         "out of range 200..599"},
        {"    default_action: {fixed_response: {status_code: 199}}\n", NULL, "4:52",
         "out of range 200..599"},
        {"    default_action: {fixed_response: {status_code: 200, content_type: text/xml}}\n",
         NULL, "4:71", "content_type: invalid value \"text/xml\""},
        {"    default_action: {fixed_response: {content_type: text/plain}}\n", NULL, "4:39",
         "missing required key 'status_code'"},
        {"    default_action: {fixed_response: {status_code: 200}, "
         "redirect: {status_code: HTTP_301, host: x}}\n",
         NULL, "4:22", "expected exactly one of"},
        /* target groups (listener has the default action; tail starts at line 5) */
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    slow_start: 10s\n", "7:17",
         "must be 0 (off) or 30s..900s"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    slow_start: 901s\n", "7:17",
         "out of range"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    algorithm: random\n", "7:16",
         "round_robin, least_outstanding_requests, weighted_random"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    port: 0\n", "7:11",
         "out of range 1..65535"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    health_check: {interval: 50ms}\n",
         "7:30", "out of range 100ms..5m"},
        {DEFAULT_ACTION,
         "target_groups:\n  - name: g\n    health_check: {interval: 5s, timeout: 5s}\n", "7:43",
         "must be shorter than the interval"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    health_check: {healthy_threshold: 1}\n",
         "7:39", "out of range 2..10"},
        {DEFAULT_ACTION,
         "target_groups:\n  - name: g\n    health_check: {unhealthy_threshold: 11}\n", "7:41",
         "out of range 2..10"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    health_check: {matcher: \"200-\"}\n",
         "7:29", "invalid matcher"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    health_check: {matcher: \"99\"}\n",
         "7:29", "invalid matcher"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    health_check: {port: http}\n",
         "7:26", "expected traffic-port or a port"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    health_check: {path: health}\n",
         "7:26", "must start with '/'"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    stickiness: {type: app_cookie}\n",
         "7:24", "allowed: lb_cookie"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    targets: [example.com:80]\n", "7:15",
         "invalid target \"example.com:80\""},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    targets: [\"1.2.3.4:0\"]\n", "7:15",
         "invalid target"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    targets: [\"[1.2.3.4]:80\"]\n", "7:15",
         "invalid target"},
        {DEFAULT_ACTION,
         "target_groups:\n  - name: g\n    targets: [1.2.3.4, {address: 1.2.3.4, port: 80}]\n",
         "7:25", "duplicate target 1.2.3.4 port 80"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    targets: [{port: 80}]\n", "7:16",
         "missing required key 'address'"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n    scaling: {target_value: 0, max: 1}\n",
         "7:29", "expected a positive number"},
        {DEFAULT_ACTION,
         "target_groups:\n  - name: g\n    scaling: {target_value: 5, min: 3, max: 2}\n", "7:37",
         "min (3) is greater than max (2)"},
        {DEFAULT_ACTION, "target_groups:\n  - name: g\n  - name: g\n", "7:11",
         "duplicate target group name \"g\""},
        {DEFAULT_ACTION, "target_groups:\n  - port: 80\n", "6:5", "missing required key 'name'"},
        {DEFAULT_ACTION, "target_groups:\n  - name: \"a b\"\n", "6:11", "invalid name"},
        {DEFAULT_ACTION, "target_groups: {name: g}\n", "5:17", "expected a list, got a mapping"},
        /* globals (after the listener) */
        {DEFAULT_ACTION, "threads: 0\n", "5:10", "expected auto or an integer 1..256"},
        {DEFAULT_ACTION, "threads: 257\n", "5:10", "expected auto or an integer 1..256"},
        {DEFAULT_ACTION, "threads: many\n", "5:10", "expected auto or an integer 1..256"},
        {DEFAULT_ACTION, "shutdown_timeout: 10y\n", "5:19", "invalid duration"},
        {DEFAULT_ACTION, "admin: {listen: 0.0.0.0:9901}\n", "5:17",
         "non-loopback admin address requires admin.token_file"},
        {DEFAULT_ACTION, "admin: {listen: \"[::]:9901\"}\n", "5:17", "requires admin.token_file"},
        {DEFAULT_ACTION, "admin: {listen: 127.0.0.1}\n", "5:17", "invalid address"},
        {DEFAULT_ACTION, "admin: {canary_header: \"X Canary\"}\n", "5:24",
         "admin.canary_header: \"X Canary\" is not a valid header name"},
        {DEFAULT_ACTION, "access_log: \"-\"\n", "5:13", "expected a mapping, got a scalar"},
        {DEFAULT_ACTION, "cluster: {prefix: /x/}\n", "5:11", "missing required key 'etcd'"},
        {DEFAULT_ACTION, "cluster: {etcd: [127.0.0.1:2379]}\n", "5:18", "an http:// or https://"},
        {DEFAULT_ACTION, "cluster: {etcd: [http://a], tls: {cert: c}}\n", "5:35",
         "missing required key 'key'"},
        {DEFAULT_ACTION, "cluster: {etcd: [http://a], auth: {user: u}}\n", "5:36",
         "missing required key 'password_file'"},
        {DEFAULT_ACTION, "metrics: {window: 0}\n", "5:19", "out of range"},
        {DEFAULT_ACTION, "target_groups: [5]\n", "5:17", "expected a mapping, got a scalar"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct err_case *tc = &cases[i];
        char buf[2048];
        snprintf(buf, sizeof(buf), "%s%s%s", HEAD, tc->listener_extra, tc->tail ? tc->tail : "");
        if (!expect_error(buf, tc->loc, tc->needle)) {
            fprintf(stderr, "  case %zu failed; input:\n%s\n", i, buf);
            CHECK(!"error case");
        }
    }
}

TEST(test_duplicate_priority_and_sorting)
{
    const char *text = "listeners:\n"
                       "  - name: l\n"
                       "    listen: 127.0.0.1:8080\n"
                       "    rules:\n"
                       "      - priority: 30\n"
                       "        conditions: {path_pattern: [/c]}\n"
                       "        action: {fixed_response: {status_code: 200}}\n"
                       "      - priority: 5\n"
                       "        conditions: {path_pattern: [/a]}\n"
                       "        action: {fixed_response: {status_code: 200}}\n"
                       "      - priority: 17\n"
                       "        conditions: {path_pattern: [/b]}\n"
                       "        action: {fixed_response: {status_code: 200}}\n"
                       "    default_action: {fixed_response: {status_code: 404}}\n";
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(text, &errs);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_EQ_INT(cfg->listeners[0].n_rules, 3);
        CHECK_EQ_INT(cfg->listeners[0].rules[0].priority, 5);
        CHECK_EQ_STR(cfg->listeners[0].rules[0].conditions.path_pattern[0], "/a");
        CHECK_EQ_INT(cfg->listeners[0].rules[1].priority, 17);
        CHECK_EQ_INT(cfg->listeners[0].rules[2].priority, 30);
        CHECK_EQ_INT(cfg->listeners[0].rules[0].loc.line, 8);
    }
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);

    const char *dup = "listeners:\n"
                      "  - name: l\n"
                      "    listen: 127.0.0.1:8080\n"
                      "    rules:\n"
                      "      - priority: 7\n"
                      "        conditions: {path_pattern: [/c]}\n"
                      "        action: {fixed_response: {status_code: 200}}\n"
                      "      - priority: 7\n"
                      "        conditions: {path_pattern: [/a]}\n"
                      "        action: {fixed_response: {status_code: 200}}\n"
                      "    default_action: {fixed_response: {status_code: 404}}\n";
    CHECK(expect_error(dup, "8:19", "priority 7 is already used by listeners[0].rules[0]"));
}

TEST(test_listener_uniqueness)
{
    const char *text = "listeners:\n"
                       "  - name: a\n"
                       "    listen: 127.0.0.1:8080\n"
                       "    default_action: {fixed_response: {status_code: 404}}\n"
                       "  - name: a\n"
                       "    listen: 127.0.0.1:8080\n"
                       "    default_action: {fixed_response: {status_code: 404}}\n"
                       "  - name: c\n"
                       "    listen: 0.0.0.0:8080\n"
                       "    default_action: {fixed_response: {status_code: 404}}\n"
                       "  - name: d\n"
                       "    listen: \"[::1]:8080\"\n"
                       "    default_action: {fixed_response: {status_code: 404}}\n";
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(text, &errs);
    CHECK(cfg == NULL);
    CHECK(has_error(&errs, "5:11", "duplicate listener name \"a\""));
    CHECK(has_error(&errs, "6:13", "conflicts with listener \"a\""));
    CHECK(has_error(&errs, "9:13", "conflicts with listener \"a\""));
    CHECK_EQ_INT(errs.n, 4); /* [::1]:8080 is another address family: no conflict */
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

TEST(test_multiple_errors_collected)
{
    const char *text = "threads: zero\n"                                   /* 1 */
                       "shutdown_timeout: 5 s\n"                           /* 2 */
                       "listeners:\n"                                      /* 3 */
                       "  - name: l\n"                                     /* 4 */
                       "    listen: 127.0.0.1:99999\n"                     /* 5 */
                       "    xff: none\n"                                   /* 6 */
                       "    default_action: {forward: {target_groups: [{name: x}]}}\n" /* 7 */
                       "target_groups:\n"                                  /* 8 */
                       "  - name: g\n"                                     /* 9 */
                       "    colour: blue\n";                               /* 10 */
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(text, &errs);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(errs.n, 6);
    CHECK(has_error(&errs, "1:10", "threads"));
    CHECK(has_error(&errs, "2:19", "invalid duration"));
    CHECK(has_error(&errs, "5:13", "invalid address"));
    CHECK(has_error(&errs, "6:10", "xff"));
    CHECK(has_error(&errs, "7:55", "unknown target group \"x\""));
    CHECK(has_error(&errs, "10:5", "unknown key 'colour'"));
    /* sorted by position */
    if (errs.n == 6) {
        CHECK(strncmp(errs.msgs[0], "t.yaml:1:", 9) == 0);
        CHECK(strncmp(errs.msgs[5], "t.yaml:10:", 10) == 0);
    }
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

TEST(test_syntax_errors)
{
    CHECK(expect_error("listeners:\n  - name: [a, b\n", "3:1", "flow sequence"));
    CHECK(expect_error("a: 1\na: 2\n", "2:1", "duplicate key"));
    CHECK(expect_error("", "1:1", "empty configuration"));
    CHECK(expect_error("# nothing\n", "1:1", "empty configuration"));
    CHECK(expect_error("- a\n- b\n", "1:3", "expected a mapping"));
    CHECK(expect_error("just a string\n", "1:1", "expected a mapping"));
}

TEST(test_body_limit)
{
    char body[1100];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    char *text = NULL;
    CHECK(asprintf(&text,
                   "listeners:\n"
                   "  - name: l\n"
                   "    listen: 127.0.0.1:8080\n"
                   "    default_action: {fixed_response: {status_code: 200, message_body: "
                   "\"%.1025s\"}}\n",
                   body) > 0);
    CHECK(expect_error(text, "4:71", "1025 bytes, at most 1024 allowed"));
    free(text);
    CHECK(asprintf(&text,
                   "listeners:\n"
                   "  - name: l\n"
                   "    listen: 127.0.0.1:8080\n"
                   "    default_action: {fixed_response: {status_code: 200, message_body: "
                   "\"%.1024s\"}}\n",
                   body) > 0);
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(text, &errs);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_EQ_INT(cfg->listeners[0].default_action.fixed.body_len, 1024);
    }
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
    free(text);
}

TEST(test_valid_variants)
{
    /* admin on a public address with a token, access_log off, redirect with only a status change
     * of protocol, matcher lists, weights, source_ip host bits cleared */
    const char *text =
        "threads: 8\n"
        "admin: {listen: 0.0.0.0:9901, token_file: /tmp/tok, canary_header: X-Try-New}\n"
        "access_log: {path: off}\n"
        "metrics: {window: 2s}\n"
        "listeners:\n"
        "  - name: l\n"
        "    listen: 127.0.0.1:8080\n"
        "    xff: remove\n"
        "    desync_mitigation_mode: strictest\n"
        "    max_connections: 1000\n"
        "    rules:\n"
        "      - priority: 1\n"
        "        conditions: {source_ip: [10.1.2.3/8]}\n"
        "        action: {redirect: {protocol: HTTPS, status_code: 302}}\n"
        "      - priority: 2\n"
        "        conditions: {query_string: [{value: \"*\"}]}\n"
        "        action: {redirect: {query: \"\", status_code: HTTP_301}}\n"
        "    default_action:\n"
        "      forward:\n"
        "        target_groups: [{name: a, weight: 0}, {name: b}]\n"
        "        stickiness: {enabled: true, duration: 10m}\n"
        "target_groups:\n"
        "  - {name: a, slow_start: 30s, algorithm: weighted_random,\n"
        "     health_check: {matcher: \"200,202, 300-399\", port: 8081, enabled: false}}\n"
        "  - {name: b, stickiness: {enabled: true, duration: 1h}, deregistration_delay: 0}\n";
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(text, &errs);
    CHECK(cfg != NULL);
    if (!cfg) {
        dump_errors(&errs);
        rlb_config_errors_free(&errs);
        return;
    }
    CHECK_EQ_INT(cfg->threads, 8);
    CHECK_EQ_STR(cfg->admin.token_file, "/tmp/tok");
    CHECK_EQ_STR(cfg->admin.canary_header, "X-Try-New");
    CHECK(cfg->access_log.path == NULL);
    CHECK_EQ_INT(cfg->metrics.window_ms, 2 * MS_S);
    const struct rlb_listener_cfg *l = &cfg->listeners[0];
    CHECK_EQ_INT(l->xff, RLB_XFF_REMOVE);
    CHECK_EQ_INT(l->desync_mode, RLB_DESYNC_STRICTEST);
    CHECK_EQ_INT(l->max_connections, 1000);
    const struct rlb_cidr *cidr = &l->rules[0].conditions.source_ip[0];
    CHECK(cidr->addr[0] == 10 && cidr->addr[1] == 0 && cidr->addr[2] == 0 && cidr->prefix == 8);
    CHECK_EQ_INT(l->rules[0].action.redirect.status_code, 302);
    CHECK_EQ_STR(l->rules[1].action.redirect.query, "");
    CHECK(l->rules[1].conditions.query_string[0].key == NULL);
    const struct rlb_action *a = &l->default_action;
    CHECK_EQ_INT(a->forward.groups[0].weight, 0);
    CHECK(a->forward.groups[0].weight_set);
    CHECK_EQ_INT(a->forward.groups[1].weight, 1);
    CHECK_EQ_INT(a->forward.groups[1].group_index, 1);
    CHECK(a->forward.stickiness_enabled);
    CHECK_EQ_INT(a->forward.stickiness_duration_ms, 600 * MS_S);
    const struct rlb_target_group_cfg *tg = &cfg->target_groups[0];
    CHECK_EQ_INT(tg->slow_start_ms, 30 * MS_S);
    CHECK_EQ_INT(tg->algorithm, RLB_ALG_WEIGHTED_RANDOM);
    CHECK(!tg->health_check.enabled);
    CHECK_EQ_INT(tg->health_check.port, 8081);
    CHECK_EQ_INT(tg->health_check.n_match_ranges, 3);
    CHECK(tg->health_check.match_ranges[1].lo == 202 && tg->health_check.match_ranges[1].hi == 202);
    CHECK(tg->health_check.match_ranges[2].lo == 300 && tg->health_check.match_ranges[2].hi == 399);
    CHECK(cfg->target_groups[1].stickiness.enabled);
    CHECK_EQ_INT(cfg->target_groups[1].deregistration_delay_ms, 0);
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

TEST(test_alb_limits)
{
    /* 101 rules, one with 6 condition values, a forward to 6 groups, 26 certificates and a
     * group with 1001 targets */
    size_t cap = 1 << 20, len = 0;
    char *t = malloc(cap);
    CHECK(t != NULL);
    if (!t) {
        return;
    }
#define OUT(...) (len += (size_t)snprintf(t + len, cap - len, __VA_ARGS__))
    OUT("listeners:\n  - name: big\n    listen: 127.0.0.1:8443\n    protocol: HTTPS\n");
    OUT("    tls:\n      certificates:\n");
    for (int i = 0; i < 26; i++) {
        OUT("        - {cert: c%d.pem, key: k%d.pem}\n", i, i);
    }
    OUT("    rules:\n");
    for (int i = 1; i <= 101; i++) {
        OUT("      - priority: %d\n", i);
        if (i == 1) {
            OUT("        conditions: {host_header: [a, b, c], path_pattern: [/x], "
                "http_header: [{name: X, values: [y, z]}]}\n");
        } else {
            OUT("        conditions: {path_pattern: [/p%d]}\n", i);
        }
        OUT("        action: {fixed_response: {status_code: 200}}\n");
    }
    OUT("    default_action:\n      forward:\n        target_groups:\n");
    for (int i = 0; i < 6; i++) {
        OUT("          - {name: g%d, weight: 1}\n", i);
    }
    OUT("target_groups:\n");
    for (int i = 0; i < 6; i++) {
        OUT("  - name: g%d\n", i);
        if (i == 0) {
            OUT("    targets:\n");
            for (int j = 0; j < 1001; j++) {
                OUT("      - 10.%d.%d.1:80\n", j / 256, j % 256);
            }
        }
    }
#undef OUT
    CHECK(len < cap);
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = load(t, &errs);
    CHECK(cfg != NULL);
    if (cfg) {
        struct rlb_config_errors lim = {0};
        size_t n = rlb_config_alb_limits(cfg, &lim);
        CHECK_EQ_INT(n, 5);
        CHECK_EQ_INT(lim.n, 5);
        CHECK(has_error(&lim, "2:5", "101 rules"));
        CHECK(has_error(&lim, "32:12", "26 certificates"));           /* the 26th certificate */
        CHECK(has_error(&lim, "34:9", "rule 1 of listener \"big\" has 6 condition values"));
        CHECK(has_error(&lim, "339:9", "forwards to 6 target groups"));
        CHECK(has_error(&lim, "1349:9", "1001 targets"));             /* the 1001st target */
        rlb_config_errors_free(&lim);
    } else {
        dump_errors(&errs);
    }
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
    free(t);

    /* within the quotas: nothing to report */
    cfg = load(MINIMAL, &errs);
    struct rlb_config_errors lim = {0};
    CHECK(cfg != NULL && rlb_config_alb_limits(cfg, &lim) == 0 && lim.n == 0);
    rlb_config_free(cfg);
    rlb_config_errors_free(&errs);
}

/* Run rlb_config_check_main() with stdout captured into `out`. */
static int run_check(int argc, char **argv, char *out, size_t outsz)
{
    char tmpl[] = "/tmp/test_config_out.XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        return -1;
    }
    unlink(tmpl);
    fflush(stdout);
    int saved = dup(1);
    int saved_err = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    dup2(devnull, 2);
    int rc = rlb_config_check_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    dup2(saved_err, 2);
    close(saved);
    close(saved_err);
    close(devnull);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, out, outsz - 1);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    return rc;
}

TEST(test_check_command)
{
    char out[8192];
    char *ok_args[] = {"check", "-c", "../../conf/demo.yaml", NULL};
    CHECK_EQ_INT(run_check(3, ok_args, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "ok\n");

    char *bad_args[] = {"check", "-c", "fixtures/config/bad.yaml", NULL};
    CHECK_EQ_INT(run_check(3, bad_args, out, sizeof(out)), 2);
    CHECK(strstr(out, "fixtures/config/bad.yaml:3:") != NULL);
    CHECK(strstr(out, "fixtures/config/bad.yaml:6:") != NULL);
    CHECK(strstr(out, "ok\n") == NULL);

    char *lim_args[] = {"check", "-c", "fixtures/config/alb_limits.yaml", "--alb-limits", NULL};
    CHECK_EQ_INT(run_check(4, lim_args, out, sizeof(out)), 0);
    CHECK(strstr(out, "fixtures/config/alb_limits.yaml:") != NULL);
    CHECK(strstr(out, "ALB limit") != NULL);
    CHECK(strstr(out, "ok\n") != NULL);
    char *nolim_args[] = {"check", "-c", "fixtures/config/alb_limits.yaml", NULL};
    CHECK_EQ_INT(run_check(3, nolim_args, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "ok\n");

    char *missing_args[] = {"check", "-c", "fixtures/config/does-not-exist.yaml", NULL};
    CHECK_EQ_INT(run_check(3, missing_args, out, sizeof(out)), 2);
    CHECK(strstr(out, "does-not-exist.yaml:1:1: cannot open") != NULL);

    char *usage1[] = {"check", NULL};
    CHECK_EQ_INT(run_check(1, usage1, out, sizeof(out)), 2);
    CHECK_EQ_STR(out, "");
    char *usage2[] = {"check", "-c", NULL};
    CHECK_EQ_INT(run_check(2, usage2, out, sizeof(out)), 2);
    char *usage3[] = {"check", "-c", "x.yaml", "--bogus", NULL};
    CHECK_EQ_INT(run_check(4, usage3, out, sizeof(out)), 2);
}

TEST(test_free_null)
{
    rlb_config_free(NULL);
    rlb_config_errors_free(NULL);
    struct rlb_config_errors errs = {0};
    rlb_config_errors_free(&errs);
    CHECK(errs.n == 0 && errs.msgs == NULL);
    /* NULL errs is tolerated */
    CHECK(rlb_config_load_string("t.yaml", "x: 1\n", 5, NULL) == NULL);
}

/* Bytes libfyaml 0.7 can hang on are refused up front (found by fuzz_config). */
TEST(test_invalid_utf8_refused)
{
    static const struct { const char *text; size_t len; const char *where; } cases[] = {
        {"%\xcd", 2, "t.yaml:1:2: "},
        {"threads: 2\nuser: a\0b\n", 21, "t.yaml:2:8: "},
        {"threads: 2\n# \xff\n", 15, "t.yaml:2:3: "},
        {"a: \xed\xa0\x80\n", 7, "t.yaml:1:4: "}, /* a UTF-16 surrogate */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rlb_config_errors errs = {0};
        struct rlb_config *cfg = rlb_config_load_string("t.yaml", cases[i].text, cases[i].len,
                                                        &errs);
        CHECK(cfg == NULL);
        CHECK(errs.n == 1 && strncmp(errs.msgs[0], cases[i].where, strlen(cases[i].where)) == 0);
        if (errs.n)
            fprintf(stderr, "  %s\n", errs.msgs[0]);
        rlb_config_free(cfg);
        rlb_config_errors_free(&errs);
    }
}

int main(void)
{
    RUN(test_duration_parse);
    RUN(test_sockaddr_parse);
    RUN(test_defaults);
    RUN(test_reference_file);
    RUN(test_demo_file);
    RUN(test_example_files);
    RUN(test_json_input);
    RUN(test_unknown_keys);
    RUN(test_error_cases);
    RUN(test_duplicate_priority_and_sorting);
    RUN(test_listener_uniqueness);
    RUN(test_multiple_errors_collected);
    RUN(test_syntax_errors);
    RUN(test_body_limit);
    RUN(test_valid_variants);
    RUN(test_alb_limits);
    RUN(test_check_command);
    RUN(test_free_null);
    RUN(test_invalid_utf8_refused);
    return TEST_SUMMARY();
}
