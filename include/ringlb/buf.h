/* buf.h — the byte plumbing of a worker: provided buffers, owned blocks, segments, queues.
 *
 * Received bytes live in the worker's provided-buffer ring (kernel-selected buffers for
 * multishot recv). A segment (struct rlb_seg) is a reference to a run of bytes in such a buffer
 * or in an owned, refcounted heap block (rewritten heads, LB responses). Segments are moved,
 * never copied, from a connection's input queue to the peer connection's output queue, so a
 * request or response body crosses ringlb without a user-space copy; a provided buffer goes
 * back to the kernel when its last segment is released.
 *
 * Everything here is owned by one worker thread and never touched by another.
 */
#ifndef RINGLB_BUF_H
#define RINGLB_BUF_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A refcounted heap block. Owner: the segments that reference it. */
struct rlb_block {
    uint32_t refs;
    uint32_t cap;
    char data[];
};

/* The provided-buffer ring of one worker.
 *
 * Incremental mode (kernel 6.12+, IOU_PBUF_RING_INC): the kernel fills a buffer piece by
 * piece, one completion after the other, and moves to the next buffer only when it is full,
 * so small messages from many connections share a buffer instead of each touching a page of
 * its own. `off` tracks where the kernel's next piece starts; a buffer goes back into the ring
 * when the kernel has finished with it and no segment references it any more. Without kernel
 * support every completion gets a whole buffer, as before. */
struct rlb_bufring {
    struct io_uring_buf_ring *br; /* shared with the kernel */
    char *base;                   /* nbufs * bufsz bytes */
    uint32_t nbufs;
    uint32_t bufsz;
    uint16_t bgid;
    bool inc;                     /* registered in incremental mode */
    uint32_t *refs;               /* per buffer: segments referencing it */
    uint32_t *off;                /* incremental mode, per buffer: bytes the kernel filled
                                   * (bufsz once the kernel has finished with it) */
    uint32_t outstanding;         /* buffers out of the ring (the kernel finished with them),
                                   * not yet returned */
    uint32_t added;               /* buffers in circulation (ids 0..added-1); grows on demand */
    size_t ring_bytes;
};

/* A reference to bytes in a provided buffer (bid >= 0) or an owned block. */
struct rlb_seg {
    struct rlb_seg *next;
    char *data;               /* first byte not yet consumed */
    uint32_t len;             /* bytes left */
    int32_t bid;              /* provided buffer id, or -1 for a block */
    struct rlb_block *block;  /* when bid < 0; NULL for static data */
};

/* A FIFO of segments. Owner: the connection that embeds it. */
struct rlb_bq {
    struct rlb_seg *head, *tail;
    uint32_t bytes;
};

/* Per-worker allocator for segments (a free list; no allocation in steady state). */
struct rlb_segpool {
    struct rlb_seg *free;
    struct rlb_bufring *ring;
};

/* Register a buffer ring of up to `nbufs` (power of two) buffers of `bufsz` bytes as group
 * `bgid` on `ring`, in incremental mode when `incremental` is set and the kernel supports it
 * (br->inc says which). Only RLB_BUFRING_START buffers (RLB_BUFRING_START_INC in
 * incremental mode) circulate at first; rlb_bufring_grow() puts more in when the kernel runs
 * out, so an idle or lightly loaded worker touches (and keeps resident) only the buffers its
 * concurrency needs. Returns 0 or -errno. */
#define RLB_BUFRING_START 64u
#define RLB_BUFRING_START_INC 16u
#define RLB_BUFRING_STEP 64u
int rlb_bufring_init(struct rlb_bufring *br, struct io_uring *ring, uint16_t bgid,
                     uint32_t nbufs, uint32_t bufsz, bool incremental);

/* Unregister and free the buffer ring. */
void rlb_bufring_destroy(struct rlb_bufring *br, struct io_uring *ring);

/* The kernel found the ring empty: put up to RLB_BUFRING_STEP more buffers in circulation.
 * Returns false when all nbufs already circulate (then wait for buffers to come back). */
bool rlb_bufring_grow(struct rlb_bufring *br);

/* A completion with buffer `bid` (`res` bytes or -errno, CQE flags `cqe_flags`): take one
 * reference to it and return where its bytes start. */
char *rlb_bufring_took(struct rlb_bufring *br, uint32_t bid, int res, uint32_t cqe_flags);

/* Drop one reference to buffer `bid`; at zero it goes back to the kernel. */
void rlb_bufring_release(struct rlb_bufring *br, uint32_t bid);

/* Allocate a block of at least `cap` bytes with one reference. NULL on ENOMEM. */
struct rlb_block *rlb_block_new(uint32_t cap);

/* Drop one reference to `b`; freed at zero. */
void rlb_block_unref(struct rlb_block *b);

/* A new segment over `len` bytes at `data` in provided buffer `bid` (the caller already owns
 * one reference to it, from rlb_bufring_took()). NULL on ENOMEM. */
struct rlb_seg *rlb_seg_from_buf(struct rlb_segpool *sp, uint32_t bid, char *data,
                                 uint32_t len);

/* A new segment over `len` bytes of block `b` starting at `data`; takes over the caller's
 * reference to `b`. NULL on ENOMEM. */
struct rlb_seg *rlb_seg_from_block(struct rlb_segpool *sp, struct rlb_block *b, char *data,
                                   uint32_t len);

/* A new segment over static bytes (never freed). NULL on ENOMEM. */
struct rlb_seg *rlb_seg_static(struct rlb_segpool *sp, const char *data, uint32_t len);

/* A second segment over the first `len` bytes of `s` (one more reference to its storage). */
struct rlb_seg *rlb_seg_clone(struct rlb_segpool *sp, const struct rlb_seg *s, uint32_t len);

/* Release a segment and its reference to its storage. */
void rlb_seg_free(struct rlb_segpool *sp, struct rlb_seg *s);

/* Free every cached segment (worker exit). */
void rlb_segpool_destroy(struct rlb_segpool *sp);

/* Append `s` to `q`. */
void rlb_bq_push(struct rlb_bq *q, struct rlb_seg *s);

/* Release the first `n` bytes of `q` (n <= q->bytes). */
void rlb_bq_consume(struct rlb_segpool *sp, struct rlb_bq *q, uint32_t n);

/* Move the first `n` bytes of `src` to the end of `dst` (n <= src->bytes), splitting a
 * segment when needed. Returns 0 or -ENOMEM (then nothing of the last piece moved). */
int rlb_bq_move(struct rlb_segpool *sp, struct rlb_bq *src, struct rlb_bq *dst, uint32_t n);

/* Append clones of the first `n` bytes of `src` to `dst` (src unchanged). 0 or -ENOMEM. */
int rlb_bq_clone(struct rlb_segpool *sp, const struct rlb_bq *src, struct rlb_bq *dst,
                 uint32_t n);

/* Release everything in `q`. */
void rlb_bq_clear(struct rlb_segpool *sp, struct rlb_bq *q);

/* Copy the first `n` bytes of `q` into `out` (q unchanged; n <= q->bytes). */
void rlb_bq_copyout(const struct rlb_bq *q, char *out, uint32_t n);

#endif
