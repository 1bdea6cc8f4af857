/* snapshot.c — build, share and free runtime snapshots and the targets they share.
 *
 * Target membership is resolved by targets.c (rlb_targets_resolve): a target object is reused
 * from the previous snapshot when its group name and address are the same, so that a reload
 * keeps target objects (and their health and pooled connections) that did not change. The
 * parsed configuration is owned by a small refcounted share, so that a runtime registration
 * change can rebuild the snapshot around the same configuration.
 * Target slot ids come from a free list guarded by a mutex: slots are taken when a target is
 * created (main thread) and given back when its last reference goes (possibly on a worker, at
 * the end of an old snapshot's last request) — never on the request path.
 */
#include "ringlb/snapshot.h"

#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/router.h"
#include "ringlb/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ringlb/targets.h"
#include "ringlb/weights.h"
#include "ringlb/worker.h"

static struct rlb_snapshot *current_snapshot;
static char last_error[600];

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t *free_slots;
static size_t n_free_slots, cap_free_slots;
static _Atomic uint32_t slot_limit;

static int slot_take(uint32_t *out)
{
    pthread_mutex_lock(&slot_lock);
    if (n_free_slots > 0) {
        *out = free_slots[--n_free_slots];
    } else {
        *out = atomic_fetch_add(&slot_limit, 1);
    }
    pthread_mutex_unlock(&slot_lock);
    return 0;
}

static void slot_give(uint32_t slot)
{
    pthread_mutex_lock(&slot_lock);
    if (n_free_slots == cap_free_slots) {
        size_t ncap = cap_free_slots ? cap_free_slots * 2 : 64;
        uint32_t *n = realloc(free_slots, ncap * sizeof(*n));
        if (!n) {
            pthread_mutex_unlock(&slot_lock); /* the slot is leaked, never reused */
            return;
        }
        free_slots = n;
        cap_free_slots = ncap;
    }
    free_slots[n_free_slots++] = slot;
    pthread_mutex_unlock(&slot_lock);
}

uint32_t rlb_target_slot_limit(void) { return atomic_load(&slot_limit); }

const char *rlb_target_reason_name(int reason)
{
    static const char *const names[] = {
        NULL,
        "Elb.InitialHealthChecking",
        "Target.ResponseCodeMismatch",
        "Target.Timeout",
        "Target.FailedHealthChecks",
        "Target.DeregistrationInProgress",
        "Target.HealthCheckDisabled",
        "Target.NotRegistered",
    };
    if (reason <= 0 || reason > RLB_REASON_NOT_REGISTERED)
        return NULL;
    return names[reason];
}

const char *rlb_target_state_name(int state)
{
    static const char *const names[] = {"initial", "healthy", "unhealthy",
                                        "draining", "unused", "unavailable"};
    if (state < 0 || state > RLB_TARGET_UNAVAILABLE)
        return "unknown";
    return names[state];
}

void rlb_target_unref(struct rlb_target *t)
{
    if (atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    slot_give(t->slot);
    free(t->group_name);
    free(t);
}

void rlb_sockaddr_ip(const struct rlb_sockaddr *a, char *out, size_t n)
{
    const void *src = a->ss.ss_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (!inet_ntop(a->ss.ss_family, src, out, (socklen_t)n))
        snprintf(out, n, "?");
}

uint16_t rlb_sockaddr_port(const struct rlb_sockaddr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

bool rlb_sockaddr_equal(const struct rlb_sockaddr *a, const struct rlb_sockaddr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static void format_addr(const struct rlb_sockaddr *a, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    rlb_sockaddr_ip(a, ip, sizeof(ip));
    if (a->ss.ss_family == AF_INET6)
        snprintf(out, n, "[%s]:%u", ip, rlb_sockaddr_port(a));
    else
        snprintf(out, n, "%s:%u", ip, rlb_sockaddr_port(a));
}

/* FNV-1a of a group name: its opaque, stable id in stickiness cookies. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

struct rlb_target *rlb_target_new(const char *group, const struct rlb_sockaddr *addr, int state,
                                  int reason)
{
    struct rlb_target *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->group_name = strdup(group);
    if (!t->group_name) {
        free(t);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    slot_take(&t->slot);
    t->addr = *addr;
    format_addr(addr, t->name, sizeof(t->name));
    t->id_hash = name_hash(group) * 31 ^ name_hash(t->name);
    atomic_init(&t->state, state);
    atomic_init(&t->reason, reason);
    atomic_init(&t->inflight, 0);
    atomic_init(&t->routable_since_ms, state == RLB_TARGET_UNAVAILABLE ? rlb_now_ms() : 0);
    return t;
}

/* The configuration shared by a snapshot and the snapshots rebuilt from it. */
struct rlb_config_share {
    _Atomic uint32_t refs;
    struct rlb_config *cfg;
};

static void share_unref(struct rlb_config_share *sh)
{
    if (sh && atomic_fetch_sub(&sh->refs, 1) == 1) {
        rlb_config_free(sh->cfg);
        free(sh);
    }
}

static struct rlb_balance_slot *slots_new(unsigned n_workers)
{
    struct rlb_balance_slot *s = aligned_alloc(64, sizeof(*s) * (n_workers ? n_workers : 1));
    if (s)
        memset(s, 0, sizeof(*s) * (n_workers ? n_workers : 1));
    return s;
}

/* Index of the target group called `name` in s->cfg (the caller knows it exists). */
static size_t group_index(const struct rlb_snapshot *s, const char *name)
{
    for (size_t g = 0; g < s->cfg->n_target_groups; g++)
        if (strcmp(s->cfg->target_groups[g].name, name) == 0)
            return g;
    return 0;
}

/* Resolve forward action `a` of listener `lname` (rule `priority`, 0 = default action) into
 * f: the file's groups and weights, or the runtime override of weights.h when one fits. */
static int forward_build(struct rlb_snapshot *s, const struct rlb_action *a,
                         struct rlb_forward *f, const char *lname, uint32_t priority)
{
    memset(f, 0, sizeof(*f));
    if (a->type != RLB_ACTION_FORWARD)
        return 0;
    const struct rlb_weights_override *ov = rlb_weights_find(lname, priority);
    if (ov && !rlb_weights_applies(s->cfg, ov))
        ov = NULL;
    f->n_groups = ov ? ov->n : a->forward.n_groups;
    f->groups = calloc(f->n_groups, sizeof(*f->groups));
    f->weights = calloc(f->n_groups, sizeof(*f->weights));
    f->group_hash = calloc(f->n_groups, sizeof(*f->group_hash));
    /* One row of current weights per worker, rounded up to whole cache lines. */
    f->cur_stride = (uint32_t)((f->n_groups + 15) & ~(size_t)15);
    size_t bytes = (size_t)f->cur_stride * sizeof(int32_t) * (s->n_workers ? s->n_workers : 1);
    f->cur = aligned_alloc(64, bytes);
    if (!f->groups || !f->weights || !f->group_hash || !f->cur)
        return -ENOMEM;
    memset(f->cur, 0, bytes);
    for (size_t i = 0; i < f->n_groups; i++) {
        if (ov) {
            f->groups[i] = &s->groups[group_index(s, ov->groups[i])];
            f->weights[i] = ov->weights[i];
        } else {
            f->groups[i] = &s->groups[a->forward.groups[i].group_index];
            f->weights[i] = a->forward.groups[i].weight_set ? a->forward.groups[i].weight : 1;
        }
        f->group_hash[i] = name_hash(f->groups[i]->cfg->name);
        f->total_weight += f->weights[i];
    }
    const char *canary = rlb_weights_canary(lname, priority);
    const char *hname = s->cfg->admin.canary_header;
    for (size_t i = 0; canary && hname && i < f->n_groups; i++) {
        if (strcmp(f->groups[i]->cfg->name, canary) == 0) {
            f->canary = f->groups[i];
            f->canary_header = hname;
            f->canary_header_len = (uint32_t)strlen(hname);
        }
    }
    return 0;
}

static void forward_free(struct rlb_forward *f)
{
    free(f->groups);
    free(f->weights);
    free(f->group_hash);
    free(f->cur);
}

static void snapshot_free(struct rlb_snapshot *s)
{
    if (s->listeners) {
        for (size_t i = 0; i < s->cfg->n_listeners; i++) {
            struct rlb_listener *l = &s->listeners[i];
            if (l->rule_forwards)
                for (size_t r = 0; r < l->cfg->n_rules; r++)
                    forward_free(&l->rule_forwards[r]);
            free(l->rule_forwards);
            forward_free(&l->default_forward);
            rlb_router_free(l->router);
            rlb_tls_ctx_free(l->tls);
        }
    }
    if (s->groups) {
        for (size_t g = 0; g < s->cfg->n_target_groups; g++) {
            struct rlb_group *grp = &s->groups[g];
            for (size_t i = 0; i < grp->n_targets; i++)
                if (grp->targets[i])
                    rlb_target_unref(grp->targets[i]);
            free(grp->targets);
            free(grp->slots);
        }
    }
    free(s->listeners);
    free(s->groups);
    share_unref(s->cfg_share);
    free(s);
}

/* Build a snapshot around `share` (the caller's reference moves into the snapshot). */
static struct rlb_snapshot *build(struct rlb_config_share *share, const struct rlb_snapshot *prev,
                                  unsigned n_workers, uint64_t generation)
{
    struct rlb_config *cfg = share->cfg;
    struct rlb_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        share_unref(share);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->generation = generation;
    s->cfg = cfg;
    s->cfg_share = share;
    s->n_workers = n_workers;
    s->groups = calloc(cfg->n_target_groups ? cfg->n_target_groups : 1, sizeof(*s->groups));
    s->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*s->listeners));
    if (!s->groups || !s->listeners)
        goto fail;
    for (size_t g = 0; g < cfg->n_target_groups; g++) {
        const struct rlb_target_group_cfg *gc = &cfg->target_groups[g];
        struct rlb_group *grp = &s->groups[g];
        grp->cfg = gc;
        grp->metric_id = rlb_metrics_group_id(gc->name);
        grp->slots = slots_new(n_workers);
        if (!grp->slots || rlb_targets_resolve(gc, prev, &grp->targets, &grp->n_targets) < 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct rlb_listener *l = &s->listeners[i];
        l->cfg = &cfg->listeners[i];
        l->metric_id = rlb_metrics_listener_id(l->cfg->name);
        l->rule_forwards = calloc(l->cfg->n_rules ? l->cfg->n_rules : 1,
                                  sizeof(*l->rule_forwards));
        if (!l->rule_forwards)
            goto fail;
        for (size_t r = 0; r < l->cfg->n_rules; r++)
            if (forward_build(s, &l->cfg->rules[r].action, &l->rule_forwards[r], l->cfg->name,
                              l->cfg->rules[r].priority) < 0)
                goto fail;
        if (forward_build(s, &l->cfg->default_action, &l->default_forward, l->cfg->name, 0) < 0)
            goto fail;
        l->router = rlb_router_build(l->cfg);
        if (!l->router)
            goto fail;
        if (l->cfg->protocol == RLB_PROTO_HTTPS) {
            /* Same configuration (a registration change): keep the loaded certificates. */
            if (prev && prev->cfg_share == share && prev->listeners[i].tls) {
                l->tls = rlb_tls_ctx_ref(prev->listeners[i].tls);
            } else {
                char err[512];
                /* Private keys readable by group or others are loaded, with a warning. */
                for (size_t k = 0; k < l->cfg->n_certificates; k++) {
                    struct stat st;
                    const char *key = l->cfg->certificates[k].key;
                    if (key && stat(key, &st) == 0 && (st.st_mode & 077))
                        rlb_log_warn("listener %s: private key %s is readable by group or "
                                     "others (mode %03o); chmod 600 it", l->cfg->name, key,
                                     (unsigned)(st.st_mode & 0777));
                }
                l->tls = rlb_tls_ctx_new(l->cfg, err, sizeof(err));
                if (!l->tls) {
                    snprintf(last_error, sizeof(last_error), "listener %s: %s", l->cfg->name,
                             err);
                    snapshot_free(s);
                    return NULL;
                }
            }
        }
    }
    return s;
fail:
    snprintf(last_error, sizeof(last_error), "out of memory");
    snapshot_free(s);
    return NULL;
}

struct rlb_snapshot *rlb_snapshot_build(struct rlb_config *cfg, const struct rlb_snapshot *prev,
                                        unsigned n_workers, uint64_t generation)
{
    struct rlb_config_share *share = calloc(1, sizeof(*share));
    if (!share) {
        rlb_config_free(cfg);
        return NULL;
    }
    atomic_init(&share->refs, 1);
    share->cfg = cfg;
    return build(share, prev, n_workers, generation);
}

struct rlb_snapshot *rlb_snapshot_rebuild(const struct rlb_snapshot *prev, uint64_t generation)
{
    atomic_fetch_add(&prev->cfg_share->refs, 1);
    return build(prev->cfg_share, prev, prev->n_workers, generation);
}

void rlb_snapshot_ref(struct rlb_snapshot *s) { atomic_fetch_add(&s->refs, 1); }

void rlb_snapshot_unref(struct rlb_snapshot *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        snapshot_free(s);
}

void rlb_snapshot_set_current(struct rlb_snapshot *s)
{
    struct rlb_snapshot *old = current_snapshot;
    current_snapshot = s;
    rlb_snapshot_unref(old);
}

struct rlb_snapshot *rlb_snapshot_current(void) { return current_snapshot; }

const char *rlb_snapshot_last_error(void) { return last_error; }
