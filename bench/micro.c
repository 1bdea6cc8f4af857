/* micro.c — the per-request CPU work of ringlb's hot path without any I/O, for callgrind.
 *
 *   rlb-micro STAGE N     run STAGE N times (after a warm-up); stages:
 *     parse    frame + parse a typical browser request head (rlb_http1_scan/parse_head)
 *     desync   classify it (rlb_desync_classify)
 *     rewrite  serialise the forwarded head (rlb_http1_write_request)
 *     route1   match against 1 host rule;  route10k  against 10,000 host rules
 *     balance  choose a target among 3 (round robin)
 *     all      parse + desync + rewrite + route10k + balance
 *
 * bench/callgrind.sh runs each stage under `valgrind --tool=callgrind
 * --toggle-collect=micro_measured` and divides the instructions counted inside
 * micro_measured() (the N iterations, not the start-up nor the warm-up) by N: instructions
 * per request, independent of the machine's load, so regressions show without timing noise.
 * Only route10k and all build the 10,000-rule router (slow to load under valgrind).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringlb/balance.h"
#include "ringlb/config.h"
#include "ringlb/desync.h"
#include "ringlb/http1.h"
#include "ringlb/router.h"

static const char REQ[] =
    "GET /api/v1/users/12345?include=profile&lang=en HTTP/1.1\r\n"
    "Host: h10000.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Cookie: session=abcdef0123456789; theme=dark\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static struct rlb_http_head head;
static char buf[sizeof(REQ)];
static char out[8192];

static struct rlb_config *rules_config(int n)
{
    size_t cap = (size_t)n * 160 + 512;
    char *doc = malloc(cap);
    size_t len = (size_t)snprintf(doc, cap, "listeners:\n  - name: l\n    listen: 127.0.0.1:80\n"
                                            "    rules:\n");
    for (int i = 1; i <= n; i++)
        len += (size_t)snprintf(doc + len, cap - len,
                                "      - {priority: %d, conditions: {host_header: "
                                "[h%d.example.com]}, action: {fixed_response: "
                                "{status_code: 200}}}\n", i, i);
    len += (size_t)snprintf(doc + len, cap - len,
                            "    default_action: {fixed_response: {status_code: 404}}\n");
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("micro", doc, len, &errs);
    free(doc);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        exit(1);
    }
    rlb_config_errors_free(&errs);
    return cfg;
}

static int parse_once(void)
{
    struct rlb_head_scan sc = {0};
    memcpy(buf, REQ, sizeof(REQ) - 1);
    uint32_t len = rlb_http1_scan(&sc, buf, sizeof(REQ) - 1);
    llhttp_t p;
    struct rlb_http_ctx ctx;
    memset(&ctx, 0, offsetof(struct rlb_http_ctx, spans));
    llhttp_init(&p, HTTP_REQUEST, rlb_http1_settings());
    p.data = &ctx;
    ctx.head = &head;
    return rlb_http1_parse_head(&p, &ctx, buf, len);
}

struct micro {
    const char *stage;
    struct rlb_router *r1, *r10k;
    struct rlb_group *g;
    struct rlb_forward_info *fi;
};

__attribute__((noinline, noclone)) static unsigned long micro_loop(const struct micro *m, long n)
{
    const char *stage = m->stage;
    unsigned long sink = 0;
    bool all = strcmp(stage, "all") == 0;
    for (long i = 0; i < n; i++) {
        if (all || strcmp(stage, "parse") == 0)
            sink += (unsigned)parse_once();
        if (all || strcmp(stage, "desync") == 0)
            sink += rlb_desync_classify(REQ, sizeof(REQ) - 1).tier;
        if (all || strcmp(stage, "rewrite") == 0)
            sink += rlb_http1_write_request(out, sizeof(out), &head, m->fi);
        if (strcmp(stage, "route1") == 0 || all || strcmp(stage, "route10k") == 0) {
            struct rlb_route_request rq;
            rlb_route_request_from_head(&rq, &head, NULL);
            sink += (unsigned)rlb_router_match(strcmp(stage, "route1") == 0 ? m->r1 : m->r10k,
                                               &rq, NULL);
        }
        if (all || strcmp(stage, "balance") == 0) {
            bool fo;
            sink += (uintptr_t)rlb_balance_target(m->g, 0, NULL, 0, &fo, (uint64_t)i, 0) & 1;
        }
    }
    return sink;
}

/* The measured part: callgrind.sh counts the instructions of this function and its callees. */
__attribute__((noinline, noclone)) static unsigned long micro_measured(const struct micro *m,
                                                                       long n)
{
    return micro_loop(m, n);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: rlb-micro parse|desync|rewrite|route1|route10k|balance|all N\n");
        return 2;
    }
    const char *stage = argv[1];
    long n = atol(argv[2]);
    bool big = strcmp(stage, "route10k") == 0 || strcmp(stage, "all") == 0;
    struct rlb_config *c1 = rules_config(1), *c10k = big ? rules_config(10000) : NULL;
    struct rlb_router *r1 = rlb_router_build(&c1->listeners[0]);
    struct rlb_router *r10k = big ? rlb_router_build(&c10k->listeners[0]) : NULL;
    struct rlb_target t[3];
    struct rlb_target *tp[3];
    memset(t, 0, sizeof(t));
    for (int i = 0; i < 3; i++) {
        atomic_init(&t[i].state, RLB_TARGET_HEALTHY);
        tp[i] = &t[i];
    }
    struct rlb_target_group_cfg gcfg;
    memset(&gcfg, 0, sizeof(gcfg));
    struct rlb_balance_slot slot;
    memset(&slot, 0, sizeof(slot));
    struct rlb_group g = {.cfg = &gcfg, .targets = tp, .n_targets = 3, .slots = &slot};
    struct rlb_forward_info fi = {.client_ip = "10.1.2.3", .client_port = 40000,
                                  .listener_port = 443, .listener_host = "lb",
                                  .https = true, .xff = RLB_XFF_APPEND,
                                  .now_s = 1700000000, .rand = {1, 2}};
    parse_once();
    struct micro m = {.stage = stage, .r1 = r1, .r10k = r10k, .g = &g, .fi = &fi};
    micro_loop(&m, n < 100 ? n : 100);   /* warm-up: first-use costs stay out of the count */
    printf("%lu\n", micro_measured(&m, n));
    rlb_router_free(r1);
    if (r10k)
        rlb_router_free(r10k);
    rlb_config_free(c1);
    if (c10k)
        rlb_config_free(c10k);
    return 0;
}
