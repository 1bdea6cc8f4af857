/* cluster.c — the fleet's shared runtime state in etcd (see cluster.h).
 *
 * One process-wide `cl` (main thread only). The periodic tick (every TICK_MS) reconnects
 * after an outage (full read, then watch), keeps the lease alive, campaigns for leadership
 * and publishes this instance's closed metrics windows.
 */
#include "ringlb/cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ringlb/action.h"
#include "ringlb/admin.h"
#include "ringlb/etcd.h"
#include "ringlb/json_read.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/snapshot.h"
#include "ringlb/targets.h"
#include "ringlb/worker.h"

#define TICK_MS 200
#define CALL_TIMEOUT_MS 1000

struct modrev {
    char *key;      /* suffix after the prefix */
    int64_t rev;
};

struct seen {
    char *name;     /* "<instance>/<group>" */
    int64_t seq;
};

static struct {
    bool enabled;
    bool started;               /* the first snapshot is current: apply with publication */
    bool connected;
    bool leader;
    struct rlb_etcd etcd;
    char *prefix, *prefix_end;
    size_t plen;
    char *instance;
    uint64_t ttl_ms;
    struct io_uring *ring;
    struct rlb_timer_wheel *wheel;
    struct rlb_timer timer;
    struct rlb_etcd_watch watch;
    bool watching;
    bool poll_armed;
    uint64_t poll_gen;          /* the armed poll's generation (user_data >> 3) */
    bool need_resync;
    int64_t rev;                /* etcd revision the local state reflects */
    int64_t lease;              /* 0: none */
    uint64_t next_keepalive_ms;
    uint64_t next_campaign_ms;
    uint64_t next_retry_ms;
    uint64_t retry_backoff_ms;
    uint64_t windows_published;
    struct modrev *revs;
    size_t n_revs;
    struct seen *seen;
    size_t n_seen;
    void (*on_deployment)(const char *id, const char *json, size_t len, int64_t mod_rev);
    void (*on_leader)(bool leader);
} cl;

bool rlb_cluster_enabled(void) { return cl.enabled; }
bool rlb_cluster_connected(void) { return cl.enabled && cl.connected; }
bool rlb_cluster_leader(void) { return cl.enabled && cl.leader; }
const char *rlb_cluster_instance(void) { return cl.enabled ? cl.instance : NULL; }

void rlb_cluster_on_deployment(void (*cb)(const char *, const char *, size_t, int64_t))
{
    cl.on_deployment = cb;
}

void rlb_cluster_on_leader(void (*cb)(bool leader)) { cl.on_leader = cb; }

/* --- small helpers -------------------------------------------------------------------------- */

static char *key_b64(const char *suffix)
{
    size_t sl = strlen(suffix);
    char *k = malloc(cl.plen + sl + 1);
    if (!k)
        return NULL;
    memcpy(k, cl.prefix, cl.plen);
    memcpy(k + cl.plen, suffix, sl + 1);
    char *b = rlb_etcd_b64(k, cl.plen + sl);
    free(k);
    return b;
}

char *rlb_cluster_key64(const char *suffix)
{
    char *b = key_b64(suffix);
    if (!b)
        return NULL;
    char *q = malloc(strlen(b) + 3);
    if (q)
        sprintf(q, "\"%s\"", b);
    free(b);
    return q;
}

static int64_t *modrev_slot(const char *key, bool create)
{
    for (size_t i = 0; i < cl.n_revs; i++)
        if (strcmp(cl.revs[i].key, key) == 0)
            return &cl.revs[i].rev;
    if (!create)
        return NULL;
    struct modrev *n = realloc(cl.revs, (cl.n_revs + 1) * sizeof(*n));
    char *k = strdup(key);
    if (!n || !k) {
        free(k);
        if (n)
            cl.revs = n;
        return NULL;
    }
    cl.revs = n;
    cl.revs[cl.n_revs] = (struct modrev){k, 0};
    return &cl.revs[cl.n_revs++].rev;
}

static void set_leader(bool leader)
{
    if (cl.leader == leader)
        return;
    cl.leader = leader;
    rlb_log_info("cluster: %s the leader", leader ? "this instance is now" : "no longer");
    if (cl.on_leader)
        cl.on_leader(leader);
}

static void disconnected(const char *why)
{
    if (cl.connected)
        rlb_log_warn("cluster: etcd unreachable (%s): serving with the last known state", why);
    cl.connected = false;
    cl.need_resync = true;
}

/* Answers of call() still in use (at most two at a time: nested calls do not happen). */
#define MAX_REPLIES 4
struct reply {
    struct fy_document *doc;
    char *text;
};
static struct reply replies[MAX_REPLIES];

/* An etcd call; on transport failures the instance counts as disconnected. The answer is a
 * document to release with reply_free(). */
static int call(const char *path, const char *body, struct fy_document **doc)
{
    char *out = NULL;
    size_t len = 0;
    *doc = NULL;
    int rc = rlb_etcd_call(&cl.etcd, path, body, &out, &len);
    if (rc < 0) {
        if (rc != -EPROTO) {
            disconnected(cl.etcd.err);
        } else {
            /* the same refusal again and again (e.g. a wrong password): once a minute */
            static char last[256];
            static uint64_t last_ms;
            uint64_t now = rlb_now_ms();
            if (strcmp(last, cl.etcd.err) != 0 || now - last_ms >= 60000) {
                rlb_log_warn("cluster: %s: %s", path, cl.etcd.err);
                snprintf(last, sizeof(last), "%s", cl.etcd.err);
                last_ms = now;
            }
        }
        free(out);
        return rc == -ENOMEM ? -ENOMEM : -EAGAIN;
    }
    char err[128];
    *doc = rlb_json_parse(out, len, err, sizeof(err));
    if (!*doc) {
        free(out);
        rlb_log_warn("cluster: %s: unreadable answer: %s", path, err);
        return -EAGAIN;
    }
    /* libfyaml keeps pointing into the text: it lives as long as the document. */
    for (size_t i = 0; i < MAX_REPLIES; i++) {
        if (!replies[i].doc) {
            replies[i] = (struct reply){*doc, out};
            return 0;
        }
    }
    fy_document_destroy(*doc);
    free(out);
    *doc = NULL;
    return -ENOMEM;
}

/* Destroy a document call() returned, and its text. */
static void reply_free(struct fy_document *d)
{
    for (size_t i = 0; i < MAX_REPLIES; i++) {
        if (replies[i].doc == d) {
            fy_document_destroy(d);
            free(replies[i].text);
            replies[i] = (struct reply){NULL, NULL};
            return;
        }
    }
}

static int64_t header_rev(struct fy_node *root)
{
    return rlb_etcd_int(rlb_json_get(rlb_json_get(root, "header"), "revision"), 0);
}

/* --- applying keys -------------------------------------------------------------------------- */

static bool split3(const char *s, char *a, size_t an, char *b, size_t bn, char *c, size_t cn)
{
    const char *p1 = strchr(s, '/');
    const char *p2 = p1 ? strchr(p1 + 1, '/') : NULL;
    if (!p1 || !p2 || (size_t)(p1 - s) >= an || (size_t)(p2 - p1 - 1) >= bn ||
        strlen(p2 + 1) >= cn || strchr(p2 + 1, '/'))
        return false;
    memcpy(a, s, (size_t)(p1 - s));
    a[p1 - s] = '\0';
    memcpy(b, p1 + 1, (size_t)(p2 - p1 - 1));
    b[p2 - p1 - 1] = '\0';
    strcpy(c, p2 + 1);
    return true;
}

static void apply_target(const char *rest, const char *val, size_t vlen)
{
    char group[128], ip[64], port[8], hp[96], err[128];
    struct rlb_sockaddr addr;
    if (!split3(rest, group, sizeof(group), ip, sizeof(ip), port, sizeof(port)))
        return;
    snprintf(hp, sizeof(hp), strchr(ip, ':') ? "[%s]:%s" : "%s:%s", ip, port);
    if (rlb_sockaddr_parse(hp, &addr) < 0)
        return;
    bool registered = false;
    struct fy_document *d = val ? rlb_json_parse(val, vlen, err, sizeof(err)) : NULL;
    if (!d || rlb_json_get_bool(rlb_json_get(fy_document_root(d), "registered"),
                                &registered) < 0) {
        if (d)
            fy_document_destroy(d);
        return; /* deleted or unreadable: nothing to apply */
    }
    fy_document_destroy(d);
    if (!cl.started)
        rlb_targets_overlay_set(group, &addr, registered);
    else if (registered)
        rlb_targets_register(group, &addr, 1);
    else
        rlb_targets_deregister(group, &addr, 1);
}

/* Parse {"target_groups":[{"name","weight"}...]} into w (names point into doc). */
static ssize_t parse_weights(struct fy_document *doc, struct rlb_weight *w, size_t cap)
{
    struct fy_node *arr = rlb_json_get(fy_document_root(doc), "target_groups");
    if (!rlb_json_is_arr(arr))
        return -1;
    size_t n = 0;
    struct fy_node *it;
    void *iter = NULL;
    while ((it = fy_node_sequence_iterate(arr, &iter))) {
        const char *name;
        size_t nl;
        int64_t v;
        if (n == cap || rlb_json_get_str(rlb_json_get(it, "name"), &name, &nl) < 0 ||
            rlb_json_get_int(rlb_json_get(it, "weight"), 0, RLB_WEIGHT_MAX, &v) < 0)
            return -1;
        w[n].group = fy_node_get_scalar0(rlb_json_get(it, "name"));
        w[n].weight = (uint32_t)v;
        if (!w[n].group)
            return -1;
        n++;
    }
    return (ssize_t)n;
}

static bool same_weights(const struct rlb_weights_override *o, const struct rlb_weight *w,
                         size_t n)
{
    if (!o || o->n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(o->groups[i], w[i].group) != 0 || o->weights[i] != w[i].weight)
            return false;
    return true;
}

static void apply_weights(const char *rest, const char *val, size_t vlen, int64_t mod_rev)
{
    char listener[128], prio[16];
    const char *slash = strchr(rest, '/');
    if (!slash || (size_t)(slash - rest) >= sizeof(listener) || strlen(slash + 1) >= sizeof(prio))
        return;
    memcpy(listener, rest, (size_t)(slash - rest));
    listener[slash - rest] = '\0';
    strcpy(prio, slash + 1);
    char *end;
    unsigned long p = strtoul(prio, &end, 10);
    if (*end || p > 50000)
        return;
    int64_t *slot = modrev_slot(rest, true);
    if (slot)
        *slot = val ? mod_rev : 0;
    if (!val) {
        /* Before the first snapshot there is nothing to publish: remove only drops it. */
        if (rlb_weights_find(listener, (uint32_t)p))
            rlb_weights_remove(listener, (uint32_t)p);
        return;
    }
    char err[256];
    struct fy_document *d = rlb_json_parse(val, vlen, err, sizeof(err));
    struct rlb_weight w[64];
    ssize_t n = d ? parse_weights(d, w, 64) : -1;
    if (n > 0 && !same_weights(rlb_weights_find(listener, (uint32_t)p), w, (size_t)n)) {
        int rc = cl.started ? rlb_weights_set(listener, (uint32_t)p, w, (size_t)n, err,
                                              sizeof(err))
                            : rlb_weights_put(listener, (uint32_t)p, w, (size_t)n);
        if (rc < 0)
            rlb_log_warn("cluster: weights of %s/%s from etcd not applied: %s", listener, prio,
                         cl.started ? err : strerror(-rc));
    }
    if (d)
        fy_document_destroy(d);
}

/* Apply one key (suffix after the prefix); val NULL = deleted. */
static void apply_kv(const char *rest, const char *val, size_t vlen, int64_t mod_rev)
{
    if (strncmp(rest, "targets/", 8) == 0) {
        apply_target(rest + 8, val, vlen);
    } else if (strncmp(rest, "weights/", 8) == 0) {
        apply_weights(rest + 8, val, vlen, mod_rev);
    } else if (strncmp(rest, "deployments/", 12) == 0) {
        if (cl.on_deployment && !strchr(rest + 12, '/'))
            cl.on_deployment(rest + 12, val, vlen, mod_rev);
    } else if (strcmp(rest, "leader") == 0) {
        bool mine = val && vlen == strlen(cl.instance) && memcmp(val, cl.instance, vlen) == 0;
        if (!mine && cl.leader)
            set_leader(false);
        if (!val)
            cl.next_campaign_ms = 0; /* campaign at the next tick */
    }
}

/* Decode one {"key","value","mod_revision"} object and apply it. */
static void apply_node(struct fy_node *kv, bool deleted)
{
    const char *k64, *v64 = NULL;
    size_t kl, vl = 0;
    if (rlb_json_get_str(rlb_json_get(kv, "key"), &k64, &kl) < 0)
        return;
    size_t klen, vlen = 0;
    char *key = rlb_etcd_unb64(k64, kl, &klen);
    if (!key)
        return;
    char *val = NULL;
    if (!deleted) {
        if (rlb_json_get_str(rlb_json_get(kv, "value"), &v64, &vl) < 0) {
            v64 = "";
            vl = 0;
        }
        val = rlb_etcd_unb64(v64, vl, &vlen);
    }
    if (klen > cl.plen && memcmp(key, cl.prefix, cl.plen) == 0 && strlen(key) == klen &&
        (deleted || val))
        apply_kv(key + cl.plen, val, vlen, rlb_etcd_int(rlb_json_get(kv, "mod_revision"), 0));
    free(key);
    free(val);
}

/* --- full read and watch -------------------------------------------------------------------- */

static void on_watch_message(void *arg, const char *json, size_t len);

static void arm_poll(void)
{
    if (!cl.ring || !cl.watching || cl.poll_armed)
        return;
    struct io_uring_sqe *sqe = io_uring_get_sqe(cl.ring);
    if (!sqe) {
        io_uring_submit(cl.ring);
        sqe = io_uring_get_sqe(cl.ring);
    }
    if (!sqe)
        return;
    cl.poll_gen++;
    io_uring_prep_poll_add(sqe, cl.watch.io.fd, POLLIN);
    io_uring_sqe_set_data64(sqe, (cl.poll_gen << 3) | RLB_MAIN_CLUSTER);
    cl.poll_armed = true;
}

static void close_watch(void)
{
    if (cl.poll_armed && cl.ring) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(cl.ring);
        if (!sqe) {
            io_uring_submit(cl.ring);
            sqe = io_uring_get_sqe(cl.ring);
        }
        if (sqe) {
            io_uring_prep_poll_remove(sqe, (cl.poll_gen << 3) | RLB_MAIN_CLUSTER);
            io_uring_sqe_set_data64(sqe, RLB_MAIN_IGNORE);
        }
        io_uring_submit(cl.ring);
    }
    cl.poll_armed = false;
    cl.poll_gen++; /* a late completion of the old poll is stale */
    if (cl.watching)
        rlb_etcd_watch_close(&cl.watch);
    cl.watching = false;
}

/* Read every key under P + suffix ("" = the whole prefix). Returns call()'s result. */
static int range_prefix(const char *suffix, struct fy_document **d)
{
    *d = NULL;
    size_t sl = strlen(suffix);
    char *from = malloc(cl.plen + sl + 1);
    if (!from)
        return -ENOMEM;
    memcpy(from, cl.prefix, cl.plen);
    memcpy(from + cl.plen, suffix, sl + 1);
    char *end = rlb_etcd_prefix_end(from);
    char *k = rlb_etcd_b64(from, cl.plen + sl);
    char *e = end ? rlb_etcd_b64(end, strlen(end)) : NULL;
    char *body = k && e ? malloc(strlen(k) + strlen(e) + 64) : NULL;
    int rc = -ENOMEM;
    if (body) {
        sprintf(body, "{\"key\":\"%s\",\"range_end\":\"%s\"}", k, e);
        rc = call("/v3/kv/range", body, d);
    }
    free(from);
    free(end);
    free(k);
    free(e);
    free(body);
    return rc;
}

/* Read the whole prefix, make the local state equal to it, then watch from the next
 * revision. Returns 0 or -EAGAIN. */
static int resync(void)
{
    close_watch();
    struct fy_document *d;
    int rc = range_prefix("", &d);
    if (rc < 0)
        return rc;
    struct fy_node *root = fy_document_root(d);
    int64_t rev = header_rev(root);
    /* Weights that etcd no longer has go back to the file's. */
    size_t n_local = rlb_weights_count();
    char (*local)[160] = n_local ? calloc(n_local, sizeof(*local)) : NULL;
    bool *present = n_local ? calloc(n_local, sizeof(*present)) : NULL;
    for (size_t i = 0; local && i < n_local; i++) {
        const struct rlb_weights_override *o = rlb_weights_at(i);
        snprintf(local[i], sizeof(local[i]), "weights/%s/%u", o->listener, o->priority);
    }
    bool leader_seen = false;
    struct fy_node *kvs = rlb_json_get(root, "kvs");
    struct fy_node *it;
    void *iter = NULL;
    while (kvs && (it = fy_node_sequence_iterate(kvs, &iter))) {
        const char *k64;
        size_t kl, klen;
        if (rlb_json_get_str(rlb_json_get(it, "key"), &k64, &kl) == 0) {
            char *key = rlb_etcd_unb64(k64, kl, &klen);
            for (size_t i = 0; key && local && present && i < n_local; i++)
                if (klen > cl.plen && strcmp(key + cl.plen, local[i]) == 0)
                    present[i] = true;
            if (key && klen > cl.plen && strcmp(key + cl.plen, "leader") == 0)
                leader_seen = true;
            free(key);
        }
        apply_node(it, false);
    }
    for (size_t i = 0; local && present && i < n_local; i++) {
        if (!present[i]) {
            int64_t *slot = modrev_slot(local[i] + 8, false);
            if (slot)
                *slot = 0;
            char listener[128];
            unsigned prio;
            if (sscanf(local[i], "weights/%127[^/]/%u", listener, &prio) == 2)
                rlb_weights_remove(listener, prio);
        }
    }
    free(local);
    free(present);
    if (!leader_seen) {
        if (cl.leader)
            set_leader(false);
        cl.next_campaign_ms = 0;
    }
    reply_free(d);
    cl.rev = rev;
    if (cl.started) {
        rc = rlb_etcd_watch_open(&cl.etcd, &cl.watch, cl.prefix, cl.prefix_end, rev + 1,
                                 on_watch_message, NULL);
        if (rc < 0) {
            disconnected(cl.etcd.err);
            return -EAGAIN;
        }
        cl.watching = true;
        arm_poll();
    }
    if (!cl.connected)
        rlb_log_info("cluster: connected to etcd at revision %" PRId64, rev);
    cl.connected = true;
    cl.need_resync = false;
    return 0;
}

static void on_watch_message(void *arg, const char *json, size_t len)
{
    (void)arg;
    char err[128];
    struct fy_document *d = rlb_json_parse(json, len, err, sizeof(err));
    if (!d) {
        cl.need_resync = true;
        return;
    }
    struct fy_node *r = rlb_json_get(fy_document_root(d), "result");
    bool canceled = false;
    rlb_json_get_bool(rlb_json_get(r, "canceled"), &canceled);
    if (!r || canceled || rlb_etcd_int(rlb_json_get(r, "compact_revision"), 0) > 0) {
        cl.need_resync = true; /* compacted or cancelled: read everything again */
        fy_document_destroy(d);
        return;
    }
    struct fy_node *evs = rlb_json_get(r, "events");
    struct fy_node *ev;
    void *iter = NULL;
    while (evs && (ev = fy_node_sequence_iterate(evs, &iter))) {
        const char *type = NULL;
        size_t tl = 0;
        rlb_json_get_str(rlb_json_get(ev, "type"), &type, &tl);
        bool del = type && tl == 6 && memcmp(type, "DELETE", 6) == 0;
        apply_node(rlb_json_get(ev, "kv"), del);
    }
    int64_t rev = header_rev(r);
    if (rev > cl.rev)
        cl.rev = rev;
    fy_document_destroy(d);
}

void rlb_cluster_complete(int res)
{
    /* The caller passes only completions of the current generation (see main.c). */
    cl.poll_armed = false;
    if (!cl.watching)
        return;
    if (res < 0 && res != -EINTR) {
        close_watch();
        disconnected("watch poll failed");
        return;
    }
    int rc = rlb_etcd_watch_read(&cl.watch);
    if (rc < 0 || cl.need_resync) {
        close_watch();
        if (rc < 0)
            disconnected("watch stream ended");
        else
            cl.need_resync = true;
        return;
    }
    arm_poll();
}

bool rlb_cluster_poll_current(uint64_t ud) { return (ud >> 3) == cl.poll_gen; }

/* --- lease, leadership, counters ------------------------------------------------------------ */

static void lease_work(uint64_t now)
{
    struct fy_document *d;
    char body[160];
    if (!cl.lease) {
        snprintf(body, sizeof(body), "{\"TTL\":\"%" PRIu64 "\"}", (cl.ttl_ms + 999) / 1000);
        if (call("/v3/lease/grant", body, &d) < 0)
            return;
        cl.lease = rlb_etcd_int(rlb_json_get(fy_document_root(d), "ID"), 0);
        reply_free(d);
        cl.next_keepalive_ms = now + cl.ttl_ms / 3;
        cl.next_campaign_ms = 0;
        return;
    }
    if (now < cl.next_keepalive_ms)
        return;
    snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", cl.lease);
    if (call("/v3/lease/keepalive", body, &d) < 0)
        return;
    int64_t ttl = rlb_etcd_int(rlb_json_get(rlb_json_get(fy_document_root(d), "result"), "TTL"),
                               0);
    reply_free(d);
    if (ttl <= 0) {
        rlb_log_warn("cluster: lease expired");
        cl.lease = 0;
        set_leader(false);
        return;
    }
    cl.next_keepalive_ms = now + cl.ttl_ms / 3;
}

/* Put `value` at P + suffix unless the key exists (with `lease` when non-zero). Returns 0
 * and sets *created; when it existed, *existing gets its value (malloc'd, may stay NULL) and
 * *existing_lease its lease. call()'s error otherwise. */
static int create_or_read(const char *suffix, const char *value, int64_t lease, bool *created,
                          char **existing, int64_t *existing_lease)
{
    *created = false;
    *existing = NULL;
    *existing_lease = 0;
    char *k = key_b64(suffix);
    char *v = rlb_etcd_b64(value, strlen(value));
    char *body = k && v ? malloc(3 * strlen(k) + strlen(v) + 400) : NULL;
    if (body)
        sprintf(body,
                "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
                "\"create_revision\":\"0\"}],"
                "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\","
                "\"lease\":\"%" PRId64 "\"}}],"
                "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
                k, k, v, lease, k);
    free(k);
    free(v);
    if (!body)
        return -ENOMEM;
    struct fy_document *d;
    int rc = call("/v3/kv/txn", body, &d);
    free(body);
    if (rc < 0)
        return rc;
    struct fy_node *root = fy_document_root(d);
    rlb_json_get_bool(rlb_json_get(root, "succeeded"), created);
    if (!*created) {
        struct fy_node *resp = fy_node_sequence_get_by_index(rlb_json_get(root, "responses"), 0);
        struct fy_node *kvs = rlb_json_get(rlb_json_get(resp, "response_range"), "kvs");
        struct fy_node *kv = kvs ? fy_node_sequence_get_by_index(kvs, 0) : NULL;
        const char *v64;
        size_t vl, vlen;
        if (kv && rlb_json_get_str(rlb_json_get(kv, "value"), &v64, &vl) == 0)
            *existing = rlb_etcd_unb64(v64, vl, &vlen);
        *existing_lease = rlb_etcd_int(rlb_json_get(kv, "lease"), 0);
    }
    reply_free(d);
    return 0;
}

static void campaign(uint64_t now)
{
    if (!cl.lease || cl.leader || now < cl.next_campaign_ms)
        return;
    cl.next_campaign_ms = now + cl.ttl_ms / 3;
    bool ok;
    char *holder;
    int64_t holder_lease;
    if (create_or_read("leader", cl.instance, cl.lease, &ok, &holder, &holder_lease) < 0)
        return;
    /* Already ours (e.g. after a reconnection with the same lease)? */
    if (!ok)
        ok = holder && holder_lease == cl.lease && strcmp(holder, cl.instance) == 0;
    free(holder);
    if (ok)
        set_leader(true);
}

/* Publish this instance's last closed window per target group (under the lease). */
static void publish_counts(void)
{
    uint64_t closed = rlb_metrics_windows_closed();
    const struct rlb_snapshot *s = rlb_snapshot_current();
    if (!cl.lease || !s || closed == cl.windows_published)
        return;
    size_t cap = 128 + s->cfg->n_target_groups * 200;
    char *json = malloc(cap);
    if (!json)
        return;
    size_t o = (size_t)snprintf(json, cap, "{\"seq\":%" PRIu64 ",\"groups\":{", closed);
    for (size_t g = 0; g < s->cfg->n_target_groups; g++) {
        struct rlb_metrics_window w;
        rlb_metrics_group_window(s->cfg->target_groups[g].name, &w);
        uint64_t err = w.target[2] + w.target[3] + w.elb[0] + w.elb[1];
        o += (size_t)snprintf(json + o, cap - o, "%s\"%s\":[%" PRIu64 ",%" PRIu64 "]",
                              g ? "," : "", s->cfg->target_groups[g].name,
                              w.complete ? w.requests : 0, w.complete ? err : 0);
    }
    snprintf(json + o, cap - o, "}}");
    char suffix[200];
    snprintf(suffix, sizeof(suffix), "counts/%s", cl.instance);
    char *k = key_b64(suffix);
    char *v = rlb_etcd_b64(json, strlen(json));
    free(json);
    char *body = k && v ? malloc(strlen(k) + strlen(v) + 100) : NULL;
    if (body) {
        sprintf(body, "{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%" PRId64 "\"}", k, v,
                cl.lease);
        struct fy_document *d;
        if (call("/v3/kv/put", body, &d) == 0) {
            reply_free(d);
            cl.windows_published = closed;
        }
    }
    free(k);
    free(v);
    free(body);
}

static int64_t *seen_slot(const char *inst, const char *group)
{
    char name[300];
    snprintf(name, sizeof(name), "%s/%s", inst, group);
    for (size_t i = 0; i < cl.n_seen; i++)
        if (strcmp(cl.seen[i].name, name) == 0)
            return &cl.seen[i].seq;
    struct seen *n = realloc(cl.seen, (cl.n_seen + 1) * sizeof(*n));
    if (!n)
        return NULL;
    cl.seen = n;
    if (!(cl.seen[cl.n_seen].name = strdup(name)))
        return NULL;
    cl.seen[cl.n_seen].seq = -1;
    return &cl.seen[cl.n_seen++].seq;
}

void rlb_cluster_fleet_window(const char *group, uint64_t *requests, uint64_t *errors)
{
    if (!cl.enabled || !cl.connected)
        return;
    struct fy_document *d = NULL;
    if (range_prefix("counts/", &d) < 0)
        return;
    size_t pl = cl.plen + strlen("counts/");
    struct fy_node *kvs = rlb_json_get(fy_document_root(d), "kvs");
    struct fy_node *it;
    void *iter = NULL;
    while (kvs && (it = fy_node_sequence_iterate(kvs, &iter))) {
        const char *k64, *v64;
        size_t kl, vl, klen, vlen;
        if (rlb_json_get_str(rlb_json_get(it, "key"), &k64, &kl) < 0 ||
            rlb_json_get_str(rlb_json_get(it, "value"), &v64, &vl) < 0)
            continue;
        char *key = rlb_etcd_unb64(k64, kl, &klen);
        char *val = rlb_etcd_unb64(v64, vl, &vlen);
        char err[64];
        struct fy_document *vd = key && val && klen > pl && strcmp(key + pl, cl.instance) != 0
                                     ? rlb_json_parse(val, vlen, err, sizeof(err))
                                     : NULL;
        if (vd) {
            struct fy_node *root = fy_document_root(vd);
            int64_t seq = rlb_etcd_int(rlb_json_get(root, "seq"), -1);
            struct fy_node *pair = rlb_json_get(rlb_json_get(root, "groups"), group);
            int64_t *slot = seen_slot(key + pl, group);
            if (slot && pair && seq > *slot) {
                *requests += (uint64_t)rlb_etcd_int(fy_node_sequence_get_by_index(pair, 0), 0);
                *errors += (uint64_t)rlb_etcd_int(fy_node_sequence_get_by_index(pair, 1), 0);
                *slot = seq;
            }
            fy_document_destroy(vd);
        }
        free(key);
        free(val);
    }
    reply_free(d);
}

static void tick(struct rlb_timer *t, uint64_t now)
{
    (void)t;
    if (cl.need_resync && now >= cl.next_retry_ms) {
        /* Every 500 ms while etcd refuses; an etcd that lets the call time out (1 s of this
         * thread) is tried less and less often, up to every 5 s. */
        uint64_t t0 = rlb_now_ms();
        if (resync() < 0) {
            bool slow = rlb_now_ms() - t0 >= CALL_TIMEOUT_MS / 2;
            cl.retry_backoff_ms = !slow ? 500
                                  : cl.retry_backoff_ms >= 2500 ? 5000
                                                                : cl.retry_backoff_ms * 2;
            cl.next_retry_ms = now + cl.retry_backoff_ms;
        } else {
            cl.retry_backoff_ms = 500;
        }
    }
    if (cl.connected) {
        lease_work(now);
        if (cl.connected)
            campaign(now);
        if (cl.connected)
            publish_counts();
    }
    rlb_timer_arm(cl.wheel, &cl.timer, now + TICK_MS, tick);
}

/* --- admin writes --------------------------------------------------------------------------- */

int rlb_cluster_txn(const char *compare, const char *success, int64_t *rev)
{
    if (!cl.connected)
        return -EAGAIN;
    char *body = malloc(strlen(compare) + strlen(success) + 64);
    if (!body)
        return -ENOMEM;
    sprintf(body, "{\"compare\":%s,\"success\":%s}", compare, success);
    struct fy_document *d;
    int rc = call("/v3/kv/txn", body, &d);
    free(body);
    if (rc < 0)
        return rc;
    bool ok = false;
    rlb_json_get_bool(rlb_json_get(fy_document_root(d), "succeeded"), &ok);
    if (rev)
        *rev = header_rev(fy_document_root(d));
    reply_free(d);
    return ok ? 0 : -EBUSY;
}

/* Append `"...put..."` of key suffix with JSON value text to buf (grown). */
static int append_put(char **buf, size_t *len, size_t *cap, const char *suffix, const char *val)
{
    char *k = key_b64(suffix);
    char *v = val ? rlb_etcd_b64(val, strlen(val)) : NULL;
    if (!k || (val && !v)) {
        free(k);
        free(v);
        return -ENOMEM;
    }
    size_t need = strlen(k) + (v ? strlen(v) : 0) + 96;
    if (*len + need > *cap) {
        size_t ncap = (*cap + need) * 2;
        char *nb = realloc(*buf, ncap);
        if (!nb) {
            free(k);
            free(v);
            return -ENOMEM;
        }
        *buf = nb;
        *cap = ncap;
    }
    *len += (size_t)sprintf(*buf + *len, "%s", *len > 1 ? "," : "");
    if (v)
        *len += (size_t)sprintf(*buf + *len, "{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}",
                                k, v);
    else
        *len += (size_t)sprintf(*buf + *len, "{\"request_delete_range\":{\"key\":\"%s\"}}", k);
    free(k);
    free(v);
    return 0;
}

int rlb_cluster_targets(const char *group, const struct rlb_sockaddr *addrs, size_t n,
                        bool registered, char *err, size_t errlen)
{
    if (!cl.connected) {
        snprintf(err, errlen, "etcd is unreachable: the fleet cannot take changes now");
        return -EAGAIN;
    }
    size_t len = 1, cap = 256;
    char *ops = malloc(cap);
    if (!ops)
        return -ENOMEM;
    ops[0] = '[';
    for (size_t i = 0; i < n; i++) {
        char ip[64], suffix[256];
        rlb_sockaddr_ip(&addrs[i], ip, sizeof(ip));
        snprintf(suffix, sizeof(suffix), "targets/%s/%s/%u", group, ip,
                 rlb_sockaddr_port(&addrs[i]));
        if (append_put(&ops, &len, &cap, suffix,
                       registered ? "{\"registered\":true}" : "{\"registered\":false}") < 0) {
            free(ops);
            return -ENOMEM;
        }
    }
    ops[len] = '\0';
    char *full = realloc(ops, len + 2);
    if (!full) {
        free(ops);
        return -ENOMEM;
    }
    strcat(full, "]");
    int rc = rlb_cluster_txn("[]", full, NULL);
    free(full);
    if (rc < 0) {
        snprintf(err, errlen, "etcd is unreachable: the fleet cannot take changes now");
        return rc == -ENOMEM ? rc : -EAGAIN;
    }
    rc = registered ? rlb_targets_register(group, addrs, n)
                    : rlb_targets_deregister(group, addrs, n);
    if (rc == -ENOENT)
        snprintf(err, errlen, "target group %.64s not found", group);
    else if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* {"target_groups":[...]} for n weights (malloc'd), NULL on ENOMEM. */
static char *weights_value(const struct rlb_weight *w, size_t n)
{
    size_t cap = 64 + n * 160;
    char *val = malloc(cap);
    if (!val)
        return NULL;
    size_t o = (size_t)snprintf(val, cap, "{\"target_groups\":[");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(val + o, cap - o, "%s{\"name\":\"%s\",\"weight\":%u}",
                              i ? "," : "", w[i].group, w[i].weight);
    snprintf(val + o, cap - o, "]}");
    return val;
}

char *rlb_cluster_put_op(const char *suffix, const char *value)
{
    size_t len = 1, cap = 256;
    char *ops = malloc(cap);
    if (!ops)
        return NULL;
    ops[0] = '[';
    if (append_put(&ops, &len, &cap, suffix, value) < 0) {
        free(ops);
        return NULL;
    }
    ops[len] = '\0';
    memmove(ops, ops + 1, len); /* drop the '[': one operation object */
    return ops;
}

char *rlb_cluster_weights_op(const char *listener, uint32_t priority,
                             const struct rlb_weight *w, size_t n)
{
    char suffix[200];
    snprintf(suffix, sizeof(suffix), "weights/%s/%u", listener, priority);
    char *val = n ? weights_value(w, n) : NULL;
    if (n && !val)
        return NULL;
    char *op = rlb_cluster_put_op(suffix, val);
    free(val);
    return op;
}

void rlb_cluster_weights_written(const char *listener, uint32_t priority, int64_t rev,
                                 bool removed)
{
    char suffix[200];
    snprintf(suffix, sizeof(suffix), "%s/%u", listener, priority);
    int64_t *slot = modrev_slot(suffix, true);
    if (slot)
        *slot = removed ? 0 : rev;
}

int rlb_cluster_weights(const char *listener, uint32_t priority, const struct rlb_weight *w,
                        size_t n, char *err, size_t errlen)
{
    const struct rlb_snapshot *s = rlb_snapshot_current();
    if (!s) {
        snprintf(err, errlen, "not running");
        return -ENOENT;
    }
    int rc = n ? rlb_weights_validate(s->cfg, listener, priority, w, n, err, errlen) : 0;
    if (rc < 0)
        return rc;
    if (!cl.connected) {
        snprintf(err, errlen, "etcd is unreachable: the fleet cannot take changes now");
        return -EAGAIN;
    }
    char suffix[200];
    snprintf(suffix, sizeof(suffix), "weights/%s/%u", listener, priority);
    char *op = rlb_cluster_weights_op(listener, priority, w, n);
    char *ops = op ? malloc(strlen(op) + 3) : NULL;
    if (!ops) {
        free(op);
        return -ENOMEM;
    }
    sprintf(ops, "[%s]", op);
    free(op);
    int64_t *known = modrev_slot(suffix + 8, false);
    char *k = key_b64(suffix);
    if (!k) {
        free(ops);
        return -ENOMEM;
    }
    char compare[512];
    snprintf(compare, sizeof(compare),
             "[{\"key\":\"%s\",\"target\":\"MOD\",\"result\":\"EQUAL\","
             "\"mod_revision\":\"%" PRId64 "\"}]",
             k, known ? *known : 0);
    free(k);
    int64_t rev = 0;
    rc = rlb_cluster_txn(compare, ops, &rev);
    free(ops);
    if (rc == -EBUSY) {
        snprintf(err, errlen, "the weights of %.64s rule %u were changed meanwhile by another "
                 "instance; read them again and retry", listener, priority);
        return -EBUSY;
    }
    if (rc < 0) {
        snprintf(err, errlen, "etcd is unreachable: the fleet cannot take changes now");
        return rc == -ENOMEM ? rc : -EAGAIN;
    }
    rlb_cluster_weights_written(listener, priority, rev, n == 0);
    if (n)
        return rlb_weights_set(listener, priority, w, n, err, errlen);
    rc = rlb_weights_remove(listener, priority);
    return rc == -ENOENT ? 0 : rc;
}

/* --- start and stop ------------------------------------------------------------------------- */

/* The fleet key: create it once (random), or read the one another instance created. */
static int fleet_sticky_key(void)
{
    unsigned char key[32];
    char hex[65];
    if (RAND_bytes(key, sizeof(key)) != 1)
        return -EIO;
    if (OPENSSL_buf2hexstr_ex(hex, sizeof(hex), NULL, key, sizeof(key), '\0') != 1)
        return -EIO;
    bool created;
    char *other;
    int64_t unused;
    int rc = create_or_read("sticky_key", hex, 0, &created, &other, &unused);
    if (rc < 0)
        return rc;
    if (!created) {
        rc = other && strlen(other) == 64 ? 0 : -EINVAL;
        if (rc == 0)
            memcpy(hex, other, 64);
    }
    free(other);
    if (rc < 0) {
        rlb_log_error("cluster: the fleet sticky key in etcd is not 64 hex digits");
        return rc;
    }
    hex[64] = '\0';
    return rlb_sticky_key_set_hex(hex);
}

int rlb_cluster_init(const struct rlb_config *cfg)
{
    const struct rlb_cluster_cfg *cc = &cfg->cluster;
    if (!cc->present)
        return 0;
    memset(&cl, 0, sizeof(cl));
    if (rlb_etcd_init(&cl.etcd, cc, CALL_TIMEOUT_MS) < 0) {
        rlb_log_error("cluster: %s", cl.etcd.err);
        rlb_etcd_free(&cl.etcd);
        return -EINVAL;
    }
    cl.enabled = true;
    cl.prefix = strdup(cc->prefix);
    cl.plen = strlen(cc->prefix);
    cl.prefix_end = rlb_etcd_prefix_end(cc->prefix);
    cl.instance = strdup(cc->instance);
    cl.ttl_ms = cc->lease_ttl_ms;
    cl.need_resync = true;
    cl.retry_backoff_ms = 500;
    cl.watch.io.fd = -1;
    if (!cl.prefix || !cl.prefix_end || !cl.instance)
        return -ENOMEM;
    if (!cfg->stickiness_key_file && fleet_sticky_key() < 0)
        rlb_log_warn("cluster: no fleet sticky key from etcd yet: cookies are signed with this "
                     "instance's own key until a restart with etcd reachable (or set "
                     "stickiness_key_file)");
    if (resync() < 0)
        rlb_log_warn("cluster: etcd unreachable at start (%s): starting with the file only",
                     cl.etcd.err);
    return 0;
}

void rlb_cluster_start(struct io_uring *ring, struct rlb_timer_wheel *wheel)
{
    if (!cl.enabled)
        return;
    cl.ring = ring;
    cl.wheel = wheel;
    cl.started = true;
    cl.need_resync = true; /* open the watch (and catch up on what changed since init) */
    cl.next_retry_ms = 0;
    tick(&cl.timer, rlb_now_ms());
}

void rlb_cluster_stop(void)
{
    if (!cl.enabled)
        return;
    if (cl.wheel)
        rlb_timer_cancel(cl.wheel, &cl.timer);
    close_watch();
    if (cl.connected && cl.lease) {
        /* Revoking the lease drops the leadership and the published counters at once. */
        char body[64];
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", cl.lease);
        struct fy_document *d;
        if (call("/v3/lease/revoke", body, &d) == 0)
            reply_free(d);
    }
    rlb_etcd_free(&cl.etcd);
    for (size_t i = 0; i < cl.n_revs; i++)
        free(cl.revs[i].key);
    for (size_t i = 0; i < cl.n_seen; i++)
        free(cl.seen[i].name);
    free(cl.revs);
    free(cl.seen);
    free(cl.prefix);
    free(cl.prefix_end);
    free(cl.instance);
    memset(&cl, 0, sizeof(cl));
}
