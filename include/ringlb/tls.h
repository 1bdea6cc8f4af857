/* tls.h — TLS termination: per-listener server contexts and a per-connection engine driven by
 * the caller's I/O (io_uring), never by socket I/O inside OpenSSL.
 *
 * Server context (struct rlb_tls_ctx): built on the main thread from a listener's `tls` block
 * when a configuration snapshot is built; immutable afterwards and shared read-only by every
 * worker. It holds the listener's certificates (leaf + chain + key), a hash table from DNS names
 * (SAN dNSName entries; the subject CN only when the certificate has no DNS SAN) to candidate
 * certificates already sorted by preference, and one SSL_CTX configured from the named ALB
 * security policy. Refcounted: every engine holds a reference, so handshakes and connections
 * in progress survive a reload that frees the snapshot.
 *
 * Certificate choice (in OpenSSL's certificate callback, once per full handshake): the SNI name
 * (case-insensitive, a trailing dot ignored) is looked up exactly, then as the wildcard
 * `*.<name minus its first label>` (a wildcard covers exactly one label), else the default
 * (first configured) certificate is used; no SNI → default. Among the candidates of one name
 * the order is ECDSA before RSA, then the longer key, then the later notAfter, then config
 * order; a candidate the client cannot use (an ECDSA certificate when the ClientHello offers no
 * ECDSA signature algorithm, or for TLS <= 1.2 no ECDSA cipher) is skipped when another one
 * fits. One hash lookup per name tried: no scan over the certificate list.
 *
 * Security policies (ALB names; the protocol range and cipher lists are the AWS documentation's
 * tables, in server preference order):
 *   ELBSecurityPolicy-TLS13-1-2-2021-06 (default)  TLS 1.2-1.3
 *   ELBSecurityPolicy-TLS13-1-3-2021-06            TLS 1.3 only
 *   ELBSecurityPolicy-FS-1-2-Res-2020-10           TLS 1.2 only, ECDHE + AES-GCM only
 *   ELBSecurityPolicy-2016-08                      TLS 1.0-1.2 (no TLS 1.3, as on AWS). OpenSSL 3
 *       refuses TLS 1.0/1.1 above security level 0 (their handshake signatures use SHA-1 and
 *       MD5-SHA1), so this policy runs its context at security level 0: it really accepts
 *       TLS 1.0 and 1.1 clients, and also weak certificate keys. The other policies run at
 *       security level 1 (RSA keys >= 1024 bits, no SHA-1 signatures).
 * Every policy: server cipher order, no compression, no renegotiation, no early data, ALPN
 * `http/1.1` (a client offering other protocols only, or none, gets no ALPN and goes on),
 * stateless session tickets (no server-side cache; TLS 1.2 tickets and TLS 1.3 PSK resumption)
 * encrypted with process-wide keys rotated every RLB_TLS_TICKET_ROTATE_S seconds, the previous
 * key kept for decryption (such a ticket is accepted and renewed). Ticket keys are shared by all
 * listeners and survive reloads; a session only resumes on the listener (by name) that made it.
 *
 * Per-connection engine (struct rlb_tls): one SSL object over a custom BIO that reads the
 * ciphertext the caller passes to rlb_tls_recv() directly from the caller's buffer (no copy into
 * a BIO buffer, nothing retained by the BIO between calls) and writes the ciphertext OpenSSL
 * produces into refcounted blocks appended as segments to the caller's queue. With
 * SSL_MODE_RELEASE_BUFFERS OpenSSL frees its record buffers when idle, so an idle connection
 * after the handshake holds only the SSL object and its session (see tests/unit/test_tls.c for
 * the measured figure). An engine is used by one worker thread only.
 *
 * Error model: 0 or -errno. -EPROTO is a TLS failure (bad record, handshake failure, protocol
 * or cipher mismatch, plaintext HTTP...): OpenSSL may have queued an alert in cipher_out (send
 * it best-effort), then close; count a negotiation error if rlb_tls_handshake_done() is false.
 * -ENOMEM: allocation failure, close. An engine that returned an error stays failed.
 */
#ifndef RINGLB_TLS_H
#define RINGLB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringlb/buf.h"
#include "ringlb/config.h"

/* Ticket key rotation period (seconds); tickets issued under the previous key still resume. */
#define RLB_TLS_TICKET_ROTATE_S 3600

/* Session (ticket) lifetime advertised to clients, seconds. */
#define RLB_TLS_SESSION_LIFETIME_S 3600

struct rlb_tls_ctx;
struct ssl_st;
struct rlb_tls_cert;

/* A connection's TLS engine. Owner: one worker thread (the client connection that created it).
 * The fields are private to tls.c; the struct is public only so its size is visible. */
struct rlb_tls_io;
struct rlb_tls {
    struct ssl_st *ssl;               /* the OpenSSL connection (owns the BIO) */
    struct rlb_tls_ctx *ctx;          /* one reference held */
    const struct rlb_tls_cert *cert;  /* the certificate chosen (NULL before the choice) */
    struct rlb_tls_io *io;            /* during a call only: the caller's buffers (on stack) */
    const char *why;                  /* reason of the last failure (static string) or NULL */
    uint8_t flags;                    /* TLS_F_* (tls.c) */
    /* The connection's plaintext: decrypted input and output awaiting encryption. Kept here,
     * not in struct rlb_conn, so plaintext connections do not carry them; conn.c owns and
     * clears them, the engine only fills and drains them when conn.c passes them in. */
    struct rlb_bq plain_in, plain_out;
};

/* Facts about an established connection, for headers and access logs. Every string is owned by
 * the engine (or static) and valid until rlb_tls_free(); fields unknown yet are NULL. */
struct rlb_tls_info {
    const char *protocol;     /* "TLSv1.2", "TLSv1.3" (the ALB access log's ssl_protocol) */
    const char *cipher;       /* OpenSSL name, e.g. "ECDHE-RSA-AES128-GCM-SHA256" or
                               * "TLS_AES_128_GCM_SHA256" (the ALB access log's ssl_cipher) */
    const char *cipher_iana;  /* RFC name, e.g. "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" */
    const char *sni;          /* server name sent by the client, as sent; NULL when none */
    const char *cert_path;    /* file of the certificate presented (config `cert`) */
    const char *cert_name;    /* its first DNS name (or CN) */
    const char *alpn;         /* "http/1.1" or NULL */
    bool resumed;             /* the session was resumed from a ticket */
};

/* Build the server context of HTTPS listener `lc` (its certificates[] and security_policy).
 * Reads the PEM files (blocking; main thread): each `cert` file holds the leaf certificate
 * followed by its optional chain, each `key` file the private key (unencrypted; a passphrase
 * is never prompted for). Returns a context with one reference (the caller's), or NULL with a
 * message in err (always NUL-terminated, truncated to errlen) when a file cannot be read or
 * parsed, a key does not match its certificate, a certificate is refused by the policy's
 * security level, the policy is unknown, or the listener has no certificate. */
struct rlb_tls_ctx *rlb_tls_ctx_new(const struct rlb_listener_cfg *lc, char *err, size_t errlen);

/* Take one more reference to `ctx` (any thread). Returns ctx. */
struct rlb_tls_ctx *rlb_tls_ctx_ref(struct rlb_tls_ctx *ctx);

/* Drop one reference (any thread); the last one frees the context. NULL is accepted. Engines
 * hold their own references, so the snapshot may free its context while connections live. */
void rlb_tls_ctx_free(struct rlb_tls_ctx *ctx);

/* Number of certificates / distinct names (including wildcards) in the context (tests, logs). */
size_t rlb_tls_ctx_cert_count(const struct rlb_tls_ctx *ctx);
size_t rlb_tls_ctx_name_count(const struct rlb_tls_ctx *ctx);

/* The certificate file the context would present for server name `sni` (NULL = no SNI) to a
 * client that supports every key type: the same choice as a handshake, without one. For
 * `ringlb route`-style explanations and tests. */
const char *rlb_tls_ctx_select(const struct rlb_tls_ctx *ctx, const char *sni);

/* A new server-side engine for one accepted connection (takes a reference to ctx). NULL on
 * ENOMEM. Worker thread; the engine must then be used by that thread only. */
struct rlb_tls *rlb_tls_new(struct rlb_tls_ctx *ctx);

/* Free the engine (no alert is sent: call rlb_tls_shutdown() first for a clean close) and drop
 * its context reference. NULL is accepted. Nothing it produced is referenced afterwards: the
 * segments it appended to the caller's queues own their blocks. */
void rlb_tls_free(struct rlb_tls *t);

/* Feed `len` bytes of ciphertext received from the client (`data` is only read during the call;
 * the caller keeps ownership and may release it afterwards: everything not yet forming a
 * complete record is copied into OpenSSL's record buffer). Progresses the handshake, then
 * decrypts every complete record: application bytes are appended to `plain` as segments over
 * new blocks (rlb_block_new; one reference each, owned by the segments), and whatever OpenSSL
 * must send (handshake flights, session tickets, alerts, KeyUpdate answers) is appended to
 * `cipher_out` the same way — send it even when no plaintext came out. A close_notify from the
 * client sets rlb_tls_peer_closed() (treat it as EOF; later input is ignored). len == 0 is
 * allowed (just progresses). Returns 0, -EPROTO (TLS failure, see the file comment) or
 * -ENOMEM. Never blocks: a truncated or stalled ClientHello simply returns 0 with the
 * handshake not done (the caller's handshake timeout closes it). */
int rlb_tls_recv(struct rlb_tls *t, struct rlb_segpool *sp, const char *data, size_t len,
                 struct rlb_bq *plain, struct rlb_bq *cipher_out);

/* rlb_tls_recv() over every segment of `cipher_in`, which is consumed (released) entirely,
 * including on error. */
int rlb_tls_recv_bq(struct rlb_tls *t, struct rlb_segpool *sp, struct rlb_bq *cipher_in,
                    struct rlb_bq *plain, struct rlb_bq *cipher_out);

/* Encrypt application bytes from the head of `plain` into `cipher_out`, consuming them from
 * `plain`: at most `max` bytes (0 = everything), rounded up to whole records of 16 KiB of
 * plaintext. Small segments are coalesced so that one record carries up to 16 KiB. Returns 0,
 * -ENOTCONN before the handshake is complete (nothing consumed), -EPIPE after
 * rlb_tls_shutdown(), -EPROTO or -ENOMEM (then the engine is failed). */
int rlb_tls_send(struct rlb_tls *t, struct rlb_segpool *sp, struct rlb_bq *plain, uint32_t max,
                 struct rlb_bq *cipher_out);

/* Append a close_notify alert to `cipher_out` (once; later calls do nothing) and refuse further
 * rlb_tls_send(). Does not wait for the client's close_notify. Before the handshake is complete
 * or after a failure it appends nothing. Returns 0 or -ENOMEM. */
int rlb_tls_shutdown(struct rlb_tls *t, struct rlb_segpool *sp, struct rlb_bq *cipher_out);

/* True once the handshake has completed (application data may flow). */
bool rlb_tls_handshake_done(const struct rlb_tls *t);

/* True once the client's close_notify has been received. */
bool rlb_tls_peer_closed(const struct rlb_tls *t);

/* True when a call returned an error (the engine only refuses work afterwards). */
bool rlb_tls_failed(const struct rlb_tls *t);

/* A short static description of the last failure ("http request", "unsupported protocol",
 * "no shared cipher", "wrong version number"...; OpenSSL's reason string), or NULL. */
const char *rlb_tls_error_reason(const struct rlb_tls *t);

/* Fill `out` with the connection's facts (see struct rlb_tls_info). Meaningful once the
 * handshake is done; before that only sni may be set. */
void rlb_tls_get_info(const struct rlb_tls *t, struct rlb_tls_info *out);

/* True when `data` (the first bytes a client sent on a TLS port, len >= 1) looks like a
 * plaintext HTTP request: an upper-case method token followed by a space (or the end of what
 * arrived). A TLS record never starts with a letter. Lets the caller answer/count "plain HTTP
 * on an HTTPS port" distinctly from other handshake failures. */
bool rlb_tls_looks_like_http(const char *data, size_t len);

/* Rotate the process-wide ticket keys now (the current key becomes the previous one and the
 * former previous key is forgotten). Any thread; normally rotation happens by itself. */
void rlb_tls_ticket_keys_rotate(void);

#endif
