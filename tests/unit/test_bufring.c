/* Unit tests for the provided-buffer ring (src/buf.c) against a real io_uring and a socket
 * pair: buffers circulate on demand (RLB_BUFRING_START at first, RLB_BUFRING_STEP more each
 * time the kernel finds the ring empty), and released buffers are handed out again. */
#include <liburing.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/buf.h"
#include "test.h"

#define BGID 7
#define NBUFS 256u
#define BUFSZ 4096u

/* One recv with buffer selection on fd: the CQE's result and the buffer id (or -1). */
static int recv_one(struct io_uring *ring, int fd, int *bid)
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
    io_uring_cqe_seen(ring, cqe);
    return res;
}

TEST(buffers_circulate_on_demand)
{
    struct io_uring ring;
    CHECK_EQ_INT(io_uring_queue_init(8, &ring, 0), 0);
    struct rlb_bufring br;
    CHECK_EQ_INT(rlb_bufring_init(&br, &ring, BGID, NBUFS, BUFSZ), 0);
    CHECK_EQ_INT(br.added, RLB_BUFRING_START);
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

    /* Take every circulating buffer without giving any back. */
    int bid = -1;
    for (uint32_t i = 0; i < RLB_BUFRING_START; i++) {
        CHECK_EQ_INT(write(sv[1], "x", 1), 1);
        CHECK_EQ_INT(recv_one(&ring, sv[0], &bid), 1);
        CHECK(bid >= 0 && (uint32_t)bid < RLB_BUFRING_START);
        rlb_bufring_took(&br, (uint32_t)bid);
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
    rlb_bufring_took(&br, (uint32_t)bid);

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

int main(void)
{
    RUN(buffers_circulate_on_demand);
    return TEST_SUMMARY();
}
