/* Unit tests for rule conditions and the compiled rule index (src/router.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

#include "ringlb/config.h"
#include "ringlb/router.h"
#include "test.h"

static struct rlb_config *load(const char *rules_yaml)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    fprintf(f,
            "listeners:\n"
            "  - name: l\n"
            "    listen: 127.0.0.1:8080\n"
            "    rules:\n%s"
            "    default_action:\n"
            "      fixed_response: {status_code: 404}\n",
            rules_yaml);
    fclose(f);
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("test.yaml", doc, len, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    rlb_config_errors_free(&errs);
    free(doc);
    return cfg;
}

struct req {
    const char *method, *host, *url;
    const char *headers[4][2];
    const char *peer;
};

static struct rlb_http_head head;

/* Priority of the matched rule (0 = default). */
static int route(const struct rlb_config *cfg, const struct rlb_router *r, struct req q,
                 unsigned *evals)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    const char *peer = q.peer ? q.peer : "192.0.2.10";
    if (strchr(peer, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, peer, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        inet_pton(AF_INET, peer, &s4->sin_addr);
    }
    memset(&head, 0, offsetof(struct rlb_http_head, hdrs));
    head.method = q.method ? q.method : "GET";
    head.method_len = (uint32_t)strlen(head.method);
    head.url = q.url ? q.url : "/";
    head.url_len = (uint32_t)strlen(head.url);
    if (q.host) {
        head.hdrs[head.n_hdrs].name = "Host";
        head.hdrs[head.n_hdrs].name_len = 4;
        head.hdrs[head.n_hdrs].value = q.host;
        head.hdrs[head.n_hdrs].value_len = (uint32_t)strlen(q.host);
        head.n_hdrs++;
    }
    for (int i = 0; i < 4 && q.headers[i][0]; i++) {
        struct rlb_hdr *hd = &head.hdrs[head.n_hdrs++];
        hd->name = q.headers[i][0];
        hd->name_len = (uint32_t)strlen(hd->name);
        hd->value = q.headers[i][1];
        hd->value_len = (uint32_t)strlen(hd->value);
    }
    struct rlb_route_request rq;
    rlb_route_request_from_head(&rq, &head, (const struct sockaddr *)&ss);
    int idx = rlb_router_match(r, &rq, evals);
    /* The index must agree with a plain scan. */
    int scan = -1;
    for (size_t i = 0; i < cfg->listeners[0].n_rules; i++)
        if (rlb_rule_matches(&cfg->listeners[0].rules[i], &rq)) {
            scan = (int)i;
            break;
        }
    CHECK_EQ_INT(idx, scan);
    return idx < 0 ? 0 : (int)cfg->listeners[0].rules[idx].priority;
}

#define FIXED "        action: {fixed_response: {status_code: 200}}\n"

TEST(wildcards)
{
    CHECK(rlb_wildcard_match("*.example.com", "a.example.com", 13, true, false));
    CHECK(!rlb_wildcard_match("*.example.com", "example.com", 11, true, false));
    CHECK(rlb_wildcard_match("*", "", 0, false, false));
    CHECK(rlb_wildcard_match("a*b*c", "aXXbYc", 6, false, false));
    CHECK(!rlb_wildcard_match("a?c", "ac", 2, false, false));
    CHECK(rlb_wildcard_match("a?c", "abc", 3, false, false));
    CHECK(rlb_wildcard_match("*end", "the end", 7, false, false));
    CHECK(rlb_wildcard_match("start*", "start", 5, false, false));
    CHECK(!rlb_wildcard_match("ABC", "abc", 3, false, false));
    CHECK(rlb_wildcard_match("ABC", "abc", 3, true, false));
    CHECK(rlb_wildcard_match("a\\*b", "a*b", 3, false, true));
    CHECK(!rlb_wildcard_match("a\\*b", "axxb", 4, false, true));
    CHECK(rlb_wildcard_match("a\\?", "a?", 2, false, true));
    CHECK(!rlb_wildcard_match("a\\?", "ab", 2, false, true));
}

TEST(host_conditions)
{
    struct rlb_config *cfg = load(
        "      - priority: 1\n        conditions: {host_header: [api.example.com]}\n" FIXED
        "      - priority: 2\n        conditions: {host_header: [\"*.example.com\"]}\n" FIXED
        "      - priority: 3\n        conditions: {host_header: [\"w?w.other.org\"]}\n" FIXED);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    struct rlb_router *r = rlb_router_build(&cfg->listeners[0]);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "api.example.com"}, NULL), 1);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "API.Example.COM:8443"}, NULL), 1);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "x.example.com"}, NULL), 2);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "example.com"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "www.other.org"}, NULL), 3);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "ww.other.org"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = NULL}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "http://api.example.com/x"}, NULL), 1);
    rlb_router_free(r);
    rlb_config_free(cfg);
}

TEST(path_method_and_priority)
{
    struct rlb_config *cfg = load(
        "      - priority: 5\n        conditions: {path_pattern: [\"/api/v1/*\"], "
        "http_request_method: [POST]}\n" FIXED
        "      - priority: 7\n        conditions: {path_pattern: [\"/api/*\"]}\n" FIXED
        "      - priority: 9\n        conditions: {path_pattern: [\"*.png\", \"/img/?\"]}\n" FIXED
        "      - priority: 11\n        conditions: {path_pattern: [\"/Exact\"]}\n" FIXED);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    struct rlb_router *r = rlb_router_build(&cfg->listeners[0]);
    CHECK_EQ_INT(route(cfg, r, (struct req){.method = "POST", .url = "/api/v1/x"}, NULL), 5);
    CHECK_EQ_INT(route(cfg, r, (struct req){.method = "post", .url = "/api/v1/x"}, NULL), 7);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/api/v1/x?q=1"}, NULL), 7);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/API/v1/x"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/a/b/c.png"}, NULL), 9);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/img/1"}, NULL), 9);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/img/12"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/Exact"}, NULL), 11);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/Exact/more"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/exact"}, NULL), 0);
    rlb_router_free(r);
    rlb_config_free(cfg);
}

TEST(headers_query_and_source_ip)
{
    struct rlb_config *cfg = load(
        "      - priority: 1\n        conditions:\n          http_header:\n"
        "            - {name: X-Canary, values: [\"on\", \"y*s\"]}\n" FIXED
        "      - priority: 2\n        conditions:\n          query_string:\n"
        "            - {key: version, value: \"v2\"}\n            - {value: beta}\n" FIXED
        "      - priority: 3\n        conditions:\n          query_string:\n"
        "            - {key: \"a b\", value: \"1\\\\*\"}\n" FIXED
        "      - priority: 4\n        conditions: {source_ip: [10.0.0.0/8, \"2001:db8::/32\"]}\n"
        FIXED);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    struct rlb_router *r = rlb_router_build(&cfg->listeners[0]);
    CHECK_EQ_INT(route(cfg, r, (struct req){.headers = {{"x-canary", "ON"}}}, NULL), 1);
    CHECK_EQ_INT(route(cfg, r, (struct req){.headers = {{"X-Canary", "no"},
                                                        {"X-Canary", "yes"}}}, NULL), 1);
    CHECK_EQ_INT(route(cfg, r, (struct req){.headers = {{"X-Canary", "off"}}}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?VERSION=V2"}, NULL), 2);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?x=1&flag=beta"}, NULL), 2);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?beta"}, NULL), 2);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?version=v3"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?version="}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?a%20b=1%2A"}, NULL), 3);
    CHECK_EQ_INT(route(cfg, r, (struct req){.url = "/?a%20b=12"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.peer = "10.9.8.7"}, NULL), 4);
    CHECK_EQ_INT(route(cfg, r, (struct req){.peer = "11.0.0.1"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.peer = "2001:db8:1::5"}, NULL), 4);
    CHECK_EQ_INT(route(cfg, r, (struct req){.peer = "2001:db9::5"}, NULL), 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.peer = "::ffff:10.1.1.1"}, NULL), 4);
    rlb_router_free(r);
    rlb_config_free(cfg);
}

TEST(index_keeps_priority_order_across_buckets)
{
    /* A wildcard-host rule before an exact-host rule, and a host-less rule before both. */
    struct rlb_config *cfg = load(
        "      - priority: 1\n        conditions: {path_pattern: [\"/first\"]}\n" FIXED
        "      - priority: 2\n        conditions: {host_header: [\"*.b.com\"]}\n" FIXED
        "      - priority: 3\n        conditions: {host_header: [a.b.com]}\n" FIXED
        "      - priority: 4\n        conditions: {path_pattern: [\"*\"]}\n" FIXED);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    struct rlb_router *r = rlb_router_build(&cfg->listeners[0]);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "a.b.com", .url = "/first"}, NULL), 1);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "a.b.com", .url = "/x"}, NULL), 2);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "c.com", .url = "/x"}, NULL), 4);
    rlb_router_free(r);
    rlb_config_free(cfg);
}

TEST(ten_thousand_host_rules_evaluate_one)
{
    char *rules = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&rules, &len);
    for (int i = 1; i <= 10000; i++)
        fprintf(f, "      - priority: %d\n        conditions: {host_header: [h%d.example.com]}\n"
                   FIXED, i, i);
    fprintf(f, "      - priority: 20000\n        conditions: {path_pattern: [\"/static/*\"]}\n"
               FIXED);
    fclose(f);
    struct rlb_config *cfg = load(rules);
    free(rules);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    struct rlb_router *r = rlb_router_build(&cfg->listeners[0]);
    unsigned evals = 0;
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "h7777.example.com"}, &evals), 7777);
    CHECK_EQ_INT(evals, 1);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "nope.example.com"}, &evals), 0);
    CHECK_EQ_INT(evals, 0);
    CHECK_EQ_INT(route(cfg, r, (struct req){.host = "x", .url = "/static/a"}, &evals), 20000);
    CHECK_EQ_INT(evals, 1);
    rlb_router_free(r);
    rlb_config_free(cfg);
}

int main(void)
{
    RUN(wildcards);
    RUN(host_conditions);
    RUN(path_method_and_priority);
    RUN(headers_query_and_source_ip);
    RUN(index_keeps_priority_order_across_buckets);
    RUN(ten_thousand_host_rules_evaluate_one);
    return TEST_SUMMARY();
}
