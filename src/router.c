/* router.c — rule evaluation: conditions AND'ed, values within a condition OR'ed. */
#include "ringlb/router.h"

#include <strings.h>
#include <netinet/in.h>
#include <string.h>

static inline char fold_c(char c, bool fold)
{
    return (fold && c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool rlb_wildcard_match(const char *pat, const char *s, size_t n, bool fold, bool escapes)
{
    size_t si = 0;
    const char *star = NULL;
    size_t star_si = 0;
    while (si < n) {
        char pc = *pat;
        bool literal = false;
        if (escapes && pc == '\\' && (pat[1] == '*' || pat[1] == '?')) {
            pc = pat[1];
            literal = true;
        }
        if (pc && !literal && pc == '*') {
            star = pat++;
            star_si = si;
            continue;
        }
        if (pc && ((!literal && pc == '?') || fold_c(pc, fold) == fold_c(s[si], fold))) {
            pat += literal ? 2 : 1;
            si++;
            continue;
        }
        if (star) {
            pat = star + 1;
            si = ++star_si;
            continue;
        }
        return false;
    }
    while (*pat == '*')
        pat++;
    return *pat == 0;
}

static bool any_match(char **pats, size_t n, const char *s, size_t len, bool fold)
{
    for (size_t i = 0; i < n; i++)
        if (rlb_wildcard_match(pats[i], s, len, fold, false))
            return true;
    return false;
}

static bool cidr_match(const struct rlb_cidr *c, const struct sockaddr *peer)
{
    const uint8_t *a;
    uint8_t mapped[16];
    if (peer->sa_family == AF_INET) {
        if (c->family != AF_INET)
            return false;
        a = (const uint8_t *)&((const struct sockaddr_in *)peer)->sin_addr;
    } else {
        const uint8_t *a6 = (const uint8_t *)&((const struct sockaddr_in6 *)peer)->sin6_addr;
        static const uint8_t v4pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (c->family == AF_INET && memcmp(a6, v4pre, 12) == 0) {
            memcpy(mapped, a6 + 12, 4);
            a = mapped;
        } else if (c->family == AF_INET6) {
            a = a6;
        } else {
            return false;
        }
    }
    unsigned bits = c->prefix;
    for (unsigned i = 0; bits > 0; i++) {
        unsigned take = bits >= 8 ? 8 : bits;
        uint8_t mask = (uint8_t)(0xff << (8 - take));
        if ((a[i] & mask) != (c->addr[i] & mask))
            return false;
        bits -= take;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode (and '+' to space) into out; returns the decoded length. */
static size_t pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < cap; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
            hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return o;
}

static bool query_match(const struct rlb_conditions *cd, const char *q, size_t qn)
{
    for (size_t k = 0; k < cd->n_query_string; k++) {
        const struct rlb_query_condition *qc = &cd->query_string[k];
        size_t i = 0;
        while (i <= qn) {
            size_t e = i;
            while (e < qn && q[e] != '&')
                e++;
            const char *eq = memchr(q + i, '=', e - i);
            char key[1024], val[2048];
            size_t kl, vl;
            if (eq) {
                kl = pct_decode(q + i, (size_t)(eq - (q + i)), key, sizeof(key));
                vl = pct_decode(eq + 1, (size_t)(q + e - eq - 1), val, sizeof(val));
            } else {
                kl = 0;
                vl = pct_decode(q + i, e - i, val, sizeof(val));
            }
            if (e > i) {
                bool kok = !qc->key || (eq && rlb_wildcard_match(qc->key, key, kl, true, true));
                if (kok && rlb_wildcard_match(qc->value, val, vl, true, true))
                    return true;
            }
            i = e + 1;
        }
    }
    return false;
}

static bool rule_matches(const struct rlb_rule *r, const struct rlb_http_head *h,
                         const struct sockaddr *peer)
{
    const struct rlb_conditions *cd = &r->conditions;
    if (cd->n_method) {
        bool ok = false;
        for (size_t i = 0; i < cd->n_method && !ok; i++)
            ok = strlen(cd->method[i]) == h->method_len &&
                 memcmp(cd->method[i], h->method, h->method_len) == 0;
        if (!ok)
            return false;
    }
    if (cd->n_host_header) {
        const struct rlb_hdr *host = rlb_http1_find(h, "host");
        if (!host)
            return false;
        size_t n = host->value_len;
        const char *v = host->value;
        if (n && v[0] == '[') {
            const char *rb = memchr(v, ']', n);
            if (rb)
                n = (size_t)(rb - v) + 1;
        } else {
            const char *colon = memchr(v, ':', n);
            if (colon)
                n = (size_t)(colon - v);
        }
        if (!any_match(cd->host_header, cd->n_host_header, v, n, true))
            return false;
    }
    const char *qmark = memchr(h->url, '?', h->url_len);
    size_t path_len = qmark ? (size_t)(qmark - h->url) : h->url_len;
    if (cd->n_path_pattern && !any_match(cd->path_pattern, cd->n_path_pattern, h->url, path_len, false))
        return false;
    if (cd->n_source_ip) {
        bool ok = false;
        for (size_t i = 0; i < cd->n_source_ip && !ok; i++)
            ok = cidr_match(&cd->source_ip[i], peer);
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < cd->n_http_header; k++) {
        const struct rlb_header_condition *hc = &cd->http_header[k];
        size_t nl = strlen(hc->name);
        bool ok = false;
        for (uint32_t i = 0; i < h->n_hdrs && !ok; i++) {
            const struct rlb_hdr *hd = &h->hdrs[i];
            if (hd->name_len != nl || strncasecmp(hd->name, hc->name, nl) != 0)
                continue;
            ok = any_match(hc->values, hc->n_values, hd->value, hd->value_len, true);
        }
        if (!ok)
            return false;
    }
    if (cd->n_query_string) {
        if (!qmark)
            return false;
        if (!query_match(cd, qmark + 1, h->url_len - path_len - 1))
            return false;
    }
    return true;
}

int rlb_router_match(const struct rlb_listener *lst, const struct rlb_http_head *h,
                     const struct sockaddr *peer)
{
    const struct rlb_listener_cfg *lc = lst->cfg;
    for (size_t i = 0; i < lc->n_rules; i++)
        if (rule_matches(&lc->rules[i], h, peer))
            return (int)i;
    return -1;
}
