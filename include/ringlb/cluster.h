/* cluster.h — a fleet of ringlb instances sharing their runtime state through etcd (SPEC
 * section 10, `cluster` block).
 *
 * What lives in etcd, under cluster.prefix P (values are JSON):
 *   P/targets/<group>/<ip>/<port>   {"registered":true|false}   the targets overlay (targets.h)
 *   P/weights/<listener>/<priority> {"target_groups":[{"name","weight"}...]}   (weights.h)
 *   P/deployments/<id>              a deployment's whole record (deploy.h)
 *   P/locks/<listener>/<priority>   id of the deployment in progress on that rule
 *   P/leader                        name of the leader instance (under its lease)
 *   P/counts/<instance>             that instance's last closed metrics window per target
 *                                   group (under its lease; the leader sums them)
 *   P/sticky_key                    the fleet's AWSALB/AWSALBTG signing key (hex), created
 *                                   once by the first instance when no stickiness_key_file
 *
 * Data flow. An admin change is first written to etcd (one transaction; weights compare the
 * key's revision with the one this instance last saw, so of two racing changes one wins and
 * the other gets 409), then applied locally at once; every other instance applies it when its
 * watch delivers it. At start and after every reconnection an instance reads the whole prefix
 * and makes its local state equal to it, then watches from the next revision.
 *
 * Outage: while etcd cannot be reached the instance keeps routing with what it has,
 * rlb_cluster_connected() is false (ringlb_cluster_connected 0), admin changes answer 503,
 * and a timer keeps trying (full read, then watch).
 *
 * Threading: everything runs on the main thread. Unary etcd calls block it for at most the
 * call timeout (1 s); workers never wait for etcd. The watch socket is polled through the
 * main ring (RLB_MAIN_CLUSTER completions).
 */
#ifndef RINGLB_CLUSTER_H
#define RINGLB_CLUSTER_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"
#include "ringlb/timer.h"
#include "ringlb/weights.h"

struct fy_node;

/* Set the fleet up from cfg->cluster (no-op without a cluster block): the etcd client, the
 * fleet sticky key (when cfg has no stickiness_key_file), and a first full read applied to the
 * targets overlay and weights table before the first snapshot is built. etcd being down is
 * not an error here (logged; the instance starts on the file alone and catches up later).
 * Returns 0, or -EINVAL with a message logged for an unusable cluster block. Main thread. */
int rlb_cluster_init(const struct rlb_config *cfg);

/* Start watching and the periodic work (reconnect, lease, leader election, counters), on the
 * main ring and wheel, once the first snapshot is current. Main thread. */
void rlb_cluster_start(struct io_uring *ring, struct rlb_timer_wheel *wheel);

/* A completion of the watch socket's poll (main.c dispatch, RLB_MAIN_CLUSTER): call only when
 * rlb_cluster_poll_current(user_data) says it is the poll armed last (older ones are stale). */
bool rlb_cluster_poll_current(uint64_t user_data);
void rlb_cluster_complete(int res);

/* Stop (release the leadership and the lease when etcd is there) and free everything. */
void rlb_cluster_stop(void);

/* Is a cluster block configured / etcd reachable right now / this instance the leader? */
bool rlb_cluster_enabled(void);
bool rlb_cluster_connected(void);
bool rlb_cluster_leader(void);

/* This instance's name (cluster.instance), NULL without a cluster. */
const char *rlb_cluster_instance(void);

/* Write a registration (registered) or deregistration of n targets of `group` to etcd and
 * apply it locally. Returns 0, -EAGAIN (etcd unreachable: nothing changed), -ENOENT (no such
 * group), -ENOMEM; a message in err. */
int rlb_cluster_targets(const char *group, const struct rlb_sockaddr *addrs, size_t n,
                        bool registered, char *err, size_t errlen);

/* Write the weights of (listener, priority) to etcd (n == 0: remove them, back to the file's)
 * and apply them locally; -EBUSY when another instance changed them since this instance last
 * saw them. The admin API reaches it through rlb_admin_set_weights(). Returns 0, -EBUSY,
 * -EAGAIN, -EINVAL/-ENOENT/-EOPNOTSUPP (validation, as rlb_weights_set), -ENOMEM; a message
 * in err. */
int rlb_cluster_weights(const char *listener, uint32_t priority, const struct rlb_weight *w,
                        size_t n, char *err, size_t errlen);

/* One etcd transaction prepared by deploy.c: compares and operations as JSON array texts
 * (etcd's "compare" and "success" members). Returns 0 when it succeeded, -EBUSY when a
 * compare failed, -EAGAIN when etcd is unreachable. `rev` (may be NULL) gets the revision
 * the transaction produced. Main thread. */
int rlb_cluster_txn(const char *compare, const char *success, int64_t *rev);

/* Transaction pieces (malloc'd JSON texts; NULL on ENOMEM): the JSON string of
 * base64(P + suffix); one operation object putting JSON text `value` at P + suffix (value
 * NULL: deleting it); the operation writing the weights of (listener, priority) (n == 0:
 * removing them). After a transaction with a weights operation succeeded, tell
 * rlb_cluster_weights_written() its revision (the 409 check compares with it). */
char *rlb_cluster_key64(const char *suffix);
char *rlb_cluster_put_op(const char *suffix, const char *value);
char *rlb_cluster_weights_op(const char *listener, uint32_t priority,
                             const struct rlb_weight *w, size_t n);
void rlb_cluster_weights_written(const char *listener, uint32_t priority, int64_t rev,
                                 bool removed);

/* Fleet counters for the deployment alarm: the windows other instances closed and published
 * since the previous call for `group` (consumed here), added to *requests and *errors.
 * Main thread; reads etcd (blocking, bounded) only on the leader. */
void rlb_cluster_fleet_window(const char *group, uint64_t *requests, uint64_t *errors);

/* Deployment records as etcd has them: deploy.c registers a callback called for every
 * P/deployments/<id> the full reads and the watch deliver (json NULL when deleted), with the
 * key's mod revision. */
void rlb_cluster_on_deployment(void (*cb)(const char *id, const char *json, size_t len,
                                          int64_t mod_rev));

/* Leadership changes (deploy.c adopts or drops the controllers). */
void rlb_cluster_on_leader(void (*cb)(bool leader));

#endif
