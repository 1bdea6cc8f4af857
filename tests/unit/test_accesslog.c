/* Unit tests for the access log (src/accesslog.c): the ALB line format field by field, quoting
 * and escaping, ring overflow, the writer thread, reopen after rotation, failed writes and
 * concurrent producers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringlb/accesslog.h"
#include "test.h"

#define MAX_FIELDS 40

/* Split an access log line into fields: space separated, a field starting with '"' runs to the
 * next '"' (the format never has a raw '"' inside one). Returns the number of fields; each
 * field is a NUL-terminated copy in out[i] (quotes kept). */
static int split_fields(const char *line, char out[MAX_FIELDS][2048])
{
    int n = 0;
    const char *p = line;
    while (*p && *p != '\n' && n < MAX_FIELDS) {
        const char *start = p;
        if (*p == '"') {
            p = strchr(p + 1, '"');
            if (!p)
                return -1;
            p++;
        } else {
            while (*p && *p != ' ' && *p != '\n')
                p++;
        }
        size_t len = (size_t)(p - start);
        if (len >= 2048)
            len = 2047;
        memcpy(out[n], start, len);
        out[n][len] = 0;
        n++;
        if (*p == ' ')
            p++;
    }
    return n;
}

static struct sockaddr_in client4(const char *ip, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return sa;
}

/* 2018-07-02T22:23:00.186641Z in µs */
#define T_RESPONSE (1530570180186641ull)
#define T_CREATED (1530570168364000ull)

static void full_entry(struct rlb_accesslog_entry *e, const struct sockaddr_in *client)
{
    memset(e, 0, sizeof(*e));
    e->time_us = T_RESPONSE;
    e->request_creation_us = T_CREATED;
    e->elb = "public";
    e->client = (const struct sockaddr *)client;
    e->target = "10.0.0.1:80";
    e->request_processing_us = 0;
    e->target_processing_us = 1000;
    e->response_processing_us = 0;
    e->elb_status = 200;
    e->target_status = 200;
    e->received_bytes = 34;
    e->sent_bytes = 366;
    e->method = "GET";
    e->method_len = 3;
    e->host = "www.example.com:8080";
    e->host_len = (uint32_t)strlen(e->host);
    e->port = 80;
    e->uri = "/";
    e->uri_len = 1;
    e->http_major = 1;
    e->http_minor = 1;
    e->user_agent = "curl/7.46.0";
    e->user_agent_len = 11;
    e->target_group = "api-blue";
    e->trace_id = "Root=1-58337262-36d228ad5d99923122bbe354";
    e->trace_id_len = (uint32_t)strlen(e->trace_id);
    e->matched_rule_priority = 0;
    e->actions = RLB_ACCESSLOG_ACT_FORWARD;
    e->conn_trace_id = 0x1234abcd5678ef90ull;
}

TEST(format_http_entry_field_by_field)
{
    struct sockaddr_in c = client4("192.168.131.39", 2817);
    struct rlb_accesslog_entry e;
    full_entry(&e, &c);
    char buf[4096];
    size_t n = rlb_accesslog_format(&e, buf, sizeof(buf));
    CHECK(n > 0 && buf[n - 1] == '\n');
    CHECK(memchr(buf, '\n', n - 1) == NULL);
    buf[n] = 0;
    static const char *const expect[] = {
        "http",
        "2018-07-02T22:23:00.186641Z",
        "public",
        "192.168.131.39:2817",
        "10.0.0.1:80",
        "0.000",
        "0.001",
        "0.000",
        "200",
        "200",
        "34",
        "366",
        "\"GET http://www.example.com:80/ HTTP/1.1\"",
        "\"curl/7.46.0\"",
        "-",
        "-",
        "api-blue",
        "\"Root=1-58337262-36d228ad5d99923122bbe354\"",
        "\"-\"",
        "\"-\"",
        "0",
        "2018-07-02T22:22:48.364000Z",
        "\"forward\"",
        "\"-\"",
        "\"-\"",
        "\"10.0.0.1:80\"",
        "\"200\"",
        "\"-\"",
        "\"-\"",
        "TID_1234abcd5678ef90",
    };
    static char f[MAX_FIELDS][2048];
    int nf = split_fields(buf, f);
    CHECK_EQ_INT(nf, (int)(sizeof(expect) / sizeof(expect[0])));
    for (int i = 0; i < nf && i < (int)(sizeof(expect) / sizeof(expect[0])); i++) {
        if (strcmp(f[i], expect[i]) != 0)
            fprintf(stderr, "field %d\n", i);
        CHECK_EQ_STR(f[i], expect[i]);
    }
}

TEST(format_https_redirect_and_escapes)
{
    struct sockaddr_in6 c6 = {.sin6_family = AF_INET6, .sin6_port = htons(40914)};
    inet_pton(AF_INET6, "2001:db8::7", &c6.sin6_addr);
    struct rlb_accesslog_entry e;
    full_entry(&e, NULL);
    e.client = (const struct sockaddr *)&c6;
    e.https = true;
    e.port = 443;
    e.host = "[::1]:8443";
    e.host_len = (uint32_t)strlen(e.host);
    e.uri = "/a b?q=\"x\"";
    e.uri_len = (uint32_t)strlen(e.uri);
    e.user_agent = "Mozilla/5.0 (X11; \"quoted\")\x01\\";
    e.user_agent_len = (uint32_t)strlen(e.user_agent);
    e.ssl_cipher = "ECDHE-RSA-AES128-GCM-SHA256";
    e.ssl_protocol = "TLSv1.2";
    e.domain_name = "www.example.com";
    e.chosen_cert = "conf/certs/default.pem";
    e.target = NULL;
    e.target_status = 0;
    e.elb_status = 301;
    e.request_processing_us = e.target_processing_us = e.response_processing_us = -1;
    e.matched_rule_priority = 20;
    e.actions = RLB_ACCESSLOG_ACT_REDIRECT;
    e.redirect_url = "https://new.example.com:443/x";
    e.redirect_url_len = (uint32_t)strlen(e.redirect_url);
    e.classification = "Acceptable";
    e.classification_reason = "SpaceInUri";
    e.target_group = NULL;
    e.trace_id = NULL;
    e.conn_trace_id = 0;
    char buf[4096];
    size_t n = rlb_accesslog_format(&e, buf, sizeof(buf));
    CHECK(n > 0);
    buf[n] = 0;
    static char f[MAX_FIELDS][2048];
    int nf = split_fields(buf, f);
    CHECK_EQ_INT(nf, 30);
    CHECK_EQ_STR(f[0], "https");
    CHECK_EQ_STR(f[3], "2001:db8::7:40914");
    CHECK_EQ_STR(f[4], "-");
    CHECK_EQ_STR(f[5], "-1");
    CHECK_EQ_STR(f[6], "-1");
    CHECK_EQ_STR(f[7], "-1");
    CHECK_EQ_STR(f[8], "301");
    CHECK_EQ_STR(f[9], "-");
    CHECK_EQ_STR(f[12], "\"GET https://[::1]:443/a b?q=\\x22x\\x22 HTTP/1.1\"");
    CHECK_EQ_STR(f[13], "\"Mozilla/5.0 (X11; \\x22quoted\\x22)\\x01\\x5c\"");
    CHECK_EQ_STR(f[14], "ECDHE-RSA-AES128-GCM-SHA256");
    CHECK_EQ_STR(f[15], "TLSv1.2");
    CHECK_EQ_STR(f[16], "-");
    CHECK_EQ_STR(f[17], "\"-\"");
    CHECK_EQ_STR(f[18], "\"www.example.com\"");
    CHECK_EQ_STR(f[19], "\"conf/certs/default.pem\"");
    CHECK_EQ_STR(f[20], "20");
    CHECK_EQ_STR(f[22], "\"redirect\"");
    CHECK_EQ_STR(f[23], "\"https://new.example.com:443/x\"");
    CHECK_EQ_STR(f[25], "\"-\"");
    CHECK_EQ_STR(f[26], "\"-\"");
    CHECK_EQ_STR(f[27], "\"Acceptable\"");
    CHECK_EQ_STR(f[28], "\"SpaceInUri\"");
    CHECK_EQ_STR(f[29], "-");
    /* Every raw byte of the line is printable ASCII. */
    for (size_t i = 0; i + 1 < n; i++)
        CHECK(buf[i] >= 0x20 && buf[i] < 0x7f);
}

TEST(format_malformed_and_absent)
{
    struct rlb_accesslog_entry e;
    memset(&e, 0, sizeof(e));
    e.time_us = T_RESPONSE;
    e.elb = "my listener";           /* a space in an unquoted field is escaped */
    e.request_processing_us = e.target_processing_us = e.response_processing_us = -1;
    e.elb_status = 400;
    e.received_bytes = 12;
    e.host = "example.com";
    e.host_len = 11;
    e.port = 8080;
    e.matched_rule_priority = RLB_ACCESSLOG_NO_RULE;
    e.websocket = false;
    char buf[4096];
    size_t n = rlb_accesslog_format(&e, buf, sizeof(buf));
    CHECK(n > 0);
    buf[n] = 0;
    static char f[MAX_FIELDS][2048];
    int nf = split_fields(buf, f);
    CHECK_EQ_INT(nf, 30);
    CHECK_EQ_STR(f[2], "my\\x20listener");
    CHECK_EQ_STR(f[3], "-");
    CHECK_EQ_STR(f[8], "400");
    CHECK_EQ_STR(f[9], "-");
    CHECK_EQ_STR(f[10], "12");
    CHECK_EQ_STR(f[11], "0");
    CHECK_EQ_STR(f[12], "\"- http://example.com:8080- -\"");
    CHECK_EQ_STR(f[13], "\"-\"");
    CHECK_EQ_STR(f[20], "-");
    CHECK_EQ_STR(f[21], "-");
    CHECK_EQ_STR(f[22], "\"-\"");
    CHECK_EQ_STR(f[29], "-");
    /* WebSocket types. */
    e.websocket = true;
    n = rlb_accesslog_format(&e, buf, sizeof(buf));
    CHECK(n > 3 && memcmp(buf, "ws ", 3) == 0);
    e.https = true;
    n = rlb_accesslog_format(&e, buf, sizeof(buf));
    CHECK(n > 4 && memcmp(buf, "wss ", 4) == 0);
    /* A buffer too small gives 0, never a partial line. */
    CHECK_EQ_INT(rlb_accesslog_format(&e, buf, 40), 0);
    /* A huge user agent is truncated to 8 KiB. */
    static char ua[20000];
    memset(ua, 'a', sizeof(ua));
    e.user_agent = ua;
    e.user_agent_len = sizeof(ua);
    static char big[RLB_ACCESSLOG_LINE_MAX];
    n = rlb_accesslog_format(&e, big, sizeof(big));
    CHECK(n > 8192 && n < 8192 + 1024);
}

/* ---- the writer ------------------------------------------------------------------------- */

static char tmpdir[64];

static void path_in_tmp(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char *buf;
    free(buf);
    buf = calloc(1, 64u << 20);
    size_t n = buf ? fread(buf, 1, (64u << 20) - 1, f) : 0;
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

static size_t count_char(const char *s, size_t n, char c)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == c;
    return k;
}

static void entry_with_uri(struct rlb_accesslog_entry *e, const struct sockaddr_in *c,
                           const char *uri)
{
    full_entry(e, c);
    e->uri = uri;
    e->uri_len = (uint32_t)strlen(uri);
}

TEST(writer_flushes_to_file)
{
    char path[128];
    path_in_tmp(path, sizeof(path), "a.log");
    CHECK_EQ_INT(rlb_accesslog_start(path), 0);
    CHECK(rlb_accesslog_on());
    struct rlb_accesslog_shard *s = rlb_accesslog_shard_new(0);
    CHECK(s != NULL);
    struct sockaddr_in c = client4("127.0.0.1", 5000);
    struct rlb_accesslog_entry e;
    char expect[3][4096];
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        char uri[32];
        snprintf(uri, sizeof(uri), "/line%d", i);
        entry_with_uri(&e, &c, uri);
        size_t n = rlb_accesslog_format(&e, expect[i], sizeof(expect[i]));
        expect[i][n] = 0;
        total += n;
        CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    }
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text != NULL);
    CHECK_EQ_INT(len, total);
    if (text && len == total) {
        size_t off = 0;
        for (int i = 0; i < 3; i++) {
            CHECK(strncmp(text + off, expect[i], strlen(expect[i])) == 0);
            off += strlen(expect[i]);
        }
    }
    /* Lines are also flushed without asking, within the writer's period. */
    entry_with_uri(&e, &c, "/aged");
    CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    usleep(300 * 1000);
    text = read_all(path, &len);
    CHECK(text && strstr(text, "/aged HTTP/1.1") != NULL);
    struct rlb_accesslog_stats st;
    rlb_accesslog_get_stats(&st);
    CHECK_EQ_INT(st.lines, 4);
    CHECK_EQ_INT(st.dropped, 0);
    rlb_accesslog_stop();
    CHECK(!rlb_accesslog_on());
    unlink(path);
}

TEST(ring_full_drops_and_counts)
{
    char path[128];
    path_in_tmp(path, sizeof(path), "b.log");
    CHECK_EQ_INT(rlb_accesslog_start(path), 0);
    struct rlb_accesslog_shard *s = rlb_accesslog_shard_new(4096);
    CHECK(s != NULL);
    struct sockaddr_in c = client4("127.0.0.1", 5000);
    struct rlb_accesslog_entry e;
    entry_with_uri(&e, &c, "/x");
    int ok = 0, dropped = 0;
    for (int i = 0; i < 2000; i++) {
        int r = rlb_accesslog_write(s, &e);
        if (r == 0)
            ok++;
        else if (r == -ENOBUFS)
            dropped++;
    }
    CHECK_EQ_INT(ok + dropped, 2000);
    CHECK(dropped > 0);
    CHECK(ok > 0);
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    struct rlb_accesslog_stats st;
    rlb_accesslog_get_stats(&st);
    CHECK_EQ_INT(st.lines, ok);
    CHECK_EQ_INT(st.dropped, dropped);
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text != NULL);
    if (text)
        CHECK_EQ_INT(count_char(text, len, '\n'), ok);
    rlb_accesslog_stop();
    unlink(path);
}

TEST(reopen_after_rename)
{
    char path[128], rotated[128];
    path_in_tmp(path, sizeof(path), "c.log");
    path_in_tmp(rotated, sizeof(rotated), "c.log.1");
    CHECK_EQ_INT(rlb_accesslog_start(path), 0);
    struct rlb_accesslog_shard *s = rlb_accesslog_shard_new(0);
    struct sockaddr_in c = client4("127.0.0.1", 5000);
    struct rlb_accesslog_entry e;
    entry_with_uri(&e, &c, "/before");
    CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    CHECK_EQ_INT(rename(path, rotated), 0);
    CHECK_EQ_INT(rlb_accesslog_reopen(), 0);
    entry_with_uri(&e, &c, "/after");
    CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    size_t len;
    char *text = read_all(rotated, &len);
    CHECK(text && strstr(text, "/before") && !strstr(text, "/after"));
    CHECK(text && count_char(text, len, '\n') == 1);
    text = read_all(path, &len);
    CHECK(text && strstr(text, "/after") && !strstr(text, "/before"));
    CHECK(text && count_char(text, len, '\n') == 1);

    /* Reload to another path, then off: lines go to the new file, then nowhere. */
    char other[128];
    path_in_tmp(other, sizeof(other), "d.log");
    CHECK_EQ_INT(rlb_accesslog_set_path(other), 0);
    entry_with_uri(&e, &c, "/other");
    CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    text = read_all(other, &len);
    CHECK(text && strstr(text, "/other"));
    CHECK_EQ_INT(rlb_accesslog_set_path(NULL), 0);
    CHECK(!rlb_accesslog_on());
    CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0); /* a no-op when off */
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    text = read_all(other, &len);
    CHECK(text && count_char(text, len, '\n') == 1);
    /* A path that cannot be opened keeps the old destination. */
    CHECK(rlb_accesslog_set_path("/nonexistent-dir/x.log") < 0);
    rlb_accesslog_stop();
    unlink(path);
    unlink(rotated);
    unlink(other);
}

TEST(failed_writes_are_counted)
{
    if (access("/dev/full", W_OK) != 0) {
        printf("skip: no /dev/full\n");
        return;
    }
    CHECK_EQ_INT(rlb_accesslog_start("/dev/full"), 0);
    struct rlb_accesslog_shard *s = rlb_accesslog_shard_new(0);
    struct sockaddr_in c = client4("127.0.0.1", 5000);
    struct rlb_accesslog_entry e;
    entry_with_uri(&e, &c, "/full");
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    struct rlb_accesslog_stats st;
    rlb_accesslog_get_stats(&st);
    CHECK(st.write_errors >= 1);
    CHECK_EQ_INT(st.lost_lines, 10);
    /* The ring was given back: more lines are accepted. */
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(rlb_accesslog_write(s, &e), 0);
    CHECK_EQ_INT(rlb_accesslog_flush(5000), 0);
    rlb_accesslog_get_stats(&st);
    CHECK_EQ_INT(st.lost_lines, 20);
    CHECK_EQ_INT(st.dropped, 0);
    rlb_accesslog_stop();
}

#define N_PRODUCERS 4
#define N_LINES 20000

struct producer {
    struct rlb_accesslog_shard *s;
    int id;
};

static void *produce(void *p)
{
    struct producer *pr = p;
    struct sockaddr_in c = client4("10.1.2.3", (uint16_t)(1000 + pr->id));
    struct rlb_accesslog_entry e;
    char uri[64];
    for (int i = 0; i < N_LINES; i++) {
        snprintf(uri, sizeof(uri), "/p%d/%d", pr->id, i);
        entry_with_uri(&e, &c, uri);
        while (rlb_accesslog_write(pr->s, &e) == -ENOBUFS)
            usleep(100); /* a test producer may wait; a worker never does */
    }
    return NULL;
}

TEST(concurrent_producers_whole_lines)
{
    char path[128];
    path_in_tmp(path, sizeof(path), "e.log");
    CHECK_EQ_INT(rlb_accesslog_start(path), 0);
    struct producer pr[N_PRODUCERS];
    pthread_t th[N_PRODUCERS];
    for (int i = 0; i < N_PRODUCERS; i++) {
        pr[i].s = rlb_accesslog_shard_new(64 * 1024);
        pr[i].id = i;
        pthread_create(&th[i], NULL, produce, &pr[i]);
    }
    for (int i = 0; i < N_PRODUCERS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(rlb_accesslog_flush(10000), 0);
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    CHECK_EQ_INT(count_char(text, len, '\n'), N_PRODUCERS * N_LINES);
    /* Every line is whole: 30 fields, ending with the connection trace id. */
    int bad = 0;
    static char f[MAX_FIELDS][2048];
    for (char *line = text; line < text + len;) {
        char *eol = memchr(line, '\n', (size_t)(text + len - line));
        if (!eol)
            break;
        *eol = 0;
        if (split_fields(line, f) != 30 || strcmp(f[29], "TID_1234abcd5678ef90") != 0)
            bad++;
        line = eol + 1;
    }
    CHECK_EQ_INT(bad, 0);
    rlb_accesslog_stop();
    unlink(path);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rlb-accesslog-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(format_http_entry_field_by_field);
    RUN(format_https_redirect_and_escapes);
    RUN(format_malformed_and_absent);
    RUN(writer_flushes_to_file);
    RUN(ring_full_drops_and_counts);
    RUN(reopen_after_rename);
    RUN(failed_writes_are_counted);
    RUN(concurrent_producers_whole_lines);
    rmdir(tmpdir);
    return TEST_SUMMARY();
}
