/* fuzz_request_head.c — libFuzzer target for the request-head path: framing, desync
 * classification, llhttp parsing and re-serialisation of the request for a target.
 *
 * For any input: the classifier runs on the raw bytes; rlb_http1_scan() frames a head (fed in
 * two pieces to exercise its incremental state); the head, copied to a buffer of exactly its
 * size so ASan catches any over-read, is classified, parsed with rlb_http1_parse_head() and,
 * when llhttp accepts it, written out with rlb_http1_write_request(). Invariants (a violation
 * traps, so the fuzzer reports it): a verdict's tier is its reason's tier; the written request
 * fits the advertised bound; what ringlb forwards is one complete head with CRLF line ends and
 * no NUL, bare CR or bare LF (SPEC 3.3), which llhttp parses again.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringlb/desync.h"
#include "ringlb/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rlb_http_head head, head2;

static void classify(const char *p, size_t n)
{
    struct rlb_desync_result r = rlb_desync_classify(p, n);
    if (r.tier != rlb_desync_reason_tier(r.reason) || !rlb_desync_reason_name(r.reason) ||
        !rlb_desync_tier_name(r.tier))
        __builtin_trap();
}

static int parse(llhttp_t *p, struct rlb_http_ctx *ctx, struct rlb_http_head *h, char *buf,
                 uint32_t len)
{
    memset(ctx, 0, sizeof(*ctx));
    llhttp_init(p, HTTP_REQUEST, rlb_http1_settings());
    p->data = ctx;
    ctx->head = h;
    return rlb_http1_parse_head(p, ctx, buf, len);
}

/* The forwarded head: CRLF line ends only, no NUL, one empty line at its very end. */
static void check_forwarded(const char *out, uint32_t n)
{
    if (n < 4 || memcmp(out + n - 4, "\r\n\r\n", 4) != 0)
        __builtin_trap();
    for (uint32_t i = 0; i < n; i++) {
        char c = out[i];
        if (c == '\0')
            __builtin_trap();
        if (c == '\r' && (i + 1 >= n || out[i + 1] != '\n'))
            __builtin_trap();
        if (c == '\n' && (i == 0 || out[i - 1] != '\r'))
            __builtin_trap();
    }
    struct rlb_head_scan sc = {0};
    if (rlb_http1_scan(&sc, out, n) != n)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > RLB_MAX_REQUEST_HEAD + 1024)
        return 0;
    classify((const char *)data, size);

    /* Frame a head, in two pieces. */
    uint32_t len = (uint32_t)size;
    uint32_t cut = len ? data[len - 1] % (len + 1) : 0;
    struct rlb_head_scan sc = {0};
    uint32_t hlen = rlb_http1_scan(&sc, (const char *)data, cut);
    if (!hlen) {
        if (sc.scanned != cut)
            __builtin_trap();
        hlen = rlb_http1_scan(&sc, (const char *)data + cut, len - cut);
    }
    if (!hlen)
        return 0;
    if (hlen > len)
        __builtin_trap();

    char *buf = malloc(hlen);
    if (!buf)
        return 0;
    memcpy(buf, data, hlen);
    classify(buf, hlen);

    llhttp_t p;
    struct rlb_http_ctx ctx;
    /* What llhttp accepts as HTTP/1.0 or 1.1 can be forwarded (conn.c answers 505 to other
     * versions): check what would go to the target. */
    if (parse(&p, &ctx, &head, buf, hlen) == HPE_OK && head.major == 1 && head.minor <= 1) {
        struct rlb_forward_info fi = {0};
        uint8_t knobs = data[0];
        fi.client_ip = (knobs & 1) ? "2001:db8::1" : "10.0.0.1";
        fi.client_port = 40000;
        fi.listener_port = (knobs & 2) ? 80 : 8080;
        fi.listener_host = "lb.example:8080";
        fi.https = knobs & 4;
        fi.xff = (enum rlb_xff_mode)((knobs >> 3) % 3);
        fi.xff_client_port = knobs & 32;
        fi.preserve_host = knobs & 64;
        fi.now_s = 0x60000000;
        fi.rand[0] = 0x0123456789abcdefull;
        fi.rand[1] = 0xfedcba9876543210ull;
        (void)rlb_http1_xff_count(&head);
        uint32_t bound = rlb_http1_request_bound(&head);
        char *out = malloc(bound);
        if (out) {
            uint32_t n = rlb_http1_write_request(out, bound, &head, &fi);
            if (n == 0 || n > bound)
                __builtin_trap();
            check_forwarded(out, n);
            classify(out, n);
            llhttp_t p2;
            struct rlb_http_ctx ctx2;
            if (parse(&p2, &ctx2, &head2, out, n) != HPE_OK)
                __builtin_trap();
            free(out);
        }
    }
    free(buf);
    return 0;
}
