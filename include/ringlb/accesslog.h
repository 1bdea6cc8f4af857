/* accesslog.h — the ALB-format access log (SPEC section 6, access_log.path).
 *
 * One line per request (never for health checks), fields in the order of the AWS ALB access
 * log, space separated, `-` for absent values:
 *
 *   type time elb client:port target:port request_processing_time target_processing_time
 *   response_processing_time elb_status_code target_status_code received_bytes sent_bytes
 *   "request" "user_agent" ssl_cipher ssl_protocol target_group_arn "trace_id" "domain_name"
 *   "chosen_cert_arn" matched_rule_priority request_creation_time "actions_executed"
 *   "redirect_url" "error_reason" "target:port_list" "target_status_code_list"
 *   "classification" "classification_reason" conn_trace_id
 *
 * ringlb specifics: `elb` is the listener name; `target_group_arn` is the target group NAME;
 * `chosen_cert_arn` is the certificate's name/path as configured; conn_trace_id is
 * "TID_" + 16 hex digits of the client connection's id. Times are UTC ISO 8601 with
 * microseconds; processing times are seconds with millisecond precision, -1 when not
 * applicable (as the ALB does). Quoted fields are wrapped in double quotes; a byte that would
 * break the line or its parsing (control bytes, bytes >= 0x7f, `"` and `\`) is written as
 * \xNN — the ALB's own notation for such bytes — so the common ALB log regexes (Athena's
 * `"([^"]*)"`) keep working; unquoted fields escape spaces the same way.
 *
 * Threads. Each worker owns a struct rlb_accesslog_shard: rlb_accesslog_write() formats the
 * line into the shard's scratch buffer and copies it into the shard's byte ring (single
 * producer, single consumer). It never blocks and makes no system call: when the ring lacks
 * room the line is dropped and counted. A dedicated writer thread (started by
 * rlb_accesslog_start()) wakes every 50 ms (every 2 ms while rings fill fast, at once while
 * one is more than a quarter full) and writes whatever the rings hold with writev(2). A failed write (full disk, EIO,
 * closed pipe) drops that batch, is counted and reported with rlb_log_error() at most every
 * 10 s; workers never wait for the disk.
 */
#ifndef RINGLB_ACCESSLOG_H
#define RINGLB_ACCESSLOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* actions_executed bits. */
#define RLB_ACCESSLOG_ACT_FORWARD 1u
#define RLB_ACCESSLOG_ACT_REDIRECT 2u
#define RLB_ACCESSLOG_ACT_FIXED 4u

/* matched_rule_priority when there is none to log ("-": the request failed before routing). */
#define RLB_ACCESSLOG_NO_RULE INT32_MIN

/* Default ring size of a shard. */
#define RLB_ACCESSLOG_RING_DEFAULT (1u << 20)
/* Longest line formatted (longer fields are truncated). */
#define RLB_ACCESSLOG_LINE_MAX (128u * 1024u)

/* What a worker knows about one finished request. Filled on the stack by the worker; every
 * pointer only needs to stay valid during the rlb_accesslog_write() call. Strings with a
 * length need not be NUL-terminated; NULL means absent (`-`). */
struct rlb_accesslog_entry {
    uint64_t time_us;              /* CLOCK_REALTIME µs when the response was generated
                                    * (WebSocket: when the connection closed) */
    uint64_t request_creation_us;  /* CLOCK_REALTIME µs when the request head arrived; 0 = - */
    bool https;                    /* type https/wss instead of http/ws */
    bool websocket;                /* type ws/wss (upgraded connection) */
    const char *elb;               /* listener name */
    const struct sockaddr *client; /* client address (client:port), NULL = - */
    const char *target;            /* "ip:port" of the target (rlb_target.name), NULL = - */
    int64_t request_processing_us; /* -1 when not dispatched */
    int64_t target_processing_us;  /* -1 when not dispatched / no response */
    int64_t response_processing_us;/* -1 when not dispatched */
    int elb_status;                /* status sent to the client, 0 = - */
    int target_status;             /* status from the target, 0 = - */
    uint64_t received_bytes;       /* request bytes from the client, head included */
    uint64_t sent_bytes;           /* response bytes to the client, head included */
    /* "request": METHOD scheme://host:port/uri HTTP/x.y. method NULL = malformed request,
     * logged as "- scheme://host:port- -" as the ALB does. host is the Host header value (a
     * port in it is replaced by `port`); uri is the request target as sent. */
    const char *method;
    uint32_t method_len;
    const char *host;
    uint32_t host_len;
    uint16_t port;                 /* listener port */
    const char *uri;
    uint32_t uri_len;
    uint8_t http_major, http_minor;
    const char *user_agent;        /* truncated to 8 KiB like the ALB */
    uint32_t user_agent_len;
    const char *ssl_cipher;        /* HTTPS only */
    const char *ssl_protocol;      /* HTTPS only */
    const char *target_group;      /* group name (where the ALB logs the ARN) */
    const char *trace_id;          /* X-Amzn-Trace-Id as sent to the target */
    uint32_t trace_id_len;
    const char *domain_name;       /* SNI name, HTTPS only */
    const char *chosen_cert;       /* certificate name/path, HTTPS only */
    int32_t matched_rule_priority; /* 1..50000, 0 default action, -1 rule error,
                                    * RLB_ACCESSLOG_NO_RULE = - */
    unsigned actions;              /* RLB_ACCESSLOG_ACT_* bits, 0 = - */
    const char *redirect_url;      /* Location of a redirect */
    uint32_t redirect_url_len;
    const char *error_reason;      /* e.g. AWSALBTGCookieInvalid */
    const char *classification;    /* desync class when not Compliant */
    const char *classification_reason;
    uint64_t conn_trace_id;        /* client connection id, 0 = - */
};

/* A worker's ring of formatted lines. Owner: the worker (producer side: wpos, counters,
 * scratch); the writer thread owns rpos. Created by the main thread with
 * rlb_accesslog_shard_new() and freed by rlb_accesslog_stop(). */
struct rlb_accesslog_shard {
    char *ring;                    /* cap bytes */
    uint64_t cap;                  /* power of two */
    char *scratch;                 /* RLB_ACCESSLOG_LINE_MAX bytes, worker only */
    _Atomic uint64_t wpos;         /* bytes ever written (worker) */
    _Atomic uint64_t lines;        /* lines accepted (worker) */
    _Atomic uint64_t dropped;      /* lines dropped: ring full (worker) */
    _Alignas(64) _Atomic uint64_t rpos; /* bytes ever consumed (writer thread), own line */
} __attribute__((aligned(64)));

/* Counters of the whole access log. */
struct rlb_accesslog_stats {
    uint64_t lines;        /* lines accepted into rings */
    uint64_t dropped;      /* lines dropped because a ring was full */
    uint64_t write_errors; /* failed write(2) batches */
    uint64_t lost_lines;   /* lines of failed batches */
};

/* True while an access log is configured: a worker may skip filling an entry otherwise. Any
 * thread. */
extern _Atomic bool rlb_accesslog__on;
static inline bool rlb_accesslog_on(void)
{
    return atomic_load_explicit(&rlb_accesslog__on, memory_order_relaxed);
}

/* Start the access log: open `path` ("-" = stdout; NULL or "off" = no log, nothing started)
 * for appending and start the writer thread. Returns 0 or -errno (nothing started). Main
 * thread. */
int rlb_accesslog_start(const char *path);

/* Apply a reloaded access_log.path: nothing when unchanged, else open the new file (or stop
 * logging for NULL/"off") and hand it to the writer, which writes what is pending first.
 * Returns 0 or -errno (the old destination stays). Main thread. */
int rlb_accesslog_set_path(const char *path);

/* SIGUSR1: reopen the same path (after log rotation renamed the file); the writer switches
 * before its next write. No-op for stdout or when off. Returns 0 or -errno (the old file
 * stays). Main thread. */
int rlb_accesslog_reopen(void);

/* Write everything formatted so far, waiting up to `timeout_ms`. Returns 0, or -ETIMEDOUT.
 * Main thread (tests, shutdown). */
int rlb_accesslog_flush(uint64_t timeout_ms);

/* Final flush, stop the writer, close the file, free every shard. Only after the workers
 * stopped. Main thread. */
void rlb_accesslog_stop(void);

/* A new shard with a ring of `ring_bytes` (rounded up to a power of two; 0 = default) for one
 * worker, registered with the writer. NULL on ENOMEM. Main thread, before the worker starts. */
struct rlb_accesslog_shard *rlb_accesslog_shard_new(size_t ring_bytes);

/* Format `e` as one access log line (with its '\n') into buf (at most cap bytes). Returns the
 * line length, or 0 when cap is too small even for truncated fields. Any thread; no state. */
size_t rlb_accesslog_format(const struct rlb_accesslog_entry *e, char *buf, size_t cap);

/* Log one request: format it and queue the line in the shard's ring. Never blocks, no system
 * call. Returns 0 (queued, or no access log), -ENOBUFS when the ring was full (the line is
 * dropped and counted). `s` may be NULL (no log). Worker owning `s`. */
int rlb_accesslog_write(struct rlb_accesslog_shard *s, const struct rlb_accesslog_entry *e);

/* Sum of the counters of every shard and of the writer. Any thread. */
void rlb_accesslog_get_stats(struct rlb_accesslog_stats *out);

#endif
