/* stream.c — ring-driven socket I/O (see stream.h).
 *
 * Receiving: one multishot recv with buffer selection stays armed while the owner wants bytes.
 * It ends by itself on EOF, errors, or when the buffer ring is empty (-ENOBUFS: the stream goes
 * on the worker's starved list and is re-armed once buffers come back). Cancelling is by
 * user_data, so a descriptor number reused after close can never be hit by a stale cancel.
 *
 * Sending: one sendmsg at a time gathers up to RLB_SEND_IOV segments of the output queue (a
 * plain send when there is one segment); the sent bytes are released on completion, which
 * returns provided buffers to the kernel.
 *
 * Closing goes through the ring too (rlb_worker_close_fd), behind the stream's last queued
 * operation, so its descriptor number cannot be reused while an operation still names it.
 */
#include "ringlb/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ringlb/log.h"
#include "ringlb/worker.h"

#define RLB_SEND_IOV 16

struct rlb_sendop {
    struct rlb_sendop *next;
    struct msghdr msg;
    struct iovec iov[RLB_SEND_IOV];
};

static inline uint64_t tag(struct rlb_stream *s, enum rlb_op op)
{
    return (uint64_t)(uintptr_t)s | (uint64_t)op;
}

void rlb_stream_init(struct rlb_stream *s, struct rlb_worker *w,
                     const struct rlb_stream_ops *ops, int fd)
{
    memset(s, 0, sizeof(*s));
    w->live_streams++;
    s->w = w;
    s->ops = ops;
    s->fd = fd;
}

static void arm_recv(struct rlb_stream *s)
{
    struct io_uring_sqe *sqe = rlb_worker_sqe(s->w);
    io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = s->w->bufs.bgid;
    io_uring_sqe_set_data64(sqe, tag(s, RLB_OP_RECV));
    s->flags |= RLB_ST_RECV_ARMED;
    s->pending++;
}

static void cancel_op(struct rlb_stream *s, enum rlb_op op)
{
    struct io_uring_sqe *sqe = rlb_worker_sqe(s->w);
    io_uring_prep_cancel64(sqe, tag(s, op), 0);
    io_uring_sqe_set_data64(sqe, RLB_OP_IGNORE);
}

void rlb_stream_want_recv(struct rlb_stream *s, bool want)
{
    if (s->flags & RLB_ST_CLOSED)
        return;
    if (want) {
        s->flags |= RLB_ST_WANT_RECV;
        if (!(s->flags & (RLB_ST_RECV_ARMED | RLB_ST_STARVED | RLB_ST_CONNECTING)))
            arm_recv(s);
    } else {
        s->flags &= (uint16_t)~RLB_ST_WANT_RECV;
        if ((s->flags & RLB_ST_RECV_ARMED) && !(s->flags & RLB_ST_CANCELLING)) {
            cancel_op(s, RLB_OP_RECV);
            s->flags |= RLB_ST_CANCELLING;
        }
    }
}

void rlb_stream_send(struct rlb_stream *s)
{
    if ((s->flags & (RLB_ST_SEND_BUSY | RLB_ST_CLOSED | RLB_ST_CONNECTING)) || s->out.bytes == 0)
        return;
    struct rlb_worker *w = s->w;
    struct rlb_sendop *op = w->free_sendops;
    if (op) {
        w->free_sendops = op->next;
    } else {
        op = malloc(sizeof(*op));
        if (!op) {
            rlb_log_error("out of memory for a send");
            return;
        }
    }
    int n = 0;
    for (struct rlb_seg *seg = s->out.head; seg && n < RLB_SEND_IOV; seg = seg->next) {
        if (seg->len == 0)
            continue;
        op->iov[n].iov_base = seg->data;
        op->iov[n].iov_len = seg->len;
        n++;
    }
    memset(&op->msg, 0, sizeof(op->msg));
    op->msg.msg_iov = op->iov;
    op->msg.msg_iovlen = (size_t)n;
    s->sop = op;
    struct io_uring_sqe *sqe = rlb_worker_sqe(w);
    if (n == 1) /* a plain send skips copying and checking a msghdr in the kernel */
        io_uring_prep_send(sqe, s->fd, op->iov[0].iov_base, op->iov[0].iov_len, MSG_NOSIGNAL);
    else
        io_uring_prep_sendmsg(sqe, s->fd, &op->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(s, RLB_OP_SEND));
    s->flags |= RLB_ST_SEND_BUSY;
    s->pending++;
}

void rlb_stream_connect(struct rlb_stream *s, const struct sockaddr *addr, socklen_t len,
                        uint64_t timeout_ms)
{
    static _Thread_local struct __kernel_timespec ts;
    ts.tv_sec = (long long)(timeout_ms / 1000);
    ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = rlb_worker_sqe(s->w);
    io_uring_prep_connect(sqe, s->fd, addr, len);
    io_uring_sqe_set_data64(sqe, tag(s, RLB_OP_CONNECT));
    sqe->flags |= IOSQE_IO_LINK;
    /* The linked timeout must directly follow; make sure both land in one submission. */
    struct io_uring_sqe *t = io_uring_get_sqe(&s->w->ring);
    if (!t) {
        /* Ring full right after the connect: unlink it; the connect then has no timeout but
         * the connection's idle timer still bounds it. */
        sqe->flags &= (uint8_t)~IOSQE_IO_LINK;
    } else {
        io_uring_prep_link_timeout(t, &ts, 0);
        io_uring_sqe_set_data64(t, RLB_OP_IGNORE);
    }
    s->flags |= RLB_ST_CONNECTING;
    s->pending++;
}

static void schedule_free(struct rlb_stream *s)
{
    if (s->flags & RLB_ST_FREEING)
        return;
    s->flags |= RLB_ST_FREEING;
    s->starved_next = s->w->to_free;
    s->w->to_free = s;
}

void rlb_stream_close(struct rlb_stream *s, bool reset)
{
    if (s->flags & RLB_ST_CLOSED)
        return;
    struct rlb_worker *w = s->w;
    if (s->flags & RLB_ST_RECV_ARMED)
        cancel_op(s, RLB_OP_RECV);
    if (s->flags & RLB_ST_SEND_BUSY)
        cancel_op(s, RLB_OP_SEND);
    if (s->flags & RLB_ST_CONNECTING)
        cancel_op(s, RLB_OP_CONNECT);
    if (s->flags & RLB_ST_STARVED) {
        for (struct rlb_stream **pp = &w->starved; *pp; pp = &(*pp)->starved_next) {
            if (*pp == s) {
                *pp = s->starved_next;
                break;
            }
        }
    }
    s->flags = RLB_ST_CLOSED | (s->flags & (RLB_ST_RECV_ARMED | RLB_ST_SEND_BUSY |
                                            RLB_ST_CONNECTING));
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    /* Through the ring, after this stream's unsubmitted operations (see rlb_worker_close_fd);
     * submitted ones hold their own file reference. */
    rlb_worker_close_fd(w, s->fd);
    s->fd = -1;
    rlb_bq_clear(&w->segs, &s->in);
    if (!(s->flags & RLB_ST_SEND_BUSY))
        rlb_bq_clear(&w->segs, &s->out);
    if (s->pending == 0)
        schedule_free(s);
}

static void sendop_release(struct rlb_stream *s)
{
    if (s->sop) {
        s->sop->next = s->w->free_sendops;
        s->w->free_sendops = s->sop;
        s->sop = NULL;
    }
}

void rlb_stream_complete(struct rlb_stream *s, enum rlb_op op, int res, uint32_t cqe_flags)
{
    struct rlb_worker *w = s->w;
    bool more = (op == RLB_OP_RECV) && (cqe_flags & IORING_CQE_F_MORE);
    if (!more)
        s->pending--;

    if (op == RLB_OP_RECV) {
        if (!more)
            s->flags &= (uint16_t)~(RLB_ST_RECV_ARMED | RLB_ST_CANCELLING);
        struct rlb_seg *seg = NULL;
        if (cqe_flags & IORING_CQE_F_BUFFER) {
            uint32_t bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
            char *data = rlb_bufring_took(&w->bufs, bid, res, cqe_flags);
            seg = rlb_seg_from_buf(&w->segs, bid, data, res > 0 ? (uint32_t)res : 0);
            if (!seg) {
                /* Cannot track it: give the buffer back and treat as a reset. */
                rlb_bufring_release(&w->bufs, bid);
                res = -ENOMEM;
            }
        }
        if (s->flags & RLB_ST_CLOSED) {
            if (seg)
                rlb_seg_free(&w->segs, seg);
        } else if (res > 0) {
            s->bytes_in += (uint64_t)res;
            rlb_bq_push(&s->in, seg);
            s->ops->on_recv(s, res);
        } else {
            if (seg)
                rlb_seg_free(&w->segs, seg);
            if (res == -ENOBUFS) {
                /* more buffers in circulation, or wait for some to come back */
                if (!rlb_bufring_grow(&w->bufs) && !(s->flags & RLB_ST_STARVED)) {
                    s->flags |= RLB_ST_STARVED;
                    s->starved_next = w->starved;
                    w->starved = s;
                }
            } else if (res != -ECANCELED) {
                s->flags &= (uint16_t)~RLB_ST_WANT_RECV;
                s->ops->on_recv(s, res == 0 ? 0 : res);
            }
        }
        if (!(s->flags & (RLB_ST_CLOSED | RLB_ST_RECV_ARMED | RLB_ST_STARVED)) &&
            (s->flags & RLB_ST_WANT_RECV))
            arm_recv(s);
    } else if (op == RLB_OP_SEND) {
        s->flags &= (uint16_t)~RLB_ST_SEND_BUSY;
        sendop_release(s);
        if (s->flags & RLB_ST_CLOSED) {
            rlb_bq_clear(&w->segs, &s->out);
        } else {
            if (res > 0) {
                s->bytes_out += (uint64_t)res;
                rlb_bq_consume(&w->segs, &s->out, (uint32_t)res);
            }
            s->ops->on_sent(s, res);
            if (!(s->flags & RLB_ST_CLOSED) && res >= 0)
                rlb_stream_send(s);
        }
    } else if (op == RLB_OP_CONNECT) {
        s->flags &= (uint16_t)~RLB_ST_CONNECTING;
        if (!(s->flags & RLB_ST_CLOSED)) {
            s->ops->on_connect(s, res);
            if (!(s->flags & RLB_ST_CLOSED) && res == 0) {
                if (s->flags & RLB_ST_WANT_RECV)
                    rlb_stream_want_recv(s, true);
                rlb_stream_send(s);
            }
        }
    }
    if ((s->flags & RLB_ST_CLOSED) && s->pending == 0)
        schedule_free(s);
}

void rlb_stream_retry_starved(struct rlb_worker *w)
{
    if (!w->starved ||
        (w->bufs.outstanding >= w->bufs.added && !rlb_bufring_grow(&w->bufs)))
        return;
    struct rlb_stream *list = w->starved;
    w->starved = NULL;
    while (list) {
        struct rlb_stream *s = list;
        list = s->starved_next;
        s->starved_next = NULL;
        s->flags &= (uint16_t)~RLB_ST_STARVED;
        if ((s->flags & RLB_ST_WANT_RECV) && !(s->flags & (RLB_ST_RECV_ARMED | RLB_ST_CLOSED)))
            arm_recv(s);
    }
}

void rlb_stream_cache_destroy(struct rlb_worker *w)
{
    while (w->free_sendops) {
        struct rlb_sendop *op = w->free_sendops;
        w->free_sendops = op->next;
        free(op);
    }
}
