/* state.h — state_file persistence of the runtime changes (SPEC section 2, `state_file`).
 *
 * What the admin API changes at run time — target registrations and deregistrations (the
 * overlay of targets.h) and forward-weight overrides (weights.h) — is written to state_file
 * after every change, atomically: the JSON text goes to a temporary file in the same directory,
 * which is fsync'ed and renamed over state_file, and the directory is fsync'ed. At start the
 * file is read back before the first snapshot is built, so a restart loses nothing; SIGHUP and
 * API reloads keep the in-memory state (which is what the file holds) and apply it to the new
 * configuration. A file that cannot be parsed is logged as an error and renamed aside to
 * `<state_file>.corrupt-<unix seconds>`; ringlb then starts without it.
 *
 * Format (version 1):
 *   {"version":1,
 *    "targets":[{"target_group":"api","id":"127.0.0.1","port":8083,"registered":true},...],
 *    "weights":[{"listener":"public","priority":10,
 *                "target_groups":[{"name":"api-blue","weight":50},...]},...]}
 * plus, only while a deployment is in progress (deploy.h),
 *    "deployments":[{"id":"d-1","listener":"public","priority":10,"from":"a","to":"b",
 *                    "original":{<a weights entry>}},...]
 * ("original" absent: the file's weights applied before it); the loader rolls those back.
 * `registered:false` records a deregistration (also of a target the file lists); priority 0
 * is a listener's default action. Entries naming groups, listeners or rules the configuration
 * does not have are kept for targets (they apply when the group comes back) and dropped for
 * weights (weights.h).
 *
 * Everything here runs on the main thread and does blocking file I/O (never in a worker).
 */
#ifndef RINGLB_STATE_H
#define RINGLB_STATE_H

#include <stddef.h>

#include "ringlb/json.h"

/* The runtime state (targets overlay and weight overrides) as a JSON object node of document
 * `j` (the state file's content). NULL on ENOMEM. */
struct fy_node *rlb_state_json(struct rlb_json *j);

/* Write the runtime state to `path` atomically (temp file in the same directory, fsync,
 * rename, fsync of the directory). NULL path: nothing to do. Returns 0 or -errno (then the
 * previous file is intact). */
int rlb_state_save(const char *path);

/* Check a state document and, only when all of it is valid, add its entries to the targets
 * overlay and the weights table. Returns 0, -EINVAL (message in err[errlen]; nothing applied)
 * or -ENOMEM. */
int rlb_state_apply_text(const char *text, size_t len, char *err, size_t errlen);

/* Read `path` and apply it (rlb_state_apply_text). A missing file is not an error (returns 0).
 * An invalid one is logged and renamed to <path>.corrupt-<unix seconds>; returns -EINVAL.
 * An unreadable one is logged; returns -errno. In every error case nothing is applied. */
int rlb_state_load(const char *path);

#endif
