/* weights.h — runtime weights of forward actions (admin API, deployment controller).
 *
 * A runtime override replaces the target groups and weights of one forward action, addressed
 * by listener name and rule priority (0 = the listener's default action). Snapshots built
 * afterwards (rlb_snapshot_build/rebuild) route that action with the override instead of the
 * file's weights; workers pick the new snapshot up at once, and requests already in flight
 * finish with the snapshot they started with.
 *
 * Validation (rlb_weights_validate): the listener and rule must exist and the rule's action
 * must be a forward; the override names 1..n distinct target groups, each of which must exist
 * in the configuration (any group, not only those the file's action names — as with the
 * ALB's ModifyRule); weights are integers 0..999 and at least one is > 0.
 *
 * Lifetime: an override survives SIGHUP and API reloads as long as the new file still has the
 * rule (same listener name, same priority) with a forward action and every group it names
 * still exists; otherwise the reload drops it (rlb_weights_prune, logged) and the file's
 * weights apply. rlb_weights_remove() goes back to the file's weights explicitly.
 *
 * Canary marks: while a deployment runs on a rule, the rule carries a mark naming the
 * deployment's `to` group (rlb_weights_canary_set). Snapshots resolve it into
 * rlb_forward.canary, and requests carrying `<admin.canary_header>: force` go to that group
 * whatever the weights. Marks are kept apart from the overrides: setting or removing weights
 * never clears a mark; only the deployment controller does.
 *
 * Everything here runs on the main thread.
 */
#ifndef RINGLB_WEIGHTS_H
#define RINGLB_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"

#define RLB_WEIGHT_MAX 999u

/* One target group of a requested override (caller-owned strings). */
struct rlb_weight {
    const char *group;      /* target group name */
    uint32_t weight;        /* 0..RLB_WEIGHT_MAX */
};

/* A stored override. Owner: the table in weights.c; main thread. */
struct rlb_weights_override {
    char *listener;         /* listener name */
    uint32_t priority;      /* rule priority; 0 = default action */
    size_t n;               /* number of groups */
    char **groups;          /* [n] target group names */
    uint32_t *weights;      /* [n] weights */
};

/* Check an override against `cfg`. Returns 0; -ENOENT (no such listener or rule), -EOPNOTSUPP
 * (the rule's action is not a forward) or -EINVAL (empty list, unknown or repeated group,
 * weight out of range, all weights 0), each with a message in err[errlen]. Any thread. */
int rlb_weights_validate(const struct rlb_config *cfg, const char *listener, uint32_t priority,
                         const struct rlb_weight *w, size_t n, char *err, size_t errlen);

/* Store (replace) the override of (listener, priority) without any check or publication.
 * Returns 0 or -ENOMEM. Used by the state file loader and by rlb_weights_set(). */
int rlb_weights_put(const char *listener, uint32_t priority, const struct rlb_weight *w,
                    size_t n);

/* Validate against the current snapshot's configuration, store, and publish a rebuilt snapshot
 * (rlb_targets_publish) so that every worker routes with the new weights. Returns 0 or an
 * error of rlb_weights_validate() / -ENOMEM (then nothing changed). Does not write the state
 * file: rlb_admin_set_weights() (admin.h) does both. */
int rlb_weights_set(const char *listener, uint32_t priority, const struct rlb_weight *w,
                    size_t n, char *err, size_t errlen);

/* Drop the override of (listener, priority) and publish a rebuilt snapshot (the file's weights
 * apply again). Returns 0, -ENOENT (no override) or -ENOMEM. */
int rlb_weights_remove(const char *listener, uint32_t priority);

/* The override of (listener, priority), or NULL. The pointer stays valid until the next call
 * that changes the table. */
const struct rlb_weights_override *rlb_weights_find(const char *listener, uint32_t priority);

/* Does override `o` fit `cfg` (rule exists with a forward action, every group exists)? */
bool rlb_weights_applies(const struct rlb_config *cfg, const struct rlb_weights_override *o);

/* Drop (and log) every override that does not fit `cfg`. Returns how many were dropped. */
size_t rlb_weights_prune(const struct rlb_config *cfg);

/* Number of stored overrides, and the i-th (0 <= i < count) in insertion order. */
size_t rlb_weights_count(void);
const struct rlb_weights_override *rlb_weights_at(size_t i);

/* Mark (group != NULL) or unmark (group == NULL) the rule (listener, priority) as under a
 * deployment towards `group`, then publish a rebuilt snapshot. Returns 0 or -ENOMEM. */
int rlb_weights_canary_set(const char *listener, uint32_t priority, const char *group);

/* The canary group marked on (listener, priority), or NULL. Valid until the next
 * rlb_weights_canary_set(). */
const char *rlb_weights_canary(const char *listener, uint32_t priority);

/* Forget every override and canary mark (at exit, or before loading a state file). */
void rlb_weights_destroy(void);

#endif
