/* admin.h — the admin HTTP/1.1 + JSON server on admin.listen (main thread's ring), SPEC
 * section 5.
 *
 * Requests are small and rare, so each admin connection reads into its own buffer with plain
 * recv operations on the main thread's ring; requests are parsed with llhttp (bodies up to
 * 1 MiB, else 413; "Expect: 100-continue" is answered). Served:
 *   GET  /                                              the dashboard (dashboard.h); its
 *   GET  /dashboard/{app.js,style.css,favicon.svg}      static files, served without the token
 *   GET  /healthz                                       200 "ok"
 *   GET  /metrics                                       Prometheus text
 *   GET  /api/v1/config                                 effective configuration (config_json.h)
 *                                                       plus the runtime state (state.h)
 *   POST /api/v1/reload                                 reload the file (the SIGHUP path)
 *   GET  /api/v1/target-groups[/{tg}]                   groups, targets, states
 *   POST /api/v1/target-groups/{tg}/targets[/deregister]  runtime (de)registration
 *   GET  /api/v1/listeners                              listeners
 *   GET  /api/v1/listeners/{l}/rules                    rules, actions, current weights
 *   PUT|DELETE /api/v1/listeners/{l}/rules/{p}/forward  set / drop runtime weights (weights.h)
 *   GET  /api/v1/scaling                                scaling advice (scaling.h)
 *   GET|POST /api/v1/deployments, GET /api/v1/deployments/{id},
 *   POST /api/v1/deployments/{id}/stop                  canary/linear deployments (deploy.h)
 * Other methods on those paths get 405 with Allow; unknown paths 404. Every error is JSON
 * {"error":"..."}. With admin.token_file every request needs "Authorization: Bearer <token>"
 * (compared in constant time through SHA-256 digests and CRYPTO_memcmp; the token is never
 * logged); GET / also accepts ?token=... (the dashboard's first load); otherwise 401.
 * Runtime changes are written to state_file (state.h) before the answer is sent; with a
 * cluster block they go to etcd first instead (cluster.h: 409 when a weight change raced
 * another instance's, 503 while etcd is unreachable).
 * JSON is built as libfyaml documents (json.h) and parsed with libfyaml (json_read.h).
 */
#ifndef RINGLB_ADMIN_H
#define RINGLB_ADMIN_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"

/* user_data tags of the main ring (low 3 bits). */
enum rlb_main_op {
    RLB_MAIN_IGNORE = 0,
    RLB_MAIN_SIGNAL = 1,
    RLB_MAIN_ADMIN_ACCEPT = 2,
    RLB_MAIN_ADMIN_RECV = 3,
    RLB_MAIN_ADMIN_SEND = 4,
    RLB_MAIN_TIMER = 5,
    RLB_MAIN_HEALTH = 6,        /* a health check's socket operation (health.c) */
    RLB_MAIN_CLUSTER = 7,       /* the etcd watch socket's poll (cluster.c); the upper bits
                                 * carry the poll's generation, not a pointer */
};

/* The reload entry point (main.c's reload(), shared with SIGHUP): returns 0 and stores the new
 * generation in *generation, or returns -errno with the reasons appended to errs (the running
 * configuration then stays). */
typedef int (*rlb_admin_reload_fn)(void *arg, struct rlb_config_errors *errs,
                                   uint64_t *generation);

/* Set the function POST /api/v1/reload calls. Main thread. */
void rlb_admin_set_reload(rlb_admin_reload_fn fn, void *arg);

/* Read admin.token_file at `path`: its content with surrounding whitespace trimmed, non-empty,
 * at most 4096 bytes, no inner whitespace or control characters. Stores a malloc'd copy in
 * *out; returns 0, or -errno with a message in err[errlen] (the token itself never appears in
 * it). Main thread (blocking read). */
int rlb_admin_token_load(const char *path, char **out, char *err, size_t errlen);

/* The same for any secret file; `what` names it in messages (e.g. "cluster.auth.password_file").
 * The etcd password (etcd.c) is read through here. */
int rlb_admin_secret_load(const char *what, const char *path, char **out, char *err,
                          size_t errlen);

/* Require `token` from now on (takes ownership; the string is wiped and freed, only its
 * SHA-256 digest is kept), or no token when NULL. Main thread. */
void rlb_admin_set_token(char *token);

/* Constant-time comparison of two tokens (SHA-256 digests of both, compared with
 * CRYPTO_memcmp, so neither content nor length leaks through timing). Any thread. */
bool rlb_admin_token_equal(const char *a, size_t alen, const char *b, size_t blen);

struct rlb_weight;

/* Replace the weights of a forward action at run time: listener name, rule priority (0 = the
 * default action), 1..n groups with weights 0..999 (weights.h has the rules). Publishes a new
 * snapshot to every worker and writes state_file. Returns 0; -ENOENT (listener or rule
 * unknown), -EOPNOTSUPP (not a forward action), -EINVAL (bad groups or weights), -ENOMEM, or
 * -EIO (applied, but state_file could not be written); a message is in err[errlen]. With a
 * cluster block the change goes through etcd instead (rlb_cluster_weights: also -EBUSY when
 * another instance changed the rule meanwhile, -EAGAIN when etcd is unreachable). For the
 * admin API and the single-instance deployment controller. Main thread. */
int rlb_admin_set_weights(const char *listener, uint32_t priority, const struct rlb_weight *w,
                          size_t n, char *err, size_t errlen);

/* Write the runtime state to the current configuration's state_file (no-op without one), after
 * a runtime change made through targets.h or weights.h directly. Returns 0 or -errno. Main
 * thread. */
int rlb_admin_state_save(void);

/* Start listening on cfg->admin (no-op when the config has no admin block). Returns 0 or
 * -errno. Main thread. */
int rlb_admin_start(struct io_uring *ring, const struct rlb_config *cfg);

/* Handle a main-ring completion tagged RLB_MAIN_ADMIN_*. Main thread. */
void rlb_admin_complete(struct io_uring *ring, enum rlb_main_op op, void *ptr, int res);

/* Stop accepting and shut every admin connection down. Main thread. */
void rlb_admin_stop(struct io_uring *ring);

/* Free every admin connection (after the main ring is gone). Main thread. */
void rlb_admin_destroy(void);

#endif
