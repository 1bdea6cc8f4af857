/* deploy.h — canary and linear deployments with automatic rollback (SPEC section 5, issue #8).
 *
 * A deployment shifts one forward action (listener, rule priority or the default action) from
 * target group `from` to group `to`:
 *   canary: `to` gets canary_percent, wait `bake`, then 100 %, wait `final_bake`, SUCCESSFUL;
 *   linear: `to` gets +step_percent every `step_bake` until 100 %, then (after the last
 *           step_bake and an optional final_bake) SUCCESSFUL.
 * Weights are set as percentages (from = 100 - p, to = p) through rlb_admin_set_weights(), the
 * same path as the admin API (snapshot published, state_file written).
 *
 * The alarm: every closed metrics window (metrics.h) of `to` is added to the current alarm
 * period; once the period's windows cover `period`, the period's error share
 * (target 4xx + 5xx + ELB 4xx/5xx) / RequestCount is one reading. Periods with fewer than
 * `min_requests` requests are recorded but do not count (the breach streak is unchanged).
 * `datapoints` consecutive breaching periods (share > max_error_rate) roll back. So does `to`
 * having no healthy target (at least one target unhealthy or none registered; targets still
 * in their initial health state do not trigger it). A rollback (and POST .../stop) restores
 * the weights of before the deployment: the previous runtime weights, or the file's. Sticky
 * sessions (AWSALBTG) naming `to` are then ignored by the forward path wherever the restored
 * weight of `to` is 0 (conn.c honours a cookie only for a group with weight > 0), so sticky
 * clients move back with the rollback.
 * While a deployment is IN_PROGRESS its rule carries a canary mark (weights.h): requests with
 * `<admin.canary_header>: force` go to `to` whatever the weights (no AWSALBTG cookie for them).
 *
 * Fleet (cluster block, cluster.h): deployments are records in etcd that every instance
 * mirrors; any instance creates or stops one (one transaction each, the rule's lock making
 * the 409 fleet-wide), and the leader alone runs the controller, with alarm periods summing
 * the windows every instance publishes. A new leader adopts the deployments in progress from
 * their records (bakes continue from their recorded end times). state_file is not used.
 *
 * States: IN_PROGRESS, SUCCESSFUL, ROLLED_BACK, STOPPED. One IN_PROGRESS deployment per rule.
 * GET lists the newest first; only the last 100 finished deployments are kept.
 * Restarts: IN_PROGRESS deployments are written to state_file ("deployments": id, listener,
 * priority, from, to and the weights of before the deployment, see state.h). At start the
 * loader rolls each of them back: the previous weights replace the deployment's, and the
 * deployment is listed as ROLLED_BACK ("ringlb restarted during the deployment"). Finished
 * deployments are not persisted.
 *
 * Everything here runs on the main thread; a 100 ms timer on the main wheel drives it.
 */
#ifndef RINGLB_DEPLOY_H
#define RINGLB_DEPLOY_H

#include <stddef.h>
#include <stdint.h>

struct rlb_timer_wheel;

/* Admin API operations on /api/v1/deployments. */
enum rlb_deploy_op {
    RLB_DEPLOY_LIST,    /* GET  /api/v1/deployments */
    RLB_DEPLOY_CREATE,  /* POST /api/v1/deployments */
    RLB_DEPLOY_GET,     /* GET  /api/v1/deployments/{id} */
    RLB_DEPLOY_STOP,    /* POST /api/v1/deployments/{id}/stop */
};

/* Use `wheel` (the main thread's timer wheel) for the controller. Call once at start. */
void rlb_deploy_init(struct rlb_timer_wheel *wheel);

/* Serve one admin request: `id` for GET/STOP, `body` for CREATE. Returns the HTTP status
 * (201, 200, 400, 404, 409, 500) and stores a malloc'd JSON text (an {"error":...} object on
 * errors) in *json (NULL only when out of memory). */
int rlb_deploy_request(enum rlb_deploy_op op, const char *id, const char *body, size_t len,
                       char **json);

struct rlb_json;
struct fy_node;

/* The IN_PROGRESS deployments as a JSON array of document `j` for state_file: objects
 * {"id","listener","priority","from","to","original"} where "original" (absent when the file's
 * weights applied) is a state-file weights entry. NULL when there is none (or on ENOMEM). */
struct fy_node *rlb_deploy_state_json(struct rlb_json *j);

/* Record a deployment read back from state_file and rolled back by the loader (state.c) as
 * ROLLED_BACK. Returns 0 or -ENOMEM. */
int rlb_deploy_restored(const char *id, const char *listener, uint32_t priority,
                        const char *from, const char *to);

/* Cancel every timer and free every deployment (at exit). */
void rlb_deploy_destroy(void);

#endif
