/* Unit tests for ring-driven socket I/O (src/stream.c) against a real io_uring and socket pairs.
 *
 * Descriptor reuse: worker threads share one descriptor table, and an operation prepared on a
 * ring refers to its socket by number until the ring submits it. A stream closed while such an
 * operation is still unsubmitted must not let the number go: another thread's accept (or any
 * socket()) could get it, and the stale operation would then send one client's bytes to another
 * (seen in CI as a TLS client receiving a stray record before ServerHello). */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/stream.h"
#include "ringlb/worker.h"
#include "test.h"

static void on_recv(struct rlb_stream *s, int res) { (void)s; (void)res; }
static void on_sent(struct rlb_stream *s, int res) { (void)s; (void)res; }
static void on_connect(struct rlb_stream *s, int res) { (void)s; (void)res; }
static void on_free(struct rlb_stream *s) { (void)s; }

static const struct rlb_stream_ops ops = {
    .on_recv = on_recv, .on_sent = on_sent, .on_connect = on_connect, .on_free = on_free,
};

/* Hand every completion of the worker's ring to its stream, as the worker loop does. */
static void drain(struct rlb_worker *w)
{
    io_uring_submit_and_wait_timeout(&w->ring, &(struct io_uring_cqe *){0}, 0,
                                     &(struct __kernel_timespec){.tv_nsec = 50000000}, NULL);
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        uint64_t ud = cqe->user_data;
        enum rlb_op op = (enum rlb_op)(ud & RLB_OP_MASK);
        if (ud != RLB_OP_IGNORE && op != RLB_OP_IGNORE)
            rlb_stream_complete((struct rlb_stream *)(uintptr_t)(ud & ~(uint64_t)RLB_OP_MASK),
                                op, cqe->res, cqe->flags);
        n++;
    }
    io_uring_cq_advance(&w->ring, n);
}

TEST(closed_stream_keeps_its_number_until_queued_operations_are_submitted)
{
    struct rlb_worker w;
    memset(&w, 0, sizeof(w));
    CHECK_EQ_INT(io_uring_queue_init(32, &w.ring, 0), 0);
    int old[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, old), 0);

    struct rlb_stream s;
    rlb_stream_init(&s, &w, &ops, old[0]);
    static const char secret[] = "bytes for the old peer only";
    rlb_bq_push(&s.out, rlb_seg_static(&w.segs, secret, sizeof(secret) - 1));
    rlb_stream_send(&s);          /* prepared, not yet submitted */
    int number = old[0];
    rlb_stream_close(&s, false);  /* in the same iteration, as on a peer's EOF */

    /* Another thread takes the lowest free descriptor numbers now. */
    int fresh[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fresh), 0);
    CHECK(fresh[0] != number && fresh[1] != number);

    for (int i = 0; i < 4 && w.to_free != &s; i++)
        drain(&w);
    CHECK(w.to_free == &s); /* every operation of the closed stream completed */
    char buf[64];
    CHECK_EQ_INT((int)recv(fresh[1], buf, sizeof(buf), 0), -1);
    CHECK_EQ_INT(errno, EAGAIN);
    CHECK_EQ_INT((int)recv(fresh[0], buf, sizeof(buf), 0), -1);
    CHECK_EQ_INT(errno, EAGAIN);
    /* And the number really was released once the ring processed the close. */
    CHECK_EQ_INT(fcntl(number, F_GETFD), -1);

    close(fresh[0]);
    close(fresh[1]);
    close(old[1]);
    rlb_segpool_destroy(&w.segs);
    rlb_stream_cache_destroy(&w);
    io_uring_queue_exit(&w.ring);
}

int main(void)
{
    RUN(closed_stream_keeps_its_number_until_queued_operations_are_submitted);
    return TEST_SUMMARY();
}
