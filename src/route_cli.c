/* route_cli.c — `ringlb route`: explain how a described request is routed (SPEC section 1).
 *
 *   ringlb route -c FILE [--listener NAME] [--method M] [--host H] [--path P] [--query Q]
 *                [--header 'Name: value']... [--source-ip IP] [--cookie 'k=v']
 *
 * It builds the same rule index the workers use (router.h), matches a synthetic request head
 * and prints, as JSON: the listener, the matched rule priority (0 = the default action), its
 * conditions, the action and, for forward, each target group with its weight and share.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringlb/action.h"
#include "ringlb/config.h"
#include "ringlb/json.h"
#include "ringlb/router.h"

int rlb_route_main(int argc, char **argv);

static struct fy_node *str_list(struct rlb_json *j, char *const *v, size_t n)
{
    struct fy_node *a = rlb_json_arr(j);
    for (size_t i = 0; a && i < n; i++)
        rlb_json_push(a, rlb_json_str(j, v[i]));
    return a;
}

static struct fy_node *conditions_json(struct rlb_json *j, const struct rlb_conditions *cd)
{
    struct fy_node *o = rlb_json_obj(j);
    if (cd->n_host_header)
        rlb_json_set(j, o, "host_header", str_list(j, cd->host_header, cd->n_host_header));
    if (cd->n_path_pattern)
        rlb_json_set(j, o, "path_pattern", str_list(j, cd->path_pattern, cd->n_path_pattern));
    if (cd->n_method)
        rlb_json_set(j, o, "http_request_method", str_list(j, cd->method, cd->n_method));
    if (cd->n_source_ip) {
        struct fy_node *a = rlb_json_arr(j);
        for (size_t i = 0; i < cd->n_source_ip; i++) {
            char ip[INET6_ADDRSTRLEN], s[INET6_ADDRSTRLEN + 8];
            inet_ntop(cd->source_ip[i].family, cd->source_ip[i].addr, ip, sizeof(ip));
            snprintf(s, sizeof(s), "%s/%u", ip, cd->source_ip[i].prefix);
            rlb_json_push(a, rlb_json_str(j, s));
        }
        rlb_json_set(j, o, "source_ip", a);
    }
    if (cd->n_http_header) {
        struct fy_node *a = rlb_json_arr(j);
        for (size_t i = 0; i < cd->n_http_header; i++) {
            struct fy_node *h = rlb_json_obj(j);
            rlb_json_set(j, h, "name", rlb_json_str(j, cd->http_header[i].name));
            rlb_json_set(j, h, "values", str_list(j, cd->http_header[i].values,
                                                  cd->http_header[i].n_values));
            rlb_json_push(a, h);
        }
        rlb_json_set(j, o, "http_header", a);
    }
    if (cd->n_query_string) {
        struct fy_node *a = rlb_json_arr(j);
        for (size_t i = 0; i < cd->n_query_string; i++) {
            struct fy_node *q = rlb_json_obj(j);
            if (cd->query_string[i].key)
                rlb_json_set(j, q, "key", rlb_json_str(j, cd->query_string[i].key));
            rlb_json_set(j, q, "value", rlb_json_str(j, cd->query_string[i].value));
            rlb_json_push(a, q);
        }
        rlb_json_set(j, o, "query_string", a);
    }
    return o;
}

static struct fy_node *action_json(struct rlb_json *j, const struct rlb_config *cfg,
                                   const struct rlb_action *a, const struct rlb_listener_cfg *lc,
                                   const struct rlb_route_request *rq, const char *sticky_group)
{
    struct fy_node *o = rlb_json_obj(j);
    switch (a->type) {
    case RLB_ACTION_FORWARD: {
        rlb_json_set(j, o, "type", rlb_json_str(j, "forward"));
        uint32_t total = 0;
        for (size_t i = 0; i < a->forward.n_groups; i++)
            total += a->forward.groups[i].weight_set ? a->forward.groups[i].weight : 1;
        struct fy_node *groups = rlb_json_arr(j);
        for (size_t i = 0; i < a->forward.n_groups; i++) {
            const struct rlb_forward_group *fg = &a->forward.groups[i];
            uint32_t w = fg->weight_set ? fg->weight : 1;
            const struct rlb_target_group_cfg *tg = &cfg->target_groups[fg->group_index];
            struct fy_node *g = rlb_json_obj(j);
            rlb_json_set(j, g, "name", rlb_json_str(j, fg->name));
            rlb_json_set(j, g, "weight", rlb_json_uint(j, w));
            rlb_json_set(j, g, "share", rlb_json_num(j, total ? (double)w / total : 0.0));
            rlb_json_set(j, g, "targets", rlb_json_uint(j, tg->n_targets));
            rlb_json_push(groups, g);
        }
        rlb_json_set(j, o, "target_groups", groups);
        struct fy_node *st = rlb_json_obj(j);
        rlb_json_set(j, st, "enabled", rlb_json_bool(j, a->forward.stickiness_enabled));
        if (a->forward.stickiness_enabled)
            rlb_json_set(j, st, "duration_s",
                         rlb_json_uint(j, a->forward.stickiness_duration_ms / 1000));
        if (sticky_group)
            rlb_json_set(j, st, "cookie_group", rlb_json_str(j, sticky_group));
        rlb_json_set(j, o, "stickiness", st);
        break;
    }
    case RLB_ACTION_REDIRECT: {
        rlb_json_set(j, o, "type", rlb_json_str(j, "redirect"));
        char url[8192];
        if (rlb_action_redirect_url(a, lc, rq, url, sizeof(url)))
            rlb_json_set(j, o, "location", rlb_json_str(j, url));
        rlb_json_set(j, o, "status_code",
                     rlb_json_str(j, a->redirect.status_code == 302 ? "HTTP_302" : "HTTP_301"));
        break;
    }
    case RLB_ACTION_FIXED_RESPONSE:
        rlb_json_set(j, o, "type", rlb_json_str(j, "fixed_response"));
        rlb_json_set(j, o, "status_code", rlb_json_int(j, a->fixed.status_code));
        rlb_json_set(j, o, "content_type",
                     rlb_json_str(j, a->fixed.content_type ? a->fixed.content_type
                                                           : "text/plain"));
        rlb_json_set(j, o, "message_body", rlb_json_strn(j, a->fixed.body ? a->fixed.body : "",
                                                         a->fixed.body_len));
        break;
    }
    return o;
}

static void usage(void)
{
    fprintf(stderr, "usage: ringlb route -c FILE [--listener NAME] [--method M] [--host H] "
                    "[--path P] [--query Q]\n"
                    "                    [--header 'Name: value']... [--source-ip IP] "
                    "[--cookie 'k=v']\n");
}

int rlb_route_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"listener", required_argument, NULL, 'l'},
        {"method", required_argument, NULL, 'm'}, {"host", required_argument, NULL, 'H'},
        {"path", required_argument, NULL, 'p'},   {"query", required_argument, NULL, 'q'},
        {"header", required_argument, NULL, 'h'}, {"source-ip", required_argument, NULL, 's'},
        {"cookie", required_argument, NULL, 'k'}, {NULL, 0, NULL, 0},
    };
    const char *file = NULL, *lname = NULL, *method = "GET", *host = NULL, *path = "/";
    const char *query = NULL, *source = "127.0.0.1";
    const char *headers[64];
    size_t n_headers = 0;
    char cookie[4096] = "";
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': file = optarg; break;
        case 'l': lname = optarg; break;
        case 'm': method = optarg; break;
        case 'H': host = optarg; break;
        case 'p': path = optarg; break;
        case 'q': query = optarg; break;
        case 's': source = optarg; break;
        case 'h':
            if (n_headers == 64 || !strchr(optarg, ':')) {
                fprintf(stderr, "ringlb route: --header wants 'Name: value' (at most 64)\n");
                return 2;
            }
            headers[n_headers++] = optarg;
            break;
        case 'k': {
            size_t used = strlen(cookie);
            snprintf(cookie + used, sizeof(cookie) - used, "%s%s", used ? "; " : "", optarg);
            break;
        }
        default:
            usage();
            return 2;
        }
    }
    if (!file || optind != argc || path[0] != '/') {
        usage();
        return 2;
    }
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load(file, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        rlb_config_errors_free(&errs);
        return 2;
    }
    rlb_config_errors_free(&errs);
    const struct rlb_listener_cfg *lc = NULL;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (!lname || strcmp(cfg->listeners[i].name, lname) == 0) {
            lc = &cfg->listeners[i];
            break;
        }
    if (!lc) {
        fprintf(stderr, "ringlb route: no listener named '%s'\n", lname);
        rlb_config_free(cfg);
        return 2;
    }
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof(peer));
    if (inet_pton(AF_INET, source, &((struct sockaddr_in *)&peer)->sin_addr) == 1) {
        peer.ss_family = AF_INET;
    } else if (inet_pton(AF_INET6, source, &((struct sockaddr_in6 *)&peer)->sin6_addr) == 1) {
        peer.ss_family = AF_INET6;
    } else {
        fprintf(stderr, "ringlb route: --source-ip wants an IPv4 or IPv6 address\n");
        rlb_config_free(cfg);
        return 2;
    }

    /* A synthetic head: the same facts the workers route on. */
    static struct rlb_http_head h;
    memset(&h, 0, offsetof(struct rlb_http_head, hdrs));
    char url[8192];
    snprintf(url, sizeof(url), "%s%s%s", path, query ? "?" : "", query ? query : "");
    h.method = method;
    h.method_len = (uint32_t)strlen(method);
    h.url = url;
    h.url_len = (uint32_t)strlen(url);
    if (host)
        h.hdrs[h.n_hdrs++] = (struct rlb_hdr){"Host", host, 4, (uint32_t)strlen(host)};
    for (size_t i = 0; i < n_headers; i++) {
        const char *colon = strchr(headers[i], ':');
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        h.hdrs[h.n_hdrs++] = (struct rlb_hdr){headers[i], v, (uint32_t)(colon - headers[i]),
                                              (uint32_t)strlen(v)};
    }
    if (cookie[0])
        h.hdrs[h.n_hdrs++] = (struct rlb_hdr){"Cookie", cookie, 6, (uint32_t)strlen(cookie)};
    struct rlb_route_request rq;
    rlb_route_request_from_head(&rq, &h, (const struct sockaddr *)&peer);

    struct rlb_router *router = rlb_router_build(lc);
    if (!router) {
        fprintf(stderr, "ringlb route: out of memory\n");
        rlb_config_free(cfg);
        return 1;
    }
    unsigned evaluated = 0;
    int idx = rlb_router_match(router, &rq, &evaluated);
    const struct rlb_rule *rule = idx >= 0 ? &lc->rules[idx] : NULL;
    const struct rlb_action *a = rule ? &rule->action : &lc->default_action;

    /* A valid AWSALBTG cookie (same stickiness_key_file) names the group it pins. */
    const char *sticky_group = NULL;
    size_t vlen;
    const char *v = rlb_cookie_find(&h, RLB_STICKY_COOKIE, &vlen);
    if (v && a->type == RLB_ACTION_FORWARD && cfg->stickiness_key_file &&
        rlb_sticky_key_init(cfg->stickiness_key_file) == 0) {
        uint64_t gid;
        if (rlb_sticky_decode(v, vlen, (uint64_t)time(NULL), &gid)) {
            for (size_t i = 0; i < a->forward.n_groups; i++) {
                uint64_t hsh = 1469598103934665603ull;
                for (const char *c = a->forward.groups[i].name; *c; c++) {
                    hsh ^= (unsigned char)*c;
                    hsh *= 1099511628211ull;
                }
                if (hsh == gid)
                    sticky_group = a->forward.groups[i].name;
            }
        }
    }

    struct rlb_json j;
    int rc = 1;
    if (rlb_json_init(&j) == 0) {
        struct fy_node *o = rlb_json_obj(&j);
        rlb_json_set(&j, o, "listener", rlb_json_str(&j, lc->name));
        rlb_json_set(&j, o, "priority", rlb_json_uint(&j, rule ? rule->priority : 0));
        rlb_json_set(&j, o, "default", rlb_json_bool(&j, rule == NULL));
        if (rule)
            rlb_json_set(&j, o, "conditions", conditions_json(&j, &rule->conditions));
        rlb_json_set(&j, o, "action", action_json(&j, cfg, a, lc, &rq, sticky_group));
        rlb_json_set(&j, o, "rules_evaluated", rlb_json_uint(&j, evaluated));
        char *text = rlb_json_emit(&j, o, true);
        if (text) {
            fputs(text, stdout);
            free(text);
            rc = 0;
        }
        rlb_json_free(&j);
    }
    rlb_router_free(router);
    rlb_config_free(cfg);
    return rc;
}
