/* dashboard.c — lookup of the embedded dashboard assets (see dashboard.h). The bytes are in
 * the C file that src/dashboard/dashboard.cmake generates in the build tree. */
#include "ringlb/dashboard.h"

#include <stdio.h>
#include <string.h>

#define PREFIX "/dashboard/"

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static const struct rlb_dashboard_file *find_file(const char *name, size_t len)
{
    for (size_t i = 0; i < rlb_dashboard_n_files; i++) {
        const struct rlb_dashboard_file *f = &rlb_dashboard_files[i];
        if (strlen(f->name) == len && memcmp(f->name, name, len) == 0)
            return f;
    }
    return NULL;
}

bool rlb_dashboard_lookup(const char *path, size_t len, struct rlb_dashboard_asset *out)
{
    const struct rlb_dashboard_file *f = NULL;
    bool root = len == 1 && path[0] == '/';
    size_t pl = sizeof(PREFIX) - 1;
    if (root) {
        f = find_file("index.html", 10);
    } else if (len > pl && memcmp(path, PREFIX, pl) == 0) {
        const char *name = path + pl;
        size_t nl = len - pl;
        /* index.html only at "/" (with the token); no sub-directories. */
        if (!memchr(name, '/', nl) && !(nl == 10 && memcmp(name, "index.html", 10) == 0))
            f = find_file(name, nl);
    }
    if (!f)
        return false;
    out->file = f;
    out->content_type = content_type(f->name);
    snprintf(out->etag, sizeof(out->etag), "\"%.16s\"", f->sha256);
    out->needs_token = root;
    return true;
}

int rlb_dashboard_headers(const struct rlb_dashboard_asset *a, char *out, size_t n)
{
    int w = snprintf(out, n,
                     "ETag: %s\r\nX-Content-Type-Options: nosniff\r\n"
                     "Referrer-Policy: no-referrer\r\nContent-Security-Policy: %s\r\n",
                     a->etag, RLB_DASHBOARD_CSP);
    return w < 0 || (size_t)w >= n ? -1 : w;
}
