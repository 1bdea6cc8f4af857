/* Unit tests for actions: redirect URLs, stickiness cookies, weighted group split. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/action.h"
#include "ringlb/balance.h"
#include "ringlb/snapshot.h"
#include "test.h"

static struct rlb_listener_cfg listener(enum rlb_protocol proto, uint16_t port)
{
    struct rlb_listener_cfg lc;
    memset(&lc, 0, sizeof(lc));
    lc.protocol = proto;
    lc.port = port;
    return lc;
}

static const char *redirect(const char *protocol, const char *host, const char *port,
                            const char *path, const char *query,
                            const struct rlb_listener_cfg *lc, const char *req_host,
                            const char *req_url)
{
    static char out[1024];
    struct rlb_action a;
    memset(&a, 0, sizeof(a));
    a.type = RLB_ACTION_REDIRECT;
    a.redirect.protocol = (char *)protocol;
    a.redirect.host = (char *)host;
    a.redirect.port = (char *)port;
    a.redirect.path = (char *)path;
    a.redirect.query = (char *)query;
    struct rlb_route_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.host = req_host;
    rq.host_len = req_host ? strlen(req_host) : 0;
    const char *q = strchr(req_url, '?');
    rq.path = req_url;
    rq.path_len = q ? (size_t)(q - req_url) : strlen(req_url);
    if (q) {
        rq.query = q + 1;
        rq.query_len = strlen(q + 1);
    }
    if (rlb_action_redirect_url(&a, lc, &rq, out, sizeof(out)) == 0)
        return "(overflow)";
    return out;
}

TEST(redirect_placeholders)
{
    struct rlb_listener_cfg http80 = listener(RLB_PROTO_HTTP, 80);
    struct rlb_listener_cfg http8080 = listener(RLB_PROTO_HTTP, 8080);
    struct rlb_listener_cfg https443 = listener(RLB_PROTO_HTTPS, 443);
    /* HTTP -> HTTPS keeping everything else; the default port disappears. */
    CHECK_EQ_STR(redirect("HTTPS", NULL, "443", NULL, NULL, &http80, "a.com", "/x/y?q=1"),
                 "https://a.com/x/y?q=1");
    /* Unset parts keep the request's values, including a non-default port. */
    CHECK_EQ_STR(redirect(NULL, "new.example.com", NULL, NULL, NULL, &http8080, "old.com:8080",
                          "/p"),
                 "http://new.example.com:8080/p");
    /* #{path} has no leading slash; the path template may rearrange it. */
    CHECK_EQ_STR(redirect(NULL, NULL, NULL, "/v2/#{path}", NULL, &https443, "a.com", "/users/1"),
                 "https://a.com/v2/users/1");
    CHECK_EQ_STR(redirect(NULL, "#{host}.backup", NULL, "/#{host}/#{port}", "from=#{path}&#{query}",
                          &http80, "a.com", "/p?x=1"),
                 "http://a.com.backup/a.com/80?from=p&x=1");
    /* An empty query drops the '?'. */
    CHECK_EQ_STR(redirect(NULL, NULL, NULL, NULL, NULL, &http80, "a.com", "/p"), "http://a.com/p");
    CHECK_EQ_STR(redirect(NULL, NULL, NULL, "/", "", &http80, "a.com", "/p?x=1"), "http://a.com/");
    CHECK_EQ_STR(redirect("HTTP", NULL, "81", NULL, NULL, &http80, "[::1]:80", "/"),
                 "http://[::1]:81/");
}

TEST(sticky_cookie_roundtrip)
{
    CHECK_EQ_INT(rlb_sticky_key_init(NULL), 0);
    char v[RLB_STICKY_COOKIE_LEN + 1];
    uint64_t now = (uint64_t)time(NULL);
    rlb_sticky_encode(0x1122334455667788ull, now + 3600, v);
    CHECK_EQ_INT(strlen(v), RLB_STICKY_COOKIE_LEN);
    CHECK(strpbrk(v, ";, =\"") == NULL);
    uint64_t g = 0;
    CHECK(rlb_sticky_decode(v, strlen(v), now, &g));
    CHECK(g == 0x1122334455667788ull);
    /* Expired. */
    CHECK(!rlb_sticky_decode(v, strlen(v), now + 3600, &g));
    /* Tampered: any changed character breaks the tag. */
    for (size_t i = 0; i < strlen(v); i++) {
        char t[RLB_STICKY_COOKIE_LEN + 1];
        memcpy(t, v, sizeof(t));
        t[i] = t[i] == 'A' ? 'B' : 'A';
        CHECK(!rlb_sticky_decode(t, strlen(t), now, &g));
    }
    CHECK(!rlb_sticky_decode(v, strlen(v) - 1, now, &g));
    /* every other spelling of the last character (which carries 2 unused bits) fails */
    for (const char *c = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"; *c;
         c++) {
        char t[RLB_STICKY_COOKIE_LEN + 1];
        memcpy(t, v, sizeof(t));
        if (t[RLB_STICKY_COOKIE_LEN - 1] == *c)
            continue;
        t[RLB_STICKY_COOKIE_LEN - 1] = *c;
        CHECK(!rlb_sticky_decode(t, strlen(t), now, &g));
    }
    CHECK(!rlb_sticky_decode("garbage", 7, now, &g));
    /* Another key does not accept it. */
    CHECK_EQ_INT(rlb_sticky_key_init(NULL), 0);
    CHECK(!rlb_sticky_decode(v, strlen(v), now, &g));
}

TEST(sticky_key_file)
{
    char path[] = "/tmp/ringlb-test-keyXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%s\n", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    fclose(f);
    CHECK_EQ_INT(rlb_sticky_key_init(path), 0);
    char v1[RLB_STICKY_COOKIE_LEN + 1], v2[RLB_STICKY_COOKIE_LEN + 1];
    rlb_sticky_encode(7, 4000000000u, v1);
    CHECK_EQ_INT(rlb_sticky_key_init(path), 0); /* same key again: same cookie */
    rlb_sticky_encode(7, 4000000000u, v2);
    CHECK_EQ_STR(v1, v2);
    f = fopen(path, "w");
    fprintf(f, "short");
    fclose(f);
    CHECK(rlb_sticky_key_init(path) < 0);
    unlink(path);
    CHECK(rlb_sticky_key_init("/nonexistent/key") < 0);
}

/* The fleet key from etcd (hex text) is the same key as the same hex in a key file, and bad
 * hex is refused without touching the key in use. */
TEST(sticky_key_from_hex)
{
    static const char hex[] = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    char path[] = "/tmp/ringlb-test-keyXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%s\n", hex);
    fclose(f);
    char v1[RLB_STICKY_COOKIE_LEN + 1], v2[RLB_STICKY_COOKIE_LEN + 1];
    CHECK_EQ_INT(rlb_sticky_key_init(path), 0);
    rlb_sticky_encode(7, 4000000000u, v1);
    unlink(path);
    CHECK_EQ_INT(rlb_sticky_key_init(NULL), 0);
    CHECK_EQ_INT(rlb_sticky_key_set_hex(hex), 0);
    rlb_sticky_encode(7, 4000000000u, v2);
    CHECK_EQ_STR(v1, v2);
    CHECK(rlb_sticky_key_set_hex("0011") < 0);
    CHECK(rlb_sticky_key_set_hex("zz112233445566778899aabbccddeeff"
                                 "00112233445566778899aabbccddeeff") < 0);
    CHECK(rlb_sticky_key_set_hex("00:1122:33445566778899aabbccddee"
                                 "ff00112233445566778899aabbccddee") < 0);
    rlb_sticky_encode(7, 4000000000u, v2);
    CHECK_EQ_STR(v1, v2); /* still the same key */
}

TEST(cookie_lookup)
{
    static struct rlb_http_head h;
    memset(&h, 0, offsetof(struct rlb_http_head, hdrs));
    h.hdrs[0] = (struct rlb_hdr){"Cookie", "a=1; AWSALBTGX=no; AWSALBTG=yes ; z=2", 6, 37};
    h.n_hdrs = 1;
    size_t n = 0;
    const char *v = rlb_cookie_find(&h, "AWSALBTG", &n);
    CHECK(v && n == 3 && memcmp(v, "yes", 3) == 0);
    CHECK(rlb_cookie_find(&h, "b", &n) == NULL);
}

TEST(weighted_split_is_exact)
{
    /* Three groups 95/5/0, each with one routable target, one worker. */
    struct rlb_target t[3];
    struct rlb_target *tp[3];
    struct rlb_group g[3];
    struct rlb_group *gp[3];
    memset(t, 0, sizeof(t));
    memset(g, 0, sizeof(g));
    for (int i = 0; i < 3; i++) {
        atomic_init(&t[i].state, RLB_TARGET_HEALTHY);
        tp[i] = &t[i];
        g[i].targets = &tp[i];
        g[i].n_targets = 1;
        gp[i] = &g[i];
    }
    uint32_t weights[3] = {95, 5, 0};
    int32_t cur[16] = {0};
    struct rlb_forward f = {.groups = gp, .weights = weights, .n_groups = 3,
                            .total_weight = 100, .cur = cur, .cur_stride = 16};
    int count[3] = {0};
    for (int n = 1; n <= 1000; n++) {
        struct rlb_group *c = rlb_balance_group(&f, 0);
        count[c - g]++;
        /* At every point the split is within one request of exact. */
        CHECK(abs(count[0] * 100 - n * 95) <= 100);
        CHECK(abs(count[1] * 100 - n * 5) <= 100);
    }
    CHECK_EQ_INT(count[0], 950);
    CHECK_EQ_INT(count[1], 50);
    CHECK_EQ_INT(count[2], 0);
    /* A group without routable targets hands its share to the others. */
    atomic_store(&t[0].state, RLB_TARGET_UNHEALTHY);
    for (int n = 0; n < 100; n++)
        CHECK(rlb_balance_group(&f, 0) == &g[1]);
    /* None routable anywhere: fail open to groups with registered targets, by weight. */
    atomic_store(&t[1].state, RLB_TARGET_UNHEALTHY);
    int fo = 0;
    for (int n = 0; n < 100; n++)
        fo += rlb_balance_group(&f, 0) == &g[0];
    CHECK_EQ_INT(fo, 95);
}

int main(void)
{
    RUN(redirect_placeholders);
    RUN(sticky_cookie_roundtrip);
    RUN(sticky_key_file);
    RUN(sticky_key_from_hex);
    RUN(cookie_lookup);
    RUN(weighted_split_is_exact);
    return TEST_SUMMARY();
}
