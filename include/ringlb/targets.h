/* targets.h — target membership of the target groups: registration, deregistration, draining.
 *
 * The one internal API through which targets enter and leave a group, used for the file's
 * static targets (through rlb_snapshot_build) and by the admin API. Everything here runs on
 * the main thread.
 *
 * Membership rule. A group's registered targets are the targets the file lists for it, changed
 * by the runtime overlay: for each (group, address) that a runtime call has touched, the last
 * call decides — registered (added even when the file does not list it) or deregistered
 * (removed even when the file lists it). The overlay survives SIGHUP reloads: after a reload
 * the new file's targets are taken and the overlay is applied on top of them again. Targets
 * the runtime API never touched follow the file.
 *
 * Leaving a group (a deregistration, or a reload whose file no longer lists the target) is not
 * immediate: the target goes `draining` (reason Target.DeregistrationInProgress), receives no
 * new request, stays in the snapshots so that in-flight work can finish and the admin API
 * shows it, and after the group's deregistration_delay goes `unused` (reason
 * Target.NotRegistered) and is dropped from the next snapshot, which is published at once. A
 * delay of 0 removes it at once. Registering a draining target again stops the draining; it
 * starts over as `initial`. Targets of a group that disappears from the file on reload are
 * dropped with their group (their state is left alone).
 *
 * New targets start `initial` (Elb.InitialHealthChecking), or `unavailable`
 * (Target.HealthCheckDisabled) when the group's health checks are disabled; health.c moves
 * them on from there.
 */
#ifndef RINGLB_TARGETS_H
#define RINGLB_TARGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"
#include "ringlb/snapshot.h"
#include "ringlb/timer.h"

/* Set the main thread's timer wheel used for the draining deadlines. Call once before any
 * other function here except rlb_targets_resolve(). Main thread. */
void rlb_targets_init(struct rlb_timer_wheel *timers);

/* The members of group `gc` in a snapshot being built, given the previous snapshot `prev` (may
 * be NULL): the file's targets with the runtime overlay applied, plus the previous members that
 * are still draining (a previous member that is no longer registered starts draining here).
 * Targets of `prev` with the same group name and address are reused (one more reference each),
 * others are created. Stores a malloc'd array of references in *out and its length in *n_out.
 * Called by rlb_snapshot_build()/rlb_snapshot_rebuild(). Returns 0 or -ENOMEM. Main thread. */
int rlb_targets_resolve(const struct rlb_target_group_cfg *gc, const struct rlb_snapshot *prev,
                        struct rlb_target ***out, size_t *n_out);

/* Make `s` the current snapshot (the caller's reference moves there), hand it to every worker
 * and let the health checker follow it. Every new snapshot goes through here (reload, runtime
 * change, end of a draining delay). Main thread. */
void rlb_targets_publish(struct rlb_snapshot *s);

/* Register the n addresses in `addrs` with group `group` (idempotent: a registered target stays
 * as it is; a draining one starts over as initial). Publishes a new snapshot when the
 * membership changed. Returns 0, -ENOENT (no such group in the current snapshot) or -ENOMEM.
 * Main thread. */
int rlb_targets_register(const char *group, const struct rlb_sockaddr *addrs, size_t n);

/* Deregister the n addresses in `addrs` from group `group`: registered targets go draining at
 * once (no snapshot change until the delay ends); unknown or already draining targets are left
 * as they are (idempotent). Returns 0, -ENOENT (no such group) or -ENOMEM. Main thread. */
int rlb_targets_deregister(const char *group, const struct rlb_sockaddr *addrs, size_t n);

/* Set the overlay entry of (group, addr) to registered / deregistered without touching any
 * snapshot (the state file loader, before the first snapshot is built). Returns 0 or -ENOMEM.
 * Main thread. */
int rlb_targets_overlay_set(const char *group, const struct rlb_sockaddr *addr, bool registered);

/* Number of overlay entries, and the i-th one (0 <= i < count), in the order they were first
 * touched: its group, address and last decision. Returns false when i is out of range. For the
 * state file and GET /api/v1/config. Main thread. */
size_t rlb_targets_overlay_count(void);
bool rlb_targets_overlay_at(size_t i, const char **group, struct rlb_sockaddr *addr,
                            bool *registered);

/* Forget the runtime overlay (at exit, after the last snapshot is gone). Main thread. */
void rlb_targets_destroy(void);

#endif
