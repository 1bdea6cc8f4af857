/* deploy.c — the deployment controller: canary/linear weight shifts with alarm rollback.
 *
 * See deploy.h for the semantics. Each deployment owns a timer on the main wheel that fires
 * every DEPLOY_TICK_MS: it checks the `to` group's health, folds newly closed metrics windows
 * into alarm periods, and advances the weights when the current bake is over.
 */
#include "ringlb/deploy.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "ringlb/admin.h"
#include "ringlb/cluster.h"
#include "ringlb/config.h"
#include "ringlb/json.h"
#include "ringlb/json_read.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/snapshot.h"
#include "ringlb/timer.h"
#include "ringlb/weights.h"
#include "ringlb/worker.h"

#define DEPLOY_TICK_MS 100u
#define DEPLOY_MAX_HISTORY 1024u
#define DEPLOY_KEEP_FINISHED 100u   /* finished deployments listed; older ones are forgotten */

enum deploy_state { D_IN_PROGRESS, D_SUCCESSFUL, D_ROLLED_BACK, D_STOPPED };

static const char *const state_names[] = {"IN_PROGRESS", "SUCCESSFUL", "ROLLED_BACK", "STOPPED"};

/* One step of the history: a weight change or the end of the deployment. */
struct deploy_step {
    uint64_t at_ms;     /* since the start */
    uint32_t percent;   /* `to` share after the step */
    char what[96];      /* "shift", "rollback: ...", ... */
};

/* One alarm reading (a complete period). */
struct deploy_reading {
    uint64_t at_ms;     /* since the start */
    uint64_t requests;
    uint64_t errors;    /* target 4xx + 5xx + ELB 4xx/5xx */
    bool counted;       /* requests >= min_requests */
    bool breach;        /* counted and errors / requests > max_error_rate */
};

/* A deployment. Owner: the list below; main thread. */
struct deployment {
    struct deployment *next;
    struct rlb_timer timer;     /* first member after next: container_of below */
    char id[24];
    char *listener;
    uint32_t priority;          /* 0 = default action */
    char *from, *to;
    bool linear;
    uint32_t canary_percent, step_percent;
    uint64_t bake_ms, final_bake_ms, step_bake_ms;
    double max_error_rate;
    uint32_t datapoints;
    uint64_t period_ms;
    uint64_t min_requests;
    /* the weights before the deployment (restored on rollback) */
    bool had_override;
    size_t orig_n;
    char **orig_groups;
    uint32_t *orig_weights;
    /* progress */
    enum deploy_state state;
    uint32_t percent;           /* current share of `to` */
    uint64_t start_ms;
    uint64_t step_end_ms;       /* when the current bake is over */
    bool final_phase;           /* at 100 %, waiting for the final bake */
    uint64_t windows_seen;      /* rlb_metrics_windows_closed() already folded in */
    uint64_t acc_ms, acc_req, acc_err; /* the alarm period being filled */
    uint32_t breaches;          /* consecutive breaching periods */
    char reason[160];
    struct deploy_step *steps;
    size_t n_steps;
    struct deploy_reading *readings;
    size_t n_readings;
    /* fleet (cluster.h) */
    int64_t mod_rev;            /* mod revision of the etcd record this copy reflects; -1 when
                                 * a write failed and the copy waits for etcd's version */
    bool armed;                 /* the controller timer runs here (the leader) */
};

static struct rlb_timer_wheel *wheel;
static struct deployment *deployments; /* newest first */
static uint64_t next_id = 1;

static void on_record(const char *id, const char *json, size_t len, int64_t mod_rev);
static void on_leader(bool leader);

void rlb_deploy_init(struct rlb_timer_wheel *w)
{
    wheel = w;
    rlb_cluster_on_deployment(on_record);
    rlb_cluster_on_leader(on_leader);
}

static struct deployment *from_timer(struct rlb_timer *t)
{
    return (struct deployment *)((char *)t - offsetof(struct deployment, timer));
}

static void add_step(struct deployment *d, uint64_t now, const char *what)
{
    if (d->n_steps >= DEPLOY_MAX_HISTORY)
        return;
    struct deploy_step *s = realloc(d->steps, (d->n_steps + 1) * sizeof(*s));
    if (!s)
        return;
    d->steps = s;
    s[d->n_steps].at_ms = now - d->start_ms;
    s[d->n_steps].percent = d->percent;
    snprintf(s[d->n_steps].what, sizeof(s[d->n_steps].what), "%s", what);
    d->n_steps++;
}

/* Set `to` to `percent` %. Returns 0 or -errno (message logged and kept in d->reason). */
static int apply_percent(struct deployment *d, uint32_t percent)
{
    struct rlb_weight w[2] = {{d->from, 100 - percent}, {d->to, percent}};
    char err[256];
    int rc = rlb_admin_set_weights(d->listener, d->priority, w, 2, err, sizeof(err));
    if (rc < 0 && rc != -EIO) {
        snprintf(d->reason, sizeof(d->reason), "weights not applied: %.120s", err);
        rlb_log_warn("deployment %s: %s", d->id, d->reason);
        return rc;
    }
    d->percent = percent;
    return 0;
}

/* Put the weights of before the deployment back. */
static void restore(struct deployment *d)
{
    char err[256];
    int rc;
    if (d->had_override) {
        struct rlb_weight *w = calloc(d->orig_n, sizeof(*w));
        if (!w) {
            rlb_log_warn("deployment %s: out of memory restoring weights", d->id);
            return;
        }
        for (size_t i = 0; i < d->orig_n; i++)
            w[i] = (struct rlb_weight){d->orig_groups[i], d->orig_weights[i]};
        rc = rlb_admin_set_weights(d->listener, d->priority, w, d->orig_n, err, sizeof(err));
        free(w);
    } else {
        rc = rlb_weights_remove(d->listener, d->priority);
        if (rc == 0 || rc == -ENOENT)
            rc = rlb_admin_state_save();
        snprintf(err, sizeof(err), "%s", strerror(-rc));
    }
    if (rc < 0)
        rlb_log_warn("deployment %s: restoring the weights failed: %s", d->id, err);
    d->percent = 0;
}

static int fleet_finish(struct deployment *d, enum deploy_state st, uint64_t now,
                        const char *why);

static void finish(struct deployment *d, enum deploy_state st, uint64_t now, const char *why)
{
    if (rlb_cluster_enabled()) {
        fleet_finish(d, st, now, why);
        return;
    }
    d->state = st; /* first: the state_file written below no longer lists it */
    if (rlb_weights_canary_set(d->listener, d->priority, NULL) < 0)
        rlb_log_warn("deployment %s: out of memory dropping the canary header route", d->id);
    if (st == D_ROLLED_BACK || st == D_STOPPED)
        restore(d);
    else if (rlb_admin_state_save() < 0)
        rlb_log_warn("deployment %s: state_file cannot be written", d->id);
    if (why)
        snprintf(d->reason, sizeof(d->reason), "%s", why);
    char what[96];
    snprintf(what, sizeof(what), "%s%s%.60s", state_names[st], why ? ": " : "", why ? why : "");
    add_step(d, now, what);
    rlb_timer_cancel(wheel, &d->timer);
    rlb_log_info("deployment %s on %s/%u: %s", d->id, d->listener, d->priority, what);
}

static const struct rlb_group *find_group(const struct rlb_snapshot *s, const char *name)
{
    for (size_t g = 0; s && g < s->cfg->n_target_groups; g++)
        if (strcmp(s->groups[g].cfg->name, name) == 0)
            return &s->groups[g];
    return NULL;
}

/* True when `to` has no healthy target (none registered, or none healthy and one unhealthy). */
static bool to_unhealthy(const struct deployment *d)
{
    const struct rlb_group *g = find_group(rlb_snapshot_current(), d->to);
    if (!g)
        return true;
    uint32_t healthy, unhealthy, registered;
    rlb_metrics_group_counts(g, &healthy, &unhealthy, &registered);
    return healthy == 0 && (unhealthy > 0 || registered == 0);
}

/* Fold newly closed metrics windows into the alarm; true when the alarm fires. */
static bool alarm_check(struct deployment *d, uint64_t now, char *why, size_t whylen)
{
    uint64_t closed = rlb_metrics_windows_closed();
    if (closed == d->windows_seen)
        return false;
    d->windows_seen = closed;
    struct rlb_metrics_window w;
    rlb_metrics_group_window(d->to, &w);
    if (!w.complete)
        return false;
    uint64_t req = w.requests, errs = w.target[2] + w.target[3] + w.elb[0] + w.elb[1];
    if (rlb_cluster_enabled()) /* the windows the other instances of the fleet closed */
        rlb_cluster_fleet_window(d->to, &req, &errs);
    d->acc_ms += w.window_ms;
    d->acc_req += req;
    d->acc_err += errs;
    if (d->acc_ms < d->period_ms)
        return false;
    struct deploy_reading r = {
        .at_ms = now - d->start_ms,
        .requests = d->acc_req,
        .errors = d->acc_err,
        .counted = d->acc_req >= d->min_requests && d->acc_req > 0,
    };
    r.breach = r.counted && (double)r.errors / (double)r.requests > d->max_error_rate;
    d->acc_ms = d->acc_req = d->acc_err = 0;
    if (d->n_readings < DEPLOY_MAX_HISTORY) {
        struct deploy_reading *p = realloc(d->readings, (d->n_readings + 1) * sizeof(*p));
        if (p) {
            d->readings = p;
            p[d->n_readings++] = r;
        }
    }
    if (r.counted)
        d->breaches = r.breach ? d->breaches + 1 : 0;
    if (d->breaches >= d->datapoints) {
        snprintf(why, whylen, "alarm: error rate above %g in %u consecutive periods",
                 d->max_error_rate, d->datapoints);
        return true;
    }
    return false;
}

/* The next share of `to` after `cur`. */
static uint32_t next_percent(const struct deployment *d, uint32_t cur)
{
    if (!d->linear)
        return cur < d->canary_percent ? d->canary_percent : 100;
    return cur + d->step_percent >= 100 ? 100 : cur + d->step_percent;
}

static int fleet_shift(struct deployment *d, uint32_t p, uint64_t now);
static int fleet_commit(struct deployment *d, const char *ops, bool create, bool release);

static void tick(struct rlb_timer *t, uint64_t now)
{
    struct deployment *d = from_timer(t);
    d->armed = false;
    if (d->state != D_IN_PROGRESS)
        return;
    if (rlb_cluster_enabled() && (!rlb_cluster_leader() || d->mod_rev < 0))
        return; /* only the fleet's leader drives; a stale copy waits for etcd's record */
    char why[160];
    if (to_unhealthy(d)) {
        finish(d, D_ROLLED_BACK, now, "target group to has no healthy target");
        return;
    }
    size_t readings = d->n_readings;
    if (alarm_check(d, now, why, sizeof(why))) {
        finish(d, D_ROLLED_BACK, now, why);
        return;
    }
    bool dirty = d->n_readings != readings;
    if (now >= d->step_end_ms) {
        if (d->percent == 100) {
            if (d->linear && !d->final_phase && d->final_bake_ms) {
                d->final_phase = true;
                d->step_end_ms = now + d->final_bake_ms;
                dirty = true;
            } else {
                finish(d, D_SUCCESSFUL, now, NULL);
                return;
            }
        } else if (rlb_cluster_enabled()) {
            fleet_shift(d, next_percent(d, d->percent), now); /* d is replaced (or stale) */
            return;
        } else {
            uint32_t p = next_percent(d, d->percent);
            if (apply_percent(d, p) < 0) {
                char msg[160];
                snprintf(msg, sizeof(msg), "%s", d->reason);
                finish(d, D_ROLLED_BACK, now, msg);
                return;
            }
            add_step(d, now, "shift");
            d->step_end_ms = now + (d->linear ? d->step_bake_ms
                                    : p == 100 ? d->final_bake_ms : d->bake_ms);
        }
    }
    if (dirty && rlb_cluster_enabled() && fleet_commit(d, NULL, false, false) < 0) {
        d->mod_rev = -1; /* the record moved on elsewhere: etcd's version replaces this copy */
        return;
    }
    rlb_timer_arm(wheel, &d->timer, now + DEPLOY_TICK_MS, tick);
    d->armed = true;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static char *error_json(const char *msg)
{
    struct rlb_json j;
    if (rlb_json_init(&j) < 0)
        return NULL;
    struct fy_node *o = rlb_json_obj(&j);
    char *text = NULL;
    if (o && rlb_json_set(&j, o, "error", rlb_json_str(&j, msg)) == 0)
        text = rlb_json_emit(&j, o, false);
    rlb_json_free(&j);
    return text;
}

static int fail(char **json, int status, const char *msg)
{
    *json = error_json(msg);
    return status;
}

/* The forward action (listener, priority) as routed now, or NULL. */
static const struct rlb_forward *current_forward(const char *listener, uint32_t priority)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    for (size_t i = 0; s && i < s->cfg->n_listeners; i++) {
        const struct rlb_listener *l = &s->listeners[i];
        if (strcmp(l->cfg->name, listener) != 0)
            continue;
        if (priority == 0)
            return l->cfg->default_action.type == RLB_ACTION_FORWARD ? &l->default_forward
                                                                     : NULL;
        for (size_t r = 0; r < l->cfg->n_rules; r++)
            if (l->cfg->rules[r].priority == priority)
                return l->cfg->rules[r].action.type == RLB_ACTION_FORWARD
                           ? &l->rule_forwards[r] : NULL;
    }
    return NULL;
}

static bool put(struct rlb_json *j, struct fy_node *o, const char *k, struct fy_node *v)
{
    return v && rlb_json_set(j, o, k, v) == 0;
}

static struct fy_node *deployment_json(struct rlb_json *j, const struct deployment *d)
{
    struct fy_node *o = rlb_json_obj(j);
    bool ok = o != NULL;
    ok = ok && put(j, o, "id", rlb_json_str(j, d->id));
    ok = ok && put(j, o, "state", rlb_json_str(j, state_names[d->state]));
    ok = ok && put(j, o, "listener", rlb_json_str(j, d->listener));
    ok = ok && put(j, o, "rule", d->priority ? rlb_json_uint(j, d->priority)
                                             : rlb_json_str(j, "default"));
    ok = ok && put(j, o, "from", rlb_json_str(j, d->from));
    ok = ok && put(j, o, "to", rlb_json_str(j, d->to));
    ok = ok && put(j, o, "strategy", rlb_json_str(j, d->linear ? "linear" : "canary"));
    ok = ok && put(j, o, "to_percent", rlb_json_uint(j, d->percent));
    if (d->reason[0])
        ok = ok && put(j, o, "reason", rlb_json_str(j, d->reason));
    struct fy_node *ws = rlb_json_arr(j);
    const struct rlb_forward *f = current_forward(d->listener, d->priority);
    for (size_t i = 0; ok && ws && f && i < f->n_groups; i++) {
        struct fy_node *g = rlb_json_obj(j);
        ok = g && put(j, g, "name", rlb_json_str(j, f->groups[i]->cfg->name)) &&
             put(j, g, "weight", rlb_json_uint(j, f->weights[i])) && rlb_json_push(ws, g) == 0;
    }
    ok = ok && put(j, o, "weights", ws);
    struct fy_node *hs = rlb_json_arr(j);
    for (size_t i = 0; ok && hs && i < d->n_steps; i++) {
        struct fy_node *s = rlb_json_obj(j);
        ok = s && put(j, s, "at_ms", rlb_json_uint(j, d->steps[i].at_ms)) &&
             put(j, s, "to_percent", rlb_json_uint(j, d->steps[i].percent)) &&
             put(j, s, "event", rlb_json_str(j, d->steps[i].what)) && rlb_json_push(hs, s) == 0;
    }
    ok = ok && put(j, o, "history", hs);
    struct fy_node *as = rlb_json_arr(j);
    for (size_t i = 0; ok && as && i < d->n_readings; i++) {
        const struct deploy_reading *r = &d->readings[i];
        struct fy_node *a = rlb_json_obj(j);
        double rate = r->requests ? (double)r->errors / (double)r->requests : 0.0;
        ok = a && put(j, a, "at_ms", rlb_json_uint(j, r->at_ms)) &&
             put(j, a, "requests", rlb_json_uint(j, r->requests)) &&
             put(j, a, "errors", rlb_json_uint(j, r->errors)) &&
             put(j, a, "error_rate", rlb_json_num(j, rate)) &&
             put(j, a, "counted", rlb_json_bool(j, r->counted)) &&
             put(j, a, "breach", rlb_json_bool(j, r->breach)) && rlb_json_push(as, a) == 0;
    }
    ok = ok && put(j, o, "alarm_readings", as);
    return ok ? o : NULL;
}

static int emit(struct rlb_json *j, struct fy_node *root, int status, char **json)
{
    *json = root ? rlb_json_emit(j, root, false) : NULL;
    rlb_json_free(j);
    if (!*json)
        return fail(json, 500, "out of memory");
    return status;
}

static struct deployment *find(const char *id)
{
    for (struct deployment *d = deployments; d; d = d->next)
        if (strcmp(d->id, id) == 0)
            return d;
    return NULL;
}

/* ---- creation -------------------------------------------------------------------------- */

static void deployment_free(struct deployment *d)
{
    if (!d)
        return;
    free(d->listener);
    free(d->from);
    free(d->to);
    for (size_t i = 0; i < d->orig_n; i++)
        free(d->orig_groups ? d->orig_groups[i] : NULL);
    free(d->orig_groups);
    free(d->orig_weights);
    free(d->steps);
    free(d->readings);
    free(d);
}

/* A required string field into a malloc'd copy. */
static int get_string(struct fy_node *o, const char *key, char **out, char *err, size_t errlen)
{
    const char *s;
    size_t n;
    struct fy_node *v = rlb_json_get(o, key);
    if (!v || rlb_json_get_str(v, &s, &n) < 0 || n == 0 || n > 255) {
        snprintf(err, errlen, "\"%s\" must be a non-empty string", key);
        return -EINVAL;
    }
    *out = strndup(s, n);
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* A duration field ("2s", "3m", or an integer of seconds); `dflt` when absent and allowed. */
static int get_duration(struct fy_node *o, const char *key, bool required, uint64_t dflt,
                        uint64_t *out, char *err, size_t errlen)
{
    struct fy_node *v = rlb_json_get(o, key);
    const char *s;
    size_t n;
    int64_t secs;
    char buf[64];
    if (!v && !required) {
        *out = dflt;
        return 0;
    }
    if (v && rlb_json_get_int(v, 0, 86400 * 30, &secs) == 0) {
        *out = (uint64_t)secs * 1000;
        return 0;
    }
    if (v && rlb_json_get_str(v, &s, &n) == 0 && n < sizeof(buf)) {
        memcpy(buf, s, n);
        buf[n] = 0;
        if (rlb_duration_parse(buf, out) == 0)
            return 0;
    }
    snprintf(err, errlen, "\"%s\" must be a duration such as \"30s\" or \"3m\"", key);
    return -EINVAL;
}

static int get_uint(struct fy_node *o, const char *key, bool required, int64_t min, int64_t max,
                    int64_t dflt, int64_t *out, char *err, size_t errlen)
{
    struct fy_node *v = rlb_json_get(o, key);
    if (!v && !required) {
        *out = dflt;
        return 0;
    }
    if (!v || rlb_json_get_int(v, min, max, out) < 0) {
        snprintf(err, errlen, "\"%s\" must be an integer %lld..%lld", key, (long long)min,
                 (long long)max);
        return -EINVAL;
    }
    return 0;
}

/* A number 0..1 (integer or fraction). */
static int get_rate(struct fy_node *o, const char *key, double dflt, double *out, char *err,
                    size_t errlen)
{
    struct fy_node *v = rlb_json_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    size_t n = 0;
    const char *s = fy_node_get_type(v) == FYNT_SCALAR ? fy_node_get_scalar(v, &n) : NULL;
    char buf[64], *end;
    if (s && n > 0 && n < sizeof(buf) && fy_node_get_style(v) == FYNS_PLAIN) {
        memcpy(buf, s, n);
        buf[n] = 0;
        double x = strtod(buf, &end);
        if (*end == 0 && x >= 0.0 && x <= 1.0) {
            *out = x;
            return 0;
        }
    }
    snprintf(err, errlen, "\"%s\" must be a number 0..1", key);
    return -EINVAL;
}

/* Parse and check a POST body into a new deployment. Returns 0 or an HTTP status. */
static int parse_body(const char *body, size_t len, struct deployment *d, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {"listener", "rule", "from", "to", "strategy",
                                       "canary_percent", "bake", "final_bake", "step_percent",
                                       "step_bake", "alarm", NULL};
    static const char *const akeys[] = {"max_error_rate", "datapoints", "period",
                                        "min_requests", NULL};
    struct fy_document *doc = rlb_json_parse(body ? body : "", body ? len : 0, err, errlen);
    if (!doc)
        return 400;
    int status = 400;
    struct fy_node *o = fy_document_root(doc);
    int64_t v;
    const char *s;
    size_t n;
    if (!rlb_json_is_obj(o)) {
        snprintf(err, errlen, "the body must be a JSON object");
        goto out;
    }
    if (rlb_json_check_keys(o, keys, err, errlen) < 0 ||
        get_string(o, "listener", &d->listener, err, errlen) < 0 ||
        get_string(o, "from", &d->from, err, errlen) < 0 ||
        get_string(o, "to", &d->to, err, errlen) < 0)
        goto out;
    struct fy_node *rule = rlb_json_get(o, "rule");
    if (rule && rlb_json_get_str(rule, &s, &n) == 0 && n == 7 && memcmp(s, "default", 7) == 0) {
        d->priority = 0;
    } else if (!rule || rlb_json_get_int(rule, 1, 50000, &v) < 0) {
        snprintf(err, errlen, "\"rule\" must be a priority 1..50000 or \"default\"");
        goto out;
    } else {
        d->priority = (uint32_t)v;
    }
    if (strcmp(d->from, d->to) == 0) {
        snprintf(err, errlen, "\"from\" and \"to\" must differ");
        goto out;
    }
    struct fy_node *st = rlb_json_get(o, "strategy");
    if (!st || rlb_json_get_str(st, &s, &n) < 0 ||
        !((n == 6 && memcmp(s, "canary", 6) == 0) || (n == 6 && memcmp(s, "linear", 6) == 0))) {
        snprintf(err, errlen, "\"strategy\" must be \"canary\" or \"linear\"");
        goto out;
    }
    d->linear = s[0] == 'l';
    if (d->linear) {
        if (rlb_json_get(o, "canary_percent") || rlb_json_get(o, "bake")) {
            snprintf(err, errlen, "strategy linear takes step_percent and step_bake");
            goto out;
        }
        if (get_uint(o, "step_percent", true, 1, 100, 0, &v, err, errlen) < 0)
            goto out;
        d->step_percent = (uint32_t)v;
        if (get_duration(o, "step_bake", true, 0, &d->step_bake_ms, err, errlen) < 0 ||
            get_duration(o, "final_bake", false, 0, &d->final_bake_ms, err, errlen) < 0)
            goto out;
    } else {
        if (rlb_json_get(o, "step_percent") || rlb_json_get(o, "step_bake")) {
            snprintf(err, errlen, "strategy canary takes canary_percent, bake and final_bake");
            goto out;
        }
        if (get_uint(o, "canary_percent", true, 1, 99, 0, &v, err, errlen) < 0)
            goto out;
        d->canary_percent = (uint32_t)v;
        if (get_duration(o, "bake", true, 0, &d->bake_ms, err, errlen) < 0 ||
            get_duration(o, "final_bake", false, 0, &d->final_bake_ms, err, errlen) < 0)
            goto out;
    }
    struct fy_node *al = rlb_json_get(o, "alarm");
    if (al && !rlb_json_is_obj(al)) {
        snprintf(err, errlen, "\"alarm\" must be an object");
        goto out;
    }
    struct fy_node *a = al; /* NULL: every alarm setting takes its default */
    if (al && rlb_json_check_keys(al, akeys, err, errlen) < 0)
        goto out;
    if (get_rate(a, "max_error_rate", 0.01, &d->max_error_rate, err, errlen) < 0 ||
        get_uint(a, "datapoints", false, 1, 100, 2, &v, err, errlen) < 0)
        goto out;
    d->datapoints = (uint32_t)v;
    if (get_duration(a, "period", false, 60000, &d->period_ms, err, errlen) < 0 ||
        get_uint(a, "min_requests", false, 0, INT64_MAX, 20, &v, err, errlen) < 0)
        goto out;
    d->min_requests = (uint64_t)v;
    if (d->period_ms == 0) {
        snprintf(err, errlen, "\"period\" must be > 0");
        goto out;
    }
    status = 0;
out:
    fy_document_destroy(doc);
    return status;
}

/* Free the finished deployments beyond the newest DEPLOY_KEEP_FINISHED. */
static void forget_old(void)
{
    size_t finished = 0;
    for (struct deployment **pp = &deployments; *pp;) {
        struct deployment *d = *pp;
        if (d->state != D_IN_PROGRESS && ++finished > DEPLOY_KEEP_FINISHED) {
            *pp = d->next;
            deployment_free(d);
        } else {
            pp = &d->next;
        }
    }
}

/* Remember the weights of before the deployment. Returns 0 or -ENOMEM. */
static int save_original(struct deployment *d)
{
    const struct rlb_weights_override *ov = rlb_weights_find(d->listener, d->priority);
    if (!ov)
        return 0;
    d->had_override = true;
    d->orig_groups = calloc(ov->n, sizeof(char *));
    d->orig_weights = calloc(ov->n, sizeof(uint32_t));
    if (!d->orig_groups || !d->orig_weights)
        return -ENOMEM;
    for (size_t i = 0; i < ov->n; i++) {
        d->orig_groups[i] = strdup(ov->groups[i]);
        d->orig_weights[i] = ov->weights[i];
        d->orig_n = i + 1;
        if (!d->orig_groups[i])
            return -ENOMEM;
    }
    return 0;
}

static int fleet_create(struct deployment *d, char **json);

static int create(const char *body, size_t len, char **json)
{
    char err[300];
    struct deployment *d = calloc(1, sizeof(*d));
    if (!d)
        return fail(json, 500, "out of memory");
    int status = parse_body(body, len, d, err, sizeof(err));
    if (status) {
        deployment_free(d);
        return fail(json, status, err);
    }
    const struct rlb_snapshot *s = rlb_snapshot_current();
    bool lfound = false;
    for (size_t i = 0; s && i < s->cfg->n_listeners; i++)
        lfound = lfound || strcmp(s->cfg->listeners[i].name, d->listener) == 0;
    const char *missing_group = !find_group(s, d->from) ? d->from
                                : !find_group(s, d->to) ? d->to : NULL;
    if (!lfound) {
        snprintf(err, sizeof(err), "listener %.64s not found", d->listener);
        status = 404;
    } else if (!current_forward(d->listener, d->priority)) {
        snprintf(err, sizeof(err), "listener %.64s has no forward rule %u", d->listener,
                 d->priority);
        status = 404;
    } else if (missing_group) {
        snprintf(err, sizeof(err), "target group %.64s not found", missing_group);
        status = 404;
    }
    for (struct deployment *o = deployments; !status && o; o = o->next) {
        if (o->state == D_IN_PROGRESS && o->priority == d->priority &&
            strcmp(o->listener, d->listener) == 0) {
            snprintf(err, sizeof(err), "deployment %s is in progress on this rule", o->id);
            status = 409;
        }
    }
    if (!status && save_original(d) < 0) {
        snprintf(err, sizeof(err), "out of memory");
        status = 500;
    }
    if (status) {
        deployment_free(d);
        return fail(json, status, err);
    }
    if (rlb_cluster_enabled())
        return fleet_create(d, json);
    uint64_t now = rlb_now_ms();
    snprintf(d->id, sizeof(d->id), "d-%llu", (unsigned long long)next_id++);
    d->start_ms = now;
    d->windows_seen = rlb_metrics_windows_closed();
    d->state = D_IN_PROGRESS;
    d->next = deployments; /* listed first: the state_file written by the shift has it */
    deployments = d;
    uint32_t p = next_percent(d, 0);
    int rc = apply_percent(d, p);
    if (rc < 0) {
        deployments = d->next;
        status = rc == -ENOENT ? 404 : rc == -EINVAL ? 400 : rc == -EOPNOTSUPP ? 409 : 500;
        snprintf(err, sizeof(err), "%s", d->reason);
        deployment_free(d);
        return fail(json, status, err);
    }
    if (rlb_weights_canary_set(d->listener, d->priority, d->to) < 0)
        rlb_log_warn("deployment %s: out of memory: the canary header route is not set", d->id);
    add_step(d, now, "shift");
    d->step_end_ms = now + (d->linear ? d->step_bake_ms : d->bake_ms);
    forget_old();
    rlb_timer_arm(wheel, &d->timer, now + DEPLOY_TICK_MS, tick);
    rlb_log_info("deployment %s on %s/%u: %s -> %s started (%s)", d->id, d->listener,
                 d->priority, d->from, d->to, d->linear ? "linear" : "canary");
    struct rlb_json j;
    if (rlb_json_init(&j) < 0)
        return fail(json, 500, "out of memory");
    struct fy_node *o = deployment_json(&j, d);
    return emit(&j, o, 201, json);
}

int rlb_deploy_request(enum rlb_deploy_op op, const char *id, const char *body, size_t len,
                       char **json)
{
    *json = NULL;
    if (op == RLB_DEPLOY_CREATE)
        return create(body, len, json);
    struct rlb_json j;
    if (op == RLB_DEPLOY_LIST) {
        if (rlb_json_init(&j) < 0)
            return fail(json, 500, "out of memory");
        struct fy_node *root = rlb_json_obj(&j);
        struct fy_node *arr = rlb_json_arr(&j);
        bool ok = root && arr;
        for (struct deployment *d = deployments; ok && d; d = d->next) {
            struct fy_node *o = deployment_json(&j, d);
            ok = o && rlb_json_push(arr, o) == 0;
        }
        ok = ok && put(&j, root, "deployments", arr);
        return emit(&j, ok ? root : NULL, 200, json);
    }
    struct deployment *d = id ? find(id) : NULL;
    if (!d) {
        char err[128];
        snprintf(err, sizeof(err), "deployment %.64s not found", id ? id : "");
        return fail(json, 404, err);
    }
    if (op == RLB_DEPLOY_STOP) {
        if (d->state != D_IN_PROGRESS) {
            char err[128];
            snprintf(err, sizeof(err), "deployment %s is %s", d->id, state_names[d->state]);
            return fail(json, 409, err);
        }
        if (rlb_cluster_enabled()) {
            int rc = fleet_finish(d, D_STOPPED, rlb_now_ms(), "stopped through the admin API");
            if (rc == -EBUSY)
                return fail(json, 409, "the deployment changed meanwhile on another instance; "
                                       "read it again");
            if (rc < 0)
                return fail(json, 503, "etcd is unreachable: the fleet cannot take changes now");
            d = find(id);
            if (!d)
                return fail(json, 500, "out of memory");
        } else {
            finish(d, D_STOPPED, rlb_now_ms(), "stopped through the admin API");
        }
    }
    if (rlb_json_init(&j) < 0)
        return fail(json, 500, "out of memory");
    return emit(&j, deployment_json(&j, d), 200, json);
}

/* ---- state_file ------------------------------------------------------------------------ */

struct fy_node *rlb_deploy_state_json(struct rlb_json *j)
{
    struct fy_node *arr = NULL;
    bool ok = true;
    for (struct deployment *d = deployments; ok && d; d = d->next) {
        if (d->state != D_IN_PROGRESS)
            continue;
        if (!arr && !(arr = rlb_json_arr(j)))
            return NULL;
        struct fy_node *o = rlb_json_obj(j);
        ok = o && put(j, o, "id", rlb_json_str(j, d->id)) &&
             put(j, o, "listener", rlb_json_str(j, d->listener)) &&
             put(j, o, "priority", rlb_json_uint(j, d->priority)) &&
             put(j, o, "from", rlb_json_str(j, d->from)) &&
             put(j, o, "to", rlb_json_str(j, d->to));
        if (ok && d->had_override) {
            struct fy_node *w = rlb_json_obj(j);
            struct fy_node *gs = rlb_json_arr(j);
            ok = w && gs && put(j, w, "listener", rlb_json_str(j, d->listener)) &&
                 put(j, w, "priority", rlb_json_uint(j, d->priority));
            for (size_t i = 0; ok && i < d->orig_n; i++) {
                struct fy_node *g = rlb_json_obj(j);
                ok = g && put(j, g, "name", rlb_json_str(j, d->orig_groups[i])) &&
                     put(j, g, "weight", rlb_json_uint(j, d->orig_weights[i])) &&
                     rlb_json_push(gs, g) == 0;
            }
            ok = ok && put(j, w, "target_groups", gs) && put(j, o, "original", w);
        }
        ok = ok && rlb_json_push(arr, o) == 0;
    }
    return ok ? arr : NULL;
}

int rlb_deploy_restored(const char *id, const char *listener, uint32_t priority,
                        const char *from, const char *to)
{
    struct deployment *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->listener = strdup(listener);
    d->from = strdup(from);
    d->to = strdup(to);
    if (!d->listener || !d->from || !d->to) {
        deployment_free(d);
        return -ENOMEM;
    }
    snprintf(d->id, sizeof(d->id), "%.20s", id);
    unsigned long long n;
    if (sscanf(d->id, "d-%llu", &n) == 1 && n >= next_id)
        next_id = n + 1;
    d->priority = priority;
    d->state = D_ROLLED_BACK;
    d->start_ms = rlb_now_ms();
    snprintf(d->reason, sizeof(d->reason), "ringlb restarted during the deployment");
    add_step(d, d->start_ms, "ROLLED_BACK: ringlb restarted during the deployment");
    d->next = deployments;
    deployments = d;
    return 0;
}

void rlb_deploy_destroy(void)
{
    while (deployments) {
        struct deployment *d = deployments;
        deployments = d->next;
        if (wheel)
            rlb_timer_cancel(wheel, &d->timer);
        deployment_free(d);
    }
}

/* ---- fleet (cluster.h): records in etcd, the controller on the leader -------------------- *
 *
 * With a cluster block every deployment is a record P/deployments/<id> (record_text: the
 * request's settings plus the progress, times as Unix milliseconds), and a lock
 * P/locks/<listener>/<priority> holds the id while it is IN_PROGRESS. Every instance mirrors
 * the records (GET, the canary header route); only the leader runs the controller timers.
 * Each transition (start, shift, alarm reading, end) is one transaction that compares the
 * record's mod revision with the one the copy reflects, writes the new record and, in the
 * same transaction, the rule's weights — so a stop on one instance and a step on the leader
 * can never both apply. Transitions work on a copy that replaces the original only when the
 * transaction succeeded.
 */

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Monotonic rlb_now_ms() time <-> Unix time (records cross machines). */
static uint64_t to_unix(uint64_t mono)
{
    uint64_t now = rlb_now_ms(), u = unix_ms();
    return mono >= now ? u + (mono - now) : u - (now - mono);
}

static uint64_t from_unix(uint64_t ux)
{
    uint64_t now = rlb_now_ms(), u = unix_ms();
    if (ux >= u)
        return now + (ux - u);
    return now > u - ux ? now - (u - ux) : 0;
}

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

/* A deep copy of d (not linked, timer not armed), NULL on ENOMEM. */
static struct deployment *deployment_clone(const struct deployment *d)
{
    struct deployment *n = malloc(sizeof(*n));
    if (!n)
        return NULL;
    *n = *d;
    n->next = NULL;
    memset(&n->timer, 0, sizeof(n->timer));
    n->armed = false;
    n->listener = dupstr(d->listener);
    n->from = dupstr(d->from);
    n->to = dupstr(d->to);
    n->orig_groups = d->orig_n ? calloc(d->orig_n, sizeof(char *)) : NULL;
    n->orig_weights = d->orig_n ? malloc(d->orig_n * sizeof(uint32_t)) : NULL;
    n->steps = d->n_steps ? malloc(d->n_steps * sizeof(*d->steps)) : NULL;
    n->readings = d->n_readings ? malloc(d->n_readings * sizeof(*d->readings)) : NULL;
    bool ok = n->listener && n->from && n->to && (!d->orig_n || (n->orig_groups &&
              n->orig_weights)) && (!d->n_steps || n->steps) && (!d->n_readings || n->readings);
    for (size_t i = 0; ok && i < d->orig_n; i++)
        ok = (n->orig_groups[i] = strdup(d->orig_groups[i])) != NULL;
    if (!ok) {
        if (!n->orig_groups)
            n->orig_n = 0;
        deployment_free(n);
        return NULL;
    }
    if (d->orig_n)
        memcpy(n->orig_weights, d->orig_weights, d->orig_n * sizeof(uint32_t));
    if (d->n_steps)
        memcpy(n->steps, d->steps, d->n_steps * sizeof(*d->steps));
    if (d->n_readings)
        memcpy(n->readings, d->readings, d->n_readings * sizeof(*d->readings));
    return n;
}

/* The record of d as JSON text (malloc'd), NULL on ENOMEM. */
static char *record_text(const struct deployment *d)
{
    struct rlb_json j;
    if (rlb_json_init(&j) < 0)
        return NULL;
    struct fy_node *o = rlb_json_obj(&j);
    bool ok = o != NULL;
    ok = ok && put(&j, o, "id", rlb_json_str(&j, d->id));
    ok = ok && put(&j, o, "listener", rlb_json_str(&j, d->listener));
    ok = ok && put(&j, o, "priority", rlb_json_uint(&j, d->priority));
    ok = ok && put(&j, o, "from", rlb_json_str(&j, d->from));
    ok = ok && put(&j, o, "to", rlb_json_str(&j, d->to));
    ok = ok && put(&j, o, "linear", rlb_json_bool(&j, d->linear));
    ok = ok && put(&j, o, "canary_percent", rlb_json_uint(&j, d->canary_percent));
    ok = ok && put(&j, o, "step_percent", rlb_json_uint(&j, d->step_percent));
    ok = ok && put(&j, o, "bake_ms", rlb_json_uint(&j, d->bake_ms));
    ok = ok && put(&j, o, "final_bake_ms", rlb_json_uint(&j, d->final_bake_ms));
    ok = ok && put(&j, o, "step_bake_ms", rlb_json_uint(&j, d->step_bake_ms));
    ok = ok && put(&j, o, "max_error_rate", rlb_json_num(&j, d->max_error_rate));
    ok = ok && put(&j, o, "datapoints", rlb_json_uint(&j, d->datapoints));
    ok = ok && put(&j, o, "period_ms", rlb_json_uint(&j, d->period_ms));
    ok = ok && put(&j, o, "min_requests", rlb_json_uint(&j, d->min_requests));
    if (d->had_override) {
        struct fy_node *gs = rlb_json_arr(&j);
        ok = ok && gs;
        for (size_t i = 0; ok && i < d->orig_n; i++) {
            struct fy_node *g = rlb_json_obj(&j);
            ok = g && put(&j, g, "name", rlb_json_str(&j, d->orig_groups[i])) &&
                 put(&j, g, "weight", rlb_json_uint(&j, d->orig_weights[i])) &&
                 rlb_json_push(gs, g) == 0;
        }
        ok = ok && put(&j, o, "original", gs);
    }
    ok = ok && put(&j, o, "state", rlb_json_str(&j, state_names[d->state]));
    ok = ok && put(&j, o, "percent", rlb_json_uint(&j, d->percent));
    ok = ok && put(&j, o, "started_unix_ms", rlb_json_uint(&j, to_unix(d->start_ms)));
    ok = ok && put(&j, o, "step_end_unix_ms", rlb_json_uint(&j, to_unix(d->step_end_ms)));
    ok = ok && put(&j, o, "final_phase", rlb_json_bool(&j, d->final_phase));
    ok = ok && put(&j, o, "breaches", rlb_json_uint(&j, d->breaches));
    ok = ok && put(&j, o, "reason", rlb_json_str(&j, d->reason));
    struct fy_node *hs = rlb_json_arr(&j);
    ok = ok && hs;
    for (size_t i = 0; ok && i < d->n_steps; i++) {
        struct fy_node *x = rlb_json_obj(&j);
        ok = x && put(&j, x, "at_ms", rlb_json_uint(&j, d->steps[i].at_ms)) &&
             put(&j, x, "percent", rlb_json_uint(&j, d->steps[i].percent)) &&
             put(&j, x, "what", rlb_json_str(&j, d->steps[i].what)) && rlb_json_push(hs, x) == 0;
    }
    ok = ok && put(&j, o, "steps", hs);
    struct fy_node *as = rlb_json_arr(&j);
    ok = ok && as;
    for (size_t i = 0; ok && i < d->n_readings; i++) {
        const struct deploy_reading *r = &d->readings[i];
        struct fy_node *x = rlb_json_obj(&j);
        ok = x && put(&j, x, "at_ms", rlb_json_uint(&j, r->at_ms)) &&
             put(&j, x, "requests", rlb_json_uint(&j, r->requests)) &&
             put(&j, x, "errors", rlb_json_uint(&j, r->errors)) &&
             put(&j, x, "counted", rlb_json_bool(&j, r->counted)) &&
             put(&j, x, "breach", rlb_json_bool(&j, r->breach)) && rlb_json_push(as, x) == 0;
    }
    ok = ok && put(&j, o, "readings", as);
    char *text = ok ? rlb_json_emit(&j, o, false) : NULL;
    rlb_json_free(&j);
    return text;
}

static uint64_t rec_u64(struct fy_node *o, const char *key)
{
    int64_t v = 0;
    rlb_json_get_int(rlb_json_get(o, key), 0, INT64_MAX, &v);
    return (uint64_t)v;
}

static bool rec_bool(struct fy_node *o, const char *key)
{
    bool b = false;
    rlb_json_get_bool(rlb_json_get(o, key), &b);
    return b;
}

static char *rec_str(struct fy_node *o, const char *key)
{
    const char *s;
    size_t n;
    if (rlb_json_get_str(rlb_json_get(o, key), &s, &n) < 0)
        return NULL;
    return strndup(s, n);
}

/* Parse a record into a new deployment (mod_rev -1, not linked). NULL when unreadable. */
static struct deployment *record_parse(const char *text, size_t len)
{
    char err[128];
    struct fy_document *doc = rlb_json_parse(text, len, err, sizeof(err));
    if (!doc)
        return NULL;
    struct fy_node *o = fy_document_root(doc);
    struct deployment *d = calloc(1, sizeof(*d));
    char *id = rec_str(o, "id"), *state = rec_str(o, "state"), *reason = rec_str(o, "reason");
    bool ok = d && id && state;
    if (ok) {
        snprintf(d->id, sizeof(d->id), "%s", id);
        d->listener = rec_str(o, "listener");
        d->from = rec_str(o, "from");
        d->to = rec_str(o, "to");
        ok = d->listener && d->from && d->to;
        d->priority = (uint32_t)rec_u64(o, "priority");
        d->linear = rec_bool(o, "linear");
        d->canary_percent = (uint32_t)rec_u64(o, "canary_percent");
        d->step_percent = (uint32_t)rec_u64(o, "step_percent");
        d->bake_ms = rec_u64(o, "bake_ms");
        d->final_bake_ms = rec_u64(o, "final_bake_ms");
        d->step_bake_ms = rec_u64(o, "step_bake_ms");
        d->datapoints = (uint32_t)rec_u64(o, "datapoints");
        d->period_ms = rec_u64(o, "period_ms");
        d->min_requests = rec_u64(o, "min_requests");
        size_t n = 0;
        const char *s = fy_node_get_scalar(rlb_json_get(o, "max_error_rate"), &n);
        char buf[64];
        if (s && n < sizeof(buf)) {
            memcpy(buf, s, n);
            buf[n] = '\0';
            d->max_error_rate = strtod(buf, NULL);
        }
        d->state = D_IN_PROGRESS;
        for (int st = 0; st < 4; st++)
            if (strcmp(state, state_names[st]) == 0)
                d->state = (enum deploy_state)st;
        d->percent = (uint32_t)rec_u64(o, "percent");
        d->start_ms = from_unix(rec_u64(o, "started_unix_ms"));
        d->step_end_ms = from_unix(rec_u64(o, "step_end_unix_ms"));
        d->final_phase = rec_bool(o, "final_phase");
        d->breaches = (uint32_t)rec_u64(o, "breaches");
        snprintf(d->reason, sizeof(d->reason), "%s", reason ? reason : "");
        d->windows_seen = rlb_metrics_windows_closed();
    }
    struct fy_node *orig = rlb_json_get(o, "original");
    if (ok && rlb_json_is_arr(orig)) {
        size_t n = (size_t)fy_node_sequence_item_count(orig);
        d->had_override = true;
        d->orig_groups = calloc(n ? n : 1, sizeof(char *));
        d->orig_weights = calloc(n ? n : 1, sizeof(uint32_t));
        ok = d->orig_groups && d->orig_weights;
        for (size_t i = 0; ok && i < n; i++) {
            struct fy_node *g = fy_node_sequence_get_by_index(orig, (int)i);
            d->orig_groups[i] = rec_str(g, "name");
            d->orig_weights[i] = (uint32_t)rec_u64(g, "weight");
            d->orig_n = i + 1;
            ok = d->orig_groups[i] != NULL;
        }
    }
    struct fy_node *hs = rlb_json_get(o, "steps");
    size_t nh = ok && rlb_json_is_arr(hs) ? (size_t)fy_node_sequence_item_count(hs) : 0;
    if (nh && !(d->steps = calloc(nh, sizeof(*d->steps))))
        ok = false;
    for (size_t i = 0; ok && i < nh; i++) {
        struct fy_node *x = fy_node_sequence_get_by_index(hs, (int)i);
        char *what = rec_str(x, "what");
        d->steps[i].at_ms = rec_u64(x, "at_ms");
        d->steps[i].percent = (uint32_t)rec_u64(x, "percent");
        snprintf(d->steps[i].what, sizeof(d->steps[i].what), "%s", what ? what : "");
        free(what);
        d->n_steps = i + 1;
    }
    struct fy_node *as = rlb_json_get(o, "readings");
    size_t na = ok && rlb_json_is_arr(as) ? (size_t)fy_node_sequence_item_count(as) : 0;
    if (na && !(d->readings = calloc(na, sizeof(*d->readings))))
        ok = false;
    for (size_t i = 0; ok && i < na; i++) {
        struct fy_node *x = fy_node_sequence_get_by_index(as, (int)i);
        d->readings[i] = (struct deploy_reading){
            .at_ms = rec_u64(x, "at_ms"), .requests = rec_u64(x, "requests"),
            .errors = rec_u64(x, "errors"), .counted = rec_bool(x, "counted"),
            .breach = rec_bool(x, "breach")};
        d->n_readings = i + 1;
    }
    free(id);
    free(state);
    free(reason);
    fy_document_destroy(doc);
    if (!ok) {
        deployment_free(d);
        return NULL;
    }
    d->mod_rev = -1;
    return d;
}

/* Write d's record (plus `ops`, a comma-separated list of operation objects, may be NULL) in
 * one transaction, if the record is still at d->mod_rev. create: also take the rule's lock;
 * release: also free it. Returns 0 (d->mod_rev updated), -EBUSY, -EAGAIN or -ENOMEM. */
static int fleet_commit(struct deployment *d, const char *ops, bool create, bool release)
{
    char rsuf[64], lsuf[200];
    snprintf(rsuf, sizeof(rsuf), "deployments/%s", d->id);
    snprintf(lsuf, sizeof(lsuf), "locks/%s/%u", d->listener, d->priority);
    char *rec = record_text(d);
    char *rkey = rlb_cluster_key64(rsuf), *lkey = rlb_cluster_key64(lsuf);
    char *rput = rec ? rlb_cluster_put_op(rsuf, rec) : NULL;
    char idjson[64];
    snprintf(idjson, sizeof(idjson), "\"%s\"", d->id);
    char *lop = create ? rlb_cluster_put_op(lsuf, idjson)
                : release ? rlb_cluster_put_op(lsuf, NULL) : NULL;
    free(rec);
    int rc = -ENOMEM;
    char *cmp = NULL, *succ = NULL;
    if (rkey && lkey && rput && (!(create || release) || lop)) {
        cmp = malloc(strlen(rkey) + strlen(lkey) + 256);
        succ = malloc(strlen(rput) + (ops ? strlen(ops) : 0) + (lop ? strlen(lop) : 0) + 8);
    }
    if (cmp && succ) {
        int o = sprintf(cmp, "[{\"key\":%s,\"target\":\"MOD\",\"result\":\"EQUAL\","
                             "\"mod_revision\":\"%lld\"}",
                        rkey, (long long)(d->mod_rev > 0 ? d->mod_rev : 0));
        if (create)
            o += sprintf(cmp + o, ",{\"key\":%s,\"target\":\"CREATE\",\"result\":\"EQUAL\","
                                  "\"create_revision\":\"0\"}", lkey);
        sprintf(cmp + o, "]");
        sprintf(succ, "[%s%s%s%s%s]", rput, ops ? "," : "", ops ? ops : "", lop ? "," : "",
                lop ? lop : "");
        int64_t rev = 0;
        rc = rlb_cluster_txn(cmp, succ, &rev);
        if (rc == 0)
            d->mod_rev = rev;
    }
    free(cmp);
    free(succ);
    free(rkey);
    free(lkey);
    free(rput);
    free(lop);
    return rc;
}

/* The canary header route of d's rule follows the deployment's state on every instance. */
static void sync_mark(const struct deployment *d)
{
    const char *cur = rlb_weights_canary(d->listener, d->priority);
    if (d->state == D_IN_PROGRESS) {
        if (!cur || strcmp(cur, d->to) != 0)
            rlb_weights_canary_set(d->listener, d->priority, d->to);
        return;
    }
    for (struct deployment *o = deployments; o; o = o->next)
        if (o != d && o->state == D_IN_PROGRESS && o->priority == d->priority &&
            strcmp(o->listener, d->listener) == 0)
            return;
    if (cur)
        rlb_weights_canary_set(d->listener, d->priority, NULL);
}

static void arm(struct deployment *d)
{
    if (d->state == D_IN_PROGRESS && rlb_cluster_leader() && d->mod_rev >= 0 && !d->armed &&
        wheel) {
        d->windows_seen = rlb_metrics_windows_closed();
        rlb_timer_arm(wheel, &d->timer, rlb_now_ms() + DEPLOY_TICK_MS, tick);
        d->armed = true;
    }
}

/* Put n where old is in the list (old == NULL: in front), free old, follow n's state. */
static void replace(struct deployment *old, struct deployment *n)
{
    struct deployment **pp = &deployments;
    while (old && *pp && *pp != old)
        pp = &(*pp)->next;
    if (old && *pp == old) {
        n->next = old->next;
        *pp = n;
        if (wheel)
            rlb_timer_cancel(wheel, &old->timer);
        deployment_free(old);
    } else {
        n->next = deployments;
        deployments = n;
    }
    sync_mark(n);
    arm(n);
}

/* Apply the weights the committed transition wrote (locally; the others get the watch). */
static void apply_weights_locally(const struct deployment *d, const struct rlb_weight *w,
                                  size_t n)
{
    char err[256];
    rlb_cluster_weights_written(d->listener, d->priority, d->mod_rev, n == 0);
    int rc = n ? rlb_weights_set(d->listener, d->priority, w, n, err, sizeof(err))
               : rlb_weights_remove(d->listener, d->priority);
    if (rc < 0 && rc != -ENOENT)
        rlb_log_warn("deployment %s: weights not applied here: %s", d->id,
                     n ? err : strerror(-rc));
}

static int fleet_shift(struct deployment *d, uint32_t p, uint64_t now)
{
    struct deployment *n = deployment_clone(d);
    if (!n)
        return -ENOMEM;
    n->percent = p;
    add_step(n, now, "shift");
    n->step_end_ms = now + (n->linear ? n->step_bake_ms : p == 100 ? n->final_bake_ms
                                                                   : n->bake_ms);
    struct rlb_weight w[2] = {{n->from, 100 - p}, {n->to, p}};
    char *op = rlb_cluster_weights_op(n->listener, n->priority, w, 2);
    int rc = op ? fleet_commit(n, op, false, false) : -ENOMEM;
    free(op);
    if (rc < 0) {
        rlb_log_warn("deployment %s: shift to %u %% not written (%s); waiting for etcd", d->id,
                     p, rc == -EBUSY ? "changed elsewhere" : strerror(-rc));
        deployment_free(n);
        d->mod_rev = -1; /* etcd's record (or the next full read) replaces this copy */
        return rc;
    }
    apply_weights_locally(n, w, 2);
    rlb_log_info("deployment %s on %s/%u: %s now at %u %%", n->id, n->listener, n->priority,
                 n->to, p);
    replace(d, n);
    return 0;
}

static int fleet_finish(struct deployment *d, enum deploy_state st, uint64_t now,
                        const char *why)
{
    struct deployment *n = deployment_clone(d);
    if (!n)
        return -ENOMEM;
    n->state = st;
    if (why)
        snprintf(n->reason, sizeof(n->reason), "%s", why);
    char what[96];
    snprintf(what, sizeof(what), "%s%s%.60s", state_names[st], why ? ": " : "", why ? why : "");
    bool restore_w = st == D_ROLLED_BACK || st == D_STOPPED;
    struct rlb_weight *w = restore_w && n->had_override ? calloc(n->orig_n, sizeof(*w)) : NULL;
    size_t nw = w ? n->orig_n : 0;
    for (size_t i = 0; i < nw; i++)
        w[i] = (struct rlb_weight){n->orig_groups[i], n->orig_weights[i]};
    if (restore_w)
        n->percent = 0;
    add_step(n, now, what);
    char *op = restore_w ? rlb_cluster_weights_op(n->listener, n->priority, w, nw) : NULL;
    int rc = !restore_w || op ? fleet_commit(n, op, false, true) : -ENOMEM;
    free(op);
    if (rc < 0) {
        rlb_log_warn("deployment %s: %s not written (%s)", d->id, what,
                     rc == -EBUSY ? "changed elsewhere" : strerror(-rc));
        free(w);
        deployment_free(n);
        d->mod_rev = -1;
        return rc;
    }
    if (restore_w)
        apply_weights_locally(n, w, nw);
    free(w);
    rlb_log_info("deployment %s on %s/%u: %s", n->id, n->listener, n->priority, what);
    replace(d, n);
    return 0;
}

static int fleet_create(struct deployment *d, char **json)
{
    unsigned char r[4];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        deployment_free(d);
        return fail(json, 500, "no random bytes");
    }
    snprintf(d->id, sizeof(d->id), "d-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    uint64_t now = rlb_now_ms();
    d->start_ms = now;
    d->state = D_IN_PROGRESS;
    d->mod_rev = 0;
    uint32_t p = next_percent(d, 0);
    d->percent = p;
    add_step(d, now, "shift");
    d->step_end_ms = now + (d->linear ? d->step_bake_ms : d->bake_ms);
    struct rlb_weight w[2] = {{d->from, 100 - p}, {d->to, p}};
    char *op = rlb_cluster_weights_op(d->listener, d->priority, w, 2);
    int rc = op ? fleet_commit(d, op, true, false) : -ENOMEM;
    free(op);
    if (rc < 0) {
        deployment_free(d);
        if (rc == -EBUSY)
            return fail(json, 409, "a deployment is in progress on this rule (in the fleet)");
        if (rc == -EAGAIN)
            return fail(json, 503, "etcd is unreachable: the fleet cannot take changes now");
        return fail(json, 500, "out of memory");
    }
    apply_weights_locally(d, w, 2);
    replace(NULL, d);
    forget_old();
    rlb_log_info("deployment %s on %s/%u: %s -> %s started (%s, fleet)", d->id, d->listener,
                 d->priority, d->from, d->to, d->linear ? "linear" : "canary");
    struct rlb_json j;
    if (rlb_json_init(&j) < 0)
        return fail(json, 500, "out of memory");
    return emit(&j, deployment_json(&j, d), 201, json);
}

/* A record from etcd (cluster.c): mirror it. */
static void on_record(const char *id, const char *json, size_t len, int64_t mod_rev)
{
    struct deployment *d = find(id);
    if (!json) {
        if (d) {
            struct deployment **pp = &deployments;
            while (*pp != d)
                pp = &(*pp)->next;
            *pp = d->next;
            if (wheel)
                rlb_timer_cancel(wheel, &d->timer);
            d->state = D_STOPPED;
            sync_mark(d);
            deployment_free(d);
        }
        return;
    }
    if (d && d->mod_rev == mod_rev)
        return; /* this instance's own write coming back */
    struct deployment *n = record_parse(json, len);
    if (!n) {
        rlb_log_warn("cluster: deployment record %.40s is unreadable", id);
        return;
    }
    n->mod_rev = mod_rev;
    replace(d, n);
}

/* Leadership moved: drive every deployment in progress, or stop driving. */
static void on_leader(bool leader)
{
    for (struct deployment *d = deployments; d; d = d->next) {
        if (leader) {
            arm(d);
        } else if (d->armed && wheel) {
            rlb_timer_cancel(wheel, &d->timer);
            d->armed = false;
        }
    }
}
