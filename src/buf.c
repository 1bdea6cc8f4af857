/* buf.c — provided-buffer ring, refcounted blocks, segments and segment queues (see buf.h). */
#include "ringlb/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Not in Debian 12's liburing 2.3 headers (kernel uapi values, 6.12+). */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1u << 4)
#endif

/* Put up to `want` more buffers in circulation; false when all already circulate. */
static bool add_buffers(struct rlb_bufring *br, uint32_t want)
{
    uint32_t n = br->nbufs - br->added;
    if (n == 0)
        return false;
    if (n > want)
        n = want;
    int mask = io_uring_buf_ring_mask(br->nbufs);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t bid = br->added + i;
        io_uring_buf_ring_add(br->br, br->base + (size_t)bid * br->bufsz, br->bufsz,
                              (unsigned short)bid, mask, (int)i);
    }
    io_uring_buf_ring_advance(br->br, (int)n);
    br->added += n;
    return true;
}

int rlb_bufring_init(struct rlb_bufring *br, struct io_uring *ring, uint16_t bgid,
                     uint32_t nbufs, uint32_t bufsz, bool incremental)
{
    memset(br, 0, sizeof(*br));
    br->ring_bytes = (size_t)nbufs * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, br->ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
                     -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    br->br = mem;
    br->base = aligned_alloc(4096, (size_t)nbufs * bufsz);
    br->refs = calloc(nbufs, sizeof(*br->refs));
    br->off = calloc(nbufs, sizeof(*br->off));
    if (!br->base || !br->refs || !br->off) {
        free(br->base);
        free(br->refs);
        free(br->off);
        munmap(mem, br->ring_bytes);
        return -ENOMEM;
    }
    br->nbufs = nbufs;
    br->bufsz = bufsz;
    br->bgid = bgid;
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)mem,
        .ring_entries = nbufs,
        .bgid = bgid,
        .pad = incremental ? IOU_PBUF_RING_INC : 0, /* `flags` in newer headers */
    };
    int ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret == -EINVAL && incremental) { /* a kernel older than 6.12 */
        reg.pad = 0;
        ret = io_uring_register_buf_ring(ring, &reg, 0);
    }
    br->inc = ret == 0 && reg.pad != 0;
    if (ret < 0) {
        free(br->base);
        free(br->refs);
        free(br->off);
        munmap(mem, br->ring_bytes);
        return ret;
    }
    io_uring_buf_ring_init(br->br);
    br->added = 0;
    add_buffers(br, br->inc ? RLB_BUFRING_START_INC : RLB_BUFRING_START);
    return 0;
}

bool rlb_bufring_grow(struct rlb_bufring *br)
{
    return add_buffers(br, RLB_BUFRING_STEP);
}

void rlb_bufring_destroy(struct rlb_bufring *br, struct io_uring *ring)
{
    if (!br->br)
        return;
    io_uring_unregister_buf_ring(ring, br->bgid);
    munmap(br->br, br->ring_bytes);
    free(br->base);
    free(br->refs);
    free(br->off);
    br->br = NULL;
}

char *rlb_bufring_took(struct rlb_bufring *br, uint32_t bid, int res, uint32_t cqe_flags)
{
    char *buf = br->base + (size_t)bid * br->bufsz;
    if (!br->inc) {
        br->refs[bid] = 1;
        br->outstanding++;
        return buf;
    }
    char *data = buf + br->off[bid];
    br->refs[bid]++;
    if (res > 0)
        br->off[bid] += (uint32_t)res;
    /* The kernel moves on only from a full buffer (no BUF_MORE on the last piece). A
     * completion without bytes says nothing: the kernel keeps the buffer. */
    if (br->off[bid] >= br->bufsz || (res > 0 && !(cqe_flags & IORING_CQE_F_BUF_MORE))) {
        br->off[bid] = br->bufsz;
        br->outstanding++;
    }
    return data;
}

void rlb_bufring_release(struct rlb_bufring *br, uint32_t bid)
{
    if (--br->refs[bid] != 0)
        return;
    if (br->inc) {
        if (br->off[bid] < br->bufsz)
            return; /* the kernel is still filling it */
        br->off[bid] = 0;
    }
    io_uring_buf_ring_add(br->br, br->base + (size_t)bid * br->bufsz, br->bufsz,
                          (unsigned short)bid, io_uring_buf_ring_mask(br->nbufs), 0);
    io_uring_buf_ring_advance(br->br, 1);
    br->outstanding--;
}

struct rlb_block *rlb_block_new(uint32_t cap)
{
    struct rlb_block *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->refs = 1;
    b->cap = cap;
    return b;
}

void rlb_block_unref(struct rlb_block *b)
{
    if (b && --b->refs == 0)
        free(b);
}

static struct rlb_seg *seg_alloc(struct rlb_segpool *sp)
{
    struct rlb_seg *s = sp->free;
    if (s) {
        sp->free = s->next;
    } else {
        s = malloc(sizeof(*s));
        if (!s)
            return NULL;
    }
    s->next = NULL;
    return s;
}

struct rlb_seg *rlb_seg_from_buf(struct rlb_segpool *sp, uint32_t bid, char *data,
                                 uint32_t len)
{
    struct rlb_seg *s = seg_alloc(sp);
    if (!s)
        return NULL;
    s->data = data;
    s->len = len;
    s->bid = (int32_t)bid;
    s->block = NULL;
    return s;
}

struct rlb_seg *rlb_seg_from_block(struct rlb_segpool *sp, struct rlb_block *b, char *data,
                                   uint32_t len)
{
    struct rlb_seg *s = seg_alloc(sp);
    if (!s)
        return NULL;
    s->data = data;
    s->len = len;
    s->bid = -1;
    s->block = b;
    return s;
}

struct rlb_seg *rlb_seg_static(struct rlb_segpool *sp, const char *data, uint32_t len)
{
    return rlb_seg_from_block(sp, NULL, (char *)data, len);
}

struct rlb_seg *rlb_seg_clone(struct rlb_segpool *sp, const struct rlb_seg *o, uint32_t len)
{
    struct rlb_seg *s = seg_alloc(sp);
    if (!s)
        return NULL;
    s->data = o->data;
    s->len = len;
    s->bid = o->bid;
    s->block = o->block;
    if (o->bid >= 0)
        sp->ring->refs[o->bid]++;
    else if (o->block)
        o->block->refs++;
    return s;
}

void rlb_seg_free(struct rlb_segpool *sp, struct rlb_seg *s)
{
    if (s->bid >= 0)
        rlb_bufring_release(sp->ring, (uint32_t)s->bid);
    else
        rlb_block_unref(s->block);
    s->next = sp->free;
    sp->free = s;
}

void rlb_segpool_destroy(struct rlb_segpool *sp)
{
    while (sp->free) {
        struct rlb_seg *s = sp->free;
        sp->free = s->next;
        free(s);
    }
}

void rlb_bq_push(struct rlb_bq *q, struct rlb_seg *s)
{
    s->next = NULL;
    if (q->tail)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
    q->bytes += s->len;
}

static struct rlb_seg *bq_pop(struct rlb_bq *q)
{
    struct rlb_seg *s = q->head;
    q->head = s->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= s->len;
    s->next = NULL;
    return s;
}

void rlb_bq_consume(struct rlb_segpool *sp, struct rlb_bq *q, uint32_t n)
{
    while (n > 0 && q->head) {
        struct rlb_seg *s = q->head;
        if (s->len <= n) {
            n -= s->len;
            rlb_seg_free(sp, bq_pop(q));
        } else {
            s->data += n;
            s->len -= n;
            q->bytes -= n;
            n = 0;
        }
    }
    /* Drop empty segments left at the head. */
    while (q->head && q->head->len == 0)
        rlb_seg_free(sp, bq_pop(q));
}

int rlb_bq_move(struct rlb_segpool *sp, struct rlb_bq *src, struct rlb_bq *dst, uint32_t n)
{
    while (n > 0 && src->head) {
        struct rlb_seg *s = src->head;
        if (s->len <= n) {
            n -= s->len;
            rlb_bq_push(dst, bq_pop(src));
        } else {
            struct rlb_seg *c = rlb_seg_clone(sp, s, n);
            if (!c)
                return -ENOMEM;
            rlb_bq_push(dst, c);
            s->data += n;
            s->len -= n;
            src->bytes -= n;
            n = 0;
        }
    }
    return 0;
}

int rlb_bq_clone(struct rlb_segpool *sp, const struct rlb_bq *src, struct rlb_bq *dst,
                 uint32_t n)
{
    for (const struct rlb_seg *s = src->head; s && n > 0; s = s->next) {
        uint32_t take = s->len < n ? s->len : n;
        struct rlb_seg *c = rlb_seg_clone(sp, s, take);
        if (!c)
            return -ENOMEM;
        rlb_bq_push(dst, c);
        n -= take;
    }
    return 0;
}

void rlb_bq_clear(struct rlb_segpool *sp, struct rlb_bq *q)
{
    while (q->head)
        rlb_seg_free(sp, bq_pop(q));
}

void rlb_bq_copyout(const struct rlb_bq *q, char *out, uint32_t n)
{
    for (const struct rlb_seg *s = q->head; s && n > 0; s = s->next) {
        uint32_t take = s->len < n ? s->len : n;
        memcpy(out, s->data, take);
        out += take;
        n -= take;
    }
}
