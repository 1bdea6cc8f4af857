/* admin.c — admin HTTP server (see admin.h).
 *
 * Per connection: recv into a growing buffer until a complete head (and body, by
 * Content-Length) is there, answer, and keep the connection for the next request. Requests
 * over 1 MiB get 413; malformed ones 400. Everything runs on the main thread.
 */
#include "ringlb/admin.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ringlb/http1.h"
#include "ringlb/log.h"

#define ADMIN_MAX_REQUEST (1024u * 1024u + 65536u)

struct admin_conn {
    struct admin_conn *next;
    int fd;
    int pending;         /* operations in flight */
    bool closing;
    char *in;            /* received bytes */
    uint32_t in_len, in_cap;
    char *out;           /* response being sent */
    uint32_t out_len, out_off;
    bool close_after;
};

static int admin_fd = -1;
static bool admin_armed;
static struct admin_conn *admin_conns;

static inline uint64_t tag(void *p, enum rlb_main_op op) { return (uint64_t)(uintptr_t)p | op; }

static void arm_accept(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    io_uring_prep_multishot_accept(sqe, admin_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, RLB_MAIN_ADMIN_ACCEPT);
    admin_armed = true;
}

static struct io_uring_sqe *sqe_get(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

int rlb_admin_start(struct io_uring *ring, const struct rlb_config *cfg)
{
    if (!cfg->admin.listen)
        return 0;
    const struct rlb_sockaddr *a = &cfg->admin.addr;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 128) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    admin_fd = fd;
    arm_accept(ring);
    return 0;
}

static void conn_free(struct admin_conn *c)
{
    for (struct admin_conn **pp = &admin_conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_close(struct admin_conn *c)
{
    if (!c->closing) {
        c->closing = true;
        close(c->fd);
        c->fd = -1;
    }
    if (c->pending == 0)
        conn_free(c);
}

static void arm_recv(struct io_uring *ring, struct admin_conn *c)
{
    if (c->in_cap - c->in_len < 4096) {
        uint32_t ncap = c->in_cap ? c->in_cap * 2 : 8192;
        char *n = realloc(c->in, ncap);
        if (!n) {
            conn_close(c);
            return;
        }
        c->in = n;
        c->in_cap = ncap;
    }
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_RECV));
    c->pending++;
}

static void send_response(struct io_uring *ring, struct admin_conn *c, int status,
                          const char *ctype, const char *body, size_t body_len, bool close)
{
    size_t cap = 512 + body_len;
    free(c->out);
    c->out = malloc(cap);
    if (!c->out) {
        conn_close(c);
        return;
    }
    int n = snprintf(c->out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: %s\r\n\r\n",
                     status, rlb_http1_reason(status), ctype, body_len,
                     close ? "close" : "keep-alive");
    memcpy(c->out + n, body, body_len);
    c->out_len = (uint32_t)(n + (int)body_len);
    c->out_off = 0;
    c->close_after = close;
    struct io_uring_sqe *sqe = sqe_get(ring);
    io_uring_prep_send(sqe, c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_SEND));
    c->pending++;
}

static void send_json_error(struct io_uring *ring, struct admin_conn *c, int status,
                            const char *msg, bool close)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
    send_response(ring, c, status, "application/json", body, (size_t)n, close);
}

/* Route one complete request. */
static void handle(struct io_uring *ring, struct admin_conn *c, const char *method,
                   size_t mlen, const char *url, size_t ulen, bool keep_alive)
{
    const char *q = memchr(url, '?', ulen);
    size_t plen = q ? (size_t)(q - url) : ulen;
    bool get = mlen == 3 && memcmp(method, "GET", 3) == 0;
    if (plen == 8 && memcmp(url, "/healthz", 8) == 0) {
        if (!get) {
            send_json_error(ring, c, 405, "method not allowed", !keep_alive);
            return;
        }
        send_response(ring, c, 200, "text/plain", "ok\n", 3, !keep_alive);
        return;
    }
    send_json_error(ring, c, 404, "not found", !keep_alive);
}

struct admin_parse {
    const char *method, *url;
    size_t mlen, ulen;
    bool done;
};

static int a_on_method(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    ap->method = at;
    ap->mlen = len;
    return 0;
}

static int a_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct admin_parse *ap = p->data;
    if (!ap->url)
        ap->url = at;
    ap->ulen = (size_t)(at + len - ap->url);
    return 0;
}

static int a_on_complete(llhttp_t *p)
{
    struct admin_parse *ap = p->data;
    ap->done = true;
    return HPE_PAUSED;
}

static void process(struct io_uring *ring, struct admin_conn *c)
{
    static llhttp_settings_t st;
    static bool st_ready;
    if (!st_ready) {
        llhttp_settings_init(&st);
        st.on_method = a_on_method;
        st.on_url = a_on_url;
        st.on_message_complete = a_on_complete;
        st_ready = true;
    }
    llhttp_t p;
    struct admin_parse ap = {0};
    llhttp_init(&p, HTTP_REQUEST, &st);
    p.data = &ap;
    int err = llhttp_execute(&p, c->in, c->in_len);
    if (err == HPE_PAUSED && ap.done) {
        size_t used = (size_t)(llhttp_get_error_pos(&p) - c->in);
        bool ka = llhttp_should_keep_alive(&p);
        /* Copy what handle() needs before the buffer moves. */
        char method[16], url[2048];
        size_t ml = ap.mlen < sizeof(method) ? ap.mlen : sizeof(method) - 1;
        size_t ul = ap.ulen < sizeof(url) ? ap.ulen : sizeof(url) - 1;
        memcpy(method, ap.method, ml);
        memcpy(url, ap.url, ul);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
        handle(ring, c, method, ml, url, ul, ka);
        return;
    }
    if (err != HPE_OK) {
        send_json_error(ring, c, 400, "malformed request", true);
        return;
    }
    if (c->in_len > ADMIN_MAX_REQUEST) {
        send_json_error(ring, c, 413, "request too large", true);
        return;
    }
    arm_recv(ring, c);
}

void rlb_admin_complete(struct io_uring *ring, enum rlb_main_op op, void *ptr, int res)
{
    if (op == RLB_MAIN_ADMIN_ACCEPT) {
        if (res >= 0) {
            if (admin_fd < 0) {
                close(res);
                return;
            }
            struct admin_conn *c = calloc(1, sizeof(*c));
            if (!c) {
                close(res);
                return;
            }
            c->fd = res;
            c->next = admin_conns;
            admin_conns = c;
            arm_recv(ring, c);
        }
        return;
    }
    struct admin_conn *c = ptr;
    c->pending--;
    if (c->closing) {
        if (c->pending == 0)
            conn_free(c);
        return;
    }
    if (op == RLB_MAIN_ADMIN_RECV) {
        if (res <= 0) {
            conn_close(c);
            return;
        }
        c->in_len += (uint32_t)res;
        process(ring, c);
    } else if (op == RLB_MAIN_ADMIN_SEND) {
        if (res < 0) {
            conn_close(c);
            return;
        }
        c->out_off += (uint32_t)res;
        if (c->out_off < c->out_len) {
            struct io_uring_sqe *sqe = sqe_get(ring);
            io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off,
                               MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, tag(c, RLB_MAIN_ADMIN_SEND));
            c->pending++;
            return;
        }
        if (c->close_after) {
            conn_close(c);
            return;
        }
        if (c->in_len > 0)
            process(ring, c);
        else
            arm_recv(ring, c);
    }
}

void rlb_admin_stop(struct io_uring *ring)
{
    (void)ring;
    if (admin_fd >= 0) {
        shutdown(admin_fd, SHUT_RDWR);
        close(admin_fd);
        admin_fd = -1;
    }
    struct admin_conn *c = admin_conns;
    while (c) {
        struct admin_conn *next = c->next;
        if (!c->closing) {
            shutdown(c->fd, SHUT_RDWR);
        }
        c = next;
    }
}

void rlb_admin_destroy(void)
{
    while (admin_conns) {
        struct admin_conn *c = admin_conns;
        if (c->fd >= 0)
            close(c->fd);
        c->pending = 0;
        c->closing = true;
        conn_free(c);
    }
}
