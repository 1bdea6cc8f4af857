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

#include "ringlb/admin.h"
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
};

static struct rlb_timer_wheel *wheel;
static struct deployment *deployments; /* newest first */
static uint64_t next_id = 1;

void rlb_deploy_init(struct rlb_timer_wheel *w) { wheel = w; }

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

static void finish(struct deployment *d, enum deploy_state st, uint64_t now, const char *why)
{
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
    d->acc_ms += w.window_ms;
    d->acc_req += w.requests;
    d->acc_err += w.target[2] + w.target[3] + w.elb[0] + w.elb[1];
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

static void tick(struct rlb_timer *t, uint64_t now)
{
    struct deployment *d = from_timer(t);
    if (d->state != D_IN_PROGRESS)
        return;
    char why[160];
    if (to_unhealthy(d)) {
        finish(d, D_ROLLED_BACK, now, "target group to has no healthy target");
        return;
    }
    if (alarm_check(d, now, why, sizeof(why))) {
        finish(d, D_ROLLED_BACK, now, why);
        return;
    }
    if (now >= d->step_end_ms) {
        if (d->percent == 100) {
            if (d->linear && !d->final_phase && d->final_bake_ms) {
                d->final_phase = true;
                d->step_end_ms = now + d->final_bake_ms;
            } else {
                finish(d, D_SUCCESSFUL, now, NULL);
                return;
            }
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
    rlb_timer_arm(wheel, &d->timer, now + DEPLOY_TICK_MS, tick);
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
        finish(d, D_STOPPED, rlb_now_ms(), "stopped through the admin API");
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
