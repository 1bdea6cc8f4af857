/* tls.c — TLS termination: server contexts (certificates, SNI table, ALB security policies,
 * ticket keys) and the per-connection engine pumped by the caller's I/O (see tls.h).
 *
 * Engine data flow. Each SSL object has one custom BIO (both directions) whose state lives on
 * the caller's stack for the duration of one call (struct rlb_tls_io): reads copy straight from
 * the ciphertext the caller passed in, and report "retry" once it is exhausted, so every call
 * leaves nothing in the BIO; writes append to the caller's output queue, filling the block
 * opened during this call before opening another. Because input is only ever refused when
 * exhausted, SSL_ERROR_WANT_READ always means "all input consumed, need more", and writes never
 * fail except on ENOMEM, so SSL_ERROR_WANT_WRITE cannot happen.
 *
 * Handshake states: new → (ClientHello parsed; the certificate callback picks the certificate
 * for the SNI name and the client's capabilities) → done (TLS_F_DONE) → optionally
 * TLS_F_SHUT (our close_notify queued) / TLS_F_PEER_CLOSED (theirs received). Any fatal error
 * sets TLS_F_FAILED for good.
 *
 * Ticket keys are process-wide (all listeners, all snapshots), rotated lazily from the ticket
 * callback under a mutex taken once per handshake that issues or redeems a ticket.
 */
#include "ringlb/tls.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum {
    TLS_F_DONE = 1u << 0,        /* handshake complete */
    TLS_F_FAILED = 1u << 1,      /* fatal error: refuse everything */
    TLS_F_PEER_CLOSED = 1u << 2, /* close_notify received */
    TLS_F_SHUT = 1u << 3,        /* our close_notify queued */
    TLS_F_RESUMED = 1u << 4,     /* session resumed */
};

#define TLS_RECORD 16384u            /* max plaintext per record */
#define TLS_RECORD_OVERHEAD 96u      /* header + nonce + MAC/tag + padding, rounded up */
#define TLS_OUT_MIN (4096u - 8u)     /* smallest output block (one 4 KiB allocation) */
#define TLS_OUT_MAX (64u * 1024u)    /* largest output block when encrypting a long run */
#define TLS_IN_BLOCK (16384u - 8u)   /* plaintext block for decryption */
#define TLS_IN_MIN_ROOM 2048u        /* open a new plaintext block below this much room */
#define TLS_IN_SHRINK 4096u          /* a lone small plaintext run is copied to a tight block */
#define TLS_MAX_NAME 253u

/* ---- contexts ------------------------------------------------------------------------------ */

enum cert_kind { KIND_ECDSA = 0, KIND_RSA = 1, KIND_OTHER = 2 };

/* One configured certificate. Owner: its context (immutable after rlb_tls_ctx_new). */
struct rlb_tls_cert {
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;    /* intermediates, possibly empty */
    char *path;               /* config `cert` */
    char *name;               /* first DNS name (or CN), for logs */
    int kind;                 /* enum cert_kind */
    int bits;
    uint32_t index;           /* position in the configuration */
};

/* A name of the SNI table: its candidates are cand[first .. first + count), best first. */
struct name_slot {
    char *name;               /* lower case; "*.example.com" for wildcards; NULL = empty slot */
    uint32_t hash;
    uint32_t first;
    uint32_t count;
};

/* Owner: the snapshot that built it plus every engine (refcount); read-only once built. */
struct rlb_tls_ctx {
    atomic_uint refs;
    SSL_CTX *sc;
    struct rlb_tls_cert *certs; size_t n_certs;   /* certs[0] is the default */
    struct name_slot *slots; uint32_t mask;       /* open addressing, power-of-two size */
    size_t n_names;
    uint32_t *cand;
};

/* An ALB security policy. */
struct policy {
    const char *name;
    int min_version, max_version;
    int seclevel;
    const char *ciphers12;    /* TLS <= 1.2 cipher list, server preference order; NULL = none */
};

#define SUITES_TLS13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* The AWS "Security policies for your Application Load Balancer" tables, in their order. */
static const struct policy POLICIES[] = {
    {"ELBSecurityPolicy-TLS13-1-2-2021-06", TLS1_2_VERSION, TLS1_3_VERSION, 1,
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
     "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
     "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
     "AES128-GCM-SHA256:AES128-SHA256:AES256-GCM-SHA384:AES256-SHA256"},
    {"ELBSecurityPolicy-TLS13-1-3-2021-06", TLS1_3_VERSION, TLS1_3_VERSION, 1, NULL},
    {"ELBSecurityPolicy-2016-08", TLS1_VERSION, TLS1_2_VERSION, 0,
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
     "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
     "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:"
     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
     "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:"
     "ECDHE-RSA-AES256-SHA:ECDHE-ECDSA-AES256-SHA:"
     "AES128-GCM-SHA256:AES128-SHA256:AES128-SHA:"
     "AES256-GCM-SHA384:AES256-SHA256:AES256-SHA"},
    {"ELBSecurityPolicy-FS-1-2-Res-2020-10", TLS1_2_VERSION, TLS1_2_VERSION, 1,
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"},
};

#define DEFAULT_POLICY "ELBSecurityPolicy-TLS13-1-2-2021-06"

/* ---- process-wide state: BIO method, ticket keys ------------------------------------------ */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *bio_method;
static EVP_CIPHER *ticket_cipher;   /* AES-256-CBC, fetched once */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static struct {
    pthread_mutex_t mu;
    bool ready;
    bool have_prev;
    uint64_t rotated_s;      /* CLOCK_MONOTONIC seconds of the last rotation */
    struct ticket_key cur, prev;
} tickets = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

/* With tickets.mu held: make a fresh current key, keeping the old one as previous. */
static int ticket_keys_rotate_locked(void)
{
    struct ticket_key k;
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
        RAND_bytes(k.hmac, sizeof(k.hmac)) != 1)
        return -EIO;
    if (tickets.ready) {
        tickets.prev = tickets.cur;
        tickets.have_prev = true;
    }
    tickets.cur = k;
    tickets.ready = true;
    tickets.rotated_s = mono_s();
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

void rlb_tls_ticket_keys_rotate(void)
{
    pthread_mutex_lock(&tickets.mu);
    ticket_keys_rotate_locked();
    pthread_mutex_unlock(&tickets.mu);
}

/* Copy the key to encrypt with (rotating first when due). Returns 0 or -EIO. */
static int ticket_key_current(struct ticket_key *out)
{
    int ret = 0;
    pthread_mutex_lock(&tickets.mu);
    if (!tickets.ready || mono_s() - tickets.rotated_s >= RLB_TLS_TICKET_ROTATE_S)
        ret = ticket_keys_rotate_locked();
    if (ret == 0)
        *out = tickets.cur;
    pthread_mutex_unlock(&tickets.mu);
    return ret;
}

/* Find the key named `name`: 1 = current, 2 = previous (renew the ticket), 0 = unknown. */
static int ticket_key_find(const unsigned char *name, struct ticket_key *out)
{
    int which = 0;
    pthread_mutex_lock(&tickets.mu);
    if (tickets.ready && memcmp(name, tickets.cur.name, sizeof(tickets.cur.name)) == 0) {
        *out = tickets.cur;
        which = 1;
    } else if (tickets.have_prev &&
               memcmp(name, tickets.prev.name, sizeof(tickets.prev.name)) == 0) {
        *out = tickets.prev;
        which = 2;
    }
    pthread_mutex_unlock(&tickets.mu);
    return which;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb: AES-256-CBC + HMAC-SHA256 with the rotating keys. */
static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    struct ticket_key k;
    int ret;
    if (enc) {
        if (ticket_key_current(&k) != 0)
            return -1;
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(ticket_cipher)) != 1) {
            OPENSSL_cleanse(&k, sizeof(k));
            return -1;
        }
        memcpy(key_name, k.name, sizeof(k.name));
        ret = EVP_EncryptInit_ex(ectx, ticket_cipher, NULL, k.aes, iv) == 1 ? 1 : -1;
    } else {
        int which = ticket_key_find(key_name, &k);
        if (which == 0)
            return 0; /* unknown or expired key: full handshake, new ticket */
        /* 2 = valid, and issue a fresh ticket: without it OpenSSL sends no new TLS 1.3 ticket
         * after a resumption, and clients that use each ticket once (as TLS 1.3 advises)
         * would fall back to a full handshake every other connection. */
        (void)which;
        ret = EVP_DecryptInit_ex(ectx, ticket_cipher, NULL, k.aes, iv) == 1 ? 2 : -1;
    }
    if (ret > 0) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_MAC_CTX_set_params(hctx, params) != 1)
            ret = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return ret;
}

/* ---- the BIO ------------------------------------------------------------------------------ */

/* The caller's buffers during one rlb_tls_* call. Lives on the caller's stack. */
struct rlb_tls_io {
    const char *in;            /* ciphertext not yet read by OpenSSL */
    size_t in_len;
    struct rlb_segpool *sp;
    struct rlb_bq *out;        /* ciphertext produced */
    struct rlb_block *wblk;    /* output block being filled during this call */
    uint32_t wused;
    bool wref;                 /* we still hold wblk's creation reference (no segment yet) */
    int err;                   /* -ENOMEM from a write */
};

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written);

/* Make room for `need` contiguous bytes in the current output block, opening a block of at
 * least `cap` bytes when needed. Returns 0 or -ENOMEM. */
static int out_reserve(struct rlb_tls_io *io, size_t need, size_t cap)
{
    if (io->wblk && io->wblk->cap - io->wused >= need)
        return 0;
    if (need > UINT32_MAX / 2)
        return -ENOMEM;
    if (cap < need)
        cap = need;
    if (cap < TLS_OUT_MIN)
        cap = TLS_OUT_MIN;
    struct rlb_block *b = rlb_block_new((uint32_t)cap);
    if (!b)
        return -ENOMEM;
    if (io->wref)
        rlb_block_unref(io->wblk);
    io->wblk = b;
    io->wused = 0;
    io->wref = true;
    return 0;
}

/* Append `len` bytes to io->out, extending the tail segment when it ends where the current
 * block's free space starts. Returns 0 or -ENOMEM. */
static int out_append(struct rlb_tls_io *io, const char *data, size_t len)
{
    while (len > 0) {
        if (!io->wblk || io->wused == io->wblk->cap) {
            int ret = out_reserve(io, len < TLS_OUT_MIN ? len : 1, len);
            if (ret < 0)
                return ret;
        }
        struct rlb_block *b = io->wblk;
        size_t n = b->cap - io->wused;
        if (n > len)
            n = len;
        char *dst = b->data + io->wused;
        memcpy(dst, data, n);
        struct rlb_seg *tail = io->out->tail;
        if (tail && tail->bid < 0 && tail->block == b && tail->data + tail->len == dst) {
            tail->len += (uint32_t)n;
            io->out->bytes += (uint32_t)n;
        } else {
            if (!io->wref)
                b->refs++;
            struct rlb_seg *s = rlb_seg_from_block(io->sp, b, dst, (uint32_t)n);
            if (!s) {
                if (!io->wref)
                    b->refs--;
                return -ENOMEM;
            }
            io->wref = false;
            rlb_bq_push(io->out, s);
        }
        io->wused += (uint32_t)n;
        data += n;
        len -= n;
    }
    return 0;
}

static int bio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    struct rlb_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *written = 0;
    if (!t || !t->io || !t->io->out) {
        BIO_set_retry_write(b);
        return 0;
    }
    int ret = out_append(t->io, data, len);
    if (ret < 0) {
        t->io->err = ret;
        return 0;
    }
    *written = len;
    return 1;
}

static int bio_read_ex(BIO *b, char *buf, size_t len, size_t *readbytes)
{
    struct rlb_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *readbytes = 0;
    if (!t || !t->io || t->io->in_len == 0) {
        BIO_set_retry_read(b);
        return 0;
    }
    struct rlb_tls_io *io = t->io;
    size_t n = len < io->in_len ? len : io->in_len;
    memcpy(buf, io->in, n);
    io->in += n;
    io->in_len -= n;
    *readbytes = n;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

static void global_init(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringlb");
    if (bio_method) {
        BIO_meth_set_write_ex(bio_method, bio_write_ex);
        BIO_meth_set_read_ex(bio_method, bio_read_ex);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
        BIO_meth_set_destroy(bio_method, bio_destroy);
    }
    ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

/* ---- the SNI table ------------------------------------------------------------------------ */

static uint32_t name_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Normalise a DNS name into `out` (lower case, no trailing dot). Returns its length, or 0 when
 * it is empty, too long or holds bytes no host name has. Wildcards pass when allow_star. */
static size_t name_norm(const char *in, size_t len, char *out, bool allow_star)
{
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > TLS_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '*') {
            /* Only a whole first label: "*.rest". */
            if (!allow_star || i != 0 || len < 3 || in[1] != '.')
                return 0;
        } else if (!(isalnum(ch) || ch == '-' || ch == '.' || ch == '_')) {
            return 0;
        }
        out[i] = (char)tolower(ch);
    }
    out[len] = '\0';
    return len;
}

static const struct name_slot *table_find(const struct rlb_tls_ctx *c, const char *name,
                                          size_t len)
{
    if (!c->slots)
        return NULL;
    uint32_t h = name_hash(name, len);
    for (uint32_t i = h & c->mask;; i = (i + 1) & c->mask) {
        const struct name_slot *s = &c->slots[i];
        if (!s->name)
            return NULL;
        if (s->hash == h && strcmp(s->name, name) == 0)
            return s;
    }
}

/* What the client can verify. */
struct client_caps {
    bool ecdsa;
};

static bool cert_fits(const struct rlb_tls_cert *e, const struct client_caps *caps)
{
    return e->kind != KIND_ECDSA || caps->ecdsa;
}

/* The first candidate of `slot` the client can use (any candidate when none fits and
 * `fallback`), or NULL. */
static const struct rlb_tls_cert *slot_pick(const struct rlb_tls_ctx *c,
                                            const struct name_slot *slot,
                                            const struct client_caps *caps, bool fallback)
{
    if (!slot)
        return NULL;
    for (uint32_t i = 0; i < slot->count; i++) {
        const struct rlb_tls_cert *e = &c->certs[c->cand[slot->first + i]];
        if (cert_fits(e, caps))
            return e;
    }
    return fallback ? &c->certs[c->cand[slot->first]] : NULL;
}

static const struct rlb_tls_cert *select_cert(const struct rlb_tls_ctx *c, const char *sni,
                                              const struct client_caps *caps)
{
    char name[TLS_MAX_NAME + 3];
    size_t len = sni ? name_norm(sni, strlen(sni), name + 1, false) : 0;
    if (len > 0) {
        const struct name_slot *exact = table_find(c, name + 1, len);
        const struct name_slot *wild = NULL;
        const char *dot = memchr(name + 1, '.', len);
        if (dot && dot > name + 1 && dot[1] != '\0') {
            /* "a.b.c" → "*.b.c", built in place in front of the dot. */
            char *w = (char *)dot - 1;
            *w = '*';
            wild = table_find(c, w, len - (size_t)(w - (name + 1)));
        }
        const struct rlb_tls_cert *e = slot_pick(c, exact, caps, false);
        if (!e)
            e = slot_pick(c, wild, caps, false);
        if (!e)
            e = slot_pick(c, exact, caps, true);
        if (!e)
            e = slot_pick(c, wild, caps, true);
        if (e)
            return e;
    }
    return &c->certs[0];
}

/* A (name, certificate) pair while building the table. */
struct name_pair {
    char *name;
    uint32_t cert;
};

/* Preference between two certificates of one name: negative when a is better. */
static int cert_better(const struct rlb_tls_cert *a, const struct rlb_tls_cert *b)
{
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->bits != b->bits)
        return a->bits > b->bits ? -1 : 1;
    int day = 0, sec = 0;
    /* diff = b.notAfter - a.notAfter: positive when b expires later (b better). */
    if (ASN1_TIME_diff(&day, &sec, X509_get0_notAfter(a->leaf), X509_get0_notAfter(b->leaf)) &&
        (day != 0 || sec != 0))
        return (day > 0 || (day == 0 && sec > 0)) ? 1 : -1;
    return a->index < b->index ? -1 : (a->index > b->index ? 1 : 0);
}

static int pair_cmp(const void *pa, const void *pb, void *arg)
{
    const struct name_pair *a = pa, *b = pb;
    const struct rlb_tls_cert *certs = arg;
    int r = strcmp(a->name, b->name);
    if (r != 0)
        return r;
    return cert_better(&certs[a->cert], &certs[b->cert]);
}

static int pairs_add(struct name_pair **pairs, size_t *n, size_t *cap, const char *raw,
                     size_t len, uint32_t cert)
{
    char buf[TLS_MAX_NAME + 1];
    if (memchr(raw, '\0', len))
        return 0;
    size_t nl = name_norm(raw, len, buf, true);
    if (nl == 0)
        return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct name_pair *np = realloc(*pairs, nc * sizeof(*np));
        if (!np)
            return -ENOMEM;
        *pairs = np;
        *cap = nc;
    }
    char *dup = strdup(buf);
    if (!dup)
        return -ENOMEM;
    (*pairs)[*n].name = dup;
    (*pairs)[*n].cert = cert;
    (*n)++;
    return 0;
}

/* Collect the names of certificate `e`: DNS SANs, else the last subject CN. */
static int cert_names(struct rlb_tls_cert *e, struct name_pair **pairs, size_t *n, size_t *cap)
{
    size_t before = *n;
    GENERAL_NAMES *gens = X509_get_ext_d2i(e->leaf, NID_subject_alt_name, NULL, NULL);
    int ret = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && ret == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const ASN1_IA5STRING *s = g->d.dNSName;
        ret = pairs_add(pairs, n, cap, (const char *)ASN1_STRING_get0_data(s),
                        (size_t)ASN1_STRING_length(s), e->index);
    }
    GENERAL_NAMES_free(gens);
    bool had_dns_san = *n > before;
    if (ret == 0 && !had_dns_san) {
        const X509_NAME *subj = X509_get_subject_name(e->leaf);
        int idx = -1, last = -1;
        while ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, idx)) >= 0)
            last = idx;
        if (last >= 0) {
            unsigned char *utf8 = NULL;
            int len = ASN1_STRING_to_UTF8(
                &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last)));
            if (len > 0)
                ret = pairs_add(pairs, n, cap, (const char *)utf8, (size_t)len, e->index);
            OPENSSL_free(utf8);
        }
    }
    if (ret == 0 && *n > before && !e->name) {
        e->name = strdup((*pairs)[before].name);
        if (!e->name)
            ret = -ENOMEM;
    }
    return ret;
}

static int table_build(struct rlb_tls_ctx *c)
{
    struct name_pair *pairs = NULL;
    size_t n = 0, cap = 0;
    int ret = 0;
    for (size_t i = 0; i < c->n_certs && ret == 0; i++)
        ret = cert_names(&c->certs[i], &pairs, &n, &cap);
    if (ret == 0 && n > 0) {
        qsort_r(pairs, n, sizeof(*pairs), pair_cmp, c->certs);
        size_t size = 16;
        while (size < n * 2)
            size *= 2;
        c->slots = calloc(size, sizeof(*c->slots));
        c->cand = malloc(n * sizeof(*c->cand));
        if (!c->slots || !c->cand)
            ret = -ENOMEM;
        c->mask = (uint32_t)size - 1;
        uint32_t nc = 0;
        for (size_t i = 0; i < n && ret == 0;) {
            size_t j = i;
            struct name_slot slot = {.name = pairs[i].name, .first = nc};
            for (; j < n && strcmp(pairs[j].name, pairs[i].name) == 0; j++) {
                /* A certificate naming the same host twice counts once. */
                if (j == i || pairs[j].cert != pairs[j - 1].cert)
                    c->cand[nc++] = pairs[j].cert;
                if (j != i) {
                    free(pairs[j].name);
                    pairs[j].name = NULL;
                }
            }
            slot.count = nc - slot.first;
            slot.hash = name_hash(slot.name, strlen(slot.name));
            uint32_t k = slot.hash & c->mask;
            while (c->slots[k].name)
                k = (k + 1) & c->mask;
            c->slots[k] = slot;
            pairs[i].name = NULL;
            c->n_names++;
            i = j;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(pairs[i].name);
    free(pairs);
    return ret;
}

/* ---- callbacks ------------------------------------------------------------------------------ */

static struct rlb_tls *engine_of(const SSL *s)
{
    BIO *b = SSL_get_rbio(s);
    return b ? BIO_get_data(b) : NULL;
}

static void client_caps_of(SSL *s, struct client_caps *caps)
{
    bool tls13 = SSL_version(s) >= TLS1_3_VERSION;
    int n = SSL_get_sigalgs(s, -1, NULL, NULL, NULL, NULL, NULL);
    bool sig_ok = (n == 0 && !tls13); /* TLS <= 1.2 without the extension: implied by cipher */
    for (int i = 0; i < n && !sig_ok; i++) {
        int sign = 0;
        SSL_get_sigalgs(s, i, &sign, NULL, NULL, NULL, NULL);
        if (sign == EVP_PKEY_EC)
            sig_ok = true;
    }
    caps->ecdsa = sig_ok;
    if (sig_ok && !tls13) {
        caps->ecdsa = false;
        STACK_OF(SSL_CIPHER) *cl = SSL_get_client_ciphers(s);
        for (int i = 0; cl && i < sk_SSL_CIPHER_num(cl); i++) {
            if (SSL_CIPHER_get_auth_nid(sk_SSL_CIPHER_value(cl, i)) == NID_auth_ecdsa) {
                caps->ecdsa = true;
                break;
            }
        }
    }
}

/* Certificate callback: runs for every full handshake once the ClientHello is parsed (SNI,
 * signature algorithms and ciphers known, version negotiated). */
static int cert_cb(SSL *s, void *arg)
{
    const struct rlb_tls_ctx *c = arg;
    struct client_caps caps;
    client_caps_of(s, &caps);
    const struct rlb_tls_cert *e =
        select_cert(c, SSL_get_servername(s, TLSEXT_NAMETYPE_host_name), &caps);
    if (SSL_use_cert_and_key(s, e->leaf, e->key, e->chain, 1) != 1)
        return 0;
    struct rlb_tls *t = engine_of(s);
    if (t)
        t->cert = e;
    return 1;
}

/* Accept every server name (unknown ones get the default certificate), so that OpenSSL records
 * it in TLS <= 1.2 sessions and acknowledges it. */
static int servername_cb(SSL *s, int *alert, void *arg)
{
    (void)s;
    (void)alert;
    (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN */
}

/* ---- context construction ----------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    if (e && n >= 0 && (size_t)n < errlen) {
        const char *why = ERR_reason_error_string(e);
        if (why)
            snprintf(err + n, errlen - (size_t)n, " (%s)", why);
    }
    ERR_clear_error();
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static BIO *open_pem(const char *path, char *err, size_t errlen, const char *what)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        ERR_clear_error();
        set_err(err, errlen, "%s %s: %s", what, path, strerror(e));
        return NULL;
    }
    BIO *b = BIO_new_fp(f, BIO_CLOSE);
    if (!b) {
        fclose(f);
        set_err(err, errlen, "%s %s: out of memory", what, path);
    }
    return b;
}

static int cert_load(struct rlb_tls_cert *e, const struct rlb_certificate_cfg *cc,
                     uint32_t index, char *err, size_t errlen)
{
    e->index = index;
    e->path = strdup(cc->cert);
    if (!e->path) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    BIO *b = open_pem(cc->cert, err, errlen, "certificate");
    if (!b)
        return -EINVAL;
    ERR_clear_error();
    e->leaf = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (!e->leaf) {
        BIO_free(b);
        set_err(err, errlen, "certificate %s: no PEM certificate", cc->cert);
        return -EINVAL;
    }
    e->chain = sk_X509_new_null();
    if (!e->chain) {
        BIO_free(b);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL) {
        if (!sk_X509_push(e->chain, x)) {
            X509_free(x);
            BIO_free(b);
            set_err(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    BIO_free(b);
    unsigned long le = ERR_peek_last_error();
    if (le && !(ERR_GET_LIB(le) == ERR_LIB_PEM && ERR_GET_REASON(le) == PEM_R_NO_START_LINE)) {
        set_err(err, errlen, "certificate %s: unreadable chain certificate", cc->cert);
        return -EINVAL;
    }
    ERR_clear_error();

    b = open_pem(cc->key, err, errlen, "key");
    if (!b)
        return -EINVAL;
    e->key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!e->key) {
        set_err(err, errlen, "key %s: no usable PEM private key (encrypted keys are not supported)",
                cc->key);
        return -EINVAL;
    }
    if (X509_check_private_key(e->leaf, e->key) != 1) {
        set_err(err, errlen, "key %s does not match certificate %s", cc->key, cc->cert);
        return -EINVAL;
    }
    int id = EVP_PKEY_get_base_id(e->key);
    e->kind = id == EVP_PKEY_EC ? KIND_ECDSA
              : (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) ? KIND_RSA
                                                                : KIND_OTHER;
    e->bits = EVP_PKEY_get_bits(e->key);
    return 0;
}

static const struct policy *policy_find(const char *name)
{
    if (!name)
        name = DEFAULT_POLICY;
    for (size_t i = 0; i < sizeof(POLICIES) / sizeof(POLICIES[0]); i++)
        if (strcmp(POLICIES[i].name, name) == 0)
            return &POLICIES[i];
    return NULL;
}

static SSL_CTX *server_ctx_new(const struct policy *p, const char *listener,
                               struct rlb_tls_ctx *c, char *err, size_t errlen)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
    if (!sc) {
        set_err(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_security_level(sc, p->seclevel);
    if (SSL_CTX_set_min_proto_version(sc, p->min_version) != 1 ||
        SSL_CTX_set_max_proto_version(sc, p->max_version) != 1 ||
        (p->ciphers12 && SSL_CTX_set_cipher_list(sc, p->ciphers12) != 1) ||
        SSL_CTX_set_ciphersuites(sc, SUITES_TLS13) != 1 ||
        SSL_CTX_set1_groups_list(sc, "X25519:P-256:P-384:P-521") != 1) {
        set_err(err, errlen, "security policy %s: not supported by this OpenSSL", p->name);
        SSL_CTX_free(sc);
        return NULL;
    }
    SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_clear_options(sc, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(sc, RLB_TLS_SESSION_LIFETIME_S);
    SSL_CTX_set_num_tickets(sc, 1);
    SSL_CTX_set_max_early_data(sc, 0);
    /* Sessions resume only on the listener that made them. */
    unsigned char sid[EVP_MAX_MD_SIZE];
    unsigned int sid_len = 0;
    if (EVP_Digest(listener, strlen(listener), sid, &sid_len, EVP_sha256(), NULL) != 1 ||
        SSL_CTX_set_session_id_context(sc, sid, sid_len > 32 ? 32 : sid_len) != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(sc, ticket_cb) != 1) {
        set_err(err, errlen, "session setup failed");
        SSL_CTX_free(sc);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(sc, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(sc, servername_cb);
    SSL_CTX_set_cert_cb(sc, cert_cb, c);
    return sc;
}

static void ctx_destroy(struct rlb_tls_ctx *c)
{
    SSL_CTX_free(c->sc);
    for (size_t i = 0; i < c->n_certs; i++) {
        struct rlb_tls_cert *e = &c->certs[i];
        X509_free(e->leaf);
        EVP_PKEY_free(e->key);
        sk_X509_pop_free(e->chain, X509_free);
        free(e->path);
        free(e->name);
    }
    free(c->certs);
    if (c->slots)
        for (uint32_t i = 0; i <= c->mask; i++)
            free(c->slots[i].name);
    free(c->slots);
    free(c->cand);
    free(c);
}

struct rlb_tls_ctx *rlb_tls_ctx_new(const struct rlb_listener_cfg *lc, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    pthread_once(&global_once, global_init);
    if (!bio_method || !ticket_cipher) {
        set_err(err, errlen, "OpenSSL initialisation failed");
        return NULL;
    }
    const char *lname = lc->name ? lc->name : "";
    const struct policy *p = policy_find(lc->security_policy);
    if (!p) {
        set_err(err, errlen, "listener %s: unknown security policy %s", lname,
                lc->security_policy);
        return NULL;
    }
    if (lc->n_certificates == 0) {
        set_err(err, errlen, "listener %s: no certificate", lname);
        return NULL;
    }
    struct rlb_tls_ctx *c = calloc(1, sizeof(*c));
    if (!c || !(c->certs = calloc(lc->n_certificates, sizeof(*c->certs)))) {
        free(c);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    char sub[512];
    for (size_t i = 0; i < lc->n_certificates; i++) {
        c->n_certs++;
        if (cert_load(&c->certs[i], &lc->certificates[i], (uint32_t)i, sub, sizeof(sub)) < 0) {
            set_err(err, errlen, "listener %s: %s", lname, sub);
            ctx_destroy(c);
            return NULL;
        }
    }
    c->sc = server_ctx_new(p, lname, c, sub, sizeof(sub));
    if (!c->sc) {
        set_err(err, errlen, "listener %s: %s", lname, sub);
        ctx_destroy(c);
        return NULL;
    }
    /* Try every certificate the way a handshake will (security level, key checks). */
    SSL *probe = SSL_new(c->sc);
    for (size_t i = 0; probe && i < c->n_certs; i++) {
        const struct rlb_tls_cert *e = &c->certs[i];
        if (SSL_use_cert_and_key(probe, e->leaf, e->key, e->chain, 1) != 1) {
            set_err(err, errlen, "listener %s: certificate %s refused by %s", lname, e->path,
                    p->name);
            SSL_free(probe);
            ctx_destroy(c);
            return NULL;
        }
    }
    if (!probe) {
        set_err(err, errlen, "listener %s: out of memory", lname);
        ctx_destroy(c);
        return NULL;
    }
    SSL_free(probe);
    if (table_build(c) < 0) {
        set_err(err, errlen, "listener %s: out of memory", lname);
        ctx_destroy(c);
        return NULL;
    }
    /* Make the first ticket key now rather than in the first handshake. */
    struct ticket_key k;
    ticket_key_current(&k);
    OPENSSL_cleanse(&k, sizeof(k));
    ERR_clear_error();
    return c;
}

struct rlb_tls_ctx *rlb_tls_ctx_ref(struct rlb_tls_ctx *ctx)
{
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

void rlb_tls_ctx_free(struct rlb_tls_ctx *ctx)
{
    if (ctx && atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        ctx_destroy(ctx);
}

size_t rlb_tls_ctx_cert_count(const struct rlb_tls_ctx *ctx)
{
    return ctx->n_certs;
}

size_t rlb_tls_ctx_name_count(const struct rlb_tls_ctx *ctx)
{
    return ctx->n_names;
}

const char *rlb_tls_ctx_select(const struct rlb_tls_ctx *ctx, const char *sni)
{
    struct client_caps all = {.ecdsa = true};
    return select_cert(ctx, sni, &all)->path;
}

/* ---- engine ------------------------------------------------------------------------------- */

struct rlb_tls *rlb_tls_new(struct rlb_tls_ctx *ctx)
{
    struct rlb_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(ctx->sc);
    BIO *b = t->ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);
    SSL_set_accept_state(t->ssl);
    t->ctx = rlb_tls_ctx_ref(ctx);
    return t;
}

void rlb_tls_free(struct rlb_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    rlb_tls_ctx_free(t->ctx);
    free(t);
}

static void io_begin(struct rlb_tls *t, struct rlb_tls_io *io, struct rlb_segpool *sp,
                     struct rlb_bq *out)
{
    memset(io, 0, sizeof(*io));
    io->sp = sp;
    io->out = out;
    t->io = io;
    ERR_clear_error();
}

static void io_end(struct rlb_tls *t, struct rlb_tls_io *io)
{
    if (io->wref)
        rlb_block_unref(io->wblk);
    t->io = NULL;
    ERR_clear_error();
}

/* Interpret a failed SSL_* call: 0 when it only needs more input, else the error (engine
 * failed). */
static int ssl_result(struct rlb_tls *t, int r)
{
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        t->flags |= TLS_F_PEER_CLOSED;
        return 0;
    }
    t->flags |= TLS_F_FAILED;
    if (t->io && t->io->err)
        return t->io->err;
    unsigned long code = ERR_peek_error();
    t->why = code ? ERR_reason_error_string(code) : "unexpected I/O state";
    return -EPROTO;
}

static void handshake_finished(struct rlb_tls *t)
{
    t->flags |= TLS_F_DONE;
    if (SSL_session_reused(t->ssl))
        t->flags |= TLS_F_RESUMED;
    if (!t->cert) {
        /* Resumed sessions skip the certificate callback: record what SNI would choose. */
        struct client_caps all = {.ecdsa = true};
        t->cert = select_cert(t->ctx, SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name),
                              &all);
    }
}

/* Replace a lone small plaintext run at the tail of `plain` by a tight copy, so a partial
 * request does not pin a 16 KiB block. */
static void plain_shrink(struct rlb_bq *plain, struct rlb_block *blk, uint32_t used)
{
    struct rlb_seg *s = plain->tail;
    if (!blk || !s || s->block != blk || blk->refs != 1 || s->data != blk->data ||
        used > TLS_IN_SHRINK)
        return;
    struct rlb_block *nb = rlb_block_new(used);
    if (!nb)
        return;
    memcpy(nb->data, s->data, s->len);
    s->block = nb;
    s->data = nb->data;
    rlb_block_unref(blk);
}

int rlb_tls_recv(struct rlb_tls *t, struct rlb_segpool *sp, const char *data, size_t len,
                 struct rlb_bq *plain, struct rlb_bq *cipher_out)
{
    if (t->flags & TLS_F_FAILED)
        return -EPROTO;
    if (t->flags & TLS_F_PEER_CLOSED)
        return 0;
    struct rlb_tls_io io;
    io_begin(t, &io, sp, cipher_out);
    io.in = data;
    io.in_len = len;
    int ret = 0;
    if (!(t->flags & TLS_F_DONE)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            ret = ssl_result(t, r);
            goto out;
        }
        handshake_finished(t);
    }
    struct rlb_block *blk = NULL;
    uint32_t used = 0;
    for (;;) {
        if (!blk || blk->cap - used < TLS_IN_MIN_ROOM) {
            plain_shrink(plain, blk, used);
            blk = rlb_block_new(TLS_IN_BLOCK);
            if (!blk) {
                t->flags |= TLS_F_FAILED;
                ret = -ENOMEM;
                break;
            }
            used = 0;
        }
        size_t n = 0;
        int r = SSL_read_ex(t->ssl, blk->data + used, blk->cap - used, &n);
        if (r != 1) {
            ret = ssl_result(t, r);
            if (used == 0)
                rlb_block_unref(blk);
            else
                plain_shrink(plain, blk, used);
            break;
        }
        if (used > 0)
            blk->refs++;
        struct rlb_seg *s = rlb_seg_from_block(sp, blk, blk->data + used, (uint32_t)n);
        if (!s) {
            rlb_block_unref(blk);
            t->flags |= TLS_F_FAILED;
            ret = -ENOMEM;
            break;
        }
        rlb_bq_push(plain, s);
        used += (uint32_t)n;
    }
out:
    io_end(t, &io);
    return ret;
}

int rlb_tls_recv_bq(struct rlb_tls *t, struct rlb_segpool *sp, struct rlb_bq *cipher_in,
                    struct rlb_bq *plain, struct rlb_bq *cipher_out)
{
    int ret = 0;
    for (const struct rlb_seg *s = cipher_in->head; s && ret == 0; s = s->next)
        ret = rlb_tls_recv(t, sp, s->data, s->len, plain, cipher_out);
    rlb_bq_clear(sp, cipher_in);
    return ret;
}

int rlb_tls_send(struct rlb_tls *t, struct rlb_segpool *sp, struct rlb_bq *plain, uint32_t max,
                 struct rlb_bq *cipher_out)
{
    if (t->flags & TLS_F_FAILED)
        return -EPROTO;
    if (!(t->flags & TLS_F_DONE))
        return -ENOTCONN;
    if (t->flags & TLS_F_SHUT)
        return -EPIPE;
    struct rlb_tls_io io;
    io_begin(t, &io, sp, cipher_out);
    uint64_t budget = max ? max : UINT64_MAX;
    int ret = 0;
    char stage[TLS_RECORD];
    while (plain->bytes > 0 && budget > 0) {
        const struct rlb_seg *s = plain->head;
        const char *src;
        size_t n;
        if (s->len >= TLS_RECORD || !s->next) {
            src = s->data;
            n = s->len < TLS_RECORD ? s->len : TLS_RECORD;
        } else {
            /* Coalesce small segments into one record. */
            n = plain->bytes < TLS_RECORD ? plain->bytes : TLS_RECORD;
            rlb_bq_copyout(plain, stage, (uint32_t)n);
            src = stage;
        }
        uint64_t left = plain->bytes < budget ? plain->bytes : budget;
        size_t hint = left > TLS_OUT_MAX ? TLS_OUT_MAX : (size_t)left;
        hint += (hint / TLS_RECORD + 1) * TLS_RECORD_OVERHEAD;
        ret = out_reserve(&io, n + TLS_RECORD_OVERHEAD, hint);
        if (ret < 0) {
            t->flags |= TLS_F_FAILED;
            break;
        }
        size_t w = 0;
        int r = SSL_write_ex(t->ssl, src, n, &w);
        if (r != 1) {
            ret = ssl_result(t, r);
            if (ret == 0) { /* cannot happen: our BIO never asks to retry a read here */
                t->flags |= TLS_F_FAILED;
                ret = -EPROTO;
            }
            break;
        }
        rlb_bq_consume(sp, plain, (uint32_t)n);
        budget = n >= budget ? 0 : budget - n;
    }
    io_end(t, &io);
    return ret;
}

int rlb_tls_shutdown(struct rlb_tls *t, struct rlb_segpool *sp, struct rlb_bq *cipher_out)
{
    if ((t->flags & (TLS_F_FAILED | TLS_F_SHUT)) || !(t->flags & TLS_F_DONE))
        return 0;
    struct rlb_tls_io io;
    io_begin(t, &io, sp, cipher_out);
    SSL_shutdown(t->ssl); /* 0: sent, not waiting for theirs; 1: both done */
    t->flags |= TLS_F_SHUT;
    int ret = io.err;
    io_end(t, &io);
    return ret;
}

bool rlb_tls_handshake_done(const struct rlb_tls *t)
{
    return (t->flags & TLS_F_DONE) != 0;
}

bool rlb_tls_peer_closed(const struct rlb_tls *t)
{
    return (t->flags & TLS_F_PEER_CLOSED) != 0;
}

bool rlb_tls_failed(const struct rlb_tls *t)
{
    return (t->flags & TLS_F_FAILED) != 0;
}

const char *rlb_tls_error_reason(const struct rlb_tls *t)
{
    return t->why;
}

void rlb_tls_get_info(const struct rlb_tls *t, struct rlb_tls_info *out)
{
    memset(out, 0, sizeof(*out));
    out->sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    if (!(t->flags & TLS_F_DONE))
        return;
    out->protocol = SSL_get_version(t->ssl);
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    if (c) {
        out->cipher = SSL_CIPHER_get_name(c);
        out->cipher_iana = SSL_CIPHER_standard_name(c);
    }
    if (t->cert) {
        out->cert_path = t->cert->path;
        out->cert_name = t->cert->name;
    }
    const unsigned char *alpn = NULL;
    unsigned int alen = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
    if (alen == 8 && memcmp(alpn, "http/1.1", 8) == 0)
        out->alpn = "http/1.1";
    out->resumed = (t->flags & TLS_F_RESUMED) != 0;
}

bool rlb_tls_looks_like_http(const char *data, size_t len)
{
    size_t i = 0;
    for (; i < len && i < 16; i++) {
        char ch = data[i];
        if (ch == ' ')
            return i > 0;
        if (ch < 'A' || ch > 'Z')
            return false;
    }
    return i > 0 && i == len; /* only a method prefix arrived so far */
}
