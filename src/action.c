/* action.c — redirect URLs and stickiness cookies (see action.h). */
#include "ringlb/action.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- redirects -------------------------------------------------------------------------- */

struct sb {
    char *p, *end;
    bool overflow;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->overflow || (size_t)(b->end - b->p) <= n) {
        b->overflow = true;
        return;
    }
    memcpy(b->p, s, n);
    b->p += n;
}

struct redirect_vars {
    const char *protocol;                 /* "http" / "https" (request) */
    const char *host; size_t host_len;    /* request host without port */
    char port[8];                         /* listener port */
    const char *path; size_t path_len;    /* request path without its leading '/' */
    const char *query; size_t query_len;
};

/* Expand placeholders of `tmpl` into b. */
static void expand(struct sb *b, const char *tmpl, const struct redirect_vars *v)
{
    while (*tmpl) {
        if (tmpl[0] == '#' && tmpl[1] == '{') {
            const char *close = strchr(tmpl, '}');
            if (close) {
                size_t n = (size_t)(close - tmpl - 2);
                const char *name = tmpl + 2;
                if (n == 8 && strncmp(name, "protocol", 8) == 0) {
                    sb_put(b, v->protocol, strlen(v->protocol));
                } else if (n == 4 && strncmp(name, "host", 4) == 0) {
                    sb_put(b, v->host, v->host_len);
                } else if (n == 4 && strncmp(name, "port", 4) == 0) {
                    sb_put(b, v->port, strlen(v->port));
                } else if (n == 4 && strncmp(name, "path", 4) == 0) {
                    sb_put(b, v->path, v->path_len);
                } else if (n == 5 && strncmp(name, "query", 5) == 0) {
                    sb_put(b, v->query, v->query_len);
                } else {
                    sb_put(b, tmpl, n + 3); /* unknown: kept literally */
                }
                tmpl = close + 1;
                continue;
            }
        }
        sb_put(b, tmpl, 1);
        tmpl++;
    }
}

size_t rlb_action_redirect_url(const struct rlb_action *a, const struct rlb_listener_cfg *lc,
                               const struct rlb_route_request *rq, char *out, size_t cap)
{
    struct redirect_vars v;
    memset(&v, 0, sizeof(v));
    v.protocol = lc->protocol == RLB_PROTO_HTTPS ? "https" : "http";
    if (rq->host) {
        v.host = rq->host;
        v.host_len = rq->host_len;
        if (v.host_len && v.host[0] == '[') {
            const char *rb = memchr(v.host, ']', v.host_len);
            if (rb)
                v.host_len = (size_t)(rb - v.host) + 1;
        } else {
            const char *colon = memchr(v.host, ':', v.host_len);
            if (colon)
                v.host_len = (size_t)(colon - v.host);
        }
    }
    snprintf(v.port, sizeof(v.port), "%u", lc->port);
    v.path = rq->path;
    v.path_len = rq->path_len;
    if (v.path_len && v.path[0] == '/') {
        v.path++;
        v.path_len--;
    }
    v.query = rq->query ? rq->query : "";
    v.query_len = rq->query ? rq->query_len : 0;

    char proto[16], port[16];
    struct sb pb = {proto, proto + sizeof(proto), false};
    expand(&pb, a->redirect.protocol ? a->redirect.protocol : "#{protocol}", &v);
    *pb.p = 0;
    for (char *c = proto; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c + 32);
    struct sb tb = {port, port + sizeof(port), false};
    expand(&tb, a->redirect.port ? a->redirect.port : "#{port}", &v);
    *tb.p = 0;

    struct sb b = {out, out + cap, false};
    sb_put(&b, proto, strlen(proto));
    sb_put(&b, "://", 3);
    expand(&b, a->redirect.host ? a->redirect.host : "#{host}", &v);
    bool default_port = (strcmp(proto, "http") == 0 && strcmp(port, "80") == 0) ||
                        (strcmp(proto, "https") == 0 && strcmp(port, "443") == 0);
    if (!default_port) {
        sb_put(&b, ":", 1);
        sb_put(&b, port, strlen(port));
    }
    char *path_start = b.p;
    expand(&b, a->redirect.path ? a->redirect.path : "/#{path}", &v);
    if (b.p == path_start || *path_start != '/') {
        /* The path is absolute: insert the '/' when the template did not start with one. */
        if (!b.overflow && (size_t)(b.end - b.p) > 1) {
            memmove(path_start + 1, path_start, (size_t)(b.p - path_start));
            *path_start = '/';
            b.p++;
        } else {
            b.overflow = true;
        }
    }
    char *query_start = b.p;
    sb_put(&b, "?", 1);
    char *query_body = b.p;
    expand(&b, a->redirect.query ? a->redirect.query : "#{query}", &v);
    if (b.p == query_body)
        b.p = query_start; /* empty query: no '?' */
    if (b.overflow)
        return 0;
    *b.p = 0;
    return (size_t)(b.p - out);
}

/* ---- stickiness cookies ----------------------------------------------------------------- */

static unsigned char sticky_key[32];

/* 64 hex digits → the 32-byte key (OpenSSL's decoder); sticky_key is left alone on error. */
static int set_key_hex(const char *hex, size_t n)
{
    char text[65];
    unsigned char k[32];
    size_t len = 0;
    if (n != 64)
        return -EINVAL;
    memcpy(text, hex, 64);
    text[64] = '\0';
    if (OPENSSL_hexstr2buf_ex(k, sizeof(k), &len, text, '\0') != 1 || len != sizeof(k))
        return -EINVAL;
    memcpy(sticky_key, k, sizeof(k));
    return 0;
}

int rlb_sticky_key_set_hex(const char *hex)
{
    return set_key_hex(hex, strlen(hex));
}

int rlb_sticky_key_init(const char *key_file)
{
    if (!key_file)
        return RAND_bytes(sticky_key, sizeof(sticky_key)) == 1 ? 0 : -EIO;
    FILE *f = fopen(key_file, "rb");
    if (!f)
        return -errno;
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    size_t s = 0;
    while (s < n && (buf[s] == ' ' || buf[s] == '\n' || buf[s] == '\r' || buf[s] == '\t'))
        s++;
    while (n > s && (buf[n - 1] == ' ' || buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == '\t'))
        n--;
    if (n - s == 32) {
        memcpy(sticky_key, buf + s, 32);
        return 0;
    }
    return set_key_hex((const char *)buf + s, n - s);
}

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64u_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        if (i + 1 < n) out[o++] = b64u[(v >> 6) & 63];
        if (i + 2 < n) out[o++] = b64u[v & 63];
    }
    out[o] = 0;
}

static int b64u_val(char c)
{
    const char *p = memchr(b64u, c, 64);
    return p && c ? (int)(p - b64u) : -1;
}

static bool b64u_decode(const char *in, size_t n, unsigned char *out, size_t want)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_val(in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == want)
                return false;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* Canonical encodings only: the unused low bits of the last character must be zero,
     * else one cookie would have several accepted spellings. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return false;
    return o == want;
}

/* Layout: version(1) | reserved(3) | expiry(4, s) | group id(8) | tag(16) = 32 bytes. */
static void sticky_tag(const unsigned char *msg, unsigned char *tag)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    HMAC(EVP_sha256(), sticky_key, sizeof(sticky_key), msg, 16, mac, &mlen);
    memcpy(tag, mac, 16);
}

void rlb_sticky_encode(uint64_t group_hash, uint64_t expires_s, char *out)
{
    unsigned char raw[32] = {1, 0, 0, 0};
    uint32_t e = (uint32_t)expires_s;
    for (int i = 0; i < 4; i++)
        raw[4 + i] = (unsigned char)(e >> (24 - 8 * i));
    for (int i = 0; i < 8; i++)
        raw[8 + i] = (unsigned char)(group_hash >> (56 - 8 * i));
    sticky_tag(raw, raw + 16);
    b64u_encode(raw, sizeof(raw), out);
}

bool rlb_sticky_decode(const char *v, size_t len, uint64_t now_s, uint64_t *group_hash)
{
    unsigned char raw[32], tag[16];
    if (len != RLB_STICKY_COOKIE_LEN || !b64u_decode(v, len, raw, sizeof(raw)) || raw[0] != 1)
        return false;
    sticky_tag(raw, tag);
    if (CRYPTO_memcmp(tag, raw + 16, 16) != 0)
        return false;
    uint32_t e = 0;
    for (int i = 0; i < 4; i++)
        e = (e << 8) | raw[4 + i];
    if ((uint64_t)e <= now_s)
        return false;
    uint64_t g = 0;
    for (int i = 0; i < 8; i++)
        g = (g << 8) | raw[8 + i];
    *group_hash = g;
    return true;
}

const char *rlb_cookie_find(const struct rlb_http_head *h, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct rlb_hdr *hd = &h->hdrs[i];
        if (hd->name_len != 6 || !rlb_http1_name_is(hd, "cookie"))
            continue;
        const char *p = hd->value, *end = hd->value + hd->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';' || *p == '\t'))
                p++;
            const char *eq = memchr(p, '=', (size_t)(end - p));
            const char *semi = memchr(p, ';', (size_t)(end - p));
            if (!semi)
                semi = end;
            if (eq && eq < semi && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
                const char *v = eq + 1;
                const char *ve = semi;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                *len = (size_t)(ve - v);
                return v;
            }
            p = semi;
        }
    }
    return NULL;
}
