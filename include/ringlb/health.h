/* health.h — active HTTP health checks of the targets (SPEC section 4), on the main thread.
 *
 * For every target of the current snapshot whose group has health_check.enabled and that is
 * not draining, the main thread's ring runs one check per interval: a fresh TCP connection to
 * the target's address (or health_check.port), `GET <path> HTTP/1.1` with `Host: ip:port`,
 * `User-Agent: ELB-HealthChecker/2.0` and `Connection: close`, then the status line of the
 * answer (llhttp) is matched against the group's matcher. The whole check must end within
 * health_check.timeout (each ring operation carries a linked timeout up to that deadline). The
 * first check of a new target runs at once (with a small jitter), later ones every interval.
 *
 * Results drive the state machine rlb_health_step(); the state and reason are published
 * through the atomics of struct rlb_target, which workers read lock-free. Health checks never
 * pass through a worker, so they are never counted in metrics or access logs.
 *
 * The per-target check state (struct rlb_health_target) hangs off the shared target object
 * (rlb_target.health), so it survives reloads that keep the target; rlb_health_sync() makes the
 * checker follow each new current snapshot (new targets checked at once, removed or draining
 * ones no longer checked, changed settings applied).
 */
#ifndef RINGLB_HEALTH_H
#define RINGLB_HEALTH_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/config.h"
#include "ringlb/snapshot.h"
#include "ringlb/timer.h"

/* The outcome of one check. */
enum rlb_health_result {
    RLB_HEALTH_OK = 0,          /* a status code the matcher accepts */
    RLB_HEALTH_CODE_MISMATCH,   /* a status code outside the matcher */
    RLB_HEALTH_TIMEOUT,         /* no status line within the timeout */
    RLB_HEALTH_FAILED,          /* refused, reset, closed before a status line, or malformed */
};

/* Consecutive results of one target. Owner: its struct rlb_health_target (main thread). */
struct rlb_health_counters {
    uint32_t ok_streak;   /* consecutive successes */
    uint32_t fail_streak; /* consecutive failures */
};

/* The state machine, a pure function: apply result `r` to (*state, *reason, *c) with the
 * group's thresholds. initial -> healthy on the first success; healthy -> unhealthy after
 * unhealthy_threshold consecutive failures; unhealthy -> healthy after healthy_threshold
 * consecutive successes; initial -> unhealthy after unhealthy_threshold failures. An unhealthy
 * target's reason is its latest failure's (Target.ResponseCodeMismatch, Target.Timeout,
 * Target.FailedHealthChecks); a healthy one has none; initial keeps Elb.InitialHealthChecking.
 * States other than initial/healthy/unhealthy are left alone. Any thread. */
void rlb_health_step(int *state, int *reason, struct rlb_health_counters *c,
                     enum rlb_health_result r, uint32_t healthy_threshold,
                     uint32_t unhealthy_threshold);

/* True when HTTP status `status` is accepted by the matcher of `hc`. Any thread. */
bool rlb_health_match(const struct rlb_health_check_cfg *hc, unsigned status);

/* Format the check request for `path` sent to `to` into a new malloc'd string (bytes of the
 * path that are not visible ASCII are percent-encoded); *len gets its length. Returns NULL on
 * ENOMEM. Any thread. */
char *rlb_health_request(const char *path, const struct rlb_sockaddr *to, size_t *len);

/* Use `ring` (the main thread's ring) and `timers` (the main thread's wheel) for the checks.
 * Call once before rlb_health_sync(). Main thread. */
void rlb_health_init(struct io_uring *ring, struct rlb_timer_wheel *timers);

/* Follow snapshot `s` (takes its own reference): start checking its new targets, stop checking
 * targets that left it, went draining or had their checks disabled, apply changed settings.
 * Call after every change of the current snapshot or of a target's registration. Main thread. */
void rlb_health_sync(struct rlb_snapshot *s);

/* Handle a main-ring completion tagged RLB_MAIN_HEALTH. Main thread. */
void rlb_health_complete(void *ptr, int res);

/* HTTP status of the target's latest check answer, 0 when none or not checked. Main thread. */
int rlb_health_last_code(const struct rlb_target *t);

/* Stop every check (graceful shutdown): cancel what is in flight, check nothing more.
 * Main thread. */
void rlb_health_stop(void);

/* Free all check state and the snapshot reference (after the main ring is gone). Main thread. */
void rlb_health_destroy(void);

#endif
