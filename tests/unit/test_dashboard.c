/* Unit tests for the embedded dashboard assets (src/dashboard.c, the generated asset table). */
#include <string.h>

#include "ringlb/dashboard.h"
#include "test.h"

static bool lookup(const char *path, struct rlb_dashboard_asset *a)
{
    return rlb_dashboard_lookup(path, strlen(path), a);
}

static bool contains(const struct rlb_dashboard_file *f, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= f->len; i++)
        if (memcmp(f->data + i, needle, n) == 0)
            return true;
    return false;
}

TEST(root_is_the_page_and_needs_the_token)
{
    struct rlb_dashboard_asset a;
    CHECK(lookup("/", &a));
    CHECK_EQ_STR(a.file->name, "index.html");
    CHECK_EQ_STR(a.content_type, "text/html; charset=utf-8");
    CHECK(a.needs_token);
    CHECK(a.file->len > 100);
    CHECK(contains(a.file, "<!doctype html>"));
    /* the page loads its script and style from /dashboard/ and has nothing inline */
    CHECK(contains(a.file, "src=\"/dashboard/app.js\""));
    CHECK(contains(a.file, "href=\"/dashboard/style.css\""));
    CHECK(!contains(a.file, "<style"));
    CHECK(!contains(a.file, " style="));
    CHECK(!contains(a.file, "<script>"));
    CHECK(!contains(a.file, "onclick"));
}

TEST(static_assets_are_public_with_types)
{
    static const struct {
        const char *path, *type;
    } cases[] = {
        {"/dashboard/app.js", "text/javascript; charset=utf-8"},
        {"/dashboard/style.css", "text/css; charset=utf-8"},
        {"/dashboard/favicon.svg", "image/svg+xml"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rlb_dashboard_asset a;
        CHECK(lookup(cases[i].path, &a));
        CHECK_EQ_STR(a.content_type, cases[i].type);
        CHECK(!a.needs_token);
        CHECK(a.file->len > 0);
    }
}

TEST(unknown_paths)
{
    struct rlb_dashboard_asset a;
    CHECK(!lookup("/dashboard/", &a));
    CHECK(!lookup("/dashboard/nope.js", &a));
    CHECK(!lookup("/dashboard/index.html", &a));   /* the page only at "/" (token rule) */
    CHECK(!lookup("/dashboard/../app.js", &a));
    CHECK(!lookup("/dashboard/x/app.js", &a));
    CHECK(!lookup("/dashboard/screenshot.png", &a)); /* in src/dashboard/ but not embedded */
    CHECK(!lookup("/dashboard/dashboard.cmake", &a));
    CHECK(!lookup("/app.js", &a));
    CHECK(!lookup("/dashboardapp.js", &a));
    CHECK(!lookup("", &a));
    /* the length is what counts, not a NUL */
    CHECK(rlb_dashboard_lookup("/dashboard/app.jsX", 17, &a));
    CHECK(!rlb_dashboard_lookup("/dashboard/app.jsX", 16, &a));
}

TEST(etag_and_headers)
{
    struct rlb_dashboard_asset a, b;
    CHECK(lookup("/dashboard/app.js", &a));
    CHECK(lookup("/", &b));
    CHECK_EQ_INT(strlen(a.etag), 18);
    CHECK(a.etag[0] == '"' && a.etag[17] == '"');
    CHECK(strncmp(a.etag + 1, a.file->sha256, 16) == 0);
    CHECK(strcmp(a.etag, b.etag) != 0);
    CHECK_EQ_INT(strlen(a.file->sha256), 64);
    char buf[512];
    int n = rlb_dashboard_headers(&a, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_EQ_INT(n, strlen(buf));
    CHECK(strstr(buf, "ETag: \"") == buf);
    CHECK(strstr(buf, "X-Content-Type-Options: nosniff\r\n") != NULL);
    CHECK(strstr(buf, "Referrer-Policy: no-referrer\r\n") != NULL);
    CHECK(strstr(buf, "Content-Security-Policy: default-src 'none'; script-src 'self';") != NULL);
    CHECK(n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n');
    CHECK_EQ_INT(rlb_dashboard_headers(&a, buf, 40), -1);
}

TEST(every_embedded_file_is_reachable)
{
    CHECK(rlb_dashboard_n_files >= 4);
    for (size_t i = 0; i < rlb_dashboard_n_files; i++) {
        const struct rlb_dashboard_file *f = &rlb_dashboard_files[i];
        char path[128];
        struct rlb_dashboard_asset a;
        if (strcmp(f->name, "index.html") == 0)
            snprintf(path, sizeof(path), "/");
        else
            snprintf(path, sizeof(path), "/dashboard/%s", f->name);
        CHECK(lookup(path, &a));
        CHECK(a.file == f);
    }
}

int main(void)
{
    RUN(root_is_the_page_and_needs_the_token);
    RUN(static_assets_are_public_with_types);
    RUN(unknown_paths);
    RUN(etag_and_headers);
    RUN(every_embedded_file_is_reachable);
    return TEST_SUMMARY();
}
