/* admin.h — the admin HTTP/1.1 server on admin.listen (main thread's ring).
 *
 * Requests are small and rare, so each admin connection reads into its own buffer with plain
 * recv operations on the main thread's ring; heads are parsed with llhttp. Served so far:
 *   GET /healthz                        200 "ok"
 *   GET /api/v1/target-groups           every group with its targets' state (JSON)
 *   GET /api/v1/target-groups/{tg}      one group (404 {"error":...} when unknown)
 * Other methods on those paths get 405; unknown paths 404. JSON bodies are built as libfyaml
 * documents and emitted in JSON mode (no hand-written JSON printer).
 */
#ifndef RINGLB_ADMIN_H
#define RINGLB_ADMIN_H

#include <liburing.h>
#include <stdbool.h>
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
};

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
