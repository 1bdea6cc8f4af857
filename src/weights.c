/* weights.c — the table of runtime forward-weight overrides (see weights.h).
 *
 * A small array of overrides owned by the main thread. Snapshots copy what they need while
 * they are built (snapshot.c's forward_build), so the table can change at any time without
 * touching what the workers read.
 */
#include "ringlb/weights.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringlb/log.h"
#include "ringlb/snapshot.h"
#include "ringlb/targets.h"

static struct rlb_weights_override *table;
static size_t n_table, cap_table;

/* Canary marks: a handful at most (one per running deployment). */
struct canary_mark {
    char *listener;
    uint32_t priority;
    char *group;
};
static struct canary_mark *marks;
static size_t n_marks;

static const struct rlb_listener_cfg *listener_of(const struct rlb_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_listeners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return &cfg->listeners[i];
    return NULL;
}

/* The action addressed by (listener, priority) in cfg, or NULL. */
static const struct rlb_action *action_of(const struct rlb_config *cfg, const char *listener,
                                          uint32_t priority)
{
    const struct rlb_listener_cfg *l = listener_of(cfg, listener);
    if (!l)
        return NULL;
    if (priority == 0)
        return &l->default_action;
    for (size_t r = 0; r < l->n_rules; r++)
        if (l->rules[r].priority == priority)
            return &l->rules[r].action;
    return NULL;
}

static bool group_exists(const struct rlb_config *cfg, const char *name)
{
    for (size_t g = 0; g < cfg->n_target_groups; g++)
        if (strcmp(cfg->target_groups[g].name, name) == 0)
            return true;
    return false;
}

int rlb_weights_validate(const struct rlb_config *cfg, const char *listener, uint32_t priority,
                         const struct rlb_weight *w, size_t n, char *err, size_t errlen)
{
    if (!listener_of(cfg, listener)) {
        snprintf(err, errlen, "listener %.64s not found", listener);
        return -ENOENT;
    }
    const struct rlb_action *a = action_of(cfg, listener, priority);
    if (!a) {
        snprintf(err, errlen, "listener %.64s has no rule with priority %u", listener,
                 priority);
        return -ENOENT;
    }
    if (a->type != RLB_ACTION_FORWARD) {
        snprintf(err, errlen, "the %s of listener %.64s is not a forward action",
                 priority ? "rule" : "default action", listener);
        return -EOPNOTSUPP;
    }
    if (n == 0) {
        snprintf(err, errlen, "target_groups: at least one target group is required");
        return -EINVAL;
    }
    bool positive = false;
    for (size_t i = 0; i < n; i++) {
        if (!group_exists(cfg, w[i].group)) {
            snprintf(err, errlen, "target group %.64s not found", w[i].group);
            return -EINVAL;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(w[k].group, w[i].group) == 0) {
                snprintf(err, errlen, "target group %.64s listed twice", w[i].group);
                return -EINVAL;
            }
        }
        if (w[i].weight > RLB_WEIGHT_MAX) {
            snprintf(err, errlen, "weight of %.64s: %u is out of range 0..%u", w[i].group,
                     w[i].weight, RLB_WEIGHT_MAX);
            return -EINVAL;
        }
        positive |= w[i].weight > 0;
    }
    if (!positive) {
        snprintf(err, errlen, "at least one weight must be greater than 0");
        return -EINVAL;
    }
    return 0;
}

static void override_free(struct rlb_weights_override *o)
{
    free(o->listener);
    for (size_t i = 0; i < o->n; i++)
        free(o->groups[i]);
    free(o->groups);
    free(o->weights);
    memset(o, 0, sizeof(*o));
}

static ssize_t find_index(const char *listener, uint32_t priority)
{
    for (size_t i = 0; i < n_table; i++)
        if (table[i].priority == priority && strcmp(table[i].listener, listener) == 0)
            return (ssize_t)i;
    return -1;
}

static void remove_at(size_t i)
{
    override_free(&table[i]);
    memmove(&table[i], &table[i + 1], (n_table - i - 1) * sizeof(*table));
    n_table--;
}

int rlb_weights_put(const char *listener, uint32_t priority, const struct rlb_weight *w,
                    size_t n)
{
    struct rlb_weights_override o = {.priority = priority, .n = n};
    o.listener = strdup(listener);
    o.groups = calloc(n ? n : 1, sizeof(*o.groups));
    o.weights = calloc(n ? n : 1, sizeof(*o.weights));
    if (!o.listener || !o.groups || !o.weights)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (!(o.groups[i] = strdup(w[i].group)))
            goto fail;
        o.weights[i] = w[i].weight;
    }
    ssize_t at = find_index(listener, priority);
    if (at >= 0) {
        override_free(&table[at]);
        table[at] = o;
        return 0;
    }
    if (n_table == cap_table) {
        size_t ncap = cap_table ? cap_table * 2 : 8;
        struct rlb_weights_override *t = realloc(table, ncap * sizeof(*t));
        if (!t)
            goto fail;
        table = t;
        cap_table = ncap;
    }
    table[n_table++] = o;
    return 0;
fail:
    override_free(&o);
    return -ENOMEM;
}

/* Copy of the override at index i as request-style entries (for restoring it). */
static int save_copy(ssize_t at, struct rlb_weights_override *out)
{
    memset(out, 0, sizeof(*out));
    if (at < 0)
        return 0;
    const struct rlb_weights_override *o = &table[at];
    out->priority = o->priority;
    out->n = o->n;
    out->listener = strdup(o->listener);
    out->groups = calloc(o->n ? o->n : 1, sizeof(*out->groups));
    out->weights = calloc(o->n ? o->n : 1, sizeof(*out->weights));
    if (!out->listener || !out->groups || !out->weights) {
        override_free(out);
        return -ENOMEM;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (!(out->groups[i] = strdup(o->groups[i]))) {
            override_free(out);
            return -ENOMEM;
        }
        out->weights[i] = o->weights[i];
    }
    return 0;
}

/* Put a saved copy back (or remove the entry when there was none). */
static void restore(const char *listener, uint32_t priority, struct rlb_weights_override *old)
{
    ssize_t at = find_index(listener, priority);
    if (at >= 0)
        remove_at((size_t)at);
    if (old->listener) {
        if (n_table < cap_table)
            table[n_table++] = *old;
        else
            override_free(old);
    }
}

/* Rebuild the current snapshot around the same configuration and publish it. */
static int republish(void)
{
    struct rlb_snapshot *cur = rlb_snapshot_current();
    if (!cur)
        return 0;
    struct rlb_snapshot *s = rlb_snapshot_rebuild(cur, cur->generation + 1);
    if (!s)
        return -ENOMEM;
    rlb_targets_publish(s);
    return 0;
}

int rlb_weights_set(const char *listener, uint32_t priority, const struct rlb_weight *w,
                    size_t n, char *err, size_t errlen)
{
    struct rlb_snapshot *cur = rlb_snapshot_current();
    if (!cur) {
        snprintf(err, errlen, "not running");
        return -ENOENT;
    }
    int rc = rlb_weights_validate(cur->cfg, listener, priority, w, n, err, errlen);
    if (rc < 0)
        return rc;
    struct rlb_weights_override old;
    if (save_copy(find_index(listener, priority), &old) < 0 ||
        rlb_weights_put(listener, priority, w, n) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (republish() < 0) {
        restore(listener, priority, &old);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    override_free(&old);
    char desc[256];
    size_t off = 0;
    desc[0] = '\0';
    for (size_t i = 0; i < n && off < sizeof(desc); i++) {
        int k = snprintf(desc + off, sizeof(desc) - off, "%s%s=%u", i ? " " : "", w[i].group,
                         w[i].weight);
        if (k < 0)
            break;
        off += (size_t)k;
    }
    if (priority)
        rlb_log_info("listener %s rule %u: runtime weights %s", listener, priority, desc);
    else
        rlb_log_info("listener %s default action: runtime weights %s", listener, desc);
    return 0;
}

int rlb_weights_remove(const char *listener, uint32_t priority)
{
    ssize_t at = find_index(listener, priority);
    if (at < 0)
        return -ENOENT;
    struct rlb_weights_override old;
    if (save_copy(at, &old) < 0)
        return -ENOMEM;
    remove_at((size_t)at);
    if (republish() < 0) {
        restore(listener, priority, &old);
        return -ENOMEM;
    }
    override_free(&old);
    rlb_log_info("listener %s %s: runtime weights removed, the file's weights apply", listener,
                 priority ? "rule" : "default action");
    return 0;
}

const struct rlb_weights_override *rlb_weights_find(const char *listener, uint32_t priority)
{
    ssize_t at = find_index(listener, priority);
    return at >= 0 ? &table[at] : NULL;
}

bool rlb_weights_applies(const struct rlb_config *cfg, const struct rlb_weights_override *o)
{
    const struct rlb_action *a = action_of(cfg, o->listener, o->priority);
    if (!a || a->type != RLB_ACTION_FORWARD || o->n == 0)
        return false;
    for (size_t i = 0; i < o->n; i++)
        if (!group_exists(cfg, o->groups[i]))
            return false;
    return true;
}

size_t rlb_weights_prune(const struct rlb_config *cfg)
{
    size_t dropped = 0;
    for (size_t i = 0; i < n_table;) {
        if (rlb_weights_applies(cfg, &table[i])) {
            i++;
            continue;
        }
        char what[32] = "default action";
        if (table[i].priority)
            snprintf(what, sizeof(what), "rule %u", table[i].priority);
        rlb_log_warn("listener %s %s: runtime weights dropped (the rule, its forward action "
                     "or one of its target groups is gone)", table[i].listener, what);
        remove_at(i);
        dropped++;
    }
    return dropped;
}

size_t rlb_weights_count(void) { return n_table; }

const struct rlb_weights_override *rlb_weights_at(size_t i)
{
    return i < n_table ? &table[i] : NULL;
}

const char *rlb_weights_canary(const char *listener, uint32_t priority)
{
    for (size_t i = 0; i < n_marks; i++)
        if (marks[i].priority == priority && strcmp(marks[i].listener, listener) == 0)
            return marks[i].group;
    return NULL;
}

static void mark_free(struct canary_mark *m)
{
    free(m->listener);
    free(m->group);
}

int rlb_weights_canary_set(const char *listener, uint32_t priority, const char *group)
{
    size_t i = 0;
    while (i < n_marks && !(marks[i].priority == priority &&
                            strcmp(marks[i].listener, listener) == 0))
        i++;
    if (group) {
        char *g = strdup(group);
        if (!g)
            return -ENOMEM;
        if (i == n_marks) {
            char *l = strdup(listener);
            struct canary_mark *nm = l ? realloc(marks, (n_marks + 1) * sizeof(*nm)) : NULL;
            if (!nm) {
                free(l);
                free(g);
                return -ENOMEM;
            }
            marks = nm;
            marks[n_marks++] = (struct canary_mark){l, priority, NULL};
        }
        free(marks[i].group);
        marks[i].group = g;
    } else if (i < n_marks) {
        mark_free(&marks[i]);
        memmove(&marks[i], &marks[i + 1], (n_marks - i - 1) * sizeof(*marks));
        n_marks--;
    } else {
        return 0;
    }
    return republish();
}

void rlb_weights_destroy(void)
{
    for (size_t i = 0; i < n_marks; i++)
        mark_free(&marks[i]);
    free(marks);
    marks = NULL;
    n_marks = 0;
    for (size_t i = 0; i < n_table; i++)
        override_free(&table[i]);
    free(table);
    table = NULL;
    n_table = cap_table = 0;
}
