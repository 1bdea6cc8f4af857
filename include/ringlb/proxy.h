/* proxy.h — client connections, target connections and the exchange between them.
 *
 * A client connection (struct rlb_conn, conn.c) reads request heads, answers locally
 * (fixed-response, redirect, LB errors) or starts an exchange (struct rlb_exchange) that binds
 * it to a target connection (struct rlb_upconn, upstream.c) for one request/response. Bodies
 * flow as segments from one stream's input queue to the other's output queue; each side stops
 * reading while the other side's output queue is above RLB_HIGH_WATER. Requests on one client
 * connection are handled one at a time, so pipelined responses leave in order.
 *
 * All of these are owned by one worker thread.
 */
#ifndef RINGLB_PROXY_H
#define RINGLB_PROXY_H

#include <llhttp.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringlb/http1.h"
#include "ringlb/snapshot.h"
#include "ringlb/stream.h"
#include "ringlb/timer.h"
#include "ringlb/tls.h"
#include "ringlb/worker.h"

/* Stop reading a side while the other side has this much queued for sending. */
#define RLB_HIGH_WATER (256u * 1024u)
/* Requests whose head+body fit this are kept for the one retry on a fresh connection. */
#define RLB_RETRY_KEEP (64u * 1024u)
/* Plaintext encrypted per step on TLS connections (bounded, for back-pressure). */
#define RLB_TLS_SEND_CHUNK (64u * 1024u)
/* Connect timeout towards targets (ALB: 10 s, then 504). */
#define RLB_CONNECT_TIMEOUT_MS 10000u
/* How long a closing client connection waits for the client's FIN after ours. */
#define RLB_LINGER_MS 2000u

struct rlb_tls;

enum rlb_conn_state {
    RLB_C_HEAD = 0,   /* waiting for / reading a request head */
    RLB_C_EXCHANGE,   /* a request is being forwarded to a target */
    RLB_C_LOCAL,      /* a local response is queued; the request body is being discarded */
    RLB_C_TUNNEL,     /* after 101: bytes both ways */
    RLB_C_CLOSING,    /* our side is shut down; waiting for the client to close */
};

/* A client connection. Owner: its worker; freed when its stream is freed. */
struct rlb_conn {
    struct rlb_stream st;          /* first member: a stream pointer is a conn pointer */
    struct rlb_conn *next, *prev;  /* worker's connection list */
    struct rlb_wlistener *wl;      /* the listen socket it came from */
    struct rlb_timer timer;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
    uint32_t requests;
    uint64_t id;                   /* connection id (access log conn_trace_id) */
    uint64_t created_ms;
    uint64_t head_start_ms;        /* first byte of the pending head; 0 when none */
    uint64_t active_ms;            /* last byte in or out */
    struct rlb_head_scan scan;
    uint8_t state;                 /* enum rlb_conn_state */
    bool close_after;              /* close once the current response is sent */
    bool eof;                      /* the client closed its sending side */
    bool tls_notified;             /* our close_notify is queued */
    struct rlb_exchange *ex;       /* the current request, NULL between requests */
    struct rlb_tls *tls;           /* HTTPS listeners: the TLS engine, else NULL */
};

/* Kept at 256 bytes or less (an allocator size class): idle keep-alive connections are
 * mostly this struct (bench: KiB per idle connection). */
_Static_assert(sizeof(struct rlb_conn) <= 256, "struct rlb_conn grew past 256 bytes");

/* The connection's plaintext input: the socket's queue, or the TLS layer's output. */
static inline struct rlb_bq *rlb_conn_in(struct rlb_conn *c)
{
    return c->tls ? &c->tls->plain_in : &c->st.in;
}

/* The connection's plaintext output: the socket's queue, or the TLS layer's input. */
static inline struct rlb_bq *rlb_conn_out(struct rlb_conn *c)
{
    return c->tls ? &c->tls->plain_out : &c->st.out;
}

/* A connection to a target. Owner: its worker (in an idle pool, or bound to an exchange). */
struct rlb_upconn {
    struct rlb_stream st;          /* first member */
    struct rlb_target *target;     /* one reference held */
    struct rlb_upconn *pool_next, **pool_pprev; /* idle pool links (pprev NULL when not idle) */
    struct rlb_timer timer;
    struct rlb_exchange *ex;       /* NULL when idle */
    struct rlb_head_scan scan;
    uint64_t active_ms;
    uint32_t requests;             /* requests sent on it */
    bool connected;
    bool reusable;                 /* false once anything makes reuse unsafe */
};

/* What the access log needs of a request after its head is gone. Owner: the exchange. */
struct rlb_exchange_log {
    uint64_t created_rt_us;        /* CLOCK_REALTIME µs of the head */
    uint32_t method_len, uri_len, host_len, ua_len, trace_len;
    uint8_t major, minor;
    char data[];                   /* method, uri, host, user agent, trace id, back to back */
};

/* One request/response in flight. Owner: the client connection (c->ex). */
struct rlb_exchange {
    struct rlb_conn *c;
    struct rlb_upconn *u;
    struct rlb_snapshot *snap;     /* counted in the worker's held snapshots */
    struct rlb_listener *lst;
    struct rlb_group *group;
    struct rlb_target *target;     /* counted in target->inflight */
    struct rlb_bq retry;           /* clones of the request bytes, for the one retry */
    uint64_t start_ms;
    uint64_t sent_us;              /* monotonic µs when the request was handed to the target */
    int32_t rule_priority;         /* matched rule (0: default action) */
    uint16_t lb_status;            /* status of an LB-generated answer, 0 when none */
    uint16_t target_status;        /* final status from the target, 0 when none */
    uint64_t sticky_group;         /* group id for the AWSALBTG cookie */
    uint64_t sticky_target;        /* target id for the AWSALB cookie */
    uint64_t target_sticky_s;      /* 0: no AWSALB cookie on the response */
    uint64_t sticky_duration_s;    /* 0: no stickiness cookie on the response */
    uint32_t tried_slots[4];       /* targets that refused, skipped for this request */
    uint8_t n_tried;
    uint8_t method;
    bool is_head;
    bool http10;
    bool client_keep_alive;
    bool upgrade;                  /* the request asked for an upgrade */
    bool req_done;                 /* the whole request was queued to the target */
    bool resp_started;             /* a response byte arrived */
    bool resp_head_done;
    bool resp_done;
    bool retryable;                /* `retry` holds the whole request */
    bool retried;
    bool dechunk;
    bool resp_close;               /* the client connection closes after this response */
    bool desync_close;             /* Ambiguous under defensive: close both sides afterwards */
    uint8_t actions;               /* RLB_ACCESSLOG_ACT_* executed */
    /* Access log (only while it is on): copies of the request's facts, and times. */
    struct rlb_exchange_log *log;
    char *redirect_url;            /* Location answered (only while logging), else NULL */
    uint64_t head_us;              /* monotonic µs when the head was complete */
    uint64_t resp_us;              /* monotonic µs when the response head arrived */
    uint64_t bytes_in0, bytes_out0; /* the connection's byte counters at the start */
    uint8_t desync_tier;           /* enum rlb_desync_tier of the request */
    uint8_t desync_reason;         /* enum rlb_desync_reason */
    /* Everything above is zeroed for each request; the parsers below are initialised. */
    llhttp_t req;                  /* request body framing */
    llhttp_t resp;                 /* response parsing */
    struct rlb_http_ctx reqctx;
    struct rlb_http_ctx respctx;
};

/* Accept `fd` from listen socket `wl`: create and start a client connection. Worker. */
void rlb_conn_accept(struct rlb_worker *w, struct rlb_wlistener *wl, int fd);

/* Close every idle client connection (graceful drain). Worker. */
void rlb_conn_close_idle(struct rlb_worker *w);

/* Close every client connection at once (stop now / drain deadline). Worker. */
void rlb_conn_close_all(struct rlb_worker *w);

/* Bytes queued towards the client and not yet sent (plaintext and encrypted). */
static inline uint32_t rlb_conn_pending(const struct rlb_conn *c)
{
    return c->st.out.bytes + (c->tls ? c->tls->plain_out.bytes : 0);
}

/* Send what is queued in rlb_conn_out(c) (encrypting it first on TLS connections). */
void rlb_conn_flush(struct rlb_conn *c);

/* Client side hooks used by upstream.c. */
void rlb_conn_resume(struct rlb_conn *c);            /* re-run the client state machine */
void rlb_conn_exchange_done(struct rlb_conn *c);     /* the exchange finished */
void rlb_conn_lb_error(struct rlb_conn *c, int status); /* answer the exchange with an LB error */
void rlb_conn_abort(struct rlb_conn *c);             /* response broken mid-way: close */

/* Start sending the exchange's request to `target` (pooled connection or a new one), moving
 * what is queued in `req` (the rewritten head and body bytes so far). Returns 0 or -errno. */
int rlb_upstream_start(struct rlb_exchange *ex, struct rlb_target *target, struct rlb_bq *req);

/* The client queued more request bytes for the target: send them. Worker. */
void rlb_upstream_kick(struct rlb_upconn *u);

/* The client's output queue drained: relay what the target sent meanwhile. Worker. */
void rlb_upstream_resume(struct rlb_upconn *u);

/* Detach the exchange from its target connection: back to the idle pool when reusable,
 * else closed. */
void rlb_upstream_release(struct rlb_exchange *ex);

/* Close every idle pooled connection of the worker. */
void rlb_upstream_close_idle(struct rlb_worker *w);

/* Close the idle pooled connections of targets that are draining or gone. Worker. */
void rlb_upstream_prune(struct rlb_worker *w);

/* End the requests still in flight on targets whose deregistration delay is over (state
 * unused): 502 when no response byte came yet, else the response is cut. Worker. */
void rlb_conn_cut_unused(struct rlb_worker *w);

#endif
