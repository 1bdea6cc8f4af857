/* router.c — rule conditions and the compiled rule index (see router.h). */
#include "ringlb/router.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- conditions ------------------------------------------------------------------------- */

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

static bool any_match(char *const *pats, size_t n, const char *s, size_t len, bool fold)
{
    for (size_t i = 0; i < n; i++)
        if (rlb_wildcard_match(pats[i], s, len, fold, false))
            return true;
    return false;
}

static bool cidr_match(const struct rlb_cidr *c, const struct sockaddr *peer)
{
    const uint8_t *a;
    if (!peer)
        return false;
    if (peer->sa_family == AF_INET) {
        if (c->family != AF_INET)
            return false;
        a = (const uint8_t *)&((const struct sockaddr_in *)peer)->sin_addr;
    } else if (peer->sa_family == AF_INET6) {
        const uint8_t *a6 = (const uint8_t *)&((const struct sockaddr_in6 *)peer)->sin6_addr;
        static const uint8_t v4pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (c->family == AF_INET && memcmp(a6, v4pre, 12) == 0)
            a = a6 + 12;           /* an IPv4 client on a dual-stack socket */
        else if (c->family == AF_INET6)
            a = a6;
        else
            return false;
    } else {
        return false;
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

/* Percent-decode into out (at most cap bytes); '+' stays '+' (the ALB decodes %XX only). */
static size_t pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < cap; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
            hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

static bool query_match(const struct rlb_conditions *cd, const char *q, size_t qn)
{
    char key[2048], val[4096];
    size_t i = 0;
    while (i <= qn) {
        size_t e = i;
        while (e < qn && q[e] != '&')
            e++;
        if (e > i) {
            const char *eq = memchr(q + i, '=', e - i);
            size_t kl = 0, vl;
            bool has_key = eq != NULL;
            if (eq) {
                kl = pct_decode(q + i, (size_t)(eq - (q + i)), key, sizeof(key));
                vl = pct_decode(eq + 1, (size_t)(q + e - eq - 1), val, sizeof(val));
            } else {
                vl = pct_decode(q + i, e - i, val, sizeof(val));
            }
            for (size_t k = 0; k < cd->n_query_string; k++) {
                const struct rlb_query_condition *qc = &cd->query_string[k];
                if (qc->key && (!has_key || !rlb_wildcard_match(qc->key, key, kl, true, true)))
                    continue;
                if (rlb_wildcard_match(qc->value, val, vl, true, true))
                    return true;
            }
        }
        i = e + 1;
    }
    return false;
}

/* The host without its port ("a.com:8080" -> "a.com", "[::1]:80" -> "[::1]"). */
static size_t host_len_no_port(const char *v, size_t n)
{
    if (n && v[0] == '[') {
        const char *rb = memchr(v, ']', n);
        return rb ? (size_t)(rb - v) + 1 : n;
    }
    const char *colon = memchr(v, ':', n);
    return colon ? (size_t)(colon - v) : n;
}

bool rlb_rule_matches(const struct rlb_rule *r, const struct rlb_route_request *rq)
{
    const struct rlb_conditions *cd = &r->conditions;
    if (cd->n_method) {
        bool ok = false;
        for (size_t i = 0; i < cd->n_method && !ok; i++)
            ok = strlen(cd->method[i]) == rq->method_len &&
                 memcmp(cd->method[i], rq->method, rq->method_len) == 0;
        if (!ok)
            return false;
    }
    if (cd->n_host_header) {
        if (!rq->host)
            return false;
        if (!any_match(cd->host_header, cd->n_host_header, rq->host,
                       host_len_no_port(rq->host, rq->host_len), true))
            return false;
    }
    if (cd->n_path_pattern &&
        !any_match(cd->path_pattern, cd->n_path_pattern, rq->path, rq->path_len, false))
        return false;
    if (cd->n_source_ip) {
        bool ok = false;
        for (size_t i = 0; i < cd->n_source_ip && !ok; i++)
            ok = cidr_match(&cd->source_ip[i], rq->peer);
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < cd->n_http_header; k++) {
        const struct rlb_header_condition *hc = &cd->http_header[k];
        size_t nl = strlen(hc->name);
        bool ok = false;
        const struct rlb_http_head *h = rq->head;
        for (uint32_t i = 0; h && i < h->n_hdrs && !ok; i++) {
            const struct rlb_hdr *hd = &h->hdrs[i];
            if (hd->name_len != nl || strncasecmp(hd->name, hc->name, nl) != 0)
                continue;
            ok = any_match(hc->values, hc->n_values, hd->value, hd->value_len, true);
        }
        if (!ok)
            return false;
    }
    if (cd->n_query_string) {
        if (!rq->query || !query_match(cd, rq->query, rq->query_len))
            return false;
    }
    return true;
}

void rlb_route_request_from_head(struct rlb_route_request *rq, const struct rlb_http_head *h,
                                 const struct sockaddr *peer)
{
    memset(rq, 0, sizeof(*rq));
    rq->method = h->method;
    rq->method_len = h->method_len;
    const struct rlb_hdr *host = rlb_http1_find(h, "host");
    if (host) {
        rq->host = host->value;
        rq->host_len = host->value_len;
    }
    const char *url = h->url;
    size_t ulen = h->url_len;
    /* absolute-form: match on the path part */
    if (ulen > 0 && url[0] != '/' && url[0] != '*') {
        const char *p = memchr(url, ':', ulen);
        if (p && (size_t)(p - url) + 3 <= ulen && p[1] == '/' && p[2] == '/') {
            const char *slash = memchr(p + 3, '/', ulen - (size_t)(p + 3 - url));
            if (!rq->host) {
                rq->host = p + 3;
                rq->host_len = slash ? (size_t)(slash - (p + 3)) : ulen - (size_t)(p + 3 - url);
            }
            ulen = slash ? ulen - (size_t)(slash - url) : 0;
            url = slash ? slash : "/";
            if (!slash)
                ulen = 1;
        }
    }
    const char *q = memchr(url, '?', ulen);
    rq->path = url;
    rq->path_len = q ? (size_t)(q - url) : ulen;
    if (q) {
        rq->query = q + 1;
        rq->query_len = ulen - rq->path_len - 1;
    }
    rq->head = h;
    rq->peer = peer;
}

/* ---- the index -------------------------------------------------------------------------- */

/* A sorted list of rule indices. */
struct idxlist {
    uint32_t *v;
    uint32_t n, cap;
};

static int idx_push(struct idxlist *l, uint32_t x)
{
    if (l->n && l->v[l->n - 1] == x)
        return 0; /* rules are added in order: dedupe the same rule's several values */
    if (l->n == l->cap) {
        uint32_t nc = l->cap ? l->cap * 2 : 2;
        uint32_t *nv = realloc(l->v, nc * sizeof(*nv));
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
    return 0;
}

struct host_entry {
    char *host;        /* lower case */
    size_t len;
    uint64_t hash;
    struct idxlist rules;
};

struct trie_node {
    char *label;       /* bytes of the edge leading here */
    size_t label_len;
    struct trie_node **kids;
    uint32_t n_kids;
    struct idxlist rules;
};

struct rlb_router {
    const struct rlb_listener_cfg *lc;
    struct host_entry *hosts;  /* open addressing */
    size_t host_cap;           /* power of two, 0 when no exact-host rule */
    struct trie_node root;     /* path-prefix index of rules without a host condition */
    struct idxlist wild;       /* rules with a wildcard host condition */
    size_t n_rules;
};

static uint64_t hash_lower(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)fold_c(s[i], true);
        h *= 1099511628211ull;
    }
    return h;
}

static bool has_wild(const char *s)
{
    return strpbrk(s, "*?") != NULL;
}

static struct host_entry *host_slot(struct rlb_router *r, const char *s, size_t n, uint64_t h,
                                    bool insert)
{
    size_t mask = r->host_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct host_entry *e = &r->hosts[i];
        if (!e->host)
            return insert ? e : NULL;
        if (e->hash == h && e->len == n && strncasecmp(e->host, s, n) == 0)
            return e;
    }
}

static struct trie_node *trie_child(struct trie_node *n, char c)
{
    for (uint32_t i = 0; i < n->n_kids; i++)
        if (n->kids[i]->label[0] == c)
            return n->kids[i];
    return NULL;
}

/* Insert rule `idx` at the node for literal prefix p[0..len). */
static int trie_insert(struct trie_node *node, const char *p, size_t len, uint32_t idx)
{
    while (len > 0) {
        struct trie_node *k = trie_child(node, p[0]);
        if (!k) {
            k = calloc(1, sizeof(*k));
            if (!k)
                return -1;
            k->label = malloc(len);
            if (!k->label) {
                free(k);
                return -1;
            }
            memcpy(k->label, p, len);
            k->label_len = len;
            struct trie_node **nk = realloc(node->kids, (node->n_kids + 1) * sizeof(*nk));
            if (!nk) {
                free(k->label);
                free(k);
                return -1;
            }
            node->kids = nk;
            node->kids[node->n_kids++] = k;
            return idx_push(&k->rules, idx);
        }
        size_t common = 0;
        while (common < k->label_len && common < len && k->label[common] == p[common])
            common++;
        if (common < k->label_len) {
            /* Split k at `common`. */
            struct trie_node *tail = calloc(1, sizeof(*tail));
            if (!tail)
                return -1;
            tail->label = malloc(k->label_len - common);
            if (!tail->label) {
                free(tail);
                return -1;
            }
            memcpy(tail->label, k->label + common, k->label_len - common);
            tail->label_len = k->label_len - common;
            tail->kids = k->kids;
            tail->n_kids = k->n_kids;
            tail->rules = k->rules;
            k->kids = malloc(sizeof(*k->kids));
            if (!k->kids)
                return -1;
            k->kids[0] = tail;
            k->n_kids = 1;
            memset(&k->rules, 0, sizeof(k->rules));
            k->label_len = common;
        }
        node = k;
        p += common;
        len -= common;
    }
    return idx_push(&node->rules, idx);
}

static void trie_free(struct trie_node *n)
{
    for (uint32_t i = 0; i < n->n_kids; i++) {
        trie_free(n->kids[i]);
        free(n->kids[i]->label);
        free(n->kids[i]);
    }
    free(n->kids);
    free(n->rules.v);
}

/* The literal prefix shared by every path pattern of `rule` (before any wildcard). */
static size_t path_prefix(const struct rlb_rule *rule, const char **out)
{
    const struct rlb_conditions *cd = &rule->conditions;
    if (cd->n_path_pattern == 0) {
        *out = "";
        return 0;
    }
    const char *first = cd->path_pattern[0];
    size_t len = strcspn(first, "*?");
    for (size_t i = 1; i < cd->n_path_pattern; i++) {
        const char *p = cd->path_pattern[i];
        size_t l = strcspn(p, "*?");
        size_t k = 0;
        while (k < len && k < l && p[k] == first[k])
            k++;
        len = k;
    }
    *out = first;
    return len;
}

struct rlb_router *rlb_router_build(const struct rlb_listener_cfg *lc)
{
    struct rlb_router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->lc = lc;
    r->n_rules = lc->n_rules;
    size_t exact = 0;
    for (size_t i = 0; i < lc->n_rules; i++) {
        const struct rlb_conditions *cd = &lc->rules[i].conditions;
        bool all_exact = cd->n_host_header > 0;
        for (size_t k = 0; k < cd->n_host_header; k++)
            if (has_wild(cd->host_header[k]))
                all_exact = false;
        if (all_exact)
            exact += cd->n_host_header;
    }
    if (exact) {
        r->host_cap = 16;
        while (r->host_cap < exact * 2)
            r->host_cap *= 2;
        r->hosts = calloc(r->host_cap, sizeof(*r->hosts));
        if (!r->hosts)
            goto fail;
    }
    for (size_t i = 0; i < lc->n_rules; i++) {
        const struct rlb_rule *rule = &lc->rules[i];
        const struct rlb_conditions *cd = &rule->conditions;
        bool all_exact = cd->n_host_header > 0;
        for (size_t k = 0; k < cd->n_host_header; k++)
            if (has_wild(cd->host_header[k]))
                all_exact = false;
        if (all_exact) {
            for (size_t k = 0; k < cd->n_host_header; k++) {
                const char *h = cd->host_header[k];
                size_t n = strlen(h);
                uint64_t hv = hash_lower(h, n);
                struct host_entry *e = host_slot(r, h, n, hv, true);
                if (!e->host) {
                    e->host = strdup(h);
                    if (!e->host)
                        goto fail;
                    e->len = n;
                    e->hash = hv;
                }
                if (idx_push(&e->rules, (uint32_t)i) < 0)
                    goto fail;
            }
        } else if (cd->n_host_header > 0) {
            if (idx_push(&r->wild, (uint32_t)i) < 0)
                goto fail;
        } else {
            const char *p;
            size_t len = path_prefix(rule, &p);
            if (trie_insert(&r->root, p, len, (uint32_t)i) < 0)
                goto fail;
        }
    }
    return r;
fail:
    rlb_router_free(r);
    return NULL;
}

void rlb_router_free(struct rlb_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->host_cap; i++) {
        free(r->hosts[i].host);
        free(r->hosts[i].rules.v);
    }
    free(r->hosts);
    trie_free(&r->root);
    free(r->wild.v);
    free(r);
}

#define MAX_LISTS 64

int rlb_router_match(const struct rlb_router *r, const struct rlb_route_request *rq,
                     unsigned *evaluated)
{
    unsigned evals = 0;
    int result = -1;
    if (r->n_rules == 0)
        goto out;
    /* Gather the candidate lists (each sorted by priority). */
    const struct idxlist *lists[MAX_LISTS];
    unsigned nl = 0;
    if (r->host_cap && rq->host) {
        size_t hl = host_len_no_port(rq->host, rq->host_len);
        const struct host_entry *e =
            host_slot((struct rlb_router *)r, rq->host, hl, hash_lower(rq->host, hl), false);
        if (e)
            lists[nl++] = &e->rules;
    }
    if (r->wild.n)
        lists[nl++] = &r->wild;
    const struct trie_node *node = &r->root;
    const char *p = rq->path;
    size_t left = rq->path_len;
    bool overflow = false;
    for (;;) {
        if (node->rules.n) {
            if (nl == MAX_LISTS) {
                overflow = true;
                break;
            }
            lists[nl++] = &node->rules;
        }
        if (left == 0)
            break;
        const struct trie_node *k = NULL;
        for (uint32_t i = 0; i < node->n_kids; i++)
            if (node->kids[i]->label[0] == p[0])
                k = node->kids[i];
        if (!k || k->label_len > left || memcmp(k->label, p, k->label_len) != 0)
            break;
        p += k->label_len;
        left -= k->label_len;
        node = k;
    }
    if (overflow) {
        /* Pathological nesting: evaluate every rule in order. */
        for (size_t i = 0; i < r->n_rules; i++) {
            evals++;
            if (rlb_rule_matches(&r->lc->rules[i], rq)) {
                result = (int)i;
                break;
            }
        }
        goto out;
    }
    /* k-way merge by rule index = priority order; the first full match wins. */
    uint32_t pos[MAX_LISTS] = {0};
    for (;;) {
        uint32_t best = UINT32_MAX;
        for (unsigned i = 0; i < nl; i++)
            if (pos[i] < lists[i]->n && lists[i]->v[pos[i]] < best)
                best = lists[i]->v[pos[i]];
        if (best == UINT32_MAX)
            break;
        for (unsigned i = 0; i < nl; i++)
            if (pos[i] < lists[i]->n && lists[i]->v[pos[i]] == best)
                pos[i]++;
        evals++;
        if (rlb_rule_matches(&r->lc->rules[best], rq)) {
            result = (int)best;
            break;
        }
    }
out:
    if (evaluated)
        *evaluated = evals;
    return result;
}
