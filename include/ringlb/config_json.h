/* config_json.h — a parsed configuration (config.h) as JSON, for GET /api/v1/config and the
 * admin API's rule listings.
 *
 * Keys mirror the configuration file (SPEC section 2), every default is filled in, durations
 * are written in the file's own notation ("30s", "250ms", "5m"), so the output reads back as a
 * configuration — except for what is secret or points at secrets, which is left out: TLS
 * private key paths (certificates show only `cert`), admin.token_file (replaced by
 * "token_required": true|false), stickiness_key_file and cluster.auth.password_file (each
 * replaced by a "..._set" boolean) and cluster.tls.key. Any thread; the nodes belong to `j`.
 */
#ifndef RINGLB_CONFIG_JSON_H
#define RINGLB_CONFIG_JSON_H

#include <stdint.h>

#include "ringlb/config.h"
#include "ringlb/json.h"

/* The whole configuration as a JSON object. NULL on ENOMEM. */
struct fy_node *rlb_config_json(struct rlb_json *j, const struct rlb_config *cfg);

/* A rule's conditions as a JSON object (only the present conditions). NULL on ENOMEM. */
struct fy_node *rlb_config_json_conditions(struct rlb_json *j, const struct rlb_conditions *c);

/* An action as a JSON object, as the file writes it ({"forward":{...}}, {"redirect":{...}} or
 * {"fixed_response":{...}}). NULL on ENOMEM. */
struct fy_node *rlb_config_json_action(struct rlb_json *j, const struct rlb_action *a);

/* A duration in the file's notation: the largest unit that divides it ("1d", "5m", "30s",
 * "250ms"). Writes into out[n] and returns out. */
const char *rlb_config_json_duration(uint64_t ms, char *out, size_t n);

#endif
