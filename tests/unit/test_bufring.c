/* Unit tests for the provided-buffer ring (src/buf.c) against a real io_uring and a socket
 * pair: buffers circulate on demand (RLB_BUFRING_START at first, RLB_BUFRING_STEP more each
 * time the kernel finds the ring empty), and released buffers are handed out again; in
 * incremental mode small messages share a buffer, which returns to the ring only once the
 * kernel has filled it and no segment references it. */
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/buf.h"
#include "test.h"

#define BGID 7
#define NBUFS 256u
#define BUFSZ 4096u

/* One recv with buffer selection on fd: the CQE's result and the buffer id (or -1);
 * `flags` (may be NULL) gets the CQE flags. */
static int recv_flags(struct io_uring *ring, int fd, int *bid, uint32_t *flags)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_submit(ring);
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(ring, &cqe) < 0)
        return -1;
    int res = cqe->res;
    *bid = (cqe->flags & IORING_CQE_F_BUFFER) ? (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT)
                                              : -1;
    if (flags)
        *flags = cqe->flags;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

static int recv_one(struct io_uring *ring, int fd, int *bid)
{
    return recv_flags(ring, fd, bid, NULL);
}

TEST(buffers_circulate_on_demand)
{
    struct io_uring ring;
    CHECK_EQ_INT(io_uring_queue_init(8, &ring, 0), 0);
    struct rlb_bufring br;
    CHECK_EQ_INT(rlb_bufring_init(&br, &ring, BGID, NBUFS, BUFSZ, false), 0);
    CHECK(!br.inc);
    CHECK_EQ_INT(br.added, RLB_BUFRING_START);
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

    /* Take every circulating buffer without giving any back. */
    int bid = -1;
    for (uint32_t i = 0; i < RLB_BUFRING_START; i++) {
        CHECK_EQ_INT(write(sv[1], "x", 1), 1);
        CHECK_EQ_INT(recv_one(&ring, sv[0], &bid), 1);
        CHECK(bid >= 0 && (uint32_t)bid < RLB_BUFRING_START);
        rlb_bufring_took(&br, (uint32_t)bid, 1, 0);
    }
    CHECK_EQ_INT(br.outstanding, RLB_BUFRING_START);
    CHECK_EQ_INT(write(sv[1], "y", 1), 1);
    CHECK_EQ_INT(recv_one(&ring, sv[0], &bid), -ENOBUFS);

    /* The kernel ran out: grow, and the next recv gets one of the new buffers. */
    CHECK(rlb_bufring_grow(&br));
    CHECK_EQ_INT(br.added, RLB_BUFRING_START + RLB_BUFRING_STEP);
    CHECK_EQ_INT(recv_one(&ring, sv[0], &bid), 1);
    CHECK((uint32_t)bid >= RLB_BUFRING_START &&
          (uint32_t)bid < RLB_BUFRING_START + RLB_BUFRING_STEP);
    rlb_bufring_took(&br, (uint32_t)bid, 1, 0);

    /* A released buffer goes back into circulation. */
    rlb_bufring_release(&br, (uint32_t)bid);
    CHECK_EQ_INT(br.outstanding, RLB_BUFRING_START);

    /* Growth stops at nbufs. */
    while (rlb_bufring_grow(&br))
        ;
    CHECK_EQ_INT(br.added, NBUFS);
    CHECK(!rlb_bufring_grow(&br));

    close(sv[0]);
    close(sv[1]);
    rlb_bufring_destroy(&br, &ring);
    io_uring_queue_exit(&ring);
}

TEST(incremental_buffers_are_shared_and_recycled_when_full)
{
    struct io_uring ring;
    CHECK_EQ_INT(io_uring_queue_init(8, &ring, 0), 0);
    struct rlb_bufring br;
    CHECK_EQ_INT(rlb_bufring_init(&br, &ring, BGID, NBUFS, BUFSZ, true), 0);
    if (!br.inc) {
        printf("skip: the kernel has no incremental buffer rings (6.12+)\n");
        rlb_bufring_destroy(&br, &ring);
        io_uring_queue_exit(&ring);
        return;
    }
    CHECK_EQ_INT(br.added, RLB_BUFRING_START_INC);
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

    /* Two small messages land one after the other in the same buffer. */
    int bid1 = -1, bid2 = -1;
    uint32_t fl = 0;
    CHECK_EQ_INT(write(sv[1], "hello", 5), 5);
    CHECK_EQ_INT(recv_flags(&ring, sv[0], &bid1, &fl), 5);
    char *d1 = rlb_bufring_took(&br, (uint32_t)bid1, 5, fl);
    CHECK(memcmp(d1, "hello", 5) == 0);
    CHECK_EQ_INT(write(sv[1], "world!", 6), 6);
    CHECK_EQ_INT(recv_flags(&ring, sv[0], &bid2, &fl), 6);
    char *d2 = rlb_bufring_took(&br, (uint32_t)bid2, 6, fl);
    CHECK_EQ_INT(bid1, bid2);
    CHECK(d2 == d1 + 5);
    CHECK(memcmp(d2, "world!", 6) == 0);
    CHECK_EQ_INT(br.outstanding, 0); /* the kernel still fills it */

    /* Released while the kernel still fills it: it stays with the kernel. */
    rlb_bufring_release(&br, (uint32_t)bid1);
    rlb_bufring_release(&br, (uint32_t)bid2);
    CHECK_EQ_INT(br.outstanding, 0);

    /* Fill the rest of the buffer: the last piece ends it, and the next message starts the
     * next buffer. */
    static char big[BUFSZ];
    memset(big, 'z', sizeof(big));
    uint32_t rest = BUFSZ - 11;
    CHECK_EQ_INT(write(sv[1], big, rest), (int)rest);
    int bid3 = -1;
    CHECK_EQ_INT(recv_flags(&ring, sv[0], &bid3, &fl), (int)rest);
    CHECK_EQ_INT(bid3, bid1);
    char *d3 = rlb_bufring_took(&br, (uint32_t)bid3, (int)rest, fl);
    CHECK(d3 == d1 + 11);
    CHECK_EQ_INT(br.outstanding, 1); /* the kernel has finished with it */
    CHECK_EQ_INT(write(sv[1], "next", 4), 4);
    int bid4 = -1;
    CHECK_EQ_INT(recv_flags(&ring, sv[0], &bid4, &fl), 4);
    CHECK(bid4 != bid1);
    char *d4 = rlb_bufring_took(&br, (uint32_t)bid4, 4, fl);
    CHECK(memcmp(d4, "next", 4) == 0);

    /* The last reference goes: the full buffer returns to the ring, empty again. */
    rlb_bufring_release(&br, (uint32_t)bid3);
    CHECK_EQ_INT(br.outstanding, 0);
    CHECK_EQ_INT(br.off[bid1], 0);
    rlb_bufring_release(&br, (uint32_t)bid4);

    close(sv[0]);
    close(sv[1]);
    rlb_bufring_destroy(&br, &ring);
    io_uring_queue_exit(&ring);
}

int main(void)
{
    RUN(buffers_circulate_on_demand);
    RUN(incremental_buffers_are_shared_and_recycled_when_full);
    return TEST_SUMMARY();
}
