/*
 * rlb-tls-heap — what OpenSSL itself keeps per idle TLS server connection.
 *
 * Issue #4 asks for <= 8 KiB per idle TLS connection. This tool measures the floor that
 * OpenSSL 3 puts under any proxy that keeps an SSL object per connection: it runs one
 * in-memory TLS handshake with the settings ringlb uses (TLS 1.3 by default, ECDSA P-256,
 * SSL_MODE_RELEASE_BUFFERS, stateless tickets, one request and one answer exchanged), then
 * lists the heap bytes the server side still holds, by OpenSSL source location, counted through
 * CRYPTO_set_mem_functions(). A first connection warms OpenSSL's lazily built global state so
 * that only per-connection memory is counted.
 *
 *   rlb-tls-heap CERT.pem KEY.pem [tls12]
 *
 * Output: one line per allocation site (bytes, count, file:line), then the total.
 */
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIVE 100000

/* One live allocation made while `tracking` is set. */
struct live {
    void *p;
    size_t n;
    const char *file;
    int line;
};

static struct live live[MAX_LIVE];
static size_t n_live;
static bool tracking;

static void forget(void *p)
{
    for (size_t i = n_live; i-- > 0;) {
        if (live[i].p == p) {
            live[i] = live[--n_live];
            return;
        }
    }
}

static void *t_malloc(size_t n, const char *file, int line)
{
    void *p = malloc(n);
    if (p && tracking && n_live < MAX_LIVE)
        live[n_live++] = (struct live){p, n, file, line};
    return p;
}

static void *t_realloc(void *old, size_t n, const char *file, int line)
{
    void *p = realloc(old, n);
    if (!p)
        return NULL;
    for (size_t i = n_live; old && i-- > 0;) {
        if (live[i].p == old) {
            live[i] = (struct live){p, n, file, line};
            return p;
        }
    }
    if (tracking && n_live < MAX_LIVE)
        live[n_live++] = (struct live){p, n, file, line};
    return p;
}

static void t_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p)
        forget(p);
    free(p);
}

/* Move what one side wrote to the other side's input. */
static void pump(BIO *from, BIO *to)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
        BIO_write(to, buf, n);
}

/* One connection: handshake, one request, one answer. Tracks only the server side's
 * allocations when `track`; returns the server SSL (caller frees) and frees the client. */
static SSL *connection(SSL_CTX *sctx, SSL_CTX *cctx, bool track)
{
    tracking = false;
    SSL *c = SSL_new(cctx);
    BIO *cr = BIO_new(BIO_s_mem()), *cw = BIO_new(BIO_s_mem());
    BIO *sr = BIO_new(BIO_s_mem()), *sw = BIO_new(BIO_s_mem());
    SSL_set_bio(c, cr, cw);
    SSL_set_connect_state(c);
    tracking = track;
    SSL *s = SSL_new(sctx);
    SSL_set_bio(s, sr, sw); /* the memory BIOs themselves: ringlb has none (its own BIO) */
    SSL_set_accept_state(s);
    char buf[64];
    for (int i = 0; i < 8; i++) {
        tracking = false;
        SSL_do_handshake(c);
        pump(cw, sr);
        tracking = track;
        SSL_do_handshake(s);
        tracking = false;
        pump(sw, cr);
    }
    SSL_write(c, "GET / HTTP/1.1\r\n\r\n", 18);
    pump(cw, sr);
    tracking = track;
    SSL_read(s, buf, sizeof(buf));
    SSL_write(s, "HTTP/1.1 200 OK\r\n\r\n", 19);
    tracking = false;
    pump(sw, cr);
    SSL_read(c, buf, sizeof(buf));
    SSL_free(c);
    /* The memory BIOs' own buffers are not counted: ringlb's BIO buffers nothing. */
    BIO *bios[2] = {sr, sw};
    for (int i = 0; i < 2; i++) {
        BUF_MEM *bm = NULL;
        BIO_get_mem_ptr(bios[i], &bm);
        if (bm) {
            forget(bm->data);
            forget(bm);
        }
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rlb-tls-heap CERT.pem KEY.pem [tls12]\n");
        return 2;
    }
    CRYPTO_set_mem_functions(t_malloc, t_realloc, t_free);
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (!sctx || !cctx || SSL_CTX_use_certificate_chain_file(sctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
    if (argc > 3 && strcmp(argv[3], "tls12") == 0)
        SSL_CTX_set_max_proto_version(sctx, TLS1_2_VERSION);
    SSL_free(connection(sctx, cctx, false)); /* warm-up */
    n_live = 0;
    SSL *s = connection(sctx, cctx, true);
    tracking = false;
    size_t total = 0;
    for (size_t i = 0; i < n_live; i++) {
        if (!live[i].file)
            continue;
        size_t sum = live[i].n, cnt = 1;
        for (size_t k = i + 1; k < n_live; k++) {
            if (live[k].file && live[k].line == live[i].line &&
                strcmp(live[k].file, live[i].file) == 0) {
                sum += live[k].n;
                cnt++;
                live[k].file = NULL;
            }
        }
        printf("%7zu %3zu %s:%d\n", sum, cnt, live[i].file, live[i].line);
        total += sum;
    }
    printf("total %zu bytes (%.2f KiB) in %zu allocations, %s\n", total, (double)total / 1024,
           n_live, SSL_get_version(s));
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return 0;
}
