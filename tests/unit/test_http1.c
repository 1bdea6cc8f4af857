/* Unit tests for HTTP/1 head handling (src/http1.c): framing, parsing, rewriting. */
#include <stdlib.h>

#include "ringlb/http1.h"
#include "test.h"

static struct rlb_http_head head;

static int parse(llhttp_t *p, struct rlb_http_ctx *ctx, const char *s, enum llhttp_type type)
{
    memset(ctx, 0, sizeof(*ctx));
    llhttp_init(p, type, rlb_http1_settings());
    p->data = ctx;
    ctx->head = &head;
    static char buf[65536];
    size_t n = strlen(s);
    memcpy(buf, s, n + 1);
    return rlb_http1_parse_head(p, ctx, buf, (uint32_t)n);
}

static uint32_t scan_all(const char *s, uint32_t step)
{
    struct rlb_head_scan sc = {0};
    uint32_t len = (uint32_t)strlen(s);
    for (uint32_t off = 0; off < len; off += step) {
        uint32_t n = len - off < step ? len - off : step;
        uint32_t found = rlb_http1_scan(&sc, s + off, n);
        if (found)
            return found;
    }
    return 0;
}

TEST(scan_finds_end_of_head)
{
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    CHECK_EQ_INT(scan_all(req, 1000), 27);
    CHECK_EQ_INT(scan_all(req, 1), 27); /* byte by byte */
    CHECK_EQ_INT(scan_all(req, 3), 27);
    CHECK_EQ_INT(scan_all("GET / HTTP/1.1\nHost: a\n\nX", 1000), 24); /* bare LF */
    CHECK_EQ_INT(scan_all("GET / HTTP/1.1\r\nHost: a\r\n", 1000), 0);
    struct rlb_head_scan sc = {0};
    rlb_http1_scan(&sc, "GET /abc HTTP/1.1\r\nHo", 21);
    CHECK_EQ_INT(sc.first_line, 19);
}

TEST(parse_request_head)
{
    llhttp_t p;
    struct rlb_http_ctx ctx;
    const char *req = "POST /x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
                      "Content-Length: 5\r\nX-Pad:   spaced value  \r\nExpect: 100-continue\r\n\r\n";
    CHECK_EQ_INT(parse(&p, &ctx, req, HTTP_REQUEST), HPE_OK);
    CHECK_EQ_INT(head.n_hdrs, 4);
    CHECK(head.method_len == 4 && memcmp(head.method, "POST", 4) == 0);
    CHECK(head.url_len == 6 && memcmp(head.url, "/x?y=1", 6) == 0);
    CHECK_EQ_INT(head.major, 1);
    CHECK_EQ_INT(head.minor, 1);
    CHECK(head.has_content_length);
    CHECK_EQ_INT(head.content_length, 5);
    CHECK(!head.chunked);
    CHECK(head.expect_continue);
    CHECK(head.keep_alive);
    const struct rlb_hdr *pad = rlb_http1_find(&head, "x-pad");
    CHECK(pad && pad->value_len == 12 && memcmp(pad->value, "spaced value", 12) == 0);
    CHECK(!ctx.message_done); /* a body follows */
}

TEST(parse_chunked_and_upgrade)
{
    llhttp_t p;
    struct rlb_http_ctx ctx;
    CHECK_EQ_INT(parse(&p, &ctx,
                       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                       HTTP_REQUEST), HPE_OK);
    CHECK(head.chunked);
    CHECK(head.has_transfer_encoding);
    CHECK_EQ_INT(parse(&p, &ctx,
                       "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                       "Upgrade: websocket\r\n\r\n", HTTP_REQUEST), HPE_OK);
    CHECK(head.upgrade);
    CHECK_EQ_INT(parse(&p, &ctx, "GET / HTTP/1.0\r\n\r\n", HTTP_REQUEST), HPE_OK);
    CHECK(!head.keep_alive);
    CHECK(ctx.message_done);
    CHECK(parse(&p, &ctx, "GET / HTTP/1.1\r\nHost a\r\n\r\n", HTTP_REQUEST) != HPE_OK);
}

TEST(obs_fold_and_controls_in_values)
{
    llhttp_t p;
    struct rlb_http_ctx ctx;
    struct rlb_forward_info fi = {0};
    fi.client_ip = "1.2.3.4";
    fi.listener_port = 80;
    fi.listener_host = "x";
    int err = parse(&p, &ctx, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\nY: c\r\n\r\n",
                    HTTP_REQUEST);
    if (err == HPE_OK) {
        /* llhttp kept the fold: it must come out as spaces, never as a line break */
        char out[2048];
        uint32_t n = rlb_http1_write_request(out, sizeof(out) - 1, &head, &fi);
        out[n] = 0;
        CHECK(strstr(out, "\r\n\r\n") == out + n - 4);
        const char *x = strstr(out, "\r\nX: a");
        CHECK(x && strchr("  \t", x[7]) && strstr(out, "\r\nY: c\r\n"));
        CHECK(!head.bad_value);
    }
    /* a control character in a value: refused by llhttp or flagged by ringlb */
    err = parse(&p, &ctx, "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", HTTP_REQUEST);
    CHECK(err != HPE_OK || head.bad_value);
    err = parse(&p, &ctx, "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", HTTP_REQUEST);
    CHECK(err != HPE_OK || head.bad_value);
}

TEST(header_names_must_be_tokens)
{
    CHECK(rlb_http1_is_token("X-Forwarded-For", 15));
    CHECK(rlb_http1_is_token("a!#$%&'*+-.^_`|~9", 17));
    CHECK(!rlb_http1_is_token("Bad Header", 10));
    CHECK(!rlb_http1_is_token("", 0));
    CHECK(!rlb_http1_is_token("a:b", 3));
    CHECK(!rlb_http1_is_token("a\tb", 3));
    CHECK(!rlb_http1_is_token("caf\xc3\xa9", 5));
}

static struct rlb_forward_info info(void)
{
    struct rlb_forward_info fi = {0};
    fi.client_ip = "10.1.2.3";
    fi.client_port = 40000;
    fi.listener_port = 8080;
    fi.listener_host = "127.0.0.1:8080";
    fi.xff = RLB_XFF_APPEND;
    fi.now_s = 0x5f000000;
    fi.rand[0] = 0x0123456789abull;
    fi.rand[1] = 0xba9876543210ull;
    return fi;
}

static char out[8192];

static const char *rewrite(const char *req, const struct rlb_forward_info *fi)
{
    llhttp_t p;
    struct rlb_http_ctx ctx;
    if (parse(&p, &ctx, req, HTTP_REQUEST) != HPE_OK)
        return "(parse error)";
    uint32_t n = rlb_http1_write_request(out, sizeof(out) - 1, &head, fi);
    out[n] = 0;
    return out;
}

TEST(request_forwarded_headers)
{
    struct rlb_forward_info fi = info();
    const char *r = rewrite("GET /a HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1\r\n"
                            "X-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\n"
                            "X-Forwarded-Port: 1\r\nAccept: */*\r\n\r\n", &fi);
    CHECK(strncmp(r, "GET /a HTTP/1.1\r\nHost: example.com:8080\r\n", 41) == 0);
    CHECK(strstr(r, "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\n") != NULL);
    CHECK(strstr(r, "X-Forwarded-Proto: http\r\n") != NULL);
    CHECK(strstr(r, "X-Forwarded-Proto: https") == NULL);
    CHECK(strstr(r, "X-Forwarded-Port: 8080\r\n") != NULL);
    CHECK(strstr(r, "X-Forwarded-Port: 1\r\n") == NULL);
    CHECK(strstr(r, "X-Amzn-Trace-Id: Root=1-5f000000-0123456789abba9876543210\r\n") != NULL);
    CHECK(strstr(r, "Accept: */*\r\n") != NULL);
    CHECK(strcmp(r + strlen(r) - 4, "\r\n\r\n") == 0);

    fi.xff_client_port = true;
    r = rewrite("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &fi);
    CHECK(strstr(r, "X-Forwarded-For: 10.1.2.3:40000\r\n") != NULL);
    fi.xff = RLB_XFF_PRESERVE;
    r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n", &fi);
    CHECK(strstr(r, "X-Forwarded-For: 9.9.9.9\r\n") != NULL);
    CHECK(strstr(r, "10.1.2.3") == NULL);
    fi.xff = RLB_XFF_REMOVE;
    r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n", &fi);
    CHECK(strstr(r, "X-Forwarded-For") == NULL);
}

TEST(request_host_handling)
{
    struct rlb_forward_info fi = info();
    CHECK(strstr(rewrite("GET / HTTP/1.1\r\nHost: a.com:9000\r\n\r\n", &fi),
                 "Host: a.com:9000\r\n") != NULL);
    CHECK(strstr(rewrite("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", &fi),
                 "Host: [::1]:8080\r\n") != NULL);
    fi.listener_port = 443;
    CHECK(strstr(rewrite("GET / HTTP/1.1\r\nHost: a.com:443\r\n\r\n", &fi),
                 "Host: a.com\r\n") != NULL);
    fi.listener_port = 80;
    CHECK(strstr(rewrite("GET / HTTP/1.1\r\nHost: a.com\r\n\r\n", &fi), "Host: a.com\r\n") != NULL);
    fi.preserve_host = true;
    fi.listener_port = 8080;
    CHECK(strstr(rewrite("GET / HTTP/1.1\r\nHost: a.com\r\n\r\n", &fi), "Host: a.com\r\n") != NULL);
    fi.preserve_host = false;
    CHECK(strstr(rewrite("GET / HTTP/1.0\r\n\r\n", &fi), "Host: 127.0.0.1:8080\r\n") != NULL);
}

TEST(request_hop_by_hop_removed)
{
    struct rlb_forward_info fi = info();
    const char *r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\n"
                            "Keep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: trailers\r\n"
                            "X-Secret: 1\r\nX-Public: 2\r\n\r\n", &fi);
    CHECK(strstr(r, "Connection") == NULL);
    CHECK(strstr(r, "Keep-Alive") == NULL);
    CHECK(strstr(r, "TE:") == NULL);
    CHECK(strstr(r, "X-Secret") == NULL);
    CHECK(strstr(r, "X-Public: 2\r\n") != NULL);
    r = rewrite("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                &fi);
    CHECK(strstr(r, "Connection: Upgrade\r\nUpgrade: websocket\r\n") != NULL);
}

TEST(request_trace_id_kept)
{
    struct rlb_forward_info fi = info();
    const char *r = rewrite("GET / HTTP/1.1\r\nHost: a\r\n"
                            "X-Amzn-Trace-Id: Root=1-abcdef01-0123456789abcdef01234567\r\n\r\n", &fi);
    CHECK(strstr(r, "X-Amzn-Trace-Id: Self=1-5f000000-0123456789abba9876543210;"
                    "Root=1-abcdef01-0123456789abcdef01234567\r\n") != NULL);
    /* An invalid Root is replaced by a new one. */
    r = rewrite("GET / HTTP/1.1\r\nHost: a\r\nX-Amzn-Trace-Id: Root=nonsense\r\n\r\n", &fi);
    CHECK(strstr(r, "X-Amzn-Trace-Id: Root=1-5f000000-") != NULL);
    CHECK(strstr(r, "nonsense") == NULL);
}

TEST(xff_count)
{
    llhttp_t p;
    struct rlb_http_ctx ctx;
    parse(&p, &ctx, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2,3.3.3.3\r\n"
                    "x-forwarded-for: 4.4.4.4\r\n\r\n", HTTP_REQUEST);
    CHECK_EQ_INT(rlb_http1_xff_count(&head), 4);
    parse(&p, &ctx, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP_REQUEST);
    CHECK_EQ_INT(rlb_http1_xff_count(&head), 0);
}

TEST(response_rewrite)
{
    llhttp_t p;
    struct rlb_http_ctx ctx;
    CHECK_EQ_INT(parse(&p, &ctx, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: x\r\n"
                                 "Transfer-Encoding: chunked\r\nX-App: 1\r\n\r\n", HTTP_RESPONSE),
                 HPE_OK);
    CHECK_EQ_INT(head.status, 200);
    CHECK(head.chunked);
    uint32_t n = rlb_http1_write_response(out, sizeof(out) - 1, &head, 0, NULL);
    out[n] = 0;
    CHECK_EQ_STR(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-App: 1\r\n\r\n");
    n = rlb_http1_write_response(out, sizeof(out) - 1, &head, RLB_RESP_DECHUNK | RLB_RESP_CLOSE,
                                 "Set-Cookie: a=b\r\n");
    out[n] = 0;
    CHECK_EQ_STR(out, "HTTP/1.1 200 OK\r\nX-App: 1\r\nSet-Cookie: a=b\r\nConnection: close\r\n\r\n");
    CHECK_EQ_INT(rlb_http1_write_response(out, 10, &head, 0, NULL), 0); /* too small */
    CHECK_EQ_INT(parse(&p, &ctx, "HTTP/1.0 204 No Content\r\n\r\n", HTTP_RESPONSE), HPE_OK);
    n = rlb_http1_write_response(out, sizeof(out) - 1, &head, RLB_RESP_KEEPALIVE10, NULL);
    out[n] = 0;
    CHECK_EQ_STR(out, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
}

TEST(local_responses)
{
    uint32_t n = rlb_http1_write_local(out, sizeof(out) - 1, 502, NULL, NULL, 0, NULL, true,
                                       false);
    out[n] = 0;
    CHECK(strncmp(out, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    CHECK(strstr(out, "Server: awselb/2.0\r\n") != NULL);
    CHECK(strstr(out, "Connection: close\r\n") != NULL);
    CHECK(strstr(out, "<title>502 Bad Gateway</title>") != NULL);
    const char *body = strstr(out, "\r\n\r\n") + 4;
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
    CHECK(strstr(out, cl) != NULL);
    n = rlb_http1_write_local(out, sizeof(out) - 1, 200, "text/plain", "hi", 2,
                              "Location: /x\r\n", false, true);
    out[n] = 0;
    CHECK(strstr(out, "Content-Type: text/plain; charset=utf-8\r\n") != NULL);
    CHECK(strstr(out, "Content-Length: 2\r\n") != NULL);
    CHECK(strstr(out, "Location: /x\r\n") != NULL);
    CHECK(strstr(out, "Connection: keep-alive\r\n\r\n") != NULL);
    CHECK(strcmp(out + strlen(out) - 4, "\r\n\r\n") == 0); /* HEAD: no body */
    CHECK_EQ_STR(rlb_http1_reason(463), "X-Forwarded-For Header Too Long");
    CHECK_EQ_INT(strlen(rlb_http1_date()), 29);
}

int main(void)
{
    RUN(scan_finds_end_of_head);
    RUN(parse_request_head);
    RUN(parse_chunked_and_upgrade);
    RUN(header_names_must_be_tokens);
    RUN(obs_fold_and_controls_in_values);
    RUN(request_forwarded_headers);
    RUN(request_host_handling);
    RUN(request_hop_by_hop_removed);
    RUN(request_trace_id_kept);
    RUN(xff_count);
    RUN(response_rewrite);
    RUN(local_responses);
    return TEST_SUMMARY();
}
