/* accesslog.c — ALB-format access log lines, per-worker rings and the writer thread.
 *
 * Producer (a worker, rlb_accesslog_write()): format the line into the shard's scratch buffer,
 * then, if the ring has room (cap − (wpos − rpos)), copy it in (wrapping) and publish it by
 * advancing wpos with a release store. Lines are only ever published whole.
 *
 * Consumer (the writer thread): every 50 ms — every 2 ms for 200 ms after a pass found a ring
 * more than 1/16 full, at once while one is more than 1/4 full, and at once when asked (flush,
 * reopen, stop) — it picks up a new file descriptor if the main
 * thread handed one over (reopen/reload), gathers every ring's published bytes into one
 * writev(2) batch (two iovecs per ring at most), writes it, then advances each ring's rpos
 * (release), which gives the space back to the producer. A failed write drops the batch:
 * counted, reported at most every 10 s, and the rings are freed for new lines.
 *
 * File descriptors: the main thread opens files (start, reload, SIGUSR1 reopen) and hands the
 * new descriptor over through an atomic exchange; the writer closes the old one. stdout ("-")
 * is never closed.
 */
#include "ringlb/accesslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/log.h"

#define MAX_SHARDS 1024u
#define BATCH_IOVS 64
#define FD_NONE (-1)        /* pending_fd: nothing handed over */
#define FD_OFF (-2)         /* pending_fd: stop writing (logging turned off) */
#define WAKE_MS 50
#define WAKE_BUSY_MS 2
#define BUSY_HOLD_MS 200
#define ERROR_LOG_MS 10000

/* Longest raw input copied per field (the escaped form is at most four times longer). */
#define MAX_URI (16u * 1024u)
#define MAX_UA (8u * 1024u)
#define MAX_REDIRECT (4u * 1024u)
#define MAX_SMALL 1024u

_Atomic bool rlb_accesslog__on;

static struct rlb_accesslog_shard *shards[MAX_SHARDS];
static _Atomic unsigned n_shards;

/* The writer. Owner: fields marked (writer) belong to the writer thread once it runs; (main)
 * to the main thread; the rest are guarded by mu or atomic. */
static struct {
    pthread_t thread;
    bool running;                 /* (main) */
    char *path;                   /* (main) current path, NULL = off */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    bool stop;                    /* (mu) */
    uint64_t flush_req, flush_done; /* (mu) */
    int fd;                       /* (writer) current destination, -1 = discard */
    _Atomic int pending_fd;       /* next destination, FD_NONE / FD_OFF */
    _Atomic uint64_t write_errors;
    _Atomic uint64_t lost_lines;
    uint64_t last_error_log_ms;   /* (writer) */
    uint64_t errors_at_last_log;  /* (writer) */
} W = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .fd = -1,
    .pending_fd = FD_NONE,
};

/* ---- formatting ------------------------------------------------------------------------- */

/* An output cursor; `full` once something did not fit. */
struct out {
    char *p;
    size_t n, cap;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->n) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void put_c(struct out *o, char c) { put(o, &c, 1); }

static void put_s(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* Copy at most `max` bytes of s, writing control bytes, bytes >= 0x7f, '"', '\\' (and ' ' when
 * !quoted) as \xNN. */
static void put_esc(struct out *o, const char *s, size_t n, size_t max, bool quoted)
{
    static const char hex[] = "0123456789abcdef";
    if (n > max)
        n = max;
    size_t i = 0;
    while (i < n && !o->full) {
        size_t run = i;
        while (run < n) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || (!quoted && c == ' '))
                break;
            run++;
        }
        put(o, s + i, run - i);
        if (run < n) {
            unsigned char c = (unsigned char)s[run];
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(o, e, 4);
            run++;
        }
        i = run;
    }
}

/* An unquoted field from a C string; NULL or empty → "-". */
static void put_field(struct out *o, const char *s)
{
    if (!s || !*s)
        put_c(o, '-');
    else
        put_esc(o, s, strlen(s), MAX_SMALL, false);
}

/* A quoted field; NULL → "-" (quoted). */
static void put_quoted(struct out *o, const char *s, size_t n, size_t max)
{
    put_c(o, '"');
    if (!s)
        put_c(o, '-');
    else
        put_esc(o, s, n, max, true);
    put_c(o, '"');
}

static void put_quoted_s(struct out *o, const char *s)
{
    put_quoted(o, s, s ? strlen(s) : 0, MAX_SMALL);
}

static void put_u64(struct out *o, uint64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    put(o, b, (size_t)n);
}

/* ISO 8601 UTC with microseconds; 0 → "-". */
static void put_time(struct out *o, uint64_t us)
{
    if (!us) {
        put_c(o, '-');
        return;
    }
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char b[40];
    int n = snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (unsigned)(us % 1000000));
    put(o, b, (size_t)n);
}

/* Seconds with millisecond precision; negative → "-1". */
static void put_secs(struct out *o, int64_t us)
{
    if (us < 0) {
        put_s(o, "-1");
        return;
    }
    uint64_t ms = ((uint64_t)us + 500) / 1000;
    char b[32];
    int n = snprintf(b, sizeof(b), "%llu.%03llu", (unsigned long long)(ms / 1000),
                     (unsigned long long)(ms % 1000));
    put(o, b, (size_t)n);
}

static void put_status(struct out *o, int status)
{
    if (status <= 0)
        put_c(o, '-');
    else
        put_u64(o, (uint64_t)status);
}

/* ip:port (IPv6 without brackets, as the ALB logs it); NULL → "-". */
static void put_addr(struct out *o, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
    } else {
        put_c(o, '-');
        return;
    }
    put_s(o, ip);
    put_c(o, ':');
    put_u64(o, port);
}

/* "METHOD scheme://host:port/uri HTTP/x.y" (inside the quotes). */
static void put_request(struct out *o, const struct rlb_accesslog_entry *e)
{
    const char *scheme = e->https ? "https://" : "http://";
    size_t hl = 0;
    if (e->host) {
        /* Drop a port from the Host value: after "]" for an IPv6 literal, else at ':'. */
        const char *h = e->host;
        size_t n = e->host_len;
        if (n && h[0] == '[') {
            const char *rb = memchr(h, ']', n);
            hl = rb ? (size_t)(rb - h) + 1 : n;
        } else {
            const char *colon = memchr(h, ':', n);
            hl = colon ? (size_t)(colon - h) : n;
        }
    }
    if (!e->method) {
        put_s(o, "- ");
        put_s(o, scheme);
        if (hl)
            put_esc(o, e->host, hl, MAX_SMALL, true);
        else
            put_c(o, '-');
        put_c(o, ':');
        put_u64(o, e->port);
        put_s(o, "- -");
        return;
    }
    put_esc(o, e->method, e->method_len, 64, true);
    put_c(o, ' ');
    bool absolute = e->uri && e->uri_len > 0 && e->uri[0] != '/' && e->uri[0] != '*';
    if (!absolute) {
        put_s(o, scheme);
        if (hl)
            put_esc(o, e->host, hl, MAX_SMALL, true);
        else
            put_c(o, '-');
        put_c(o, ':');
        put_u64(o, e->port);
    }
    if (e->uri)
        put_esc(o, e->uri, e->uri_len, MAX_URI, true);
    put_s(o, " HTTP/");
    put_u64(o, e->http_major);
    put_c(o, '.');
    put_u64(o, e->http_minor);
}

static void put_actions(struct out *o, unsigned actions)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        {RLB_ACCESSLOG_ACT_FORWARD, "forward"},
        {RLB_ACCESSLOG_ACT_REDIRECT, "redirect"},
        {RLB_ACCESSLOG_ACT_FIXED, "fixed-response"},
    };
    put_c(o, '"');
    bool any = false;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(actions & names[i].bit))
            continue;
        if (any)
            put_c(o, ',');
        put_s(o, names[i].name);
        any = true;
    }
    if (!any)
        put_c(o, '-');
    put_c(o, '"');
}

size_t rlb_accesslog_format(const struct rlb_accesslog_entry *e, char *buf, size_t cap)
{
    struct out o = {.p = buf, .n = 0, .cap = cap, .full = false};
    put_s(&o, e->websocket ? (e->https ? "wss" : "ws") : (e->https ? "https" : "http"));
    put_c(&o, ' ');
    put_time(&o, e->time_us);
    put_c(&o, ' ');
    put_field(&o, e->elb);
    put_c(&o, ' ');
    put_addr(&o, e->client);
    put_c(&o, ' ');
    put_field(&o, e->target);
    put_c(&o, ' ');
    put_secs(&o, e->request_processing_us);
    put_c(&o, ' ');
    put_secs(&o, e->target_processing_us);
    put_c(&o, ' ');
    put_secs(&o, e->response_processing_us);
    put_c(&o, ' ');
    put_status(&o, e->elb_status);
    put_c(&o, ' ');
    put_status(&o, e->target_status);
    put_c(&o, ' ');
    put_u64(&o, e->received_bytes);
    put_c(&o, ' ');
    put_u64(&o, e->sent_bytes);
    put_s(&o, " \"");
    put_request(&o, e);
    put_s(&o, "\" ");
    put_quoted(&o, e->user_agent, e->user_agent_len, MAX_UA);
    put_c(&o, ' ');
    put_field(&o, e->ssl_cipher);
    put_c(&o, ' ');
    put_field(&o, e->ssl_protocol);
    put_c(&o, ' ');
    put_field(&o, e->target_group);
    put_c(&o, ' ');
    put_quoted(&o, e->trace_id, e->trace_id_len, MAX_SMALL);
    put_c(&o, ' ');
    put_quoted_s(&o, e->domain_name);
    put_c(&o, ' ');
    put_quoted_s(&o, e->chosen_cert);
    put_c(&o, ' ');
    if (e->matched_rule_priority == RLB_ACCESSLOG_NO_RULE) {
        put_c(&o, '-');
    } else {
        char b[16];
        int n = snprintf(b, sizeof(b), "%d", (int)e->matched_rule_priority);
        put(&o, b, (size_t)n);
    }
    put_c(&o, ' ');
    put_time(&o, e->request_creation_us);
    put_c(&o, ' ');
    put_actions(&o, e->actions);
    put_c(&o, ' ');
    put_quoted(&o, e->redirect_url, e->redirect_url_len, MAX_REDIRECT);
    put_c(&o, ' ');
    put_quoted_s(&o, e->error_reason);
    put_c(&o, ' ');
    put_quoted_s(&o, e->target);
    put_c(&o, ' ');
    put_c(&o, '"');
    put_status(&o, e->target_status);
    put_c(&o, '"');
    put_c(&o, ' ');
    put_quoted_s(&o, e->classification);
    put_c(&o, ' ');
    put_quoted_s(&o, e->classification_reason);
    put_c(&o, ' ');
    if (e->conn_trace_id) {
        char b[24];
        int n = snprintf(b, sizeof(b), "TID_%016llx", (unsigned long long)e->conn_trace_id);
        put(&o, b, (size_t)n);
    } else {
        put_c(&o, '-');
    }
    put_c(&o, '\n');
    return o.full ? 0 : o.n;
}

/* ---- producer (worker) ------------------------------------------------------------------ */

int rlb_accesslog_write(struct rlb_accesslog_shard *s, const struct rlb_accesslog_entry *e)
{
    if (!s || !rlb_accesslog_on())
        return 0;
    size_t n = rlb_accesslog_format(e, s->scratch, RLB_ACCESSLOG_LINE_MAX);
    uint64_t w = atomic_load_explicit(&s->wpos, memory_order_relaxed);
    uint64_t r = atomic_load_explicit(&s->rpos, memory_order_acquire);
    if (n == 0 || n > s->cap - (w - r)) {
        atomic_store_explicit(&s->dropped,
                              atomic_load_explicit(&s->dropped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return -ENOBUFS;
    }
    size_t off = (size_t)(w & (s->cap - 1));
    size_t first = s->cap - off < n ? (size_t)(s->cap - off) : n;
    memcpy(s->ring + off, s->scratch, first);
    memcpy(s->ring, s->scratch + first, n - first);
    atomic_store_explicit(&s->wpos, w + n, memory_order_release);
    atomic_store_explicit(&s->lines, atomic_load_explicit(&s->lines, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return 0;
}

struct rlb_accesslog_shard *rlb_accesslog_shard_new(size_t ring_bytes)
{
    unsigned n = atomic_load_explicit(&n_shards, memory_order_relaxed);
    if (n >= MAX_SHARDS)
        return NULL;
    uint64_t cap = 4096;
    size_t want = ring_bytes ? ring_bytes : RLB_ACCESSLOG_RING_DEFAULT;
    while (cap < want)
        cap *= 2;
    struct rlb_accesslog_shard *s = aligned_alloc(64, sizeof(*s));
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->cap = cap;
    s->ring = malloc(cap);
    s->scratch = malloc(RLB_ACCESSLOG_LINE_MAX);
    if (!s->ring || !s->scratch) {
        free(s->ring);
        free(s->scratch);
        free(s);
        return NULL;
    }
    shards[n] = s;
    atomic_store_explicit(&n_shards, n + 1, memory_order_release);
    return s;
}

/* ---- consumer (writer thread) ----------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t count_lines(const struct iovec *iov, int n)
{
    uint64_t lines = 0;
    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base, *end = p + iov[i].iov_len;
        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            lines++;
            p++;
        }
    }
    return lines;
}

/* Write the whole batch; on failure count it and drop the rest. */
static void write_batch(struct iovec *iov, int n)
{
    struct iovec *v = iov;
    int left = n;
    while (left > 0) {
        if (v->iov_len == 0) {
            v++;
            left--;
            continue;
        }
        ssize_t w = writev(W.fd, v, left > BATCH_IOVS ? BATCH_IOVS : left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int err = w < 0 ? errno : EIO;
            uint64_t errors = atomic_fetch_add(&W.write_errors, 1) + 1;
            uint64_t lost = count_lines(v, left);
            atomic_fetch_add(&W.lost_lines, lost);
            uint64_t now = mono_ms();
            if (W.last_error_log_ms == 0 || now - W.last_error_log_ms >= ERROR_LOG_MS) {
                rlb_log_error("access log: write failed: %s (%llu failed writes since the "
                              "last report; lines are dropped, workers are not slowed)",
                              strerror(err),
                              (unsigned long long)(errors - W.errors_at_last_log));
                W.last_error_log_ms = now;
                W.errors_at_last_log = errors;
            }
            return;
        }
        size_t done = (size_t)w;
        while (left > 0 && done >= v->iov_len) {
            done -= v->iov_len;
            v++;
            left--;
        }
        if (left > 0) {
            v->iov_base = (char *)v->iov_base + done;
            v->iov_len -= done;
        }
    }
}

/* Write what every ring holds. Returns 2 when a ring was more than a quarter full, 1 when one
 * held more than 1/16 of its size, else 0. */
static int drain_all(void)
{
    int nfd = atomic_exchange(&W.pending_fd, FD_NONE);
    if (nfd != FD_NONE) {
        if (W.fd >= 0 && W.fd != STDOUT_FILENO)
            close(W.fd);
        W.fd = nfd == FD_OFF ? -1 : nfd;
    }
    struct iovec iov[BATCH_IOVS];
    struct rlb_accesslog_shard *batch[BATCH_IOVS / 2];
    uint64_t upto[BATCH_IOVS / 2];
    int niov = 0, nb = 0;
    int busy = 0;
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    for (unsigned i = 0; i <= ns; i++) {
        if (i == ns || nb == BATCH_IOVS / 2) {
            if (nb && W.fd >= 0)
                write_batch(iov, niov);
            for (int k = 0; k < nb; k++)
                atomic_store_explicit(&batch[k]->rpos, upto[k], memory_order_release);
            niov = nb = 0;
            if (i == ns)
                break;
        }
        struct rlb_accesslog_shard *s = shards[i];
        uint64_t r = atomic_load_explicit(&s->rpos, memory_order_relaxed);
        uint64_t w = atomic_load_explicit(&s->wpos, memory_order_acquire);
        if (w == r)
            continue;
        if (w - r > s->cap / 4)
            busy = 2;
        else if (w - r > s->cap / 16 && busy < 1)
            busy = 1;
        size_t off = (size_t)(r & (s->cap - 1));
        size_t len = (size_t)(w - r);
        size_t first = s->cap - off < len ? (size_t)(s->cap - off) : len;
        iov[niov].iov_base = s->ring + off;
        iov[niov++].iov_len = first;
        if (len > first) {
            iov[niov].iov_base = s->ring;
            iov[niov++].iov_len = len - first;
        }
        batch[nb] = s;
        upto[nb++] = w;
    }
    return busy;
}

static void *writer_main(void *arg)
{
    (void)arg;
    uint64_t busy_until = 0;
    pthread_mutex_lock(&W.mu);
    for (;;) {
        bool stop = W.stop;
        uint64_t req = W.flush_req;
        pthread_mutex_unlock(&W.mu);
        int busy = drain_all();
        uint64_t now = mono_ms();
        if (busy)
            busy_until = now + BUSY_HOLD_MS;
        pthread_mutex_lock(&W.mu);
        W.flush_done = req;
        pthread_cond_broadcast(&W.done);
        if (stop)
            break;
        if (busy == 2 || W.stop || W.flush_req != req)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (now < busy_until ? WAKE_BUSY_MS : WAKE_MS) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&W.wake, &W.mu, &ts);
    }
    pthread_mutex_unlock(&W.mu);
    return NULL;
}

/* ---- control (main thread) -------------------------------------------------------------- */

static bool is_off(const char *path) { return !path || strcmp(path, "off") == 0; }

/* Open a destination: stdout for "-", else the file for appending. */
static int open_dest(const char *path)
{
    if (strcmp(path, "-") == 0)
        return STDOUT_FILENO;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

static void wake_writer(void)
{
    pthread_mutex_lock(&W.mu);
    pthread_cond_signal(&W.wake);
    pthread_mutex_unlock(&W.mu);
}

/* Hand `fd` (or FD_OFF) to the writer. */
static void hand_over(int fd)
{
    int old = atomic_exchange(&W.pending_fd, fd);
    if (old >= 0 && old != STDOUT_FILENO)
        close(old);
    wake_writer();
}

int rlb_accesslog_start(const char *path)
{
    if (W.running)
        return rlb_accesslog_set_path(path);
    if (is_off(path))
        return 0;
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int fd = open_dest(path);
    if (fd < 0) {
        free(copy);
        return fd;
    }
    W.fd = fd;
    W.stop = false;
    W.flush_req = W.flush_done = 0;
    atomic_store(&W.pending_fd, FD_NONE);
    int err = pthread_create(&W.thread, NULL, writer_main, NULL);
    if (err) {
        if (fd != STDOUT_FILENO)
            close(fd);
        W.fd = -1;
        free(copy);
        return -err;
    }
    W.running = true;
    W.path = copy;
    atomic_store(&rlb_accesslog__on, true);
    return 0;
}

int rlb_accesslog_set_path(const char *path)
{
    if (!W.running)
        return rlb_accesslog_start(path);
    if (is_off(path)) {
        atomic_store(&rlb_accesslog__on, false);
        free(W.path);
        W.path = NULL;
        hand_over(FD_OFF);
        return 0;
    }
    if (W.path && strcmp(W.path, path) == 0)
        return 0;
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    int fd = open_dest(path);
    if (fd < 0) {
        free(copy);
        return fd;
    }
    free(W.path);
    W.path = copy;
    hand_over(fd);
    atomic_store(&rlb_accesslog__on, true);
    return 0;
}

int rlb_accesslog_reopen(void)
{
    if (!W.running || !W.path || strcmp(W.path, "-") == 0)
        return 0;
    int fd = open_dest(W.path);
    if (fd < 0)
        return fd;
    hand_over(fd);
    return 0;
}

int rlb_accesslog_flush(uint64_t timeout_ms)
{
    if (!W.running)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int ret = 0;
    pthread_mutex_lock(&W.mu);
    uint64_t mine = ++W.flush_req;
    pthread_cond_signal(&W.wake);
    while (W.flush_done < mine) {
        if (pthread_cond_timedwait(&W.done, &W.mu, &ts) == ETIMEDOUT) {
            ret = W.flush_done >= mine ? 0 : -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&W.mu);
    return ret;
}

void rlb_accesslog_stop(void)
{
    atomic_store(&rlb_accesslog__on, false);
    if (W.running) {
        pthread_mutex_lock(&W.mu);
        W.stop = true;
        pthread_cond_signal(&W.wake);
        pthread_mutex_unlock(&W.mu);
        pthread_join(W.thread, NULL);
        W.running = false;
        int pending = atomic_exchange(&W.pending_fd, FD_NONE);
        if (pending >= 0 && pending != STDOUT_FILENO)
            close(pending);
        if (W.fd >= 0 && W.fd != STDOUT_FILENO)
            close(W.fd);
        W.fd = -1;
    }
    free(W.path);
    W.path = NULL;
    unsigned ns = atomic_load(&n_shards);
    for (unsigned i = 0; i < ns; i++) {
        free(shards[i]->ring);
        free(shards[i]->scratch);
        free(shards[i]);
        shards[i] = NULL;
    }
    atomic_store(&n_shards, 0);
    atomic_store(&W.write_errors, 0);
    atomic_store(&W.lost_lines, 0);
    W.last_error_log_ms = W.errors_at_last_log = 0;
}

void rlb_accesslog_get_stats(struct rlb_accesslog_stats *out)
{
    memset(out, 0, sizeof(*out));
    unsigned ns = atomic_load_explicit(&n_shards, memory_order_acquire);
    for (unsigned i = 0; i < ns; i++) {
        out->lines += atomic_load_explicit(&shards[i]->lines, memory_order_relaxed);
        out->dropped += atomic_load_explicit(&shards[i]->dropped, memory_order_relaxed);
    }
    out->write_errors = atomic_load_explicit(&W.write_errors, memory_order_relaxed);
    out->lost_lines = atomic_load_explicit(&W.lost_lines, memory_order_relaxed);
}
