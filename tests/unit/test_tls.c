/* test_tls.c — unit tests of the TLS engine (src/tls.c).
 *
 * Certificates and keys are generated at test time with the OpenSSL API into a mkdtemp()
 * directory (removed at the end). Every handshake runs in memory between an OpenSSL client
 * (memory BIOs) and a ringlb engine: client output is fed to rlb_tls_recv(), the engine's
 * cipher_out segments are written back into the client's read BIO.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#ifdef RINGLB_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "ringlb/tls.h"
#include "test.h"

/* ---- fixtures ---------------------------------------------------------------------------- */

static char tmpdir[64];

enum {
    C_DEFAULT, C_RSA_SAME, C_EC_SAME, C_WILD, C_EXACT_IN_WILD, C_CNONLY, C_KEY256, C_KEY384,
    C_EXP_SHORT, C_EXP_LONG, C_CHAIN, C_COUNT
};

struct fixture {
    char cert[128], key[128];
    X509 *x;
};
static struct fixture fx[C_COUNT];
static char other_key[128]; /* a key matching no certificate */

static EVP_PKEY *gen_key(const char *kind)
{
    if (strcmp(kind, "RSA") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", kind);
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san, long days, X509 *issuer,
                       EVP_PKEY *issuer_key)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L);
    X509_set_pubkey(x, key);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    if (san) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
    return x;
}

static void write_pem(const char *path, X509 *x, X509 *extra, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (x)
        PEM_write_X509(f, x);
    if (extra)
        PEM_write_X509(f, extra);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static void fixture(int i, const char *name, const char *kind, const char *cn, const char *san,
                    long days)
{
    EVP_PKEY *k = gen_key(kind);
    snprintf(fx[i].cert, sizeof(fx[i].cert), "%s/%s.pem", tmpdir, name);
    snprintf(fx[i].key, sizeof(fx[i].key), "%s/%s.key", tmpdir, name);
    fx[i].x = make_cert(k, cn, san, days, NULL, NULL);
    write_pem(fx[i].cert, fx[i].x, NULL, NULL);
    write_pem(fx[i].key, NULL, NULL, k);
    EVP_PKEY_free(k);
}

static void fixtures_make(void)
{
    strcpy(tmpdir, "/tmp/rlb-tls-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(2);
    }
    fixture(C_DEFAULT, "default", "P-256", "default.test", "DNS:default.test", 365);
    fixture(C_RSA_SAME, "rsa-same", "RSA", "rsa-cn.test", "DNS:same.test", 365);
    fixture(C_EC_SAME, "ec-same", "P-256", "ec-same", "DNS:same.test", 365);
    fixture(C_WILD, "wild", "P-256", "wild", "DNS:*.wild.test", 365);
    fixture(C_EXACT_IN_WILD, "exact-wild", "P-256", "exact", "DNS:exact.wild.test", 365);
    fixture(C_CNONLY, "cnonly", "P-256", "cnonly.test", NULL, 365);
    fixture(C_KEY256, "key256", "P-256", "k256", "DNS:keylen.test", 365);
    fixture(C_KEY384, "key384", "P-384", "k384", "DNS:keylen.test", 365);
    fixture(C_EXP_SHORT, "exp-short", "P-256", "short", "DNS:expiry.test", 30);
    fixture(C_EXP_LONG, "exp-long", "P-256", "long", "DNS:expiry.test", 400);

    /* A leaf signed by a CA, the file holding leaf + CA. */
    EVP_PKEY *cak = gen_key("P-256"), *lk = gen_key("P-256");
    X509 *ca = make_cert(cak, "Test CA", NULL, 365, NULL, NULL);
    fx[C_CHAIN].x = make_cert(lk, "chain", "DNS:chain.test", 365, ca, cak);
    snprintf(fx[C_CHAIN].cert, sizeof(fx[C_CHAIN].cert), "%s/chain.pem", tmpdir);
    snprintf(fx[C_CHAIN].key, sizeof(fx[C_CHAIN].key), "%s/chain.key", tmpdir);
    write_pem(fx[C_CHAIN].cert, fx[C_CHAIN].x, ca, NULL);
    write_pem(fx[C_CHAIN].key, NULL, NULL, lk);
    X509_free(ca);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(lk);

    EVP_PKEY *ok = gen_key("P-256");
    snprintf(other_key, sizeof(other_key), "%s/other.key", tmpdir);
    write_pem(other_key, NULL, NULL, ok);
    EVP_PKEY_free(ok);
}

static void fixtures_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (tmpdir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    for (int i = 0; i < C_COUNT; i++)
        X509_free(fx[i].x);
}

/* A listener configuration over fixtures `idx` (n of them), the first being the default. */
struct lcfg {
    struct rlb_listener_cfg lc;
    struct rlb_certificate_cfg certs[C_COUNT + 2];
};

static void lcfg_init(struct lcfg *l, const char *policy, const int *idx, size_t n)
{
    memset(l, 0, sizeof(*l));
    l->lc.name = (char *)"test";
    l->lc.protocol = RLB_PROTO_HTTPS;
    l->lc.security_policy = (char *)policy;
    for (size_t i = 0; i < n; i++) {
        l->certs[i].cert = fx[idx[i]].cert;
        l->certs[i].key = fx[idx[i]].key;
    }
    l->lc.certificates = l->certs;
    l->lc.n_certificates = n;
}

static const int ALL[] = {C_DEFAULT, C_RSA_SAME, C_EC_SAME, C_WILD, C_EXACT_IN_WILD, C_CNONLY,
                          C_KEY256, C_KEY384, C_EXP_SHORT, C_EXP_LONG, C_CHAIN};

static struct rlb_tls_ctx *ctx_all(const char *policy)
{
    struct lcfg l;
    lcfg_init(&l, policy, ALL, sizeof(ALL) / sizeof(ALL[0]));
    char err[512];
    struct rlb_tls_ctx *c = rlb_tls_ctx_new(&l.lc, err, sizeof(err));
    if (!c)
        fprintf(stderr, "rlb_tls_ctx_new: %s\n", err);
    return c;
}

/* ---- in-memory client -------------------------------------------------------------------- */

static struct rlb_segpool sp; /* blocks only: no provided-buffer ring */

struct client {
    SSL *ssl;
    BIO *rb, *wb; /* rb: bytes from the server; wb: bytes to the server */
};

static SSL_CTX *client_ctx(int minv, int maxv, const char *ciphers12, const char *sigalgs)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_min_proto_version(c, minv);
    SSL_CTX_set_max_proto_version(c, maxv);
    SSL_CTX_set_cipher_list(c, ciphers12 ? ciphers12 : "DEFAULT:@SECLEVEL=0");
    if (sigalgs)
        SSL_CTX_set1_sigalgs_list(c, sigalgs);
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return c;
}

static struct client *client_new(SSL_CTX *cc, const char *sni, const char *alpn,
                                 SSL_SESSION *sess)
{
    struct client *c = calloc(1, sizeof(*c));
    c->ssl = SSL_new(cc);
    c->rb = BIO_new(BIO_s_mem());
    c->wb = BIO_new(BIO_s_mem());
    SSL_set_bio(c->ssl, c->rb, c->wb);
    SSL_set_connect_state(c->ssl);
    if (sni)
        SSL_set_tlsext_host_name(c->ssl, sni);
    if (alpn)
        SSL_set_alpn_protos(c->ssl, (const unsigned char *)alpn, (unsigned)strlen(alpn));
    if (sess)
        SSL_set_session(c->ssl, sess);
    return c;
}

static void client_free(struct client *c)
{
    if (c) {
        /* A client freed without a shutdown marks its session not resumable. */
        SSL_shutdown(c->ssl);
        ERR_clear_error();
        SSL_free(c->ssl);
        free(c);
    }
}

/* Client → engine (all pending bytes; one byte per call when `bytewise`), then engine →
 * client. Returns the engine's first error or 0. */
static int pump(struct client *c, struct rlb_tls *t, struct rlb_bq *plain, bool bytewise)
{
    static char buf[256 * 1024];
    struct rlb_bq out = {0};
    int rc = 0, n;
    while (rc == 0 && (n = BIO_read(c->wb, buf, sizeof(buf))) > 0) {
        if (bytewise) {
            for (int i = 0; i < n && rc == 0; i++)
                rc = rlb_tls_recv(t, &sp, buf + i, 1, plain, &out);
        } else {
            rc = rlb_tls_recv(t, &sp, buf, (size_t)n, plain, &out);
        }
    }
    for (struct rlb_seg *s = out.head; s; s = s->next)
        BIO_write(c->rb, s->data, (int)s->len);
    rlb_bq_clear(&sp, &out);
    return rc;
}

/* Run the handshake to completion. 0, the engine's error, -1000 when the client failed. */
static int handshake(struct client *c, struct rlb_tls *t, bool bytewise)
{
    struct rlb_bq plain = {0};
    for (int i = 0; i < 20; i++) {
        int r = SSL_do_handshake(c->ssl);
        int cerr = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
        int rc = pump(c, t, &plain, bytewise);
        if (rc < 0) {
            rlb_bq_clear(&sp, &plain);
            return rc;
        }
        if (cerr != SSL_ERROR_NONE && cerr != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            rlb_bq_clear(&sp, &plain);
            return -1000;
        }
        if (r == 1 && rlb_tls_handshake_done(t)) {
            /* Let the client take the session tickets that followed. */
            char x;
            SSL_read(c->ssl, &x, 1);
            ERR_clear_error();
            rlb_bq_clear(&sp, &plain);
            return 0;
        }
    }
    rlb_bq_clear(&sp, &plain);
    return -2000;
}

/* Index of the fixture the client received, or -1. */
static int served(const struct client *c)
{
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    int found = -1;
    for (int i = 0; peer && i < C_COUNT; i++)
        if (X509_cmp(peer, fx[i].x) == 0)
            found = i;
    X509_free(peer);
    return found;
}

/* One full handshake against `ctx`; returns the fixture served (or -1 on failure). */
static int serve_for(struct rlb_tls_ctx *ctx, SSL_CTX *cc, const char *sni)
{
    struct client *c = client_new(cc, sni, NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    int rc = handshake(c, t, false);
    int who = rc == 0 ? served(c) : -1;
    if (rc == 0) {
        struct rlb_tls_info info;
        rlb_tls_get_info(t, &info);
        if (who >= 0)
            CHECK_EQ_STR(info.cert_path, fx[who].cert);
    }
    rlb_tls_free(t);
    client_free(c);
    return who;
}

/* ---- tests ----------------------------------------------------------------------------- */

TEST(ctx_builds_names)
{
    struct rlb_tls_ctx *c = ctx_all(NULL);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_EQ_INT(rlb_tls_ctx_cert_count(c), C_COUNT);
    /* default, same, *.wild, exact.wild, cnonly, keylen, expiry, chain */
    CHECK_EQ_INT(rlb_tls_ctx_name_count(c), 8);
    CHECK_EQ_STR(rlb_tls_ctx_select(c, "same.test"), fx[C_EC_SAME].cert);
    CHECK_EQ_STR(rlb_tls_ctx_select(c, NULL), fx[C_DEFAULT].cert);
    rlb_tls_ctx_free(c);
}

TEST(ctx_errors)
{
    char err[512];
    struct lcfg l;
    int one[] = {C_DEFAULT};
    lcfg_init(&l, "ELBSecurityPolicy-Nope", one, 1);
    CHECK(rlb_tls_ctx_new(&l.lc, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "unknown security policy") != NULL);

    lcfg_init(&l, NULL, one, 1);
    l.certs[0].cert = (char *)"/nonexistent/cert.pem";
    CHECK(rlb_tls_ctx_new(&l.lc, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent/cert.pem") != NULL);

    lcfg_init(&l, NULL, one, 1);
    l.certs[0].key = other_key;
    CHECK(rlb_tls_ctx_new(&l.lc, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "does not match") != NULL);

    lcfg_init(&l, NULL, one, 1);
    l.certs[0].cert = fx[C_DEFAULT].key; /* a key where a certificate should be */
    CHECK(rlb_tls_ctx_new(&l.lc, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no PEM certificate") != NULL);

    lcfg_init(&l, NULL, one, 0);
    CHECK(rlb_tls_ctx_new(&l.lc, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no certificate") != NULL);
}

TEST(sni_selection)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    if (!ctx)
        return;
    CHECK_EQ_INT(serve_for(ctx, cc, NULL), C_DEFAULT);               /* no SNI */
    CHECK_EQ_INT(serve_for(ctx, cc, "unknown.test"), C_DEFAULT);     /* unknown name */
    CHECK_EQ_INT(serve_for(ctx, cc, "default.test"), C_DEFAULT);
    CHECK_EQ_INT(serve_for(ctx, cc, "same.test"), C_EC_SAME);        /* ECDSA over RSA */
    CHECK_EQ_INT(serve_for(ctx, cc, "SAME.Test."), C_EC_SAME);       /* case, trailing dot */
    CHECK_EQ_INT(serve_for(ctx, cc, "a.wild.test"), C_WILD);         /* wildcard, one label */
    CHECK_EQ_INT(serve_for(ctx, cc, "a.b.wild.test"), C_DEFAULT);    /* not two labels */
    CHECK_EQ_INT(serve_for(ctx, cc, "wild.test"), C_DEFAULT);        /* nor zero */
    CHECK_EQ_INT(serve_for(ctx, cc, "exact.wild.test"), C_EXACT_IN_WILD); /* exact first */
    CHECK_EQ_INT(serve_for(ctx, cc, "cnonly.test"), C_CNONLY);       /* CN without SAN */
    CHECK_EQ_INT(serve_for(ctx, cc, "rsa-cn.test"), C_DEFAULT);      /* CN ignored with SAN */
    CHECK_EQ_INT(serve_for(ctx, cc, "keylen.test"), C_KEY384);       /* longer key */
    CHECK_EQ_INT(serve_for(ctx, cc, "expiry.test"), C_EXP_LONG);     /* later expiry */
    CHECK_EQ_INT(serve_for(ctx, cc, "chain.test"), C_CHAIN);
    SSL_CTX_free(cc);

    /* TLS 1.2 the same way. */
    cc = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL);
    CHECK_EQ_INT(serve_for(ctx, cc, "same.test"), C_EC_SAME);
    CHECK_EQ_INT(serve_for(ctx, cc, "x.wild.test"), C_WILD);
    SSL_CTX_free(cc);

    /* A client that cannot verify ECDSA gets the RSA certificate of the same name. */
    cc = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, NULL,
                    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:RSA+SHA256");
    CHECK_EQ_INT(serve_for(ctx, cc, "same.test"), C_RSA_SAME);
    SSL_CTX_free(cc);
    cc = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-RSA-AES128-GCM-SHA256", NULL);
    CHECK_EQ_INT(serve_for(ctx, cc, "same.test"), C_RSA_SAME);
    SSL_CTX_free(cc);
    rlb_tls_ctx_free(ctx);
}

TEST(chain_is_sent)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    struct client *c = client_new(cc, "chain.test", NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
    CHECK_EQ_INT(chain ? sk_X509_num(chain) : 0, 2);
    rlb_tls_free(t);
    client_free(c);
    SSL_CTX_free(cc);
    rlb_tls_ctx_free(ctx);
}

TEST(info_and_alpn)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    struct rlb_tls_info info;

    struct client *c = client_new(cc, "Same.Test", "\x02h2\x08http/1.1", NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    rlb_tls_get_info(t, &info);
    CHECK(info.protocol == NULL && info.sni == NULL);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    rlb_tls_get_info(t, &info);
    CHECK_EQ_STR(info.protocol, "TLSv1.3");
    CHECK_EQ_STR(info.cipher, "TLS_AES_128_GCM_SHA256");
    CHECK_EQ_STR(info.cipher_iana, "TLS_AES_128_GCM_SHA256");
    CHECK_EQ_STR(info.sni, "Same.Test");
    CHECK_EQ_STR(info.cert_path, fx[C_EC_SAME].cert);
    CHECK_EQ_STR(info.cert_name, "same.test");
    CHECK_EQ_STR(info.alpn, "http/1.1");
    CHECK(!info.resumed);
    const unsigned char *sel = NULL;
    unsigned int sl = 0;
    SSL_get0_alpn_selected(c->ssl, &sel, &sl);
    CHECK(sl == 8 && memcmp(sel, "http/1.1", 8) == 0);
    rlb_tls_free(t);
    client_free(c);

    /* No ALPN offered: fine. Only h2 offered: no ALPN, handshake still completes. */
    c = client_new(cc, NULL, NULL, NULL);
    t = rlb_tls_new(ctx);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    rlb_tls_get_info(t, &info);
    CHECK(info.alpn == NULL && info.sni == NULL);
    CHECK_EQ_STR(info.cert_name, "default.test");
    rlb_tls_free(t);
    client_free(c);
    c = client_new(cc, NULL, "\x02h2", NULL);
    t = rlb_tls_new(ctx);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    rlb_tls_get_info(t, &info);
    CHECK(info.alpn == NULL);
    rlb_tls_free(t);
    client_free(c);

    /* TLS 1.2: OpenSSL and IANA names differ. */
    SSL_CTX_free(cc);
    cc = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL);
    c = client_new(cc, "same.test", NULL, NULL);
    t = rlb_tls_new(ctx);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    rlb_tls_get_info(t, &info);
    CHECK_EQ_STR(info.protocol, "TLSv1.2");
    CHECK_EQ_STR(info.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    CHECK_EQ_STR(info.cipher_iana, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    rlb_tls_free(t);
    client_free(c);
    SSL_CTX_free(cc);
    rlb_tls_ctx_free(ctx);
}

static void fill_random(char *p, size_t n)
{
    RAND_bytes((unsigned char *)p, (int)n);
}

/* Read exactly n bytes from the client (after delivering server output). */
static size_t client_read_all(struct client *c, char *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t k = 0;
        if (SSL_read_ex(c->ssl, dst + got, n - got, &k) != 1)
            break;
        got += k;
    }
    ERR_clear_error();
    return got;
}

TEST(application_data)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    struct client *c = client_new(cc, "same.test", NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    struct rlb_bq plain = {0}, out = {0};

    /* Sending before the handshake is refused and consumes nothing. */
    static const char early[] = "too early";
    rlb_bq_push(&plain, rlb_seg_static(&sp, early, sizeof(early) - 1));
    CHECK_EQ_INT(rlb_tls_send(t, &sp, &plain, 0, &out), -ENOTCONN);
    CHECK_EQ_INT(plain.bytes, sizeof(early) - 1);
    rlb_bq_clear(&sp, &plain);
    CHECK_EQ_INT(handshake(c, t, false), 0);

    /* Client → server: 150 KB in one go. */
    size_t up = 150000;
    char *src = malloc(up), *dst = malloc(up);
    fill_random(src, up);
    size_t w = 0;
    CHECK(SSL_write_ex(c->ssl, src, up, &w) == 1 && w == up);
    CHECK_EQ_INT(pump(c, t, &plain, false), 0);
    CHECK_EQ_INT(plain.bytes, up);
    rlb_bq_copyout(&plain, dst, (uint32_t)up);
    CHECK(memcmp(src, dst, up) == 0);
    rlb_bq_clear(&sp, &plain);

    /* Server → client: small static head, a 100 KB block, several small blocks. */
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100030\r\n\r\n";
    size_t big = 100000;
    struct rlb_block *b = rlb_block_new((uint32_t)big);
    fill_random(b->data, big);
    rlb_bq_push(&plain, rlb_seg_static(&sp, head, sizeof(head) - 1));
    rlb_bq_push(&plain, rlb_seg_from_block(&sp, b, b->data, (uint32_t)big));
    for (int i = 0; i < 3; i++)
        rlb_bq_push(&plain, rlb_seg_static(&sp, "0123456789", 10));
    size_t total = plain.bytes;
    char *expect = malloc(total), *got = malloc(total);
    rlb_bq_copyout(&plain, expect, (uint32_t)total);

    /* A budget: at most 20000 bytes rounded up to whole records. */
    CHECK_EQ_INT(rlb_tls_send(t, &sp, &plain, 20000, &out), 0);
    CHECK(total - plain.bytes >= 20000 && total - plain.bytes <= 20000 + 16384);
    CHECK(out.bytes > 0);
    CHECK_EQ_INT(rlb_tls_send(t, &sp, &plain, 0, &out), 0);
    CHECK_EQ_INT(plain.bytes, 0);
    CHECK(plain.head == NULL);
    for (struct rlb_seg *s = out.head; s; s = s->next)
        BIO_write(c->rb, s->data, (int)s->len);
    rlb_bq_clear(&sp, &out);
    CHECK_EQ_INT(client_read_all(c, got, total), total);
    CHECK(memcmp(expect, got, total) == 0);

    /* Clean close both ways. */
    CHECK_EQ_INT(rlb_tls_shutdown(t, &sp, &out), 0);
    CHECK(out.bytes > 0);
    CHECK_EQ_INT(rlb_tls_send(t, &sp, &plain, 0, &out), -EPIPE);
    for (struct rlb_seg *s = out.head; s; s = s->next)
        BIO_write(c->rb, s->data, (int)s->len);
    rlb_bq_clear(&sp, &out);
    char x;
    int r = SSL_read(c->ssl, &x, 1);
    CHECK(r <= 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN);
    CHECK(!rlb_tls_peer_closed(t));
    SSL_shutdown(c->ssl);
    CHECK_EQ_INT(pump(c, t, &plain, false), 0);
    CHECK(rlb_tls_peer_closed(t));
    CHECK(!rlb_tls_failed(t));

    free(src);
    free(dst);
    free(expect);
    free(got);
    rlb_tls_free(t);
    client_free(c);
    SSL_CTX_free(cc);
    rlb_tls_ctx_free(ctx);
}

/* First handshake, then a second one offering the first one's session. Returns whether the
 * second resumed (-1 on a handshake failure). */
static int resume_once(struct rlb_tls_ctx *ctx, SSL_CTX *cc, const char *sni, int rotations)
{
    struct client *c = client_new(cc, sni, NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    if (handshake(c, t, false) != 0)
        return -1;
    SSL_SESSION *sess = SSL_get1_session(c->ssl);
    rlb_tls_free(t);
    client_free(c);
    for (int i = 0; i < rotations; i++)
        rlb_tls_ticket_keys_rotate();
    c = client_new(cc, sni, NULL, sess);
    t = rlb_tls_new(ctx);
    int ret = -1;
    if (handshake(c, t, false) == 0) {
        struct rlb_tls_info info;
        rlb_tls_get_info(t, &info);
        ret = SSL_session_reused(c->ssl);
        CHECK_EQ_INT(info.resumed, ret);
        CHECK(info.cert_path != NULL);
        if (sni && info.cert_path)
            CHECK_EQ_STR(info.cert_path, rlb_tls_ctx_select(ctx, sni));
    }
    SSL_SESSION_free(sess);
    rlb_tls_free(t);
    client_free(c);
    return ret;
}

TEST(session_resumption)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *c13 = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL);
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL);
    CHECK_EQ_INT(resume_once(ctx, c13, "same.test", 0), 1);
    CHECK_EQ_INT(resume_once(ctx, c12, "same.test", 0), 1);
    CHECK_EQ_INT(resume_once(ctx, c13, NULL, 0), 1);
    /* The previous key still decrypts; two rotations later the ticket is unknown. */
    CHECK_EQ_INT(resume_once(ctx, c13, "a.wild.test", 1), 1);
    CHECK_EQ_INT(resume_once(ctx, c12, "a.wild.test", 1), 1);
    CHECK_EQ_INT(resume_once(ctx, c13, "a.wild.test", 2), 0);
    CHECK_EQ_INT(resume_once(ctx, c12, "a.wild.test", 2), 0);

    /* A reload (a new context for the same listener) still resumes earlier sessions. */
    struct client *c = client_new(c13, "same.test", NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    SSL_SESSION *sess = SSL_get1_session(c->ssl);
    rlb_tls_free(t);
    client_free(c);
    struct rlb_tls_ctx *ctx2 = ctx_all(NULL);
    c = client_new(c13, "same.test", NULL, sess);
    t = rlb_tls_new(ctx2);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    CHECK_EQ_INT(SSL_session_reused(c->ssl), 1);
    rlb_tls_free(t);
    client_free(c);
    SSL_SESSION_free(sess);
    rlb_tls_ctx_free(ctx2);

    SSL_CTX_free(c13);
    SSL_CTX_free(c12);
    rlb_tls_ctx_free(ctx);
}

/* Handshake result for a client with this protocol range / cipher list under `policy`. */
static int try_policy(const char *policy, int minv, int maxv, const char *ciphers,
                      char *proto, char *cipher)
{
    struct lcfg l;
    int certs[] = {C_DEFAULT, C_RSA_SAME};
    lcfg_init(&l, policy, certs, 2);
    char err[512];
    struct rlb_tls_ctx *ctx = rlb_tls_ctx_new(&l.lc, err, sizeof(err));
    if (!ctx) {
        fprintf(stderr, "%s\n", err);
        return -3000;
    }
    SSL_CTX *cc = client_ctx(minv, maxv, ciphers, NULL);
    struct client *c = client_new(cc, "same.test", NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    int rc = handshake(c, t, false);
    if (rc == 0) {
        struct rlb_tls_info info;
        rlb_tls_get_info(t, &info);
        snprintf(proto, 32, "%s", info.protocol);
        snprintf(cipher, 64, "%s", info.cipher);
    } else {
        CHECK(!rlb_tls_handshake_done(t));
        CHECK(rlb_tls_failed(t));
        CHECK(rlb_tls_error_reason(t) != NULL);
    }
    rlb_tls_free(t);
    client_free(c);
    SSL_CTX_free(cc);
    rlb_tls_ctx_free(ctx);
    return rc;
}

TEST(security_policies)
{
    char proto[32] = "", cipher[64] = "";
    const char *p12 = "ELBSecurityPolicy-TLS13-1-2-2021-06";
    const char *p13 = "ELBSecurityPolicy-TLS13-1-3-2021-06";
    const char *p16 = "ELBSecurityPolicy-2016-08";
    const char *pfs = "ELBSecurityPolicy-FS-1-2-Res-2020-10";

    /* Default policy: 1.2 and 1.3; 1.0 and 1.1 refused; SHA-1 CBC ciphers not offered. */
    CHECK_EQ_INT(try_policy(NULL, TLS1_3_VERSION, TLS1_3_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_STR(proto, "TLSv1.3");
    CHECK_EQ_INT(try_policy(p12, TLS1_2_VERSION, TLS1_2_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_STR(proto, "TLSv1.2");
    CHECK_EQ_INT(try_policy(p12, TLS1_1_VERSION, TLS1_1_VERSION, NULL, proto, cipher), -EPROTO);
    CHECK_EQ_INT(try_policy(p12, TLS1_VERSION, TLS1_VERSION, NULL, proto, cipher), -EPROTO);
    CHECK_EQ_INT(try_policy(p12, TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA",
                            proto, cipher), -EPROTO);
    CHECK_EQ_INT(try_policy(p12, TLS1_2_VERSION, TLS1_2_VERSION, "AES256-SHA256", proto,
                            cipher), 0);
    CHECK_EQ_STR(cipher, "AES256-SHA256");

    /* TLS 1.3 only. */
    CHECK_EQ_INT(try_policy(p13, TLS1_3_VERSION, TLS1_3_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_INT(try_policy(p13, TLS1_2_VERSION, TLS1_2_VERSION, NULL, proto, cipher), -EPROTO);

    /* 2016-08: TLS 1.0-1.2 really work (security level 0), TLS 1.3 is not part of it. */
    CHECK_EQ_INT(try_policy(p16, TLS1_VERSION, TLS1_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_STR(proto, "TLSv1");
    CHECK_EQ_INT(try_policy(p16, TLS1_1_VERSION, TLS1_1_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_STR(proto, "TLSv1.1");
    CHECK_EQ_STR(cipher, "ECDHE-RSA-AES128-SHA"); /* same.test is the RSA certificate here */
    CHECK_EQ_INT(try_policy(p16, TLS1_VERSION, TLS1_3_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_STR(proto, "TLSv1.2");
    CHECK_EQ_INT(try_policy(p16, TLS1_3_VERSION, TLS1_3_VERSION, NULL, proto, cipher), -EPROTO);

    /* FS-1-2-Res-2020-10: TLS 1.2, ECDHE + GCM only. */
    CHECK_EQ_INT(try_policy(pfs, TLS1_2_VERSION, TLS1_3_VERSION, NULL, proto, cipher), 0);
    CHECK_EQ_STR(proto, "TLSv1.2");
    CHECK_EQ_STR(cipher, "ECDHE-RSA-AES128-GCM-SHA256");
    CHECK_EQ_INT(try_policy(pfs, TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-RSA-AES256-GCM-SHA384",
                            proto, cipher), 0);
    CHECK_EQ_STR(cipher, "ECDHE-RSA-AES256-GCM-SHA384");
    CHECK_EQ_INT(try_policy(pfs, TLS1_2_VERSION, TLS1_2_VERSION, "AES128-GCM-SHA256", proto,
                            cipher), -EPROTO);
    CHECK_EQ_INT(try_policy(pfs, TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-RSA-AES128-SHA256",
                            proto, cipher), -EPROTO);
    CHECK_EQ_INT(try_policy(pfs, TLS1_3_VERSION, TLS1_3_VERSION, NULL, proto, cipher), -EPROTO);
}

/* Feed `data` to a fresh engine; return its result and whether the handshake completed. */
static int feed_fresh(struct rlb_tls_ctx *ctx, const char *data, size_t len, uint32_t *outb)
{
    struct rlb_tls *t = rlb_tls_new(ctx);
    struct rlb_bq plain = {0}, out = {0};
    int rc = rlb_tls_recv(t, &sp, data, len, &plain, &out);
    CHECK_EQ_INT(plain.bytes, 0);
    CHECK(!rlb_tls_handshake_done(t));
    if (rc < 0) {
        /* Stays failed. */
        CHECK_EQ_INT(rlb_tls_recv(t, &sp, data, len, &plain, &out), -EPROTO);
    }
    if (outb)
        *outb = out.bytes;
    rlb_bq_clear(&sp, &out);
    rlb_tls_free(t);
    return rc;
}

TEST(bad_input_fails_fast)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    static const char http[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    CHECK_EQ_INT(feed_fresh(ctx, http, sizeof(http) - 1, NULL), -EPROTO);
    CHECK(rlb_tls_looks_like_http(http, sizeof(http) - 1));
    CHECK(rlb_tls_looks_like_http("GE", 2));
    CHECK(rlb_tls_looks_like_http("PRI * HTTP/2.0", 14));
    CHECK(!rlb_tls_looks_like_http("\x16\x03\x01\x02\x00", 5));
    CHECK(!rlb_tls_looks_like_http("get / x", 7));
    CHECK(!rlb_tls_looks_like_http("", 0));
    CHECK(!rlb_tls_looks_like_http(" GET", 4));

    char garbage[512];
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)(i * 37 + 11);
    CHECK_EQ_INT(feed_fresh(ctx, garbage, sizeof(garbage), NULL), -EPROTO);
    /* A handshake record header announcing an impossible length. */
    static const char huge[] = "\x16\x03\x01\xff\xff\x01\x00";
    CHECK_EQ_INT(feed_fresh(ctx, huge, sizeof(huge) - 1, NULL), -EPROTO);
    /* An SSLv2-style hello. */
    static const char v2[] = "\x80\x09\x01\x00\x02\x00\x00\x00\x00\x00\x00";
    CHECK_EQ_INT(feed_fresh(ctx, v2, sizeof(v2) - 1, NULL), -EPROTO);
    /* An alert instead of a ClientHello. */
    static const char alert[] = "\x15\x03\x01\x00\x02\x02\x28";
    CHECK_EQ_INT(feed_fresh(ctx, alert, sizeof(alert) - 1, NULL), -EPROTO);

    /* A truncated ClientHello: no error, no output, not done (the caller's timeout acts). */
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    struct client *c = client_new(cc, "same.test", NULL, NULL);
    SSL_do_handshake(c->ssl);
    char hello[4096];
    int n = BIO_read(c->wb, hello, sizeof(hello));
    CHECK(n > 100);
    uint32_t outb = 1;
    CHECK_EQ_INT(feed_fresh(ctx, hello, (size_t)n / 2, &outb), 0);
    CHECK_EQ_INT(outb, 0);
    CHECK_EQ_INT(feed_fresh(ctx, hello, 3, &outb), 0);
    /* The whole ClientHello answers with a flight. */
    CHECK_EQ_INT(feed_fresh(ctx, hello, (size_t)n, &outb), 0);
    CHECK(outb > 500);
    client_free(c);

    /* The same ClientHello followed by garbage fails. */
    c = client_new(cc, "same.test", NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    CHECK_EQ_INT(handshake(c, t, false), 0);
    struct rlb_bq plain = {0}, out = {0};
    CHECK_EQ_INT(rlb_tls_recv(t, &sp, garbage, 64, &plain, &out), -EPROTO);
    CHECK(rlb_tls_handshake_done(t));
    CHECK(rlb_tls_failed(t));
    CHECK_EQ_INT(rlb_tls_send(t, &sp, &plain, 0, &out), -EPROTO);
    rlb_bq_clear(&sp, &out);
    rlb_tls_free(t);
    client_free(c);
    SSL_CTX_free(cc);
    rlb_tls_ctx_free(ctx);
}

TEST(byte_by_byte)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *c13 = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL);
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL);
    SSL_CTX *ccs[] = {c13, c12};
    for (int i = 0; i < 2; i++) {
        struct client *c = client_new(ccs[i], "same.test", "\x08http/1.1", NULL);
        struct rlb_tls *t = rlb_tls_new(ctx);
        CHECK_EQ_INT(handshake(c, t, true), 0);
        CHECK_EQ_INT(served(c), C_EC_SAME);
        /* And a request delivered byte by byte. */
        static const char req[] = "GET /x HTTP/1.1\r\nHost: same.test\r\n\r\n";
        SSL_write(c->ssl, req, (int)sizeof(req) - 1);
        struct rlb_bq plain = {0};
        CHECK_EQ_INT(pump(c, t, &plain, true), 0);
        CHECK_EQ_INT(plain.bytes, sizeof(req) - 1);
        char buf[sizeof(req)];
        rlb_bq_copyout(&plain, buf, plain.bytes);
        CHECK(memcmp(buf, req, sizeof(req) - 1) == 0);
        rlb_bq_clear(&sp, &plain);
        rlb_tls_free(t);
        client_free(c);
    }
    SSL_CTX_free(c13);
    SSL_CTX_free(c12);
    rlb_tls_ctx_free(ctx);
}

TEST(engine_outlives_ctx)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    struct client *c = client_new(cc, "same.test", NULL, NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    rlb_tls_ctx_free(ctx); /* the snapshot goes away mid-handshake (a reload) */
    CHECK_EQ_INT(handshake(c, t, false), 0);
    struct rlb_bq plain = {0}, out = {0};
    rlb_bq_push(&plain, rlb_seg_static(&sp, "hello", 5));
    CHECK_EQ_INT(rlb_tls_send(t, &sp, &plain, 0, &out), 0);
    for (struct rlb_seg *s = out.head; s; s = s->next)
        BIO_write(c->rb, s->data, (int)s->len);
    rlb_bq_clear(&sp, &out);
    char buf[8];
    CHECK_EQ_INT(client_read_all(c, buf, 5), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    rlb_tls_free(t);
    client_free(c);
    SSL_CTX_free(cc);
}

/* Several threads handshake (and resume) against one context while keys rotate. */
struct mt_arg {
    struct rlb_tls_ctx *ctx;
    int ok;
};

static void *mt_worker(void *p)
{
    struct mt_arg *a = p;
    struct rlb_segpool mysp = {0};
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
    SSL_SESSION *sess = NULL;
    for (int i = 0; i < 40; i++) {
        struct client *c = client_new(cc, (i & 1) ? "same.test" : "a.wild.test", NULL,
                                      (i & 1) ? sess : NULL);
        struct rlb_tls *t = rlb_tls_new(a->ctx);
        struct rlb_bq plain = {0}, out = {0};
        int done = 0;
        for (int k = 0; k < 20 && !done; k++) {
            int r = SSL_do_handshake(c->ssl);
            char buf[65536];
            int n;
            while ((n = BIO_read(c->wb, buf, sizeof(buf))) > 0)
                if (rlb_tls_recv(t, &mysp, buf, (size_t)n, &plain, &out) < 0)
                    k = 100;
            for (struct rlb_seg *s = out.head; s; s = s->next)
                BIO_write(c->rb, s->data, (int)s->len);
            rlb_bq_clear(&mysp, &out);
            done = r == 1 && rlb_tls_handshake_done(t);
        }
        if (done) {
            a->ok++;
            char x;
            SSL_read(c->ssl, &x, 1);
            if (i & 1) {
                SSL_SESSION_free(sess);
                sess = SSL_get1_session(c->ssl);
            }
        }
        ERR_clear_error();
        rlb_bq_clear(&mysp, &plain);
        rlb_tls_free(t);
        client_free(c);
    }
    SSL_SESSION_free(sess);
    SSL_CTX_free(cc);
    rlb_segpool_destroy(&mysp);
    return NULL;
}

TEST(threads_share_ctx)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    pthread_t th[4];
    struct mt_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct mt_arg){.ctx = ctx};
        pthread_create(&th[i], NULL, mt_worker, &args[i]);
    }
    for (int i = 0; i < 20; i++) {
        rlb_tls_ticket_keys_rotate();
        usleep(1000);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(args[i].ok, 40);
    }
    rlb_tls_ctx_free(ctx);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(thousands_of_certificates)
{
    enum { N = 1000 };
    struct rlb_certificate_cfg *certs = calloc(N + 1, sizeof(*certs));
    EVP_PKEY *k = gen_key("P-256");
    char keypath[160];
    snprintf(keypath, sizeof(keypath), "%s/bulk.key", tmpdir);
    write_pem(keypath, NULL, NULL, k);
    certs[0].cert = fx[C_DEFAULT].cert;
    certs[0].key = fx[C_DEFAULT].key;
    for (int i = 1; i <= N; i++) {
        char cn[64], san[160], path[160];
        snprintf(cn, sizeof(cn), "h%d.bulk.test", i);
        snprintf(san, sizeof(san), "DNS:h%d.bulk.test,DNS:*.h%d.bulk.test", i, i);
        snprintf(path, sizeof(path), "%s/bulk%d.pem", tmpdir, i);
        X509 *x = make_cert(k, cn, san, 365, NULL, NULL);
        write_pem(path, x, NULL, NULL);
        X509_free(x);
        certs[i].cert = strdup(path);
        certs[i].key = keypath;
    }
    EVP_PKEY_free(k);
    struct rlb_listener_cfg lc = {.name = (char *)"bulk", .certificates = certs,
                                  .n_certificates = N + 1};
    char err[512];
    double t0 = now_s();
    struct rlb_tls_ctx *ctx = rlb_tls_ctx_new(&lc, err, sizeof(err));
    double t1 = now_s();
    CHECK(ctx != NULL);
    if (ctx) {
        CHECK_EQ_INT(rlb_tls_ctx_name_count(ctx), 2 * N + 1);
        CHECK_EQ_STR(rlb_tls_ctx_select(ctx, "h567.bulk.test"), certs[567].cert);
        CHECK_EQ_STR(rlb_tls_ctx_select(ctx, "x.h999.bulk.test"), certs[999].cert);
        CHECK_EQ_STR(rlb_tls_ctx_select(ctx, "nope.bulk.test"), certs[0].cert);
        enum { LOOKUPS = 200000 };
        int hits = 0;
        double t2 = now_s();
        for (int i = 0; i < LOOKUPS; i++) {
            char name[64];
            snprintf(name, sizeof(name), "%sh%d.bulk.test", (i & 1) ? "w." : "", i % N + 1);
            hits += rlb_tls_ctx_select(ctx, name) != certs[0].cert;
        }
        double t3 = now_s();
        CHECK_EQ_INT(hits, LOOKUPS);
        printf("     %d certificates: context built in %.0f ms; %.0f ns per SNI lookup\n", N + 1,
               (t1 - t0) * 1e3, (t3 - t2) * 1e9 / LOOKUPS);
        /* A real handshake against the big table. */
        SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL);
        struct client *c = client_new(cc, "h321.bulk.test", NULL, NULL);
        struct rlb_tls *t = rlb_tls_new(ctx);
        CHECK_EQ_INT(handshake(c, t, false), 0);
        struct rlb_tls_info info;
        rlb_tls_get_info(t, &info);
        CHECK_EQ_STR(info.cert_path, certs[321].cert);
        rlb_tls_free(t);
        client_free(c);
        SSL_CTX_free(cc);
        rlb_tls_ctx_free(ctx);
    } else {
        fprintf(stderr, "%s\n", err);
    }
    for (int i = 1; i <= N; i++)
        free(certs[i].cert);
    free(certs);
}

static size_t heap_allocated(void)
{
#ifdef RINGLB_HAVE_JEMALLOC
    uint64_t epoch = 1;
    size_t sz = sizeof(epoch);
    mallctl("epoch", &epoch, &sz, &epoch, sz);
    size_t allocated = 0;
    sz = sizeof(allocated);
    if (mallctl("stats.allocated", &allocated, &sz, NULL, 0) != 0)
        return 0;
    return allocated;
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
#endif
}

/* Handshake + one request/response, leaving the engine idle. */
static struct rlb_tls *idle_engine(struct rlb_tls_ctx *ctx, SSL_CTX *cc)
{
    struct client *c = client_new(cc, "same.test", "\x08http/1.1", NULL);
    struct rlb_tls *t = rlb_tls_new(ctx);
    if (handshake(c, t, false) != 0) {
        client_free(c);
        return t;
    }
    static const char req[] = "GET / HTTP/1.1\r\nHost: same.test\r\nUser-Agent: test\r\n\r\n";
    SSL_write(c->ssl, req, (int)sizeof(req) - 1);
    struct rlb_bq plain = {0}, out = {0};
    pump(c, t, &plain, false);
    rlb_bq_clear(&sp, &plain);
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    rlb_bq_push(&plain, rlb_seg_static(&sp, resp, sizeof(resp) - 1));
    rlb_tls_send(t, &sp, &plain, 0, &out);
    rlb_bq_clear(&sp, &out);
    client_free(c);
    return t;
}

static void measure_idle(const char *label, struct rlb_tls_ctx *ctx, SSL_CTX *cc, int n,
                         size_t limit)
{
    rlb_tls_free(idle_engine(ctx, cc)); /* warm OpenSSL's caches */
    size_t before = heap_allocated();
    if (before == 0)
        n = 20; /* no heap statistics (sanitizer build): just exercise the path */
    struct rlb_tls **ts = calloc((size_t)n, sizeof(*ts));
    for (int i = 0; i < n; i++)
        ts[i] = idle_engine(ctx, cc);
    size_t after = heap_allocated();
    int done = 0;
    for (int i = 0; i < n; i++)
        done += rlb_tls_handshake_done(ts[i]);
    CHECK_EQ_INT(done, n);
    if (before && after > before) {
        size_t per = (after - before) / (size_t)n;
        printf("     %s: %d idle engines, %zu bytes of heap each (sizeof(struct rlb_tls) = %zu)\n",
               label, n, per, sizeof(struct rlb_tls));
        CHECK(per <= limit);
    } else {
        printf("     %s: heap statistics unavailable in this build\n", label);
    }
    for (int i = 0; i < n; i++)
        rlb_tls_free(ts[i]);
    free(ts);
}

TEST(idle_memory)
{
    struct rlb_tls_ctx *ctx = ctx_all(NULL);
    SSL_CTX *c13 = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL);
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL);
    /* SPEC section 8: <= 16 KiB per idle TLS connection. */
    measure_idle("TLS 1.3", ctx, c13, 1000, 16384);
    measure_idle("TLS 1.2", ctx, c12, 300, 16384);
    SSL_CTX_free(c13);
    SSL_CTX_free(c12);
    rlb_tls_ctx_free(ctx);
}

int main(void)
{
    fixtures_make();
    RUN(ctx_builds_names);
    RUN(ctx_errors);
    RUN(sni_selection);
    RUN(chain_is_sent);
    RUN(info_and_alpn);
    RUN(application_data);
    RUN(session_resumption);
    RUN(security_policies);
    RUN(bad_input_fails_fast);
    RUN(byte_by_byte);
    RUN(engine_outlives_ctx);
    RUN(threads_share_ctx);
    RUN(thousands_of_certificates);
    RUN(idle_memory);
    rlb_segpool_destroy(&sp);
    fixtures_remove();
    return TEST_SUMMARY();
}
