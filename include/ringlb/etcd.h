/* etcd.h — a small client for etcd v3's JSON gateway over HTTP/1.1 (cluster.h uses it).
 *
 * Two kinds of traffic, each on its own TCP (or TLS) connection to one of the configured
 * endpoints (the next one is tried when one fails):
 *   - unary calls (range, put, txn, delete, lease grant/keep-alive, authenticate) through
 *     rlb_etcd_call(): the request is written and the whole answer read with a deadline
 *     (poll(2)), on a kept-alive connection. The caller blocks for at most the timeout; the
 *     main thread is the only caller, never a worker;
 *   - one watch stream (rlb_etcd_watch_*): opened with a blocking request, then read without
 *     blocking whenever the main ring reports the socket readable. The gateway sends one JSON
 *     object per line inside a chunked body; each complete line is handed to a callback.
 *
 * Keys and values travel base64-encoded in etcd's JSON; the helpers here encode and decode.
 * With `cluster.auth`, a token from /v3/auth/authenticate is sent as the Authorization header
 * and fetched again when etcd says it expired.
 *
 * Owner of every struct here: the caller (cluster.c, main thread).
 */
#ifndef RINGLB_ETCD_H
#define RINGLB_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "ringlb/config.h"

struct ssl_ctx_st;
struct ssl_st;

/* One endpoint, parsed from "http://host:port" or "https://host:port". */
struct rlb_etcd_endpoint {
    char host[256];
    char port[8];
    bool tls;
};

/* A connection: a socket and, for https endpoints, its TLS session. */
struct rlb_etcd_io {
    int fd;                     /* -1 when closed */
    struct ssl_st *ssl;         /* NULL for http */
    size_t endpoint;            /* index of the endpoint it is connected to */
};

/* The client. */
struct rlb_etcd {
    struct rlb_etcd_endpoint *ep;
    size_t n_ep;
    size_t cur;                 /* endpoint to try first */
    struct ssl_ctx_st *tls;     /* NULL when no endpoint is https */
    char *user, *password;      /* NULL without auth */
    char *token;                /* current auth token, NULL when none */
    uint64_t timeout_ms;        /* per unary call */
    struct rlb_etcd_io unary;
    char err[256];              /* why the last call failed */
};

/* Set the client up from the cluster block (endpoints, TLS files, credentials). Returns 0 or
 * -errno with a message in e->err. Does not connect. */
int rlb_etcd_init(struct rlb_etcd *e, const struct rlb_cluster_cfg *cc, uint64_t timeout_ms);

/* Close every connection and free everything rlb_etcd_init() allocated. */
void rlb_etcd_free(struct rlb_etcd *e);

/* POST `body` (JSON) to `path` (e.g. "/v3/kv/range") and return etcd's 200 answer in *out
 * (malloc'd, NUL-terminated, length in *out_len). Returns 0, -ECONNREFUSED/-ETIMEDOUT/-EIO
 * when no endpoint answered in time (etcd unreachable), -EPROTO when etcd answered with an
 * error (message in e->err), -ENOMEM. */
int rlb_etcd_call(struct rlb_etcd *e, const char *path, const char *body, char **out,
                  size_t *out_len);

/* base64 of n bytes into a malloc'd NUL-terminated string (NULL on ENOMEM). */
char *rlb_etcd_b64(const void *p, size_t n);

/* Decode base64 text (s, n) into a malloc'd NUL-terminated buffer; length in *out_len.
 * NULL when the text is not base64 or on ENOMEM. */
char *rlb_etcd_unb64(const char *s, size_t n, size_t *out_len);

/* The key just after every key that starts with `prefix` (etcd's range_end for a prefix),
 * malloc'd; NULL on ENOMEM. */
char *rlb_etcd_prefix_end(const char *prefix);

/* An int64 that etcd's JSON carries as a string (or a number); `dflt` when absent or bad. */
struct fy_node;
int64_t rlb_etcd_int(struct fy_node *n, int64_t dflt);

/* The watch stream. */
struct rlb_etcd_watch {
    struct rlb_etcd_io io;
    llhttp_t parser;
    llhttp_settings_t settings;
    char *line;                 /* the JSON line being assembled */
    size_t len, cap;
    int status;                 /* HTTP status of the stream's answer */
    bool ended;                 /* the gateway ended the stream */
    void (*on_message)(void *arg, const char *json, size_t len);
    void *arg;
};

/* Open a watch on [key, range_end) from revision `start_rev` (blocking, with e's timeout).
 * Afterwards the socket (w->io.fd) is non-blocking: call rlb_etcd_watch_read() when it is
 * readable. Returns 0 or -errno (message in e->err). */
int rlb_etcd_watch_open(struct rlb_etcd *e, struct rlb_etcd_watch *w, const char *key,
                        const char *range_end, int64_t start_rev,
                        void (*on_message)(void *arg, const char *json, size_t len), void *arg);

/* Read what is there and hand every complete message to the callback. Returns 0 while the
 * stream is open (nothing more to read for now), -errno when it ended or broke (then close
 * it and open a new one). */
int rlb_etcd_watch_read(struct rlb_etcd_watch *w);

/* Close the stream (idempotent). */
void rlb_etcd_watch_close(struct rlb_etcd_watch *w);

#endif
