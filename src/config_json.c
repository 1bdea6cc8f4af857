/* config_json.c — configuration to JSON (see config_json.h).
 *
 * Built with json.h. Each builder tracks failures in a small context (`ok` turns false at the
 * first allocation failure) and the public functions return NULL when anything failed.
 */
#include "ringlb/config_json.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A builder's state. */
struct cj {
    struct rlb_json *j;
    bool ok;
};

static struct fy_node *chk(struct cj *c, struct fy_node *n)
{
    if (!n)
        c->ok = false;
    return n;
}

static struct fy_node *obj(struct cj *c) { return chk(c, rlb_json_obj(c->j)); }
static struct fy_node *arr(struct cj *c) { return chk(c, rlb_json_arr(c->j)); }

static void set(struct cj *c, struct fy_node *o, const char *k, struct fy_node *v)
{
    if (!o || rlb_json_set(c->j, o, k, v) < 0)
        c->ok = false;
}

static void push(struct cj *c, struct fy_node *a, struct fy_node *v)
{
    if (!a || rlb_json_push(a, v) < 0)
        c->ok = false;
}

static void set_str(struct cj *c, struct fy_node *o, const char *k, const char *s)
{
    set(c, o, k, chk(c, rlb_json_str(c->j, s)));
}

static void set_int(struct cj *c, struct fy_node *o, const char *k, int64_t v)
{
    set(c, o, k, chk(c, rlb_json_int(c->j, v)));
}

static void set_bool(struct cj *c, struct fy_node *o, const char *k, bool v)
{
    set(c, o, k, chk(c, rlb_json_bool(c->j, v)));
}

const char *rlb_config_json_duration(uint64_t ms, char *out, size_t n)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms && ms % units[i].ms == 0) {
            snprintf(out, n, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return out;
        }
    }
    snprintf(out, n, "%llums", (unsigned long long)ms);
    if (ms == 0)
        snprintf(out, n, "0s");
    return out;
}

static void set_dur(struct cj *c, struct fy_node *o, const char *k, uint64_t ms)
{
    char b[32];
    set_str(c, o, k, rlb_config_json_duration(ms, b, sizeof(b)));
}

static struct fy_node *str_list(struct cj *c, char *const *v, size_t n)
{
    struct fy_node *a = arr(c);
    for (size_t i = 0; i < n; i++)
        push(c, a, chk(c, rlb_json_str(c->j, v[i])));
    return a;
}

static struct fy_node *conditions(struct cj *c, const struct rlb_conditions *cd)
{
    struct fy_node *o = obj(c);
    if (cd->n_host_header)
        set(c, o, "host_header", str_list(c, cd->host_header, cd->n_host_header));
    if (cd->n_path_pattern)
        set(c, o, "path_pattern", str_list(c, cd->path_pattern, cd->n_path_pattern));
    if (cd->n_method)
        set(c, o, "http_request_method", str_list(c, cd->method, cd->n_method));
    if (cd->n_source_ip) {
        struct fy_node *a = arr(c);
        for (size_t i = 0; i < cd->n_source_ip; i++) {
            char ip[INET6_ADDRSTRLEN], s[INET6_ADDRSTRLEN + 8];
            if (!inet_ntop(cd->source_ip[i].family, cd->source_ip[i].addr, ip, sizeof(ip)))
                snprintf(ip, sizeof(ip), "?");
            snprintf(s, sizeof(s), "%s/%u", ip, cd->source_ip[i].prefix);
            push(c, a, chk(c, rlb_json_str(c->j, s)));
        }
        set(c, o, "source_ip", a);
    }
    if (cd->n_http_header) {
        struct fy_node *a = arr(c);
        for (size_t i = 0; i < cd->n_http_header; i++) {
            struct fy_node *h = obj(c);
            set_str(c, h, "name", cd->http_header[i].name);
            set(c, h, "values",
                str_list(c, cd->http_header[i].values, cd->http_header[i].n_values));
            push(c, a, h);
        }
        set(c, o, "http_header", a);
    }
    if (cd->n_query_string) {
        struct fy_node *a = arr(c);
        for (size_t i = 0; i < cd->n_query_string; i++) {
            struct fy_node *q = obj(c);
            if (cd->query_string[i].key)
                set_str(c, q, "key", cd->query_string[i].key);
            set_str(c, q, "value", cd->query_string[i].value);
            push(c, a, q);
        }
        set(c, o, "query_string", a);
    }
    return o;
}

static struct fy_node *action(struct cj *c, const struct rlb_action *a)
{
    struct fy_node *o = obj(c);
    struct fy_node *in = obj(c);
    switch (a->type) {
    case RLB_ACTION_FORWARD: {
        struct fy_node *gs = arr(c);
        for (size_t i = 0; i < a->forward.n_groups; i++) {
            const struct rlb_forward_group *fg = &a->forward.groups[i];
            struct fy_node *g = obj(c);
            set_str(c, g, "name", fg->name);
            set_int(c, g, "weight", fg->weight_set ? fg->weight : 1);
            push(c, gs, g);
        }
        set(c, in, "target_groups", gs);
        struct fy_node *st = obj(c);
        set_bool(c, st, "enabled", a->forward.stickiness_enabled);
        set_dur(c, st, "duration", a->forward.stickiness_duration_ms);
        set(c, in, "stickiness", st);
        set(c, o, "forward", in);
        break;
    }
    case RLB_ACTION_REDIRECT:
        if (a->redirect.protocol)
            set_str(c, in, "protocol", a->redirect.protocol);
        if (a->redirect.host)
            set_str(c, in, "host", a->redirect.host);
        if (a->redirect.port)
            set_str(c, in, "port", a->redirect.port);
        if (a->redirect.path)
            set_str(c, in, "path", a->redirect.path);
        if (a->redirect.query)
            set_str(c, in, "query", a->redirect.query);
        set_str(c, in, "status_code", a->redirect.status_code == 302 ? "HTTP_302" : "HTTP_301");
        set(c, o, "redirect", in);
        break;
    case RLB_ACTION_FIXED_RESPONSE:
        set_int(c, in, "status_code", a->fixed.status_code);
        if (a->fixed.content_type)
            set_str(c, in, "content_type", a->fixed.content_type);
        if (a->fixed.body)
            set(c, in, "message_body",
                chk(c, rlb_json_strn(c->j, a->fixed.body, a->fixed.body_len)));
        set(c, o, "fixed_response", in);
        break;
    }
    return o;
}

static const char *proto_name(enum rlb_protocol p)
{
    return p == RLB_PROTO_HTTPS ? "HTTPS" : "HTTP";
}

static struct fy_node *listener(struct cj *c, const struct rlb_listener_cfg *l)
{
    static const char *const xff[] = {"append", "preserve", "remove"};
    static const char *const desync[] = {"defensive", "monitor", "strictest"};
    struct fy_node *o = obj(c);
    set_str(c, o, "name", l->name);
    set_str(c, o, "listen", l->listen);
    set_str(c, o, "protocol", proto_name(l->protocol));
    if (l->protocol == RLB_PROTO_HTTPS) {
        struct fy_node *tls = obj(c);
        struct fy_node *certs = arr(c);
        for (size_t i = 0; i < l->n_certificates; i++) {
            struct fy_node *ce = obj(c);
            set_str(c, ce, "cert", l->certificates[i].cert); /* key path left out */
            push(c, certs, ce);
        }
        set(c, tls, "certificates", certs);
        set_str(c, tls, "security_policy", l->security_policy);
        set(c, o, "tls", tls);
    }
    set_dur(c, o, "idle_timeout", l->idle_timeout_ms);
    set_dur(c, o, "client_keep_alive", l->client_keep_alive_ms);
    set_dur(c, o, "header_timeout", l->header_timeout_ms);
    set_str(c, o, "xff", xff[l->xff <= RLB_XFF_REMOVE ? l->xff : 0]);
    set_bool(c, o, "xff_client_port", l->xff_client_port);
    set_bool(c, o, "preserve_host_header", l->preserve_host_header);
    set_bool(c, o, "drop_invalid_header_fields", l->drop_invalid_header_fields);
    set_str(c, o, "desync_mitigation_mode",
            desync[l->desync_mode <= RLB_DESYNC_STRICTEST ? l->desync_mode : 0]);
    set_int(c, o, "max_connections", l->max_connections);
    struct fy_node *rules = arr(c);
    for (size_t r = 0; r < l->n_rules; r++) {
        struct fy_node *ro = obj(c);
        set_int(c, ro, "priority", l->rules[r].priority);
        set(c, ro, "conditions", conditions(c, &l->rules[r].conditions));
        set(c, ro, "action", action(c, &l->rules[r].action));
        push(c, rules, ro);
    }
    set(c, o, "rules", rules);
    set(c, o, "default_action", action(c, &l->default_action));
    return o;
}

static struct fy_node *target_group(struct cj *c, const struct rlb_target_group_cfg *g)
{
    static const char *const algs[] = {"round_robin", "least_outstanding_requests",
                                       "weighted_random"};
    struct fy_node *o = obj(c);
    set_str(c, o, "name", g->name);
    set_str(c, o, "protocol", proto_name(g->protocol));
    set_int(c, o, "port", g->port);
    set_str(c, o, "algorithm", algs[g->algorithm <= RLB_ALG_WEIGHTED_RANDOM ? g->algorithm : 0]);
    set_dur(c, o, "deregistration_delay", g->deregistration_delay_ms);
    set_dur(c, o, "slow_start", g->slow_start_ms);
    struct fy_node *st = obj(c);
    set_bool(c, st, "enabled", g->stickiness.enabled);
    set_str(c, st, "type", g->stickiness.type ? g->stickiness.type : "lb_cookie");
    set_dur(c, st, "duration", g->stickiness.duration_ms);
    set(c, o, "stickiness", st);
    const struct rlb_health_check_cfg *hc = &g->health_check;
    struct fy_node *h = obj(c);
    set_bool(c, h, "enabled", hc->enabled);
    set_str(c, h, "path", hc->path ? hc->path : "/");
    if (hc->port)
        set_int(c, h, "port", hc->port);
    else
        set_str(c, h, "port", "traffic-port");
    set_dur(c, h, "interval", hc->interval_ms);
    set_dur(c, h, "timeout", hc->timeout_ms);
    set_int(c, h, "healthy_threshold", hc->healthy_threshold);
    set_int(c, h, "unhealthy_threshold", hc->unhealthy_threshold);
    set_str(c, h, "matcher", hc->matcher ? hc->matcher : "200");
    set(c, o, "health_check", h);
    struct fy_node *ts = arr(c);
    for (size_t i = 0; i < g->n_targets; i++) {
        struct fy_node *t = obj(c);
        set_str(c, t, "address", g->targets[i].id);
        set_int(c, t, "port", g->targets[i].port);
        push(c, ts, t);
    }
    set(c, o, "targets", ts);
    if (g->scaling.present) {
        const struct rlb_scaling_cfg *sc = &g->scaling;
        struct fy_node *s = obj(c);
        set_str(c, s, "metric", sc->metric ? sc->metric : "request_count_per_target");
        set(c, s, "target_value", chk(c, rlb_json_num(c->j, sc->target_value)));
        set_int(c, s, "min", sc->min);
        set_int(c, s, "max", sc->max);
        set_dur(c, s, "scale_out_cooldown", sc->scale_out_cooldown_ms);
        set_dur(c, s, "scale_in_cooldown", sc->scale_in_cooldown_ms);
        if (sc->hook)
            set_str(c, s, "hook", sc->hook);
        set(c, o, "scaling", s);
    }
    return o;
}

struct fy_node *rlb_config_json(struct rlb_json *j, const struct rlb_config *cfg)
{
    struct cj c = {.j = j, .ok = true};
    struct fy_node *o = obj(&c);
    if (cfg->threads)
        set_int(&c, o, "threads", cfg->threads);
    else
        set_str(&c, o, "threads", "auto");
    set_dur(&c, o, "shutdown_timeout", cfg->shutdown_timeout_ms);
    if (cfg->state_file)
        set_str(&c, o, "state_file", cfg->state_file);
    if (cfg->admin.listen) {
        struct fy_node *a = obj(&c);
        set_str(&c, a, "listen", cfg->admin.listen);
        set_bool(&c, a, "token_required", cfg->admin.token_file != NULL);
        if (cfg->admin.canary_header)
            set_str(&c, a, "canary_header", cfg->admin.canary_header);
        set(&c, o, "admin", a);
    }
    struct fy_node *al = obj(&c);
    set_str(&c, al, "path", cfg->access_log.path ? cfg->access_log.path : "off");
    set(&c, o, "access_log", al);
    struct fy_node *m = obj(&c);
    set_dur(&c, m, "window", cfg->metrics.window_ms);
    set(&c, o, "metrics", m);
    if (cfg->user)
        set_str(&c, o, "user", cfg->user);
    set_bool(&c, o, "stickiness_key_file_set", cfg->stickiness_key_file != NULL);
    if (cfg->cluster.present) {
        const struct rlb_cluster_cfg *cl = &cfg->cluster;
        struct fy_node *co = obj(&c);
        set(&c, co, "etcd", str_list(&c, cl->etcd, cl->n_etcd));
        if (cl->prefix)
            set_str(&c, co, "prefix", cl->prefix);
        if (cl->instance)
            set_str(&c, co, "instance", cl->instance);
        set_dur(&c, co, "lease_ttl", cl->lease_ttl_ms);
        if (cl->tls_ca || cl->tls_cert) {
            struct fy_node *t = obj(&c);
            if (cl->tls_ca)
                set_str(&c, t, "ca", cl->tls_ca);
            if (cl->tls_cert)
                set_str(&c, t, "cert", cl->tls_cert);
            set(&c, co, "tls", t);
        }
        if (cl->auth_user) {
            struct fy_node *au = obj(&c);
            set_str(&c, au, "user", cl->auth_user);
            set_bool(&c, au, "password_file_set", cl->auth_password_file != NULL);
            set(&c, co, "auth", au);
        }
        set(&c, o, "cluster", co);
    }
    struct fy_node *ls = arr(&c);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        push(&c, ls, listener(&c, &cfg->listeners[i]));
    set(&c, o, "listeners", ls);
    struct fy_node *gs = arr(&c);
    for (size_t i = 0; i < cfg->n_target_groups; i++)
        push(&c, gs, target_group(&c, &cfg->target_groups[i]));
    set(&c, o, "target_groups", gs);
    return c.ok ? o : NULL;
}

struct fy_node *rlb_config_json_conditions(struct rlb_json *j, const struct rlb_conditions *cd)
{
    struct cj c = {.j = j, .ok = true};
    struct fy_node *o = conditions(&c, cd);
    return c.ok ? o : NULL;
}

struct fy_node *rlb_config_json_action(struct rlb_json *j, const struct rlb_action *a)
{
    struct cj c = {.j = j, .ok = true};
    struct fy_node *o = action(&c, a);
    return c.ok ? o : NULL;
}
