/* scaling.c — target-tracking scaling advice and its hook (see scaling.h for the rules).
 *
 * State machine of one group (an entry, keyed by the target group's name so that it survives
 * reloads):
 *
 *   no advice ──first closed window──▶ advice = decide(...) ──each closed window──▶ decide again
 *
 * and, beside it, the hook of the group:
 *
 *   idle ──advice changed──▶ running (pid) ──reaped──▶ idle
 *                              │  advice changed again: pending (delivered when it ends)
 *                              └─ timeout: SIGTERM to its process group, grace, SIGKILL
 *
 * rlb_scaling_tick() runs once per main-loop iteration (at most every 100 ms): it follows the
 * current snapshot's scaling blocks (only when the snapshot generation changed), reaps finished
 * hooks with waitpid(pid, WNOHANG), enforces hook timeouts, and — when the metrics module has
 * closed a window since the previous tick (rlb_metrics_windows_closed()) — decides every group
 * from the window that just closed. A group that leaves the configuration is forgotten, except
 * that a hook it still runs is reaped first.
 */
#include "ringlb/scaling.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/cluster.h"
#include "ringlb/json.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/snapshot.h"

extern char **environ;

/* ---- the decision (pure) ---------------------------------------------------------------- */

/* ceil(x) for a count, tolerant of floating-point noise just above an integer
 * (3 × 200 / 200 may come out as 3.0000000000000004). */
static uint64_t ceil_count(double x)
{
    if (!(x > 0))
        return 0;
    if (x >= 4e9)
        return UINT32_MAX;
    double r = nearbyint(x);
    if (fabs(x - r) <= 1e-9 * (x > 1 ? x : 1))
        return (uint64_t)r;
    return (uint64_t)ceil(x);
}

static uint32_t clamp_u32(uint64_t v, uint32_t lo, uint32_t hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return (uint32_t)v;
}

uint64_t rlb_scaling_out_cooldown_left(const struct rlb_scaling_state *st, uint64_t cooldown_ms,
                                       uint64_t now_ms)
{
    if (!st->scaled_out)
        return 0;
    uint64_t end = st->last_scale_out_ms + cooldown_ms;
    return now_ms < end ? end - now_ms : 0;
}

uint64_t rlb_scaling_in_cooldown_left(const struct rlb_scaling_state *st, uint64_t cooldown_ms,
                                      uint64_t now_ms)
{
    if (!st->started)
        return 0;
    uint64_t end = (st->changed ? st->last_change_ms : st->started_ms) + cooldown_ms;
    return now_ms < end ? end - now_ms : 0;
}

void rlb_scaling_decide(const struct rlb_scaling_input *in, struct rlb_scaling_state *st,
                        struct rlb_scaling_decision *out)
{
    memset(out, 0, sizeof(*out));
    if (!st->started) {
        st->started = true;
        st->started_ms = in->now_ms;
    }
    const double tv = in->target_value > 0 && isfinite(in->target_value) ? in->target_value : 1;
    const uint32_t lo = in->min, hi = in->max >= in->min ? in->max : in->min;
    const double metric = isfinite(in->metric) && in->metric > 0 ? in->metric : 0;
    const uint32_t current = in->healthy ? in->healthy : in->registered;
    uint64_t raw;
    if (current)
        raw = ceil_count((double)current * metric / tv);
    else if (in->unserved)
        raw = ceil_count((double)in->unserved / tv);
    else
        raw = 0;
    if (!current && in->unserved && raw < 1)
        raw = 1;
    const uint32_t target = clamp_u32(raw, lo, hi);
    const uint32_t prev = st->valid ? st->desired : current;
    uint32_t next = prev;
    enum rlb_scaling_action act = RLB_SCALING_HOLD;
    char *r = out->reason;
    const size_t rn = sizeof(out->reason);

    if (prev < lo) {
        next = target;
        act = RLB_SCALING_OUT;
        snprintf(r, rn, "scale out: %" PRIu32 " is below min %" PRIu32 "; desired %" PRIu32,
                 prev, lo, next);
    } else if (prev > hi) {
        next = hi;
        act = RLB_SCALING_IN;
        snprintf(r, rn, "scale in: %" PRIu32 " is above max %" PRIu32, prev, hi);
    } else if (target > prev) {
        uint64_t left = rlb_scaling_out_cooldown_left(st, in->scale_out_cooldown_ms, in->now_ms);
        if (left) {
            snprintf(r, rn,
                     "scale-out to %" PRIu32 " held: scale_out_cooldown, %" PRIu64 " ms left",
                     target, left);
        } else if (current) {
            next = target;
            act = RLB_SCALING_OUT;
            snprintf(r, rn,
                     "scale out: %.6g requests per target > target %.6g; ceil(%" PRIu32
                     " x %.6g / %.6g) = %" PRIu64 "%s",
                     metric, tv, current, metric, tv, raw,
                     raw > hi ? " (capped at max)" : raw < lo ? " (raised to min)" : "");
        } else {
            next = target;
            act = RLB_SCALING_OUT;
            if (in->unserved)
                snprintf(r, rn,
                         "scale out: no target registered and %" PRIu64
                         " requests answered 5xx by the load balancer",
                         in->unserved);
            else
                snprintf(r, rn, "scale out: no target registered; min is %" PRIu32, lo);
        }
    } else if (target < prev) {
        uint64_t left = rlb_scaling_in_cooldown_left(st, in->scale_in_cooldown_ms, in->now_ms);
        if (!in->healthy) {
            snprintf(r, rn, "scale-in to %" PRIu32 " held: no healthy target", target);
        } else if (metric > 0.9 * tv) {
            snprintf(r, rn,
                     "scale-in to %" PRIu32
                     " held: %.6g requests per target is not 10%% below target %.6g",
                     target, metric, tv);
        } else if (left) {
            snprintf(r, rn,
                     "scale-in to %" PRIu32 " held: scale_in_cooldown, %" PRIu64 " ms left",
                     target, left);
        } else {
            next = target;
            act = RLB_SCALING_IN;
            snprintf(r, rn,
                     "scale in: %.6g requests per target is at least 10%% below target %.6g; "
                     "ceil(%" PRIu32 " x %.6g / %.6g) = %" PRIu64 "%s",
                     metric, tv, current, metric, tv, raw, raw < lo ? " (raised to min)" : "");
        }
    } else if (target > current) {
        snprintf(r, rn, "holding %" PRIu32 ": %" PRIu32 " target(s) in service", target,
                 current);
    } else if (target < current) {
        snprintf(r, rn, "holding %" PRIu32 ": %" PRIu32 " target(s) in service", target,
                 current);
    } else {
        snprintf(r, rn, "at target: %.6g requests per target, target %.6g", metric, tv);
    }

    out->current = current;
    out->computed = target;
    out->previous = prev;
    out->desired = next;
    out->changed = next != prev;
    out->action = out->changed ? act : RLB_SCALING_HOLD;
    if (out->changed) {
        st->changed = true;
        st->last_change_ms = in->now_ms;
        if (act == RLB_SCALING_OUT) {
            st->scaled_out = true;
            st->last_scale_out_ms = in->now_ms;
        }
    }
    st->valid = true;
    st->desired = next;
}

/* ---- groups and hooks (main thread) ----------------------------------------------------- */

/* One group with a scaling block. Owner: this file (main thread). */
struct entry {
    char *name;                    /* target group name */
    bool gone;                     /* no longer in the configuration (kept while a hook runs) */
    bool seen;                     /* scratch of sync() */
    size_t gidx;                   /* index in the last synced snapshot's groups */
    /* copy of the scaling block */
    double target_value;
    uint32_t min, max;
    uint64_t out_cooldown_ms, in_cooldown_ms;
    char *hook;                    /* NULL = none */
    /* advice */
    struct rlb_scaling_state st;
    struct rlb_scaling_decision last;
    uint64_t evaluations;
    double metric;                 /* inputs of the last decision */
    uint64_t requests, unserved, window_ms;
    uint32_t healthy, registered;
    uint64_t last_eval_rt_us;      /* wall clock of the last decision */
    uint64_t last_change_rt_us;    /* wall clock of the last change, 0 = never */
    /* hook */
    pid_t hook_pid;                /* > 0 while running */
    uint64_t hook_deadline_ms;
    bool hook_term_sent, hook_kill_sent;
    bool hook_pending;             /* the advice changed while the hook ran */
    bool hook_delivered_valid;
    uint32_t hook_delivered;       /* desired count given to the last hook started */
    uint64_t hook_runs, hook_failures, hook_timeouts;
    int hook_last_exit;            /* exit status, -1 = none / killed */
    int hook_last_signal;          /* signal that ended it, 0 = none */
    uint64_t hook_last_start_rt_us;
};

static struct {
    struct entry **v;
    size_t n, cap;
    uint64_t windows_seen;         /* rlb_metrics_windows_closed() at the last decision round */
    uint64_t snap_gen;             /* generation of the last synced snapshot */
    const void *snap;              /* and its address */
    uint64_t now_ms;               /* time of the last tick */
    uint64_t hook_timeout_ms;
} S;

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void entry_free(struct entry *e)
{
    free(e->name);
    free(e->hook);
    free(e);
}

/* Remove entry i (order is not kept). */
static void entry_remove(size_t i)
{
    entry_free(S.v[i]);
    S.v[i] = S.v[--S.n];
}

static struct entry *entry_find(const char *name)
{
    for (size_t i = 0; i < S.n; i++)
        if (strcmp(S.v[i]->name, name) == 0)
            return S.v[i];
    return NULL;
}

static struct entry *entry_add(const char *name)
{
    if (S.n == S.cap) {
        size_t ncap = S.cap ? S.cap * 2 : 8;
        struct entry **nv = realloc(S.v, ncap * sizeof(*nv));
        if (!nv)
            return NULL;
        S.v = nv;
        S.cap = ncap;
    }
    struct entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->hook_last_exit = -1;
    S.v[S.n++] = e;
    return e;
}

int rlb_scaling_init(void)
{
    memset(&S, 0, sizeof(S));
    S.hook_timeout_ms = RLB_SCALING_HOOK_TIMEOUT_MS;
    S.windows_seen = rlb_metrics_windows_closed();
    return 0;
}

void rlb_scaling_set_hook_timeout(uint64_t timeout_ms)
{
    S.hook_timeout_ms = timeout_ms ? timeout_ms : RLB_SCALING_HOOK_TIMEOUT_MS;
}

/* Follow the scaling blocks of snapshot `s`. */
static void sync_snapshot(const struct rlb_snapshot *s)
{
    for (size_t i = 0; i < S.n; i++)
        S.v[i]->seen = false;
    for (size_t g = 0; g < s->cfg->n_target_groups; g++) {
        const struct rlb_target_group_cfg *gc = s->groups[g].cfg;
        if (!gc->scaling.present)
            continue;
        struct entry *e = entry_find(gc->name);
        if (!e && !(e = entry_add(gc->name))) {
            rlb_log_error("scaling: out of memory tracking group %s", gc->name);
            continue;
        }
        const struct rlb_scaling_cfg *sc = &gc->scaling;
        e->seen = true;
        e->gone = false;
        e->gidx = g;
        e->target_value = sc->target_value;
        e->min = sc->min;
        e->max = sc->max;
        e->out_cooldown_ms = sc->scale_out_cooldown_ms;
        e->in_cooldown_ms = sc->scale_in_cooldown_ms;
        if (!sc->hook || !e->hook || strcmp(sc->hook, e->hook) != 0) {
            char *h = sc->hook ? strdup(sc->hook) : NULL;
            if (sc->hook && !h) {
                rlb_log_error("scaling: out of memory copying the hook of %s", gc->name);
            } else {
                free(e->hook);
                e->hook = h;
            }
        }
    }
    for (size_t i = 0; i < S.n;) {
        struct entry *e = S.v[i];
        if (!e->seen) {
            e->gone = true;
            if (e->hook_pid <= 0) {
                entry_remove(i);
                continue;
            }
        }
        i++;
    }
}

/* Start the hook of `e` for its current advice. Returns 0 or -errno. */
static int hook_spawn(struct entry *e, uint64_t now_ms)
{
    char env_group[128], env_desired[48], env_current[48], env_prev[48], env_metric[64],
        env_target[64], env_reason[sizeof(e->last.reason) + 16];
    snprintf(env_group, sizeof(env_group), "RINGLB_TARGET_GROUP=%s", e->name);
    snprintf(env_desired, sizeof(env_desired), "RINGLB_DESIRED=%" PRIu32, e->st.desired);
    snprintf(env_current, sizeof(env_current), "RINGLB_CURRENT=%" PRIu32, e->last.current);
    snprintf(env_prev, sizeof(env_prev), "RINGLB_PREVIOUS=%" PRIu32,
             e->hook_delivered_valid ? e->hook_delivered : e->last.previous);
    snprintf(env_metric, sizeof(env_metric), "RINGLB_METRIC_VALUE=%.6g", e->metric);
    snprintf(env_target, sizeof(env_target), "RINGLB_TARGET_VALUE=%.6g", e->target_value);
    snprintf(env_reason, sizeof(env_reason), "RINGLB_REASON=%s", e->last.reason);
    char *ours[] = {env_group, env_desired, env_current, env_prev,
                    env_metric, env_target, env_reason};
    const size_t n_ours = sizeof(ours) / sizeof(ours[0]);

    size_t n_env = 0;
    while (environ && environ[n_env])
        n_env++;
    char **envp = calloc(n_env + n_ours + 1, sizeof(*envp));
    if (!envp)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        bool clash = false;
        for (size_t j = 0; j < n_ours && !clash; j++) {
            size_t nl = (size_t)(strchr(ours[j], '=') - ours[j]) + 1;
            clash = strncmp(environ[i], ours[j], nl) == 0;
        }
        if (!clash)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_ours; j++)
        envp[k++] = ours[j];
    envp[k] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* stdout may be the access log ("-"): the hook writes to ringlb's stderr instead. */
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34)
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
#endif
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    /* The main thread blocks these for its signalfd and ignores SIGPIPE; the hook must not
     * inherit that. */
    int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&dflt, sigs[i]);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dflt);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    char arg0[] = "sh", arg1[] = "-c";
    char *argv[] = {arg0, arg1, e->hook, NULL};
    pid_t pid = -1;
    int err = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    e->hook_runs++;
    e->hook_last_start_rt_us = realtime_us();
    if (err != 0) {
        e->hook_failures++;
        rlb_log_error("scaling: group %s: cannot run hook %s: %s", e->name, e->hook,
                      strerror(err));
        return -err;
    }
    e->hook_pid = pid;
    e->hook_deadline_ms = now_ms + S.hook_timeout_ms;
    e->hook_term_sent = e->hook_kill_sent = false;
    e->hook_pending = false;
    e->hook_delivered = e->st.desired;
    e->hook_delivered_valid = true;
    rlb_log_info("scaling: group %s: hook started (pid %d, desired %" PRIu32 ")", e->name,
                 (int)pid, e->st.desired);
    return 0;
}

/* The advice of `e` changed: run its hook now, or after the running one. */
static void hook_request(struct entry *e, uint64_t now_ms)
{
    if (!e->hook)
        return;
    if (rlb_cluster_enabled() && !rlb_cluster_leader())
        return; /* a fleet runs one hook runner: the leader's (cluster.h) */
    if (e->hook_pid > 0) {
        e->hook_pending = true;
        return;
    }
    hook_spawn(e, now_ms);
}

/* Reap or time out the hook of `e`. Returns true when the entry was freed (gone, no hook). */
static bool hook_poll(size_t i, uint64_t now_ms)
{
    struct entry *e = S.v[i];
    if (e->hook_pid <= 0)
        return false;
    int status = 0;
    pid_t r = waitpid(e->hook_pid, &status, WNOHANG);
    if (r == 0) {
        if (!e->hook_term_sent && now_ms >= e->hook_deadline_ms) {
            rlb_log_warn("scaling: group %s: hook (pid %d) still running after %" PRIu64
                         " ms: terminating it",
                         e->name, (int)e->hook_pid, S.hook_timeout_ms);
            kill(-e->hook_pid, SIGTERM);
            kill(e->hook_pid, SIGTERM);
            e->hook_term_sent = true;
            e->hook_timeouts++;
        } else if (e->hook_term_sent && !e->hook_kill_sent &&
                   now_ms >= e->hook_deadline_ms + RLB_SCALING_HOOK_KILL_GRACE_MS) {
            kill(-e->hook_pid, SIGKILL);
            kill(e->hook_pid, SIGKILL);
            e->hook_kill_sent = true;
        }
        return false;
    }
    if (r < 0 && errno == EINTR)
        return false;
    /* Ended (or not our child any more: ECHILD when SIGCHLD is ignored). */
    e->hook_pid = 0;
    e->hook_last_exit = -1;
    e->hook_last_signal = 0;
    if (r > 0 && WIFEXITED(status)) {
        e->hook_last_exit = WEXITSTATUS(status);
        if (e->hook_last_exit != 0) {
            e->hook_failures++;
            rlb_log_warn("scaling: group %s: hook exited with status %d", e->name,
                         e->hook_last_exit);
        }
    } else if (r > 0 && WIFSIGNALED(status)) {
        e->hook_last_signal = WTERMSIG(status);
        e->hook_failures++;
        rlb_log_warn("scaling: group %s: hook killed by signal %d", e->name,
                     e->hook_last_signal);
    }
    if (e->gone) {
        entry_remove(i);
        return true;
    }
    if (e->hook_pending) {
        e->hook_pending = false;
        if (e->hook && (!e->hook_delivered_valid || e->st.desired != e->hook_delivered))
            hook_spawn(e, now_ms);
    }
    return false;
}

/* Decide entry `e` from the window that just closed. */
static void evaluate(struct entry *e, const struct rlb_snapshot *s, uint64_t now_ms)
{
    const struct rlb_group *g = &s->groups[e->gidx];
    uint32_t mh = 0, registered = 0, serving = 0;
    rlb_metrics_group_counts(g, &mh, NULL, &registered);
    for (size_t k = 0; k < g->n_targets; k++) {
        int st = atomic_load_explicit(&g->targets[k]->state, memory_order_relaxed);
        if (st == RLB_TARGET_HEALTHY || st == RLB_TARGET_UNAVAILABLE)
            serving++;
    }
    struct rlb_metrics_window w;
    rlb_metrics_group_window(e->name, &w);
    struct rlb_scaling_input in = {
        .target_value = e->target_value,
        .min = e->min,
        .max = e->max,
        .scale_out_cooldown_ms = e->out_cooldown_ms,
        .scale_in_cooldown_ms = e->in_cooldown_ms,
        .healthy = serving,
        .registered = registered,
        .metric = rlb_metrics_request_count_per_target(e->name, mh, registered),
        .unserved = w.elb[1],
        .now_ms = now_ms,
    };
    e->metric = in.metric;
    e->requests = w.requests;
    e->unserved = w.elb[1];
    e->window_ms = w.window_ms;
    e->healthy = serving;
    e->registered = registered;
    rlb_scaling_decide(&in, &e->st, &e->last);
    e->evaluations++;
    e->last_eval_rt_us = realtime_us();
    if (e->last.changed) {
        e->last_change_rt_us = e->last_eval_rt_us;
        rlb_log_info("scaling: group %s: desired %" PRIu32 " -> %" PRIu32 " (%s)", e->name,
                     e->last.previous, e->last.desired, e->last.reason);
        hook_request(e, now_ms);
    }
}

void rlb_scaling_tick(const struct rlb_snapshot *s, uint64_t now_ms)
{
    S.now_ms = now_ms;
    if (s && (s != S.snap || s->generation != S.snap_gen)) {
        sync_snapshot(s);
        S.snap = s;
        S.snap_gen = s->generation;
    }
    for (size_t i = 0; i < S.n;) {
        if (!hook_poll(i, now_ms))
            i++;
    }
    uint64_t closed = rlb_metrics_windows_closed();
    if (closed == S.windows_seen)
        return;
    S.windows_seen = closed;
    if (!s || closed == 0)
        return;
    for (size_t i = 0; i < S.n; i++)
        if (!S.v[i]->gone)
            evaluate(S.v[i], s, now_ms);
}

void rlb_scaling_stop(void)
{
    for (size_t i = 0; i < S.n; i++) {
        struct entry *e = S.v[i];
        if (e->hook_pid > 0) {
            kill(-e->hook_pid, SIGTERM);
            kill(e->hook_pid, SIGTERM);
        }
        entry_free(e);
    }
    free(S.v);
    uint64_t timeout = S.hook_timeout_ms;
    memset(&S, 0, sizeof(S));
    S.hook_timeout_ms = timeout;
}

unsigned rlb_scaling_hooks_running(void)
{
    unsigned n = 0;
    for (size_t i = 0; i < S.n; i++)
        n += S.v[i]->hook_pid > 0;
    return n;
}

/* ---- admin JSON and Prometheus (main thread) -------------------------------------------- */

/* A JSON answer being built; `ok` turns false at the first failure. */
struct jb {
    struct rlb_json *j;
    bool ok;
};

static struct fy_node *chk(struct jb *b, struct fy_node *n)
{
    if (!n)
        b->ok = false;
    return n;
}

static void put(struct jb *b, struct fy_node *obj, const char *key, struct fy_node *v)
{
    if (!obj || rlb_json_set(b->j, obj, key, v) < 0)
        b->ok = false;
}

static struct fy_node *iso_time(struct jb *b, uint64_t rt_us)
{
    if (!rt_us)
        return chk(b, rlb_json_null(b->j));
    time_t sec = (time_t)(rt_us / 1000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char t[96];
    snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(rt_us % 1000000u / 1000u));
    return chk(b, rlb_json_str(b->j, t));
}

static int by_config_order(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    if (x->gone != y->gone)
        return x->gone ? 1 : -1;
    return x->gidx < y->gidx ? -1 : x->gidx > y->gidx;
}

/* Put the entries in configuration order (removals swap entries around). */
static void sort_entries(void)
{
    if (S.n > 1)
        qsort(S.v, S.n, sizeof(*S.v), by_config_order);
}

static const char *action_name(enum rlb_scaling_action a)
{
    switch (a) {
    case RLB_SCALING_OUT:
        return "scale_out";
    case RLB_SCALING_IN:
        return "scale_in";
    default:
        return "hold";
    }
}

static struct fy_node *hook_json(struct jb *b, const struct entry *e)
{
    struct rlb_json *j = b->j;
    if (!e->hook)
        return chk(b, rlb_json_null(j));
    struct fy_node *h = chk(b, rlb_json_obj(j));
    put(b, h, "command", chk(b, rlb_json_str(j, e->hook)));
    put(b, h, "running", chk(b, rlb_json_bool(j, e->hook_pid > 0)));
    put(b, h, "pid", chk(b, e->hook_pid > 0 ? rlb_json_int(j, e->hook_pid) : rlb_json_null(j)));
    put(b, h, "pending", chk(b, rlb_json_bool(j, e->hook_pending)));
    put(b, h, "runs", chk(b, rlb_json_uint(j, e->hook_runs)));
    put(b, h, "failures", chk(b, rlb_json_uint(j, e->hook_failures)));
    put(b, h, "timeouts", chk(b, rlb_json_uint(j, e->hook_timeouts)));
    put(b, h, "last_desired",
        chk(b, e->hook_delivered_valid ? rlb_json_uint(j, e->hook_delivered) : rlb_json_null(j)));
    put(b, h, "last_started", iso_time(b, e->hook_last_start_rt_us));
    put(b, h, "last_exit_status",
        chk(b, e->hook_last_exit >= 0 ? rlb_json_int(j, e->hook_last_exit) : rlb_json_null(j)));
    put(b, h, "last_signal",
        chk(b, e->hook_last_signal ? rlb_json_int(j, e->hook_last_signal) : rlb_json_null(j)));
    put(b, h, "timeout_seconds", chk(b, rlb_json_num(j, (double)S.hook_timeout_ms / 1000.0)));
    return h;
}

static struct fy_node *entry_json(struct jb *b, const struct entry *e, uint64_t now_ms)
{
    struct rlb_json *j = b->j;
    bool ev = e->evaluations > 0;
    struct fy_node *m = chk(b, rlb_json_obj(j));
    put(b, m, "target_group", chk(b, rlb_json_str(j, e->name)));
    put(b, m, "metric", chk(b, rlb_json_str(j, "request_count_per_target")));
    put(b, m, "target_value", chk(b, rlb_json_num(j, e->target_value)));
    put(b, m, "min", chk(b, rlb_json_uint(j, e->min)));
    put(b, m, "max", chk(b, rlb_json_uint(j, e->max)));
    put(b, m, "metric_value", chk(b, ev ? rlb_json_num(j, e->metric) : rlb_json_null(j)));
    put(b, m, "window_requests", chk(b, ev ? rlb_json_uint(j, e->requests) : rlb_json_null(j)));
    put(b, m, "window_seconds",
        chk(b, ev ? rlb_json_num(j, (double)e->window_ms / 1000.0) : rlb_json_null(j)));
    put(b, m, "healthy", chk(b, ev ? rlb_json_uint(j, e->healthy) : rlb_json_null(j)));
    put(b, m, "registered", chk(b, ev ? rlb_json_uint(j, e->registered) : rlb_json_null(j)));
    put(b, m, "current", chk(b, ev ? rlb_json_uint(j, e->last.current) : rlb_json_null(j)));
    put(b, m, "computed", chk(b, ev ? rlb_json_uint(j, e->last.computed) : rlb_json_null(j)));
    put(b, m, "desired", chk(b, ev ? rlb_json_uint(j, e->st.desired) : rlb_json_null(j)));
    put(b, m, "action", chk(b, ev ? rlb_json_str(j, action_name(e->last.action))
                                  : rlb_json_null(j)));
    put(b, m, "reason",
        chk(b, rlb_json_str(j, ev ? e->last.reason
                                  : "waiting for the first complete metrics window")));
    put(b, m, "evaluations", chk(b, rlb_json_uint(j, e->evaluations)));
    put(b, m, "last_evaluation", iso_time(b, e->last_eval_rt_us));
    put(b, m, "last_change", iso_time(b, e->last_change_rt_us));
    uint64_t out_left = rlb_scaling_out_cooldown_left(&e->st, e->out_cooldown_ms, now_ms);
    uint64_t in_left = rlb_scaling_in_cooldown_left(&e->st, e->in_cooldown_ms, now_ms);
    struct fy_node *cd = chk(b, rlb_json_obj(j));
    put(b, cd, "scale_out_cooldown_seconds",
        chk(b, rlb_json_num(j, (double)e->out_cooldown_ms / 1000.0)));
    put(b, cd, "scale_in_cooldown_seconds",
        chk(b, rlb_json_num(j, (double)e->in_cooldown_ms / 1000.0)));
    put(b, cd, "scale_out_active", chk(b, rlb_json_bool(j, out_left > 0)));
    put(b, cd, "scale_out_remaining_seconds", chk(b, rlb_json_num(j, (double)out_left / 1000.0)));
    put(b, cd, "scale_in_active", chk(b, rlb_json_bool(j, in_left > 0)));
    put(b, cd, "scale_in_remaining_seconds", chk(b, rlb_json_num(j, (double)in_left / 1000.0)));
    put(b, m, "cooldown", cd);
    put(b, m, "hook", hook_json(b, e));
    return m;
}

struct fy_node *rlb_scaling_json(struct rlb_json *j, uint64_t now_ms)
{
    struct jb b = {.j = j, .ok = true};
    if (!now_ms)
        now_ms = S.now_ms;
    struct fy_node *root = chk(&b, rlb_json_obj(j));
    struct fy_node *arr = chk(&b, rlb_json_arr(j));
    sort_entries();
    for (size_t i = 0; i < S.n; i++) {
        const struct entry *e = S.v[i];
        if (e->gone)
            continue;
        if (!arr || rlb_json_push(arr, entry_json(&b, e, now_ms)) < 0)
            b.ok = false;
    }
    put(&b, root, "target_groups", arr);
    return b.ok ? root : NULL;
}

void rlb_scaling_render_prometheus(FILE *f)
{
    sort_entries();
    fputs("# HELP ringlb_scaling_desired_targets Scaling advice: desired target count of the "
          "group (target tracking on RequestCountPerTarget; no CloudWatch equivalent).\n"
          "# TYPE ringlb_scaling_desired_targets gauge\n",
          f);
    for (size_t i = 0; i < S.n; i++) {
        const struct entry *e = S.v[i];
        if (e->gone || !e->st.valid)
            continue;
        /* Group names are [A-Za-z0-9._-] (config.c): nothing to escape. */
        fprintf(f, "ringlb_scaling_desired_targets{target_group=\"%s\"} %" PRIu32 "\n", e->name,
                e->st.desired);
    }
}
