/* etcd.c — etcd v3 JSON-gateway client (see etcd.h).
 *
 * I/O is plain non-blocking sockets (and OpenSSL over them for https endpoints) driven with
 * poll(2) deadlines for unary calls; the watch socket is read only when the main ring says it
 * is readable. HTTP/1.1 answers are parsed with llhttp (Content-Length or chunked).
 */
#include "ringlb/etcd.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libfyaml.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "ringlb/admin.h"
#include "ringlb/json.h"
#include "ringlb/json_read.h"
#include "ringlb/log.h"
#include "ringlb/worker.h"

#define MAX_ANSWER (64u << 20) /* a range over the whole prefix stays far below this */

/* --- small helpers -------------------------------------------------------------------------- */

char *rlb_etcd_b64(const void *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

char *rlb_etcd_unb64(const char *s, size_t n, size_t *out_len)
{
    if (n % 4)
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
    if (got < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (n >= 1 && s[n - 1] == '=')
        got--;
    if (n >= 2 && s[n - 2] == '=')
        got--;
    out[got] = '\0';
    *out_len = (size_t)got;
    return (char *)out;
}

char *rlb_etcd_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    char *end = strdup(prefix);
    if (!end)
        return NULL;
    while (n > 0) {
        if ((unsigned char)end[n - 1] < 0xff) {
            end[n - 1]++;
            end[n] = '\0';
            return end;
        }
        n--;
    }
    end[0] = '\0'; /* all 0xff: to the end of the key space ("\0") */
    return end;
}

int64_t rlb_etcd_int(struct fy_node *n, int64_t dflt)
{
    if (!n || fy_node_get_type(n) != FYNT_SCALAR)
        return dflt;
    size_t len;
    const char *s = fy_node_get_scalar(n, &len);
    char buf[32];
    if (!s || len == 0 || len >= sizeof(buf))
        return dflt;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    return errno || *end ? dflt : (int64_t)v;
}

__attribute__((format(printf, 3, 4))) static int errf(struct rlb_etcd *e, int rc,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof(e->err), fmt, ap);
    va_end(ap);
    return rc;
}

/* --- setup ---------------------------------------------------------------------------------- */

static int parse_endpoint(const char *url, struct rlb_etcd_endpoint *ep)
{
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        ep->tls = false;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        ep->tls = true;
    } else {
        return -EINVAL;
    }
    const char *hend, *port;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend)
            return -EINVAL;
        p++;
        port = hend[1] == ':' ? hend + 2 : NULL;
    } else {
        hend = strchr(p, ':');
        if (!hend)
            hend = p + strcspn(p, "/");
        port = *hend == ':' ? hend + 1 : NULL;
    }
    size_t hl = (size_t)(hend - p);
    if (hl == 0 || hl >= sizeof(ep->host))
        return -EINVAL;
    memcpy(ep->host, p, hl);
    ep->host[hl] = '\0';
    size_t pl = port ? strcspn(port, "/") : 0;
    if (pl >= sizeof(ep->port))
        return -EINVAL;
    if (pl) {
        memcpy(ep->port, port, pl);
        ep->port[pl] = '\0';
    } else {
        snprintf(ep->port, sizeof(ep->port), "2379");
    }
    return 0;
}

int rlb_etcd_init(struct rlb_etcd *e, const struct rlb_cluster_cfg *cc, uint64_t timeout_ms)
{
    memset(e, 0, sizeof(*e));
    e->unary.fd = -1;
    e->timeout_ms = timeout_ms;
    e->ep = calloc(cc->n_etcd ? cc->n_etcd : 1, sizeof(*e->ep));
    if (!e->ep)
        return errf(e, -ENOMEM, "%s", "out of memory");
    bool any_tls = false;
    for (size_t i = 0; i < cc->n_etcd; i++) {
        if (parse_endpoint(cc->etcd[i], &e->ep[i]) < 0)
            return errf(e, -EINVAL, "invalid etcd endpoint %.200s", cc->etcd[i]);
        any_tls |= e->ep[i].tls;
    }
    e->n_ep = cc->n_etcd;
    if (any_tls) {
        e->tls = SSL_CTX_new(TLS_client_method());
        if (!e->tls)
            return errf(e, -ENOMEM, "%s", "out of memory");
        SSL_CTX_set_min_proto_version(e->tls, TLS1_2_VERSION);
        SSL_CTX_set_verify(e->tls, SSL_VERIFY_PEER, NULL);
        int ok = cc->tls_ca ? SSL_CTX_load_verify_locations(e->tls, cc->tls_ca, NULL)
                            : SSL_CTX_set_default_verify_paths(e->tls);
        if (ok != 1)
            return errf(e, -EINVAL, "cluster.tls.ca: cannot load %.200s",
                        cc->tls_ca ? cc->tls_ca : "the system CA store");
        if (cc->tls_cert &&
            (SSL_CTX_use_certificate_chain_file(e->tls, cc->tls_cert) != 1 ||
             SSL_CTX_use_PrivateKey_file(e->tls, cc->tls_key, SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(e->tls) != 1))
            return errf(e, -EINVAL, "cluster.tls: cannot load the client certificate %.200s",
                        cc->tls_cert);
    }
    if (cc->auth_user) {
        if (rlb_admin_secret_load("cluster.auth.password_file", cc->auth_password_file,
                                  &e->password, e->err, sizeof(e->err)) < 0)
            return -EINVAL;
        if (!(e->user = strdup(cc->auth_user)))
            return errf(e, -ENOMEM, "%s", "out of memory");
    }
    return 0;
}

static void io_close(struct rlb_etcd_io *io)
{
    if (io->ssl) {
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}

void rlb_etcd_free(struct rlb_etcd *e)
{
    io_close(&e->unary);
    if (e->tls)
        SSL_CTX_free(e->tls);
    free(e->ep);
    free(e->user);
    if (e->password)
        OPENSSL_cleanse(e->password, strlen(e->password));
    free(e->password);
    free(e->token);
    memset(e, 0, sizeof(*e));
    e->unary.fd = -1;
}

/* --- I/O with deadlines --------------------------------------------------------------------- */

/* Wait until fd is ready for `events` or the deadline passes. 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = rlb_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* One TLS step that wants to read or write: wait for it. */
static int tls_wait(struct rlb_etcd_io *io, int ret, uint64_t deadline)
{
    int err = SSL_get_error(io->ssl, ret);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_READ)
        return deadline ? wait_fd(io->fd, POLLIN, deadline) : -EAGAIN;
    if (err == SSL_ERROR_WANT_WRITE)
        return deadline ? wait_fd(io->fd, POLLOUT, deadline) : -EAGAIN;
    if (err == SSL_ERROR_ZERO_RETURN)
        return -EPIPE;
    return -EIO;
}

static int io_connect(struct rlb_etcd *e, struct rlb_etcd_io *io, uint64_t deadline)
{
    int last = -ECONNREFUSED;
    for (size_t k = 0; k < e->n_ep; k++) {
        size_t i = (e->cur + k) % e->n_ep;
        const struct rlb_etcd_endpoint *ep = &e->ep[i];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        if (getaddrinfo(ep->host, ep->port, &hints, &ai) != 0 || !ai) {
            snprintf(e->err, sizeof(e->err), "etcd %.200s: cannot resolve", ep->host);
            last = -EHOSTUNREACH;
            continue;
        }
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int rc = fd < 0 ? -errno : 0;
        if (!rc && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
            rc = -errno;
        freeaddrinfo(ai);
        if (!rc)
            rc = wait_fd(fd, POLLOUT, deadline);
        if (!rc) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            rc = -soerr;
        }
        io->fd = fd;
        io->endpoint = i;
        if (!rc) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (!rc && ep->tls) {
            io->ssl = SSL_new(e->tls);
            if (!io->ssl) {
                rc = -ENOMEM;
            } else {
                SSL_set_fd(io->ssl, fd);
                SSL_set_tlsext_host_name(io->ssl, ep->host);
                SSL_set1_host(io->ssl, ep->host);
                int r;
                while (!rc && (r = SSL_connect(io->ssl)) != 1)
                    rc = tls_wait(io, r, deadline);
            }
        }
        if (!rc) {
            e->cur = i;
            return 0;
        }
        snprintf(e->err, sizeof(e->err), "etcd %.160s:%s: %.60s", ep->host, ep->port,
                 strerror(-rc));
        io_close(io);
        last = rc;
    }
    return last == -ETIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
}

static int io_write_all(struct rlb_etcd_io *io, const char *p, size_t n, uint64_t deadline)
{
    while (n) {
        ssize_t w;
        if (io->ssl) {
            size_t done = 0;
            int r = SSL_write_ex(io->ssl, p, n, &done);
            if (r != 1) {
                int rc = tls_wait(io, r, deadline);
                if (rc < 0)
                    return rc;
                continue;
            }
            w = (ssize_t)done;
        } else {
            w = send(io->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN) {
                    int rc = wait_fd(io->fd, POLLOUT, deadline);
                    if (rc < 0)
                        return rc;
                    continue;
                }
                if (errno == EINTR)
                    continue;
                return -errno;
            }
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read some bytes: >0, 0 at EOF, -EAGAIN (deadline 0 = do not wait), -errno. */
static ssize_t io_read(struct rlb_etcd_io *io, char *buf, size_t cap, uint64_t deadline)
{
    for (;;) {
        if (io->ssl) {
            size_t got = 0;
            int r = SSL_read_ex(io->ssl, buf, cap, &got);
            if (r == 1)
                return (ssize_t)got;
            int rc = tls_wait(io, r, deadline);
            if (rc == -EPIPE)
                return 0;
            if (rc < 0)
                return rc;
            continue;
        }
        ssize_t r = recv(io->fd, buf, cap, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        if (!deadline)
            return -EAGAIN;
        int rc = wait_fd(io->fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

/* --- HTTP ----------------------------------------------------------------------------------- */

static int build_request(struct rlb_etcd *e, const char *path, const char *body, char **out,
                         size_t *out_len)
{
    const struct rlb_etcd_endpoint *ep = &e->ep[e->cur];
    size_t blen = strlen(body);
    size_t cap = blen + strlen(path) + 512 + (e->token ? strlen(e->token) : 0);
    char *req = malloc(cap);
    if (!req)
        return -ENOMEM;
    int n = snprintf(req, cap,
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s%s\r\n",
                     path, ep->host, ep->port, blen, e->token ? "Authorization: " : "",
                     e->token ? e->token : "", e->token ? "\r\n" : "");
    memcpy(req + n, body, blen);
    *out = req;
    *out_len = (size_t)n + blen;
    return 0;
}

struct answer {
    char *body;
    size_t len, cap;
    bool done;
    bool too_big;
};

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct answer *a = p->data;
    if (a->len + len + 1 > a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 4096;
        while (ncap < a->len + len + 1)
            ncap *= 2;
        if (ncap > MAX_ANSWER) {
            a->too_big = true;
            return -1;
        }
        char *nb = realloc(a->body, ncap);
        if (!nb) {
            a->too_big = true;
            return -1;
        }
        a->body = nb;
        a->cap = ncap;
    }
    memcpy(a->body + a->len, at, len);
    a->len += len;
    a->body[a->len] = '\0';
    return 0;
}

static int on_complete(llhttp_t *p)
{
    ((struct answer *)p->data)->done = true;
    return HPE_PAUSED;
}

/* The error message of a non-200 gateway answer. */
static void gateway_error(struct rlb_etcd *e, int status, const char *body, size_t len)
{
    char err[64];
    struct fy_document *d = body ? rlb_json_parse(body, len, err, sizeof(err)) : NULL;
    const char *msg = NULL;
    size_t ml = 0;
    if (d) {
        struct fy_node *r = fy_document_root(d);
        if (rlb_json_get_str(rlb_json_get(r, "message"), &msg, &ml) < 0)
            rlb_json_get_str(rlb_json_get(r, "error"), &msg, &ml);
    }
    snprintf(e->err, sizeof(e->err), "etcd answered %d: %.*s", status,
             msg ? (int)(ml > 200 ? 200 : ml) : 0, msg ? msg : "");
    if (d)
        fy_document_destroy(d);
}

/* One request/answer on e->unary: the status and whether the connection stays open. */
static int exchange(struct rlb_etcd *e, const char *req, size_t rlen, struct answer *a,
                    int *status, bool *keep, uint64_t deadline)
{
    int rc = io_write_all(&e->unary, req, rlen, deadline);
    if (rc < 0)
        return rc;
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_body = on_body;
    s.on_message_complete = on_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    p.data = a;
    char buf[16384];
    while (!a->done) {
        ssize_t n = io_read(&e->unary, buf, sizeof(buf), deadline);
        if (n < 0)
            return (int)n;
        if (n == 0) {
            if (llhttp_finish(&p) == HPE_OK && a->done)
                break;
            return -ECONNRESET;
        }
        llhttp_errno_t er = llhttp_execute(&p, buf, (size_t)n);
        if (er != HPE_OK && er != HPE_PAUSED)
            return a->too_big ? -ENOMEM : -EPROTO;
    }
    *status = p.status_code;
    *keep = llhttp_should_keep_alive(&p);
    return 0;
}

static int authenticate(struct rlb_etcd *e, uint64_t deadline);

static int call_once(struct rlb_etcd *e, const char *path, const char *body, char **out,
                     size_t *out_len, uint64_t deadline, int *status)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = e->unary.fd < 0;
        if (fresh) {
            int rc = io_connect(e, &e->unary, deadline);
            if (rc < 0)
                return rc;
        }
        char *req;
        size_t rlen;
        if (build_request(e, path, body, &req, &rlen) < 0)
            return -ENOMEM;
        struct answer a = {0};
        bool keep = false;
        int rc = exchange(e, req, rlen, &a, status, &keep, deadline);
        free(req);
        if (rc == 0) {
            if (!keep)
                io_close(&e->unary);
            *out = a.body ? a.body : strdup("");
            *out_len = a.len;
            return *out ? 0 : -ENOMEM;
        }
        free(a.body);
        io_close(&e->unary);
        /* A kept-alive connection the server closed meanwhile: once more on a new one. */
        if (fresh || (rc != -ECONNRESET && rc != -EPIPE))
            return rc == -ETIMEDOUT || rc == -ENOMEM ? rc : -EIO;
    }
    return -EIO;
}

static int authenticate(struct rlb_etcd *e, uint64_t deadline)
{
    free(e->token);
    e->token = NULL;
    struct rlb_json j;
    char *body = NULL;
    if (rlb_json_init(&j) == 0) {
        struct fy_node *o = rlb_json_obj(&j);
        if (o && rlb_json_set(&j, o, "name", rlb_json_str(&j, e->user)) == 0 &&
            rlb_json_set(&j, o, "password", rlb_json_str(&j, e->password)) == 0)
            body = rlb_json_emit(&j, o, false);
        rlb_json_free(&j);
    }
    if (!body)
        return -ENOMEM;
    size_t cap = strlen(body);
    char *out = NULL;
    size_t olen = 0;
    int status = 0;
    int rc = call_once(e, "/v3/auth/authenticate", body, &out, &olen, deadline, &status);
    OPENSSL_cleanse(body, cap);
    free(body);
    if (rc < 0)
        return rc;
    if (status != 200) {
        gateway_error(e, status, out, olen);
        free(out);
        return -EPROTO;
    }
    char err[64];
    struct fy_document *d = rlb_json_parse(out, olen, err, sizeof(err));
    const char *tok = NULL;
    size_t tl = 0;
    if (d && rlb_json_get_str(rlb_json_get(fy_document_root(d), "token"), &tok, &tl) == 0)
        e->token = strndup(tok, tl);
    if (d)
        fy_document_destroy(d);
    free(out);
    if (!e->token) {
        snprintf(e->err, sizeof(e->err), "etcd authentication answered no token");
        return -EPROTO;
    }
    return 0;
}

int rlb_etcd_call(struct rlb_etcd *e, const char *path, const char *body, char **out,
                  size_t *out_len)
{
    uint64_t deadline = rlb_now_ms() + e->timeout_ms;
    *out = NULL;
    *out_len = 0;
    if (e->n_ep == 0)
        return errf(e, -ECONNREFUSED, "%s", "no etcd endpoint");
    if (e->user && !e->token) {
        int rc = authenticate(e, deadline);
        if (rc < 0)
            return rc;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int status = 0;
        char *ans = NULL;
        size_t alen = 0;
        int rc = call_once(e, path, body, &ans, &alen, deadline, &status);
        if (rc < 0) {
            if (rc != -ENOMEM && !e->err[0])
                snprintf(e->err, sizeof(e->err), "etcd: %s", strerror(-rc));
            return rc;
        }
        if (status == 200) {
            e->err[0] = '\0';
            *out = ans;
            *out_len = alen;
            return 0;
        }
        gateway_error(e, status, ans, alen);
        free(ans);
        bool expired = e->user && strstr(e->err, "auth token") != NULL;
        if (!expired || attempt == 1)
            return -EPROTO;
        if ((rc = authenticate(e, deadline)) < 0)
            return rc;
    }
    return -EPROTO;
}

/* --- the watch stream ----------------------------------------------------------------------- */

static int w_on_headers(llhttp_t *p)
{
    struct rlb_etcd_watch *w = p->data;
    w->status = p->status_code;
    return 0;
}

static int w_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct rlb_etcd_watch *w = p->data;
    while (len) {
        const char *nl = memchr(at, '\n', len);
        size_t take = nl ? (size_t)(nl - at) : len;
        if (w->len + take + 1 > w->cap) {
            size_t ncap = w->cap ? w->cap * 2 : 8192;
            while (ncap < w->len + take + 1)
                ncap *= 2;
            char *nb = ncap <= MAX_ANSWER ? realloc(w->line, ncap) : NULL;
            if (!nb)
                return -1;
            w->line = nb;
            w->cap = ncap;
        }
        memcpy(w->line + w->len, at, take);
        w->len += take;
        w->line[w->len] = '\0';
        if (!nl)
            break;
        if (w->len && w->status == 200)
            w->on_message(w->arg, w->line, w->len);
        w->len = 0;
        at = nl + 1;
        len -= take + 1;
    }
    return 0;
}

static int w_on_complete(llhttp_t *p)
{
    ((struct rlb_etcd_watch *)p->data)->ended = true;
    return 0;
}

int rlb_etcd_watch_open(struct rlb_etcd *e, struct rlb_etcd_watch *w, const char *key,
                        const char *range_end, int64_t start_rev,
                        void (*on_message)(void *arg, const char *json, size_t len), void *arg)
{
    memset(w, 0, sizeof(*w));
    w->io.fd = -1;
    w->on_message = on_message;
    w->arg = arg;
    uint64_t deadline = rlb_now_ms() + e->timeout_ms;
    if (e->user && !e->token) {
        int rc = authenticate(e, deadline);
        if (rc < 0)
            return rc;
    }
    char *k = rlb_etcd_b64(key, strlen(key));
    char *r = rlb_etcd_b64(range_end, strlen(range_end));
    char body[1024];
    int n = k && r ? snprintf(body, sizeof(body),
                              "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                              "\"start_revision\":\"%lld\"}}",
                              k, r, (long long)start_rev)
                   : -1;
    free(k);
    free(r);
    if (n < 0 || (size_t)n >= sizeof(body))
        return errf(e, -ENAMETOOLONG, "%s", "cluster.prefix is too long");
    int rc = io_connect(e, &w->io, deadline);
    if (rc < 0)
        return rc;
    char *req;
    size_t rlen;
    if (build_request(e, "/v3/watch", body, &req, &rlen) < 0) {
        rlb_etcd_watch_close(w);
        return -ENOMEM;
    }
    rc = io_write_all(&w->io, req, rlen, deadline);
    free(req);
    if (rc < 0) {
        rlb_etcd_watch_close(w);
        return errf(e, rc, "etcd watch: %s", strerror(-rc));
    }
    llhttp_settings_init(&w->settings);
    w->settings.on_headers_complete = w_on_headers;
    w->settings.on_body = w_on_body;
    w->settings.on_message_complete = w_on_complete;
    llhttp_init(&w->parser, HTTP_RESPONSE, &w->settings);
    w->parser.data = w;
    return 0;
}

int rlb_etcd_watch_read(struct rlb_etcd_watch *w)
{
    char buf[16384];
    for (;;) {
        if (w->io.fd < 0)
            return -EBADF;
        ssize_t n = io_read(&w->io, buf, sizeof(buf), 0);
        if (n == -EAGAIN)
            return 0;
        if (n <= 0)
            return n == 0 ? -ECONNRESET : (int)n;
        llhttp_errno_t er = llhttp_execute(&w->parser, buf, (size_t)n);
        if (er != HPE_OK)
            return -EPROTO;
        if (w->status && w->status != 200)
            return -EPROTO;
        if (w->ended)
            return -ECONNRESET;
    }
}

void rlb_etcd_watch_close(struct rlb_etcd_watch *w)
{
    io_close(&w->io);
    free(w->line);
    w->line = NULL;
    w->len = w->cap = 0;
}
