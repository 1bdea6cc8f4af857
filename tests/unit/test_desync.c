/* Unit tests for the desync classifier (src/desync.c).
 *
 * Two parts: the important cases of http_desync_guardian's corpus (and the raw-byte cases it
 * cannot express) as plain C cases, and a corpus test that classifies every case of the
 * guardian's YAML corpus when it is available (RINGLB_CORPUS_DIR, or ../shared/corpora next to
 * the checkout: ../../../shared/corpora/http-desync-guardian from tests/unit). The corpus test
 * is skipped, and counts as passed, when the folder is absent.
 */
#include <dirent.h>
#include <libfyaml.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ringlb/desync.h"
#include "test.h"

#define T_C RLB_DESYNC_COMPLIANT
#define T_AC RLB_DESYNC_ACCEPTABLE
#define T_AM RLB_DESYNC_AMBIGUOUS
#define T_S RLB_DESYNC_SEVERE
#define R(x) RLB_DESYNC_REASON_##x

/* Classify `raw` (n bytes, or strlen when n == 0) and compare tier and reason. */
static void expect_at(const char *raw, size_t n, enum rlb_desync_tier tier,
                      enum rlb_desync_reason reason, int line)
{
    struct rlb_desync_result r = rlb_desync_classify(raw, n ? n : strlen(raw));
    if (r.tier != tier || r.reason != reason) {
        fprintf(stderr, "%s:%d: expected %s/%s, got %s/%s\n", __FILE__, line,
                rlb_desync_tier_name(tier), rlb_desync_reason_name(reason),
                rlb_desync_tier_name(r.tier), rlb_desync_reason_name(r.reason));
        test_checks_failed_++;
    }
}
#define EXPECT(raw, tier, reason) expect_at(raw, 0, tier, reason, __LINE__)
#define EXPECT_N(raw, tier, reason) expect_at(raw, sizeof(raw) - 1, tier, reason, __LINE__)

#define UA "User-Agent: curl/8.0\r\n"

TEST(compliant)
{
    EXPECT("GET /foo/bar HTTP/1.1\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n" UA "Accept: */*\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("PUT /x HTTP/1.1\r\nContent-Length:  22220  \r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: deflate\r\n"
           "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
           T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip , deflate , \tidentity\t, chunked\r\n\r\n",
           T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: \t\tchunked;custom_param;\t\t\r\n\r\n",
           T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nMy-Custom-Header.!#$%&'*+^_`|~0123456789: \t\tv;\x60\xc2\x85"
           "\r\n\r\n",
           T_C, R(COMPLIANT));
    EXPECT("GET /\xd1\x81\xd1\x82 HTTP/1.1\r\n\r\n", T_C, R(COMPLIANT)); /* non-ASCII URI */
    EXPECT("GET /path-%0D-uri%20x HTTP/1.1\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("GET  HTTP/1.1\r\nX: 1\r\n\r\n", T_C, R(COMPLIANT)); /* empty URI */
    EXPECT("POST /x HTTP/1.1\r\nX-test: Transfer-Encoding: chunked\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", T_C, R(COMPLIANT));
}

TEST(acceptable)
{
    EXPECT("PUT /x HTTP/1.1\r\nx-my-custom-header : v\r\nContent-Length: 10\r\n\r\n",
           T_AC, R(NON_COMPLIANT_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nSome-Header: v\x01\r\nTransfer-Encoding: chunked\r\n\r\n",
           T_AC, R(NON_COMPLIANT_HEADER));
    EXPECT("GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", T_AC, R(GET_HEAD_ZERO_CONTENT_LENGTH));
    EXPECT("HEAD /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", T_AC,
           R(GET_HEAD_ZERO_CONTENT_LENGTH));
    EXPECT("GET /x HTTP/0.9\r\nX: 1\r\n\r\n", T_AC, R(NON_COMPLIANT_VERSION));
    EXPECT("GET /x\r\n\r\n", T_AC, R(NON_COMPLIANT_VERSION));
    EXPECT("GET /x \r\nX: 1\r\n\r\n", T_AC, R(NON_COMPLIANT_VERSION));
    EXPECT("GET /x HTTP/1.2\r\n\r\n", T_AC, R(NON_COMPLIANT_VERSION));
    EXPECT("GET /x HTTP/1.1 \r\n\r\n", T_AC, R(NON_COMPLIANT_VERSION));
    EXPECT("GET /x?p=not escaped spaces HTTP/1.1\r\n\r\n", T_AC, R(SPACE_IN_URI));
}

TEST(ambiguous)
{
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", T_AM, R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n", T_AM, R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n\x01Transfer-Encoding: chunked\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n", T_AM, R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nTransfer---Encoding: chunked\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nTran\xc5\xbf" "fer-Encoding: chunked\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER)); /* long s */
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encod\xc4\xb1ng: chunked\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER)); /* dotless i */
    EXPECT("POST /x HTTP/1.1\r\nTransfer\xe2\x80\x95" "Encoding: chunked\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n\xc2\xa0" "Content-Length: 100\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nContent_Length: 1000\r\n\r\n", T_AM, R(SUSPICIOUS_HEADER));
    /* not look-alikes */
    EXPECT("POST /x HTTP/1.1\r\nX-Transfer-Encoding: chunked\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("POST /x HTTP/1.1\r\nContent-Lengths: 5\r\n\r\n", T_C, R(COMPLIANT));
    EXPECT("PUT /x HTTP/1.1\r\nContent-Length: 1000\r\nContent-Length: 1000\r\n\r\n", T_AM,
           R(DUPLICATE_CONTENT_LENGTH));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n", T_AM,
           R(BOTH_TE_CL_PRESENT));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 100\r\n\r\n", T_AM,
           R(BOTH_TE_CL_PRESENT));
    EXPECT("GET /x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", T_AM,
           R(UNDEFINED_CONTENT_LENGTH_SEMANTICS));
    EXPECT("HEAD /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", T_AM,
           R(UNDEFINED_TRANSFER_ENCODING_SEMANTICS));
    EXPECT("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", T_AM,
           R(UNDEFINED_TRANSFER_ENCODING_SEMANTICS));
    EXPECT("POST /x\r\nContent-Length: 100\r\n\r\n", T_AM,
           R(UNDEFINED_CONTENT_LENGTH_SEMANTICS));
    EXPECT("POST /x HTTP/1.1\r\n: chunked\r\nContent-Length: 1000\r\n\r\n", T_AM, R(EMPTY_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n   \t\t  : chunked\r\nContent-Length: 1\r\n\r\n", T_AM,
           R(EMPTY_HEADER));
    EXPECT("GET /endpoint_a\tHTTP/1.1 HTTP/1.1\r\n\r\n", T_AM, R(AMBIGUOUS_URI));
    EXPECT("GET /a\x01 HTTP/1.1\r\n\r\n", T_AM, R(AMBIGUOUS_URI));
    EXPECT("GET HTTP/1.1\r\nHost: a\r\n\r\n", T_AM, R(AMBIGUOUS_URI)); /* missing URI */
    /* suspicious header shadows TE+CL */
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 10\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER));
}

TEST(severe)
{
    EXPECT("POST /x HTTP/1.1\r\nContent-Length: 1000\r\nContent-Length: 100\r\n\r\n", T_S,
           R(MULTIPLE_CONTENT_LENGTH));
    EXPECT("POST /x HTTP/1.1\r\nContent-Length : 100\r\nContent-Length: 1000\r\n\r\n", T_S,
           R(MULTIPLE_CONTENT_LENGTH));
    const char *bad_cl[] = {"1000,1000", "1000 1000", "1000.1000", "18446744073709551616",
                            "+5", "-5", "0x5", "5 5", "1000\x01", "\x01" "1000", "", "  ",
                            "1e3", "\xc2\xa0" "5"};
    for (size_t i = 0; i < sizeof(bad_cl) / sizeof(bad_cl[0]); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "POST /x HTTP/1.1\r\nContent-Length: %s\r\n\r\n", bad_cl[i]);
        EXPECT(buf, T_S, R(BAD_CONTENT_LENGTH));
    }
    EXPECT("POST /x HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", T_C, R(COMPLIANT));
    const char *bad_te[] = {"xchunked", "chunk", "chunked\x01", "\x01" "chunked", "chunked\x7f",
                            "chunked,", "cow", "chunked, gzip", "\xc2\xa0" "chunked"};
    for (size_t i = 0; i < sizeof(bad_te) / sizeof(bad_te[0]); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "POST /x HTTP/1.1\r\nTransfer-Encoding: %s\r\n\r\n", bad_te[i]);
        EXPECT(buf, T_S, R(BAD_TRANSFER_ENCODING));
    }
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
           T_S, R(BAD_TRANSFER_ENCODING)); /* chunked not last, across fields */
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
           T_S, R(MULTIPLE_TRANSFER_ENCODING_CHUNKED));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked,chunked\r\n\r\n", T_S,
           R(MULTIPLE_TRANSFER_ENCODING_CHUNKED));
    EXPECT("POST /x HTTP/1.1\r\nTransfer-Encoding : chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
           T_S, R(MULTIPLE_TRANSFER_ENCODING_CHUNKED));
    EXPECT("bad_method\x01 /x HTTP/1.1\r\n\r\n", T_S, R(BAD_METHOD));
    EXPECT("GET\t/foo\tHTTP/1.1\r\nHost: a\r\n\r\n", T_S, R(BAD_METHOD));
    EXPECT(" /x HTTP/1.1\r\n\r\n", T_S, R(BAD_METHOD));
    EXPECT("GET /a HTTP/1.1 HTTP/1.1\r\n\r\n", T_S, R(BAD_VERSION));
    EXPECT("GET /a HTTP/2.0\r\n\r\n", T_S, R(BAD_VERSION));
    EXPECT("GET /a http/1.1\r\n\r\n", T_S, R(BAD_VERSION));
    EXPECT("GET /a HTTP/1.1 junk\r\n\r\n", T_S, R(BAD_VERSION));
    EXPECT("GET /a\rHTTP/1.1 HTTP/1.1\r\n\r\n", T_S, R(BAD_URI));
    EXPECT_N("GET /a\0HTTP/1.1 HTTP/1.1\r\n\r\n", T_S, R(BAD_URI));
    /* the URI of a versionless line carries "\tHTTP/1.1": a smuggled request line */
    EXPECT("GET /a\tHTTP/1.1\r\nHost:localhost\r\n\r\nGET\t/b\t HTTP/1.1\r\n\r\n", T_S,
           R(BAD_URI));
    EXPECT_N("POST /x HTTP/1.1\r\nBad: gzip, \0deflate\r\n\r\n", T_S, R(BAD_HEADER));
    EXPECT_N("POST /x HTTP/1.1\r\nContent-Length: 6\r\n\0Transfer-Encoding: chunked\r\n\r\n",
             T_S, R(BAD_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nContent-Length: 4\r\nX-test:  x\rTransfer-Encoding: chunked"
           "\r\n\r\n",
           T_S, R(BAD_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n\rTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", T_S,
           R(BAD_HEADER));
    EXPECT_N("POST /x HTTP/1.1\r\nTransfer-Encoding: \0chunked\r\nContent-Length: 6\r\n\r\n", T_S,
             R(BAD_HEADER));
    /* the most severe finding wins; at equal tiers the guardian's order of checks */
    EXPECT("POST /foo/bar\t/baz HTTP/1.1\r\nX: \x11v\r\nTransfer-Encoding: chunked\x80\r\n"
           "Content-Length: $9000\r\n\r\n",
           T_S, R(BAD_TRANSFER_ENCODING));
    EXPECT("GET /foo/bar\t/baz HTTP/1.1\r\nX: v\x01\r\nContent-Length: 9000\r\n\r\n", T_AM,
           R(UNDEFINED_CONTENT_LENGTH_SEMANTICS));
    EXPECT_N("PUT /x HTTP/1.1\r\nSome-Header\t: \x11\x12 \0 bad\r\nTransfer-Encoding\t: chunked\r\n"
             "\r\n",
             T_S, R(BAD_HEADER));
}

TEST(raw_line_endings)
{
    /* bare LF: the LF is inside the line it ends, as in the guardian's corpus */
    EXPECT("GET /x HTTP/1.1\nHost: a\r\n\r\n", T_S, R(BAD_VERSION));
    EXPECT("GET /endpoint_a\nHTTP/1.1 HTTP/1.1\r\nX: 1\r\n\r\n", T_S, R(BAD_URI));
    EXPECT("GET /x HTTP/1.1\r\nHost: a\n\r\n", T_S, R(BAD_HEADER));
    EXPECT("GET /x HTTP/1.1\r\nHost: a\r\n\n", T_S, R(BAD_HEADER));
    EXPECT("GET /x HTTP/1.1\nHost: a\n\n", T_S, R(BAD_VERSION));
    EXPECT("POST /x HTTP/1.1\r\nSome-Bad-Header: value\n content-length: 1000\r\n"
           "Content-Length: 100\r\n\r\n",
           T_S, R(BAD_HEADER));
    EXPECT("POST /x HTTP/1.1\r\nSome-Bad-Header\n: Content-Length:1000\r\n"
           " Transfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n",
           T_S, R(BAD_HEADER));
    /* CR before LF at the end of the blank line only */
    EXPECT("GET /x HTTP/1.1\r\nA: b\r\n\r\r\n", T_S, R(BAD_HEADER));
    /* no empty line: not a complete head */
    EXPECT("GET /x HTTP/1.1\r\nHost: a\r\n", T_S, R(BAD_HEADER));
    EXPECT("GET /x HTTP/1.1", T_S, R(BAD_HEADER));
    EXPECT_N("", T_S, R(BAD_HEADER));
}

TEST(obs_fold_and_colons)
{
    /* a folded continuation is a value with CR LF in it */
    EXPECT("GET /x HTTP/1.1\r\nHost: localhost\r\n another-line\r\n\r\n", T_S, R(BAD_HEADER));
    EXPECT("GET /x HTTP/1.1\r\nContent-Type: a;\r\n b;\r\n\r\n", T_S, R(BAD_HEADER));
    /* a folded line that looks like a header */
    EXPECT("GET /x HTTP/1.1\r\nA: A\r\n X-Ignore: 1\r\n\r\n", T_AM, R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n Transfer-Encoding: chunked\r\nContent-Length: 1000\r\n\r\n", T_AM,
           R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n Transfer-Encoding: chunked\r\n Content-Length: 1000\r\n\r\n",
           T_AM, R(SUSPICIOUS_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n Content-Length: 100\r\nContent-Length: 1000\r\n\r\n", T_S,
           R(MULTIPLE_CONTENT_LENGTH));
    EXPECT("GET /x HTTP/1.1\r\nA: A\r\n Content-Length: 10\r\nContent-Length: 100\r\n\r\n", T_S,
           R(MULTIPLE_CONTENT_LENGTH));
    /* first line after the request line starting with whitespace: a header with an odd name */
    EXPECT("GET /x HTTP/1.1\r\n X-Foo: 1\r\n\r\n", T_AC, R(NON_COMPLIANT_HEADER));
    /* no colon at all */
    EXPECT("GET /x HTTP/1.1\r\nMy-header\r\nAnother-header:1\r\n\r\n", T_S, R(BAD_HEADER));
    EXPECT("POST /x HTTP/1.1\r\n:SomeHeader:Transfer-Encoding:: chunked\r\n"
           "Content-Length: 1000\r\n\r\n",
           T_AM, R(EMPTY_HEADER));
}

TEST(version_and_framing_semantics)
{
    EXPECT("POST /x HTTP/0.9\r\nTransfer-Encoding: chunked\r\n\r\n", T_AM,
           R(UNDEFINED_TRANSFER_ENCODING_SEMANTICS));
    EXPECT("POST /x HTTP/1.0\r\nContent-Length: 5\r\n\r\n", T_C, R(COMPLIANT));
    /* under HTTP/1.0 a TE makes everything else about TE/CL moot */
    EXPECT("POST /x HTTP/1.0\r\nTransfer-Encoding: xchunked\r\nContent-Length: 1\r\n\r\n", T_AM,
           R(UNDEFINED_TRANSFER_ENCODING_SEMANTICS));
    EXPECT("GET /x HTTP/1.1\r\nX: \x01\r\nTransfer-Encoding: chunked\r\n\r\n", T_AM,
           R(UNDEFINED_TRANSFER_ENCODING_SEMANTICS));
    EXPECT("get /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n", T_C, R(COMPLIANT)); /* exact GET */
    EXPECT("POST /x HTTP/1.1\r\nTrAnSfEr-EnCoDiNg:  ChUnKeD\r\nContent-Length: 4\r\n\r\n", T_AM,
           R(BOTH_TE_CL_PRESENT));
}

TEST(actions_and_names)
{
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_MONITOR, T_S), RLB_DESYNC_ACT_FORWARD);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_MONITOR, T_AM), RLB_DESYNC_ACT_FORWARD);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_DEFENSIVE, T_C), RLB_DESYNC_ACT_FORWARD);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_DEFENSIVE, T_AC), RLB_DESYNC_ACT_FORWARD);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_DEFENSIVE, T_AM), RLB_DESYNC_ACT_FORWARD_CLOSE);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_DEFENSIVE, T_S), RLB_DESYNC_ACT_REJECT);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_STRICTEST, T_C), RLB_DESYNC_ACT_FORWARD);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_STRICTEST, T_AC), RLB_DESYNC_ACT_REJECT);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_STRICTEST, T_AM), RLB_DESYNC_ACT_REJECT);
    CHECK_EQ_INT(rlb_desync_action(RLB_DESYNC_STRICTEST, T_S), RLB_DESYNC_ACT_REJECT);
    CHECK_EQ_STR(rlb_desync_tier_name(T_AM), "Ambiguous");
    CHECK_EQ_STR(rlb_desync_tier_name((enum rlb_desync_tier)9), "Unknown");
    CHECK_EQ_STR(rlb_desync_reason_name(R(BOTH_TE_CL_PRESENT)), "BothTeClPresent");
    CHECK_EQ_STR(rlb_desync_reason_name(R(UNDEFINED_TRANSFER_ENCODING_SEMANTICS)),
                 "UndefinedTransferEncodingSemantics");
    CHECK_EQ_STR(rlb_desync_reason_name(R(COUNT)), "Unknown");
    for (int r = 0; r < RLB_DESYNC_REASON_COUNT; r++) {
        CHECK(rlb_desync_reason_name((enum rlb_desync_reason)r) != NULL);
        CHECK(strcmp(rlb_desync_reason_name((enum rlb_desync_reason)r), "Unknown") != 0);
    }
    CHECK_EQ_INT(rlb_desync_reason_tier(R(COMPLIANT)), T_C);
    CHECK_EQ_INT(rlb_desync_reason_tier(R(SPACE_IN_URI)), T_AC);
    CHECK_EQ_INT(rlb_desync_reason_tier(R(EMPTY_HEADER)), T_AM);
    CHECK_EQ_INT(rlb_desync_reason_tier(R(BAD_METHOD)), T_S);
}

/* ---- the guardian's corpus ------------------------------------------------------------- */

/* A growing byte string. */
struct bytes {
    char *p;
    size_t n, cap;
};

static void put(struct bytes *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put_utf8(struct bytes *b, unsigned cp)
{
    char u[2];
    if (cp < 0x80) {
        u[0] = (char)cp;
        put(b, u, 1);
    } else {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        put(b, u, 2);
    }
}

/* Append scalar `s` with the corpus's own escapes resolved: the corpus runner unescapes every
 * string after YAML did (\xNN is the code point NN, \t \r \n \b \f, \<c> is c). */
static void put_unescaped(struct bytes *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            put(b, s + i, 1);
            continue;
        }
        char c = s[++i];
        switch (c) {
        case 'x': {
            unsigned v = 0;
            for (int k = 0; k < 2 && i + 1 < n; k++) {
                char h = s[++i];
                v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            put_utf8(b, v & 0xff);
            break;
        }
        case 'b': put(b, "\b", 1); break;
        case 'f': put(b, "\f", 1); break;
        case 'n': put(b, "\n", 1); break;
        case 'r': put(b, "\r", 1); break;
        case 't': put(b, "\t", 1); break;
        default: put(b, &c, 1); break;
        }
    }
}

/* Append the unescaped scalar at key `key` of mapping `m`; false when missing. */
static bool put_field(struct bytes *b, struct fy_node *m, const char *key)
{
    struct fy_node *v = fy_node_mapping_lookup_by_string(m, key, FY_NT);
    if (!v)
        return false;
    if (!fy_node_is_scalar(v))
        return false;
    size_t n;
    const char *s = fy_node_get_scalar(v, &n);
    if (!s)
        return false;
    put_unescaped(b, s, n);
    return true;
}

static bool field_is(struct fy_node *m, const char *key, const char *want)
{
    struct bytes b = {0};
    bool ok = put_field(&b, m, key) && strcmp(b.p ? b.p : "", want) == 0;
    free(b.p);
    return ok;
}

static int corpus_cases, corpus_agree;

/* Run every case of one YAML file. */
static void run_corpus_file(const char *path, const char *file)
{
    struct fy_document *doc = fy_document_build_from_file(NULL, path);
    if (!doc) {
        fprintf(stderr, "%s: not valid YAML\n", path);
        test_checks_failed_++;
        return;
    }
    struct fy_node *root = fy_document_root(doc);
    void *it = NULL;
    struct fy_node *c;
    while (root && fy_node_is_sequence(root) && (c = fy_node_sequence_iterate(root, &it))) {
        struct bytes raw = {0}, name = {0};
        put_field(&name, c, "name");
        bool ok = put_field(&raw, c, "method");
        put(&raw, " ", 1);
        ok &= put_field(&raw, c, "uri");
        put(&raw, " ", 1);
        ok &= put_field(&raw, c, "version");
        put(&raw, "\r\n", 2);
        struct fy_node *hs = fy_node_mapping_lookup_by_string(c, "headers", FY_NT);
        if (hs && fy_node_is_sequence(hs)) {
            void *hit = NULL;
            struct fy_node *h;
            while ((h = fy_node_sequence_iterate(hs, &hit))) {
                ok &= put_field(&raw, h, "name");
                put(&raw, ": ", 2);
                ok &= put_field(&raw, h, "value");
                put(&raw, "\r\n", 2);
            }
        }
        put(&raw, "\r\n", 2);
        struct fy_node *exp = fy_node_mapping_lookup_by_string(c, "expected", FY_NT);
        corpus_cases++;
        if (!ok || !exp) {
            fprintf(stderr, "%s: case \"%s\": malformed\n", file, name.p ? name.p : "?");
            test_checks_failed_++;
        } else {
            struct rlb_desync_result r = rlb_desync_classify(raw.p, raw.n);
            const char *tier = rlb_desync_tier_name(r.tier);
            const char *reason = rlb_desync_reason_name(r.reason);
            if (field_is(exp, "tier", tier) && field_is(exp, "reason", reason)) {
                corpus_agree++;
            } else {
                struct bytes et = {0}, er = {0};
                put_field(&et, exp, "tier");
                put_field(&er, exp, "reason");
                fprintf(stderr, "%s: case \"%s\": expected %s/%s, got %s/%s\n", file,
                        name.p ? name.p : "?", et.p ? et.p : "?", er.p ? er.p : "?", tier,
                        reason);
                free(et.p);
                free(er.p);
                test_checks_failed_++;
            }
        }
        free(raw.p);
        free(name.p);
    }
    fy_document_destroy(doc);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(guardian_corpus)
{
    const char *dir = getenv("RINGLB_CORPUS_DIR");
    if (!dir || !*dir)
        dir = "../../../shared/corpora/http-desync-guardian";
    DIR *d = opendir(dir);
    if (!d) {
        printf("note: http-desync-guardian corpus not found at %s: corpus test skipped\n", dir);
        return;
    }
    char *names[64];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 64) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".yaml") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        run_corpus_file(path, names[i]);
        free(names[i]);
    }
    printf("http-desync-guardian corpus: %d/%d cases agree (tier and reason)\n", corpus_agree,
           corpus_cases);
    CHECK(corpus_cases > 0);
}

int main(void)
{
    RUN(compliant);
    RUN(acceptable);
    RUN(ambiguous);
    RUN(severe);
    RUN(raw_line_endings);
    RUN(obs_fold_and_colons);
    RUN(version_and_framing_semantics);
    RUN(actions_and_names);
    RUN(guardian_corpus);
    return TEST_SUMMARY();
}
