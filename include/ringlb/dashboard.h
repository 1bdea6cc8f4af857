/* dashboard.h — the admin dashboard's static assets, embedded in the binary (SPEC section 5,
 * GET /; issue #12).
 *
 * The files of src/dashboard/ listed in src/dashboard/dashboard.cmake are turned into byte
 * arrays at build time (a generated C file in the build tree, rlb_dashboard_files[]); nothing
 * is read from disk or fetched from elsewhere at run time. The admin server (admin.c) serves:
 *   GET /                      index.html   needs the admin token (Bearer, or ?token= once)
 *   GET /dashboard/<name>      the others   served WITHOUT the token
 * The assets under /dashboard/ (script, style sheet, icon) are the same bytes in every build of
 * a version and contain no data of the running instance: everything the page shows comes from
 * the JSON API, which keeps its access rules (the page sends the token it took from ?token= as
 * "Authorization: Bearer" from sessionStorage). So serving them without the token discloses
 * nothing, and lets the page use separate files under a strict Content-Security-Policy (no
 * inline script or style, so no nonce or hash is needed).
 *
 * Every answer carries the content type, Cache-Control: no-store (admin.c), an ETag (the first
 * 16 hex digits of the file's SHA-256, computed at build time), X-Content-Type-Options:
 * nosniff, Referrer-Policy: no-referrer and RLB_DASHBOARD_CSP.
 */
#ifndef RINGLB_DASHBOARD_H
#define RINGLB_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

/* One embedded file, as generated from src/dashboard/ (name without directory). */
struct rlb_dashboard_file {
    const char *name;             /* "index.html", "app.js", ... */
    const unsigned char *data;
    size_t len;
    const char *sha256;           /* 64 lowercase hex digits */
};

extern const struct rlb_dashboard_file rlb_dashboard_files[];
extern const size_t rlb_dashboard_n_files;

/* What GET of one dashboard path answers. */
struct rlb_dashboard_asset {
    const struct rlb_dashboard_file *file;
    const char *content_type;     /* with charset for text */
    char etag[24];                /* "\"<16 hex>\"", quotes included */
    bool needs_token;             /* true for "/" only */
};

/* Only 'self': scripts, styles, images and API calls from the admin listener itself; no
 * inline script or style, no frames, no forms, no <base>. */
#define RLB_DASHBOARD_CSP                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "             \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* Look up the asset of a request path (path[len], without the query): "/" is index.html,
 * "/dashboard/NAME" any other embedded file. false when there is none. */
bool rlb_dashboard_lookup(const char *path, size_t len, struct rlb_dashboard_asset *out);

/* The extra response header lines of an asset ("Name: value\r\n"...) into out[n]; returns
 * the length, or -1 when out is too small. */
int rlb_dashboard_headers(const struct rlb_dashboard_asset *a, char *out, size_t n);

#endif
