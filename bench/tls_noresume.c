/* tls_noresume.c — LD_PRELOAD shim that makes wrk do a full TLS handshake on every connection.
 *
 * wrk reuses one SSL object per connection slot: on reconnect it calls SSL_shutdown() and
 * SSL_clear(), and SSL_clear() keeps the session of a cleanly shut down connection, so the
 * next SSL_connect() offers its ticket and the server resumes it (with TLS 1.3 tickets: a PSK
 * handshake, no certificate signature). bench/tls.sh measures full handshakes, so this shim
 * drops the session after SSL_clear(). It also counts the handshakes wrk completes, full and
 * resumed (SSL_session_reused), and prints "tls_noresume: full N resumed M" on exit: the
 * client's own proof that no session was resumed, whatever the proxy. With
 * TLS_NORESUME_KEEP=1 in the environment it only counts (sessions are kept, as plain wrk does).
 *
 *     cc -O2 -shared -fPIC -o tls_noresume.so bench/tls_noresume.c -ldl -lssl
 *     LD_PRELOAD=./tls_noresume.so wrk -H "Connection: close" https://127.0.0.1:PORT/
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_ulong n_full, n_resumed;

int SSL_clear(SSL *s)
{
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    static int keep = -1;
    if (keep < 0) {
        const char *e = getenv("TLS_NORESUME_KEEP");
        keep = e && *e == '1';
    }
    int r = real(s);
    if (!keep)
        SSL_set_session(s, NULL);
    return r;
}

int SSL_connect(SSL *s)
{
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    int r = real(s);
    if (r == 1) {
        if (SSL_session_reused(s))
            atomic_fetch_add(&n_resumed, 1);
        else
            atomic_fetch_add(&n_full, 1);
    }
    return r;
}

__attribute__((destructor)) static void report(void)
{
    fprintf(stderr, "tls_noresume: full %lu resumed %lu\n", atomic_load(&n_full),
            atomic_load(&n_resumed));
}
