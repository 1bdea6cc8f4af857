/* stream.h — a socket driven through the worker's ring.
 *
 * A stream owns one file descriptor and the operations in flight on it: at most one multishot
 * recv (into the provided-buffer ring), at most one sendmsg (gathering the output queue's
 * segments), and a connect. Received bytes are appended to `in` and handed to the owner's
 * on_recv; the owner moves or consumes them and queues output in `out`, then calls
 * rlb_stream_send(). Reading follows the owner's wish (rlb_stream_want_recv): that is how
 * back-pressure works — a connection whose peer cannot take more simply stops reading.
 *
 * Closing cancels every operation in flight and closes the descriptor at once; the object is
 * handed to on_free only when the last operation has completed (never while the kernel may
 * still write to it). Owner: one worker thread; embedded in a client or target connection.
 */
#ifndef RINGLB_STREAM_H
#define RINGLB_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ringlb/buf.h"

struct rlb_worker;
struct rlb_stream;

/* Callbacks of a stream's owner. */
struct rlb_stream_ops {
    /* res > 0: res bytes were appended to s->in. res == 0: the peer closed (EOF).
     * res < 0: -errno (connection reset...). */
    void (*on_recv)(struct rlb_stream *s, int res);
    /* A send completed: res >= 0 bytes were consumed from s->out, or -errno. */
    void (*on_sent)(struct rlb_stream *s, int res);
    /* A connect completed: 0, or -errno (-ECANCELED/-ETIME when the timeout fired). */
    void (*on_connect)(struct rlb_stream *s, int res);
    /* Every operation of a closed stream has completed: free the owner. */
    void (*on_free)(struct rlb_stream *s);
};

enum {
    RLB_ST_WANT_RECV = 1u << 0,   /* the owner wants bytes */
    RLB_ST_RECV_ARMED = 1u << 1,  /* a multishot recv is in the kernel */
    RLB_ST_SEND_BUSY = 1u << 2,   /* a sendmsg is in the kernel */
    RLB_ST_CLOSED = 1u << 3,      /* closed: waiting for operations to finish */
    RLB_ST_STARVED = 1u << 4,     /* recv ended with ENOBUFS: re-arm when buffers return */
    RLB_ST_CONNECTING = 1u << 5,
    RLB_ST_CANCELLING = 1u << 6,  /* a cancel of the recv was submitted */
    RLB_ST_FREEING = 1u << 7,     /* on the worker's to_free list */
};

/* Operation tags stored in the low bits of the SQE user_data. */
enum rlb_op {
    RLB_OP_IGNORE = 0,
    RLB_OP_RECV = 1,
    RLB_OP_SEND = 2,
    RLB_OP_CONNECT = 3,
    RLB_OP_ACCEPT = 4,
    RLB_OP_WAKE = 5,
    RLB_OP_MASK = 7,
};

struct rlb_sendop;

struct rlb_stream {
    struct rlb_worker *w;
    const struct rlb_stream_ops *ops;
    int fd;
    uint16_t pending;            /* operations submitted and not completed */
    uint16_t flags;              /* RLB_ST_* */
    struct rlb_bq in;            /* received, not consumed by the owner */
    struct rlb_bq out;           /* queued for sending */
    struct rlb_sendop *sop;      /* the sendmsg in flight */
    struct rlb_stream *starved_next;
    uint64_t bytes_in, bytes_out;
};

/* Initialise `s` around connected or connecting socket `fd`. */
void rlb_stream_init(struct rlb_stream *s, struct rlb_worker *w,
                     const struct rlb_stream_ops *ops, int fd);

/* Say whether the owner wants to receive; arms or cancels the multishot recv as needed. */
void rlb_stream_want_recv(struct rlb_stream *s, bool want);

/* Start sending s->out if nothing is being sent. */
void rlb_stream_send(struct rlb_stream *s);

/* Start a non-blocking connect to `addr` with a linked timeout of `timeout_ms`. */
void rlb_stream_connect(struct rlb_stream *s, const struct sockaddr *addr, socklen_t len,
                        uint64_t timeout_ms);

/* Close: cancel operations, close the descriptor (with an RST when `reset`), release the
 * queues. on_free follows once nothing is in flight (possibly later in this iteration). */
void rlb_stream_close(struct rlb_stream *s, bool reset);

/* Handle a completion for `s` (called by the worker's dispatcher). */
void rlb_stream_complete(struct rlb_stream *s, enum rlb_op op, int res, uint32_t cqe_flags);

/* Re-arm streams whose recv stopped for lack of buffers (worker loop, once per iteration). */
void rlb_stream_retry_starved(struct rlb_worker *w);

/* Free cached send operations (worker exit). */
void rlb_stream_cache_destroy(struct rlb_worker *w);

#endif
