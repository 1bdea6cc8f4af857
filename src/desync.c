/* desync.c — request desync classification on raw head bytes (see desync.h).
 *
 * One pass: the request line is split into method, URI and version; then each header line is
 * checked as it is met (its characters, its name against Transfer-Encoding/Content-Length and
 * their look-alikes, the framing values). Findings are not applied as they come: each one is
 * noted in the check group ("phase") it belongs to, and the verdict at the end is the highest
 * tier found with the first reason at that tier in the phase order of http_desync_guardian:
 *
 *   parse (request-line framing) < headers < Transfer-Encoding < Content-Length
 *   < body semantics (HTTP/0.9-1.0, GET/HEAD, TE+CL) < method < version < URI
 *
 * which is what makes, say, a bad Transfer-Encoding win over a bad URI in the same request.
 *
 * Reading raw bytes where the guardian is usually given a parsed request needs a few choices
 * (the guardian's own raw parser reports parsing problems with reasons the ALB does not log):
 *  - A line ending in a bare LF is read as the guardian's corpus writes an LF inside a header
 *    value or URI: Severe (BadHeader; in the request line BadUri or BadVersion). A bare CR is
 *    just a character, so it makes the name, value, method, version or URI it is in Bad.
 *  - The URI ends at the first " HTTP/" of the request line when there is one, else at the
 *    last space (so "GET /a b HTTP/1.1" has URI "/a b" — SpaceInUri, Acceptable — while
 *    "GET /a HTTP/1.1 HTTP/1.1" has a bad version, as two parsers would read it differently).
 *    Without a version (HTTP/0.9) a tab, VT or FF in the URI is BadUri, not AmbiguousUri:
 *    a parser that splits on any whitespace would see a version where we see none.
 *  - A line starting with SP/HT is obs-fold. Folded text without a colon is BadHeader (what a
 *    folding parser hands on is a value with CR LF in it). With a colon it is read as a header
 *    whose name starts with whitespace (what a non-folding parser sees), and is at least
 *    Ambiguous (SuspiciousHeader) when it follows another header. A line without a colon is
 *    BadHeader; a missing URI ("GET HTTP/1.1") AmbiguousUri; an empty method BadMethod.
 *  - Stricter than the guardian where RFC 9112 makes the framing undeterminable: chunked
 *    that is not the final transfer coding, and an empty Content-Length, are Severe; a version
 *    other than HTTP/0.9 and 1.x is BadVersion (the guardian does not analyse "HTTP/2" and up).
 */
#include "ringlb/desync.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Character classes. */
enum {
    C_TCHAR = 1,  /* RFC 9110 tchar */
    C_URI = 2,    /* allowed in a URI: > SP, not DEL (non-ASCII included) */
    C_VALUE = 4,  /* field-value: VCHAR, SP, HT, obs-text */
    C_BAD = 8,    /* NUL, CR, LF: never acceptable anywhere in a line */
    C_ALNUM = 16, /* ASCII letter or digit */
};

#define TUV (C_TCHAR | C_URI | C_VALUE)
#define UV (C_URI | C_VALUE)

static const uint8_t ctab[256] = {
    [0x00] = C_BAD,
    [0x09] = C_VALUE,
    [0x0a] = C_BAD,
    [0x0d] = C_BAD,
    [0x20] = C_VALUE,
    [0x21] = TUV,                       /* ! */
    [0x22] = UV,                        /* " */
    [0x23 ... 0x27] = TUV,              /* # $ % & ' */
    [0x28 ... 0x29] = UV,               /* ( ) */
    [0x2a ... 0x2b] = TUV,              /* * + */
    [0x2c] = UV,                        /* , */
    [0x2d ... 0x2e] = TUV,              /* - . */
    [0x2f] = UV,                        /* / */
    [0x30 ... 0x39] = TUV | C_ALNUM,    /* 0-9 */
    [0x3a ... 0x40] = UV,               /* : ; < = > ? @ */
    [0x41 ... 0x5a] = TUV | C_ALNUM,    /* A-Z */
    [0x5b ... 0x5d] = UV,               /* [ \ ] */
    [0x5e ... 0x60] = TUV,              /* ^ _ ` */
    [0x61 ... 0x7a] = TUV | C_ALNUM,    /* a-z */
    [0x7b] = UV,                        /* { */
    [0x7c] = TUV,                       /* | */
    [0x7d] = UV,                        /* } */
    [0x7e] = TUV,                       /* ~ */
    [0x80 ... 0xff] = UV,               /* obs-text */
};

static const uint8_t reason_tier[RLB_DESYNC_REASON_COUNT] = {
    [RLB_DESYNC_REASON_COMPLIANT] = RLB_DESYNC_COMPLIANT,
    [RLB_DESYNC_REASON_NON_COMPLIANT_HEADER] = RLB_DESYNC_ACCEPTABLE,
    [RLB_DESYNC_REASON_SPACE_IN_URI] = RLB_DESYNC_ACCEPTABLE,
    [RLB_DESYNC_REASON_NON_COMPLIANT_VERSION] = RLB_DESYNC_ACCEPTABLE,
    [RLB_DESYNC_REASON_GET_HEAD_ZERO_CONTENT_LENGTH] = RLB_DESYNC_ACCEPTABLE,
    [RLB_DESYNC_REASON_EMPTY_HEADER] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_AMBIGUOUS_URI] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_UNDEFINED_CONTENT_LENGTH_SEMANTICS] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_UNDEFINED_TRANSFER_ENCODING_SEMANTICS] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_DUPLICATE_CONTENT_LENGTH] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_BOTH_TE_CL_PRESENT] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_SUSPICIOUS_HEADER] = RLB_DESYNC_AMBIGUOUS,
    [RLB_DESYNC_REASON_BAD_HEADER] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_BAD_URI] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_BAD_VERSION] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_MULTIPLE_CONTENT_LENGTH] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_BAD_CONTENT_LENGTH] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_MULTIPLE_TRANSFER_ENCODING_CHUNKED] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_BAD_TRANSFER_ENCODING] = RLB_DESYNC_SEVERE,
    [RLB_DESYNC_REASON_BAD_METHOD] = RLB_DESYNC_SEVERE,
};

static const char *const reason_names[RLB_DESYNC_REASON_COUNT] = {
    [RLB_DESYNC_REASON_COMPLIANT] = "Compliant",
    [RLB_DESYNC_REASON_NON_COMPLIANT_HEADER] = "NonCompliantHeader",
    [RLB_DESYNC_REASON_SPACE_IN_URI] = "SpaceInUri",
    [RLB_DESYNC_REASON_NON_COMPLIANT_VERSION] = "NonCompliantVersion",
    [RLB_DESYNC_REASON_GET_HEAD_ZERO_CONTENT_LENGTH] = "GetHeadZeroContentLength",
    [RLB_DESYNC_REASON_EMPTY_HEADER] = "EmptyHeader",
    [RLB_DESYNC_REASON_AMBIGUOUS_URI] = "AmbiguousUri",
    [RLB_DESYNC_REASON_UNDEFINED_CONTENT_LENGTH_SEMANTICS] = "UndefinedContentLengthSemantics",
    [RLB_DESYNC_REASON_UNDEFINED_TRANSFER_ENCODING_SEMANTICS] =
        "UndefinedTransferEncodingSemantics",
    [RLB_DESYNC_REASON_DUPLICATE_CONTENT_LENGTH] = "DuplicateContentLength",
    [RLB_DESYNC_REASON_BOTH_TE_CL_PRESENT] = "BothTeClPresent",
    [RLB_DESYNC_REASON_SUSPICIOUS_HEADER] = "SuspiciousHeader",
    [RLB_DESYNC_REASON_BAD_HEADER] = "BadHeader",
    [RLB_DESYNC_REASON_BAD_URI] = "BadUri",
    [RLB_DESYNC_REASON_BAD_VERSION] = "BadVersion",
    [RLB_DESYNC_REASON_MULTIPLE_CONTENT_LENGTH] = "MultipleContentLength",
    [RLB_DESYNC_REASON_BAD_CONTENT_LENGTH] = "BadContentLength",
    [RLB_DESYNC_REASON_MULTIPLE_TRANSFER_ENCODING_CHUNKED] = "MultipleTransferEncodingChunked",
    [RLB_DESYNC_REASON_BAD_TRANSFER_ENCODING] = "BadTransferEncoding",
    [RLB_DESYNC_REASON_BAD_METHOD] = "BadMethod",
};

/* Check groups, in the order in which their findings take precedence within a tier. */
enum phase {
    PH_PARSE,   /* request-line framing: bare LF, missing URI, unterminated head */
    PH_HEADER,  /* per header line: characters, empty names, look-alikes, obs-fold */
    PH_TE,      /* Transfer-Encoding values */
    PH_CL,      /* Content-Length values */
    PH_BODY,    /* body semantics: HTTP/0.9-1.0, GET/HEAD, TE together with CL */
    PH_METHOD,
    PH_VERSION,
    PH_URI,
    PH_COUNT
};

/* Classification state of one call (on the stack). */
struct state {
    uint8_t first[PH_COUNT][4]; /* first reason noted per phase and tier; 0 = none */
    /* Transfer-Encoding */
    unsigned te_headers;        /* headers counted as Transfer-Encoding */
    bool te_prev_chunked;       /* the previous valid coding was chunked */
    bool te_any_chunked;
    bool te_last_chunked;       /* the last coding seen was chunked */
    /* Content-Length */
    unsigned cl_headers;        /* headers counted as Content-Length */
    bool cl_have;               /* cl holds the first valid value */
    uint64_t cl;
};

static void note(struct state *s, enum phase ph, enum rlb_desync_reason r)
{
    uint8_t t = reason_tier[r];
    if (!s->first[ph][t])
        s->first[ph][t] = (uint8_t)r;
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* s[0..n) without leading and trailing SP/HT, as [*b, *e). */
static void trim_ows(const uint8_t *s, size_t n, size_t *b, size_t *e)
{
    size_t i = 0, j = n;
    while (i < j && is_ows(s[i]))
        i++;
    while (j > i && is_ows(s[j - 1]))
        j--;
    *b = i;
    *e = j;
}

/* Case-insensitive equality of s[0..n) with the lower-case NUL-terminated `lit`. */
static bool ieq(const uint8_t *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i]; i++)
        if (lower(s[i]) != (uint8_t)lit[i])
            return false;
    return i == n && !lit[i];
}

/* Lexicographic comparison of s[0..n) with `lit` (shorter prefix first), as the guardian
 * compares versions. */
static int lexcmp(const uint8_t *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    int c = memcmp(s, lit, n < m ? n : m);
    if (c)
        return c;
    return n < m ? -1 : n > m ? 1 : 0;
}

/* ---- header names that look like Transfer-Encoding / Content-Length ------------------- */

enum likeness { DISTANT, LOOKALIKE, IDENTICAL };

static size_t next_alnum(const uint8_t *s, size_t n, size_t i)
{
    while (i < n && !(ctab[s[i]] & C_ALNUM))
        i++;
    return i;
}

/* Skip SP and control characters (bytes <= SP), which some parsers drop from names. */
static size_t next_visible(const uint8_t *s, size_t n, size_t i)
{
    while (i < n && s[i] <= ' ')
        i++;
    return i;
}

/* How many bytes at s[i] spell `c` (a lower-case letter or '-'), 0 when they do not. Two
 * non-ASCII letters become ASCII in upper case (U+017F long s -> 'S', U+0131 dotless i ->
 * 'I'), which has tricked servers into seeing Transfer-Encoding. */
static size_t spells(const uint8_t *s, size_t n, size_t i, char c)
{
    if (lower(s[i]) == (uint8_t)c)
        return 1;
    if (i + 1 < n && ((c == 's' && s[i] == 0xc5 && s[i + 1] == 0xbf) ||
                      (c == 'i' && s[i] == 0xc4 && s[i + 1] == 0xb1)))
        return 2;
    return 0;
}

/* Compare a field name with `ref` (lower case letters and '-', length rn): IDENTICAL when it
 * is `ref` in any case; LOOKALIKE when its letters spell `ref` once delimiters may be any run
 * of non-alphanumerics, control characters and spaces are dropped, and nothing alphanumeric
 * follows (" Transfer-Encoding", "Transfer_Encoding", "Content-Length\t", "Tranſfer-Encoding");
 * DISTANT otherwise. */
static enum likeness likeness(const uint8_t *s, size_t n, const char *ref, size_t rn)
{
    if (n < rn)
        return DISTANT;
    size_t i = next_alnum(s, n, 0);
    bool exact = i == 0 && n == rn;
    for (size_t k = 0; k < rn; k++) {
        if (i == n)
            return DISTANT;
        size_t used = spells(s, n, i, ref[k]);
        if (ref[k] == '-') {
            if (!used) {
                exact = false;
                used = 1;
            }
            i = next_alnum(s, n, i + used);
        } else {
            if (!used)
                break;
            i = next_visible(s, n, i + used);
        }
    }
    if (i == n)
        return exact ? IDENTICAL : LOOKALIKE;
    return next_alnum(s, n, i) == n ? LOOKALIKE : DISTANT;
}

/* ---- framing headers ------------------------------------------------------------------- */

/* One Transfer-Encoding field value: a comma-separated list of codings, each optionally with
 * ";" parameters. Codings other than the five registered ones (and empty list elements) are
 * BadTransferEncoding; chunked right after chunked is MultipleTransferEncodingChunked. */
static void check_te(struct state *s, const uint8_t *v, size_t n)
{
    static const char *const codings[] = {"chunked", "compress", "deflate", "gzip", "identity"};
    s->te_headers++;
    size_t i = 0;
    for (;;) {
        const uint8_t *comma = memchr(v + i, ',', n - i);
        size_t e = comma ? (size_t)(comma - v) : n;
        const uint8_t *item = v + i;
        size_t ilen = e - i;
        const uint8_t *semi = memchr(item, ';', ilen);
        if (semi)
            ilen = (size_t)(semi - item);
        size_t b, t;
        trim_ows(item, ilen, &b, &t);
        int which = -1;
        for (int k = 0; k < 5 && which < 0; k++)
            if (ieq(item + b, t - b, codings[k]))
                which = k;
        if (which < 0) {
            note(s, PH_TE, RLB_DESYNC_REASON_BAD_TRANSFER_ENCODING);
            s->te_last_chunked = false;
        } else {
            bool chunked = which == 0;
            if (chunked && s->te_prev_chunked)
                note(s, PH_TE, RLB_DESYNC_REASON_MULTIPLE_TRANSFER_ENCODING_CHUNKED);
            s->te_prev_chunked = chunked;
            s->te_last_chunked = chunked;
            s->te_any_chunked |= chunked;
        }
        if (!comma)
            break;
        i = e + 1;
    }
}

/* One Content-Length field value: OWS, 1*DIGIT, OWS, no 64-bit overflow. A second valid value
 * is DuplicateContentLength when equal to the first, MultipleContentLength otherwise. */
static void check_cl(struct state *s, const uint8_t *v, size_t n)
{
    s->cl_headers++;
    size_t b, e;
    trim_ows(v, n, &b, &e);
    uint64_t x = 0;
    bool ok = b < e;
    for (size_t i = b; ok && i < e; i++) {
        unsigned d = (unsigned)v[i] - '0';
        if (d > 9 || x > (UINT64_MAX - d) / 10)
            ok = false;
        else
            x = x * 10 + d;
    }
    if (!ok) {
        note(s, PH_CL, RLB_DESYNC_REASON_BAD_CONTENT_LENGTH);
    } else if (!s->cl_have) {
        s->cl_have = true;
        s->cl = x;
    } else {
        note(s, PH_CL, x == s->cl ? RLB_DESYNC_REASON_DUPLICATE_CONTENT_LENGTH
                                  : RLB_DESYNC_REASON_MULTIPLE_CONTENT_LENGTH);
    }
}

/* One header line line[0..n) (without its line end). `bare_lf`: it ended in LF alone.
 * `folded`: it starts with SP/HT after another header line. */
static void check_header(struct state *s, const uint8_t *line, size_t n, bool bare_lf,
                         bool folded)
{
    const uint8_t *colon = memchr(line, ':', n);
    if (!colon) {
        /* A line without a colon, or the continuation of a folded value. */
        note(s, PH_HEADER, RLB_DESYNC_REASON_BAD_HEADER);
        return;
    }
    const uint8_t *name = line;
    size_t nlen = (size_t)(colon - line);
    const uint8_t *val = colon + 1;
    size_t vlen = n - nlen - 1;

    /* The header's own tier from its characters. */
    unsigned bad = 0, odd = 0;
    for (size_t i = 0; i < nlen; i++) {
        uint8_t c = ctab[name[i]];
        bad |= c & C_BAD;
        odd |= ~c & C_TCHAR;
    }
    /* Values are the bulk of a head: a quick pass that the compiler vectorises looks for any
     * control character at all, and only then are they told apart. */
    uint8_t ctl = 0;
    for (size_t i = 0; i < vlen; i++)
        ctl |= (uint8_t)((val[i] < 0x20) | (val[i] == 0x7f));
    for (size_t i = 0; ctl && i < vlen; i++) {
        uint8_t c = ctab[val[i]];
        bad |= c & C_BAD;
        odd |= ~c & C_VALUE;
    }
    bad |= bare_lf;
    if (bad)
        note(s, PH_HEADER, RLB_DESYNC_REASON_BAD_HEADER);
    else if (odd)
        note(s, PH_HEADER, RLB_DESYNC_REASON_NON_COMPLIANT_HEADER);

    /* Transfer-Encoding, Content-Length and their look-alikes. */
    enum likeness te = DISTANT, cl = DISTANT;
    if (nlen >= 14) {
        size_t f = next_alnum(name, nlen, 0);
        uint8_t c0 = f < nlen ? lower(name[f]) : 0;
        if (c0 == 't')
            te = likeness(name, nlen, "transfer-encoding", 17);
        else if (c0 == 'c')
            cl = likeness(name, nlen, "content-length", 14);
    }
    size_t nb, ne;
    trim_ows(name, nlen, &nb, &ne);
    bool essential = te == IDENTICAL || cl == IDENTICAL;
    if (nb == ne) {
        note(s, PH_HEADER, RLB_DESYNC_REASON_EMPTY_HEADER);
    } else if (!essential && !bad) {
        if (te == LOOKALIKE || cl == LOOKALIKE) {
            /* Counted as what it imitates: two parsers may disagree on whether it is. */
            note(s, PH_HEADER, RLB_DESYNC_REASON_SUSPICIOUS_HEADER);
            if (te == LOOKALIKE)
                check_te(s, val, vlen);
            else
                check_cl(s, val, vlen);
        }
    } else if (te == IDENTICAL) {
        check_te(s, val, vlen);
    } else if (cl == IDENTICAL) {
        check_cl(s, val, vlen);
    }
    if (folded)
        note(s, PH_HEADER, RLB_DESYNC_REASON_SUSPICIOUS_HEADER);
}

/* ---- request line ---------------------------------------------------------------------- */

struct request_line {
    const uint8_t *method, *uri, *version;
    size_t method_len, uri_len, version_len;
    bool missing_uri;
};

/* Does the request line continue at p[0..n) with "HTTP/" (any case)? */
static bool http_slash(const uint8_t *p, size_t n)
{
    return n >= 5 && ieq(p, 5, "http/");
}

static void split_request_line(const uint8_t *line, size_t n, struct request_line *rl)
{
    const uint8_t *sp = memchr(line, ' ', n);
    rl->method = line;
    rl->method_len = sp ? (size_t)(sp - line) : n;
    rl->uri = rl->version = line + n;
    rl->uri_len = rl->version_len = 0;
    rl->missing_uri = false;
    if (!sp) {
        rl->missing_uri = true;
        return;
    }
    const uint8_t *rest = sp + 1;
    size_t rn = n - rl->method_len - 1;
    /* The URI ends at the first " HTTP/". */
    for (size_t i = 0; i < rn;) {
        const uint8_t *q = memchr(rest + i, ' ', rn - i);
        if (!q)
            break;
        size_t at = (size_t)(q - rest);
        if (http_slash(q + 1, rn - at - 1)) {
            rl->uri = rest;
            rl->uri_len = at;
            rl->version = q + 1;
            rl->version_len = rn - at - 1;
            return;
        }
        i = at + 1;
    }
    /* Else at the last space before the trailing whitespace, if any. */
    size_t end = rn;
    while (end > 0 && is_ows(rest[end - 1]))
        end--;
    size_t last = end;
    while (last > 0 && rest[last - 1] != ' ')
        last--;
    if (last > 0) {
        rl->uri = rest;
        rl->uri_len = last - 1;
        rl->version = rest + last;
        rl->version_len = rn - last;
    } else if (rn >= 7 && memcmp(rest, "HTTP/1.", 7) == 0) {
        /* "GET HTTP/1.1": no URI at all. */
        rl->missing_uri = true;
        rl->version = rest;
        rl->version_len = rn;
    } else {
        /* No version: HTTP/0.9. */
        rl->uri = rest;
        rl->uri_len = rn;
    }
}

static void check_method(struct state *s, const struct request_line *rl)
{
    bool ok = rl->method_len > 0;
    for (size_t i = 0; ok && i < rl->method_len; i++)
        ok = ctab[rl->method[i]] & C_TCHAR;
    if (!ok)
        note(s, PH_METHOD, RLB_DESYNC_REASON_BAD_METHOD);
}

static void check_version(struct state *s, const struct request_line *rl)
{
    size_t b, e;
    trim_ows(rl->version, rl->version_len, &b, &e);
    const uint8_t *v = rl->version + b;
    size_t n = e - b;
    if (n == 0 || (n == 8 && memcmp(v, "HTTP/0.9", 8) == 0)) {
        note(s, PH_VERSION, RLB_DESYNC_REASON_NON_COMPLIANT_VERSION);
        return;
    }
    if (n != 8 || memcmp(v, "HTTP/1.", 7) != 0 || v[7] < '0' || v[7] > '9') {
        note(s, PH_VERSION, RLB_DESYNC_REASON_BAD_VERSION);
        return;
    }
    if (n != rl->version_len || v[7] > '1')
        note(s, PH_VERSION, RLB_DESYNC_REASON_NON_COMPLIANT_VERSION);
}

static void check_uri(struct state *s, const struct request_line *rl)
{
    bool no_version = rl->version_len == 0;
    for (size_t i = 0; i < rl->uri_len; i++) {
        uint8_t ch = rl->uri[i];
        uint8_t c = ctab[ch];
        if (c & C_URI)
            continue;
        if (c & C_BAD)
            note(s, PH_URI, RLB_DESYNC_REASON_BAD_URI);
        else if (ch == ' ')
            note(s, PH_URI, RLB_DESYNC_REASON_SPACE_IN_URI);
        else if (no_version && (ch == '\t' || ch == '\v' || ch == '\f'))
            note(s, PH_URI, RLB_DESYNC_REASON_BAD_URI);
        else
            note(s, PH_URI, RLB_DESYNC_REASON_AMBIGUOUS_URI);
    }
}

/* Body framing that depends on the whole head: version, method, TE and CL together. */
static void check_body(struct state *s, const struct request_line *rl)
{
    if (!s->te_headers && !s->cl_headers)
        return;
    size_t b, e;
    trim_ows(rl->version, rl->version_len, &b, &e);
    const uint8_t *v = rl->version;
    size_t vn = rl->version_len;
    if (b == e) {
        v = (const uint8_t *)"HTTP/0.9";
        vn = 8;
    }
    int vs10 = lexcmp(v, vn, "HTTP/1.0");
    if ((vs10 <= 0 && s->te_headers) || (vs10 < 0 && s->cl_headers)) {
        /* No defined meaning before HTTP/1.1 (TE) or HTTP/1.0 (CL): nothing else counts. */
        memset(s->first[PH_TE], 0, sizeof(s->first[PH_TE]));
        memset(s->first[PH_CL], 0, sizeof(s->first[PH_CL]));
        note(s, PH_BODY, s->te_headers ? RLB_DESYNC_REASON_UNDEFINED_TRANSFER_ENCODING_SEMANTICS
                                       : RLB_DESYNC_REASON_UNDEFINED_CONTENT_LENGTH_SEMANTICS);
        return;
    }
    if (s->te_any_chunked && !s->te_last_chunked)
        note(s, PH_TE, RLB_DESYNC_REASON_BAD_TRANSFER_ENCODING);
    bool get_head = (rl->method_len == 3 && memcmp(rl->method, "GET", 3) == 0) ||
                    (rl->method_len == 4 && memcmp(rl->method, "HEAD", 4) == 0);
    if (get_head) {
        if (s->te_headers)
            note(s, PH_BODY, RLB_DESYNC_REASON_UNDEFINED_TRANSFER_ENCODING_SEMANTICS);
        if (s->cl_have)
            note(s, PH_BODY, s->cl == 0 ? RLB_DESYNC_REASON_GET_HEAD_ZERO_CONTENT_LENGTH
                                        : RLB_DESYNC_REASON_UNDEFINED_CONTENT_LENGTH_SEMANTICS);
    }
    if (s->cl_have && s->te_headers)
        note(s, PH_BODY, RLB_DESYNC_REASON_BOTH_TE_CL_PRESENT);
}

/* ---- the classifier -------------------------------------------------------------------- */

struct rlb_desync_result rlb_desync_classify(const char *head, size_t len)
{
    struct state s;
    memset(&s, 0, sizeof(s));
    if (!len)
        head = ""; /* never hand a NULL pointer to memchr(), even for 0 bytes */
    const uint8_t *p = (const uint8_t *)head;
    const uint8_t *end = p + len;
    struct request_line rl;

    /* Request line. */
    const uint8_t *nl = len ? memchr(p, '\n', len) : NULL;
    const uint8_t *le = nl ? nl : end;
    bool bare_lf = nl && (le == p || le[-1] != '\r');
    if (nl && !bare_lf)
        le--;
    split_request_line(p, (size_t)(le - p), &rl);
    if (rl.missing_uri)
        note(&s, PH_PARSE, RLB_DESYNC_REASON_AMBIGUOUS_URI);
    if (bare_lf)
        note(&s, PH_PARSE, rl.version_len ? RLB_DESYNC_REASON_BAD_VERSION
                                          : RLB_DESYNC_REASON_BAD_URI);

    /* Header lines up to the empty line. */
    bool terminated = false, after_header = false;
    p = nl ? nl + 1 : end;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        le = nl ? nl : end;
        bare_lf = nl && (le == p || le[-1] != '\r');
        if (nl && !bare_lf)
            le--;
        if (le == p && nl) {
            if (bare_lf)
                note(&s, PH_HEADER, RLB_DESYNC_REASON_BAD_HEADER);
            terminated = true;
            break;
        }
        check_header(&s, p, (size_t)(le - p), bare_lf, after_header && is_ows(*p));
        after_header = true;
        if (!nl)
            break;
        p = nl + 1;
    }
    if (!terminated)
        note(&s, PH_PARSE, RLB_DESYNC_REASON_BAD_HEADER);

    check_body(&s, &rl);
    check_method(&s, &rl);
    check_version(&s, &rl);
    check_uri(&s, &rl);

    struct rlb_desync_result r = {RLB_DESYNC_COMPLIANT, RLB_DESYNC_REASON_COMPLIANT};
    for (int t = RLB_DESYNC_SEVERE; t > RLB_DESYNC_COMPLIANT; t--) {
        for (int ph = 0; ph < PH_COUNT; ph++) {
            if (s.first[ph][t]) {
                r.tier = (enum rlb_desync_tier)t;
                r.reason = (enum rlb_desync_reason)s.first[ph][t];
                return r;
            }
        }
    }
    return r;
}

enum rlb_desync_action rlb_desync_action(enum rlb_desync_mode mode, enum rlb_desync_tier tier)
{
    switch (mode) {
    case RLB_DESYNC_MONITOR:
        return RLB_DESYNC_ACT_FORWARD;
    case RLB_DESYNC_STRICTEST:
        return tier == RLB_DESYNC_COMPLIANT ? RLB_DESYNC_ACT_FORWARD : RLB_DESYNC_ACT_REJECT;
    case RLB_DESYNC_DEFENSIVE:
    default:
        if (tier >= RLB_DESYNC_SEVERE)
            return RLB_DESYNC_ACT_REJECT;
        return tier == RLB_DESYNC_AMBIGUOUS ? RLB_DESYNC_ACT_FORWARD_CLOSE
                                            : RLB_DESYNC_ACT_FORWARD;
    }
}

enum rlb_desync_tier rlb_desync_reason_tier(enum rlb_desync_reason reason)
{
    if ((unsigned)reason >= RLB_DESYNC_REASON_COUNT)
        return RLB_DESYNC_SEVERE;
    return (enum rlb_desync_tier)reason_tier[reason];
}

const char *rlb_desync_tier_name(enum rlb_desync_tier tier)
{
    static const char *const names[] = {"Compliant", "Acceptable", "Ambiguous", "Severe"};
    return (unsigned)tier < 4 ? names[tier] : "Unknown";
}

const char *rlb_desync_reason_name(enum rlb_desync_reason reason)
{
    return (unsigned)reason < RLB_DESYNC_REASON_COUNT ? reason_names[reason] : "Unknown";
}
