/* balance.h — choosing a target group of a forward action and a target of a group.
 *
 * Group choice is nginx's smooth weighted round robin over the groups that have a routable
 * target (a group without one gives its share to the others). Target choice is round robin
 * over routable targets (healthy, or health checks disabled); when a group has none, it fails
 * open to every registered target that is not draining. State lives in the snapshot's
 * per-worker slots, so no two threads write the same cache line.
 */
#ifndef RINGLB_BALANCE_H
#define RINGLB_BALANCE_H

#include <stdbool.h>
#include <stdint.h>

#include "ringlb/snapshot.h"

/* True when `t` may receive new requests in normal operation. */
bool rlb_target_routable(const struct rlb_target *t);

/* Pick a group of `f` for worker `worker`. NULL when no group has a registered target. */
struct rlb_group *rlb_balance_group(struct rlb_forward *f, unsigned worker);

/* Pick a target of `g` for worker `worker` with the group's algorithm (round_robin,
 * least_outstanding_requests, weighted_random), skipping the target slots in
 * skip[0..n_skip). `rnd` is 64 random bits; `now_ms` the monotonic time for slow start: with
 * slow_start set, a target that became routable less than slow_start ago takes a linearly
 * growing share (round robin and weighted random) while the group has a routable target past
 * its ramp. Sets *fail_open when no target was routable and the choice failed open. NULL when
 * there is no candidate at all. */
struct rlb_target *rlb_balance_target(struct rlb_group *g, unsigned worker,
                                      const uint32_t *skip, unsigned n_skip, bool *fail_open,
                                      uint64_t rnd, uint64_t now_ms);

#endif
