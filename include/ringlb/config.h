/* config.h — the parsed configuration file (SPEC section 2).
 *
 * A struct rlb_config is plain, immutable data: what the YAML/JSON file says, validated, with
 * every default applied. It is built by rlb_config_load() on the main thread and never changed
 * afterwards; the runtime snapshot (snapshot.h) references it and shares it read-only with
 * every worker. Owner: the snapshot that holds it (freed with rlb_config_free()).
 *
 * All strings are NUL-terminated heap copies owned by the config. Durations are milliseconds.
 */
#ifndef RINGLB_CONFIG_H
#define RINGLB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Where a value came from in the file, for FILE:LINE:COL messages (1-based). */
struct rlb_src_loc {
    uint32_t line;
    uint32_t col;
};

enum rlb_protocol { RLB_PROTO_HTTP = 0, RLB_PROTO_HTTPS };
enum rlb_xff_mode { RLB_XFF_APPEND = 0, RLB_XFF_PRESERVE, RLB_XFF_REMOVE };
enum rlb_desync_mode { RLB_DESYNC_DEFENSIVE = 0, RLB_DESYNC_MONITOR, RLB_DESYNC_STRICTEST };
enum rlb_algorithm {
    RLB_ALG_ROUND_ROBIN = 0,
    RLB_ALG_LEAST_OUTSTANDING,
    RLB_ALG_WEIGHTED_RANDOM,
};
enum rlb_action_type {
    RLB_ACTION_FORWARD = 0,
    RLB_ACTION_REDIRECT,
    RLB_ACTION_FIXED_RESPONSE,
};

/* A resolved socket address ("127.0.0.1:8080", "[::1]:8443", "0.0.0.0:80"). */
struct rlb_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* One target group of a forward action. */
struct rlb_forward_group {
    char *name;          /* target group name; must exist in rlb_config.target_groups */
    uint32_t weight;     /* 0..999; 1 when omitted (only one group may omit it) */
    bool weight_set;     /* false when the file omitted the weight */
    size_t group_index;  /* index into rlb_config.target_groups, resolved at load */
    struct rlb_src_loc loc;
};

struct rlb_action {
    enum rlb_action_type type;
    struct rlb_src_loc loc;
    struct {
        struct rlb_forward_group *groups; /* 1..n */
        size_t n_groups;
        bool stickiness_enabled;          /* AWSALBTG target-group stickiness */
        uint64_t stickiness_duration_ms;  /* default 1d */
    } forward;
    struct {
        /* Each is NULL when absent (= keep the request's value, i.e. "#{protocol}" etc.). */
        char *protocol; /* "HTTP" | "HTTPS" | "#{protocol}" */
        char *host;
        char *port;
        char *path;
        char *query;
        int status_code; /* 301 or 302 (HTTP_301 / HTTP_302) */
    } redirect;
    struct {
        int status_code;    /* 2XX, 4XX, 5XX */
        char *content_type; /* NULL when absent; else one of the five allowed types */
        char *body;         /* NULL when absent; at most 1024 bytes */
        size_t body_len;
    } fixed;
};

struct rlb_header_condition {
    char *name;
    char **values;
    size_t n_values;
};

struct rlb_query_condition {
    char *key; /* NULL when absent */
    char *value;
};

struct rlb_cidr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t prefix;    /* prefix length in bits */
    uint8_t addr[16];  /* network address, host bits cleared; first 4 bytes for AF_INET */
};

struct rlb_conditions {
    char **host_header;  size_t n_host_header;
    char **path_pattern; size_t n_path_pattern;
    char **method;       size_t n_method;       /* http_request_method */
    struct rlb_cidr *source_ip;              size_t n_source_ip;
    struct rlb_header_condition *http_header; size_t n_http_header;
    struct rlb_query_condition *query_string; size_t n_query_string;
};

struct rlb_rule {
    uint32_t priority; /* 1..50000, unique per listener */
    struct rlb_conditions conditions;
    struct rlb_action action;
    struct rlb_src_loc loc;
};

struct rlb_certificate_cfg {
    char *cert; /* PEM file path */
    char *key;  /* PEM file path */
    struct rlb_src_loc loc;
};

struct rlb_listener_cfg {
    char *name;
    char *listen;              /* as written */
    struct rlb_sockaddr addr;  /* resolved numeric address */
    uint16_t port;
    enum rlb_protocol protocol;
    struct rlb_certificate_cfg *certificates; size_t n_certificates; /* HTTPS only, >= 1 */
    char *security_policy;     /* default ELBSecurityPolicy-TLS13-1-2-2021-06 */
    uint64_t idle_timeout_ms;       /* default 60s */
    uint64_t client_keep_alive_ms;  /* default 3600s */
    uint64_t header_timeout_ms;     /* default 10s */
    enum rlb_xff_mode xff;          /* default append */
    bool xff_client_port;
    bool preserve_host_header;
    bool drop_invalid_header_fields;
    enum rlb_desync_mode desync_mode; /* default defensive */
    uint32_t max_connections;         /* 0 = unlimited */
    struct rlb_rule *rules; size_t n_rules; /* sorted by ascending priority */
    struct rlb_action default_action;       /* required */
    struct rlb_src_loc loc;
};

struct rlb_health_check_cfg {
    bool enabled;              /* default true */
    char *path;                /* default "/" */
    uint16_t port;             /* 0 = traffic-port (default) */
    uint64_t interval_ms;      /* default 30s; 100ms..300s accepted */
    uint64_t timeout_ms;       /* default 5s (min(5s, interval/2) when omitted); < interval */
    uint32_t healthy_threshold;   /* default 5 */
    uint32_t unhealthy_threshold; /* default 2 */
    char *matcher;             /* as written, default "200" */
    struct { uint16_t lo, hi; } *match_ranges; size_t n_match_ranges; /* parsed matcher */
};

struct rlb_target_cfg {
    char *id;                  /* the address as written (IP literal) */
    uint16_t port;             /* the group's port when omitted */
    struct rlb_sockaddr addr;  /* id + port resolved */
    struct rlb_src_loc loc;
};

struct rlb_scaling_cfg {
    bool present;
    char *metric;              /* "request_count_per_target" */
    double target_value;
    uint32_t min, max;
    uint64_t scale_out_cooldown_ms; /* default 300s */
    uint64_t scale_in_cooldown_ms;  /* default 300s */
    char *hook;                /* NULL when absent */
};

struct rlb_target_group_cfg {
    char *name;
    enum rlb_protocol protocol;   /* default HTTP */
    uint16_t port;                /* default 80 */
    enum rlb_algorithm algorithm; /* default round_robin */
    uint64_t deregistration_delay_ms; /* default 300s */
    uint64_t slow_start_ms;           /* 0 = off, else 30s..900s */
    struct {
        bool enabled;              /* default false */
        char *type;                /* "lb_cookie" */
        uint64_t duration_ms;      /* default 1d */
    } stickiness;
    struct rlb_health_check_cfg health_check;
    struct rlb_target_cfg *targets; size_t n_targets;
    struct rlb_scaling_cfg scaling;
    struct rlb_src_loc loc;
};

struct rlb_cluster_cfg {
    bool present;
    char **etcd; size_t n_etcd;
    char *prefix;
    char *instance;         /* default: hostname */
    uint64_t lease_ttl_ms;  /* default 5s */
    char *tls_ca, *tls_cert, *tls_key;      /* NULL when absent */
    char *auth_user, *auth_password_file;   /* NULL when absent */
};

struct rlb_config {
    char *path;                 /* the file it was loaded from */
    unsigned threads;           /* 0 = auto (online CPUs) */
    uint64_t shutdown_timeout_ms; /* default 30s */
    char *state_file;           /* NULL when absent */
    struct {
        char *listen;           /* NULL when there is no admin block; default "127.0.0.1:9901" */
        struct rlb_sockaddr addr;
        char *token_file;       /* NULL when absent */
        char *canary_header;    /* deployments' force header; default "X-Ringlb-Canary" */
    } admin;
    struct {
        char *path;             /* NULL = off (default); "-" = stdout */
    } access_log;
    struct {
        uint64_t window_ms;     /* default 60s */
    } metrics;
    char *user;                 /* NULL when absent */
    char *stickiness_key_file;  /* NULL when absent */
    struct rlb_cluster_cfg cluster;
    struct rlb_listener_cfg *listeners; size_t n_listeners;
    struct rlb_target_group_cfg *target_groups; size_t n_target_groups;
};

/* A list of error messages, each already formatted "FILE:LINE:COL: message". */
struct rlb_config_errors {
    char **msgs;
    size_t n;
};

/* Parse and validate the YAML or JSON file at `path`.
 * Returns a new configuration (caller owns it; free with rlb_config_free()), or NULL when the
 * file cannot be read or is invalid; then every problem found is appended to `errs` (which the
 * caller frees with rlb_config_errors_free()). Main thread only; does blocking file I/O. */
struct rlb_config *rlb_config_load(const char *path, struct rlb_config_errors *errs);

/* Same as rlb_config_load() for a document already in memory; `name` is used in messages. */
struct rlb_config *rlb_config_load_string(const char *name, const char *text, size_t len,
                                          struct rlb_config_errors *errs);

/* Free a configuration returned by rlb_config_load*(). NULL is accepted. */
void rlb_config_free(struct rlb_config *cfg);

/* Free the messages collected in `errs` and reset it to empty. */
void rlb_config_errors_free(struct rlb_config_errors *errs);

/* Report where `cfg` exceeds real ALB quotas (ringlb --alb-limits): appends one message per
 * excess to `out` ("FILE:LINE:COL: ..."). Returns the number of messages appended. */
size_t rlb_config_alb_limits(const struct rlb_config *cfg, struct rlb_config_errors *out);

/* Parse a duration: "250ms", "5s", "10m", "1h", "1d" or a bare integer (seconds).
 * Returns 0 and stores milliseconds in *ms, or -EINVAL. */
int rlb_duration_parse(const char *s, uint64_t *ms);

/* Parse "host:port" / "[v6]:port" with a numeric host into `out`. Returns 0 or -EINVAL. */
int rlb_sockaddr_parse(const char *s, struct rlb_sockaddr *out);

/* The `ringlb check -c FILE [--alb-limits]` command (argv[0] is "check"). Loads and validates
 * FILE; prints every error ("FILE:LINE:COL: message") on stdout and returns 2 when invalid,
 * else prints the ALB-quota lines when --alb-limits is given, then "ok", and returns 0. A usage
 * error prints a message on stderr and returns 2. Main thread only. */
int rlb_config_check_main(int argc, char **argv);

#endif
