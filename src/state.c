/* state.c — state_file: save and load the runtime changes (see state.h).
 *
 * Saving walks the targets overlay (targets.h) and the weights table (weights.h), builds one
 * JSON document with json.h and replaces the file atomically. Loading parses the file with
 * json_read.h into a list of pending entries, checks every entry, and only then applies them,
 * so a file that is wrong anywhere changes nothing.
 */
#include "ringlb/state.h"

#include <errno.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringlb/deploy.h"
#include "ringlb/json_read.h"
#include "ringlb/log.h"
#include "ringlb/snapshot.h"
#include "ringlb/targets.h"
#include "ringlb/weights.h"

#define STATE_VERSION 1
#define STATE_MAX_BYTES (64u * 1024u * 1024u)

/* --- saving --------------------------------------------------------------------------------- */

struct fy_node *rlb_state_json(struct rlb_json *j)
{
    bool ok = true;
    struct fy_node *root = rlb_json_obj(j);
    struct fy_node *targets = rlb_json_arr(j);
    struct fy_node *weights = rlb_json_arr(j);
    if (!root || !targets || !weights)
        return NULL;
    ok &= rlb_json_set(j, root, "version", rlb_json_int(j, STATE_VERSION)) == 0;
    for (size_t i = 0; i < rlb_targets_overlay_count(); i++) {
        const char *group;
        struct rlb_sockaddr addr;
        bool reg;
        char ip[64];
        if (!rlb_targets_overlay_at(i, &group, &addr, &reg))
            break;
        rlb_sockaddr_ip(&addr, ip, sizeof(ip));
        struct fy_node *t = rlb_json_obj(j);
        ok &= t != NULL;
        ok &= rlb_json_set(j, t, "target_group", rlb_json_str(j, group)) == 0;
        ok &= rlb_json_set(j, t, "id", rlb_json_str(j, ip)) == 0;
        ok &= rlb_json_set(j, t, "port", rlb_json_int(j, rlb_sockaddr_port(&addr))) == 0;
        ok &= rlb_json_set(j, t, "registered", rlb_json_bool(j, reg)) == 0;
        ok &= rlb_json_push(targets, t) == 0;
    }
    for (size_t i = 0; i < rlb_weights_count(); i++) {
        const struct rlb_weights_override *o = rlb_weights_at(i);
        struct fy_node *w = rlb_json_obj(j);
        struct fy_node *gs = rlb_json_arr(j);
        ok &= w && gs;
        ok &= rlb_json_set(j, w, "listener", rlb_json_str(j, o->listener)) == 0;
        ok &= rlb_json_set(j, w, "priority", rlb_json_int(j, o->priority)) == 0;
        for (size_t k = 0; ok && k < o->n; k++) {
            struct fy_node *g = rlb_json_obj(j);
            ok &= g != NULL;
            ok &= rlb_json_set(j, g, "name", rlb_json_str(j, o->groups[k])) == 0;
            ok &= rlb_json_set(j, g, "weight", rlb_json_int(j, o->weights[k])) == 0;
            ok &= rlb_json_push(gs, g) == 0;
        }
        ok &= rlb_json_set(j, w, "target_groups", gs) == 0;
        ok &= rlb_json_push(weights, w) == 0;
    }
    ok &= rlb_json_set(j, root, "targets", targets) == 0;
    ok &= rlb_json_set(j, root, "weights", weights) == 0;
    /* only while a deployment is in progress (deploy.h) */
    struct fy_node *deploys = rlb_deploy_state_json(j);
    if (deploys)
        ok &= rlb_json_set(j, root, "deployments", deploys) == 0;
    return ok ? root : NULL;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the directory that holds `path`, so that the rename is durable. */
static int fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        if ((size_t)(slash - path) >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int rlb_state_save(const char *path)
{
    if (!path)
        return 0;
    struct rlb_json j;
    if (rlb_json_init(&j) < 0)
        return -ENOMEM;
    struct fy_node *root = rlb_state_json(&j);
    char *text = root ? rlb_json_emit(&j, root, true) : NULL;
    rlb_json_free(&j);
    if (!text) {
        rlb_log_error("state_file %s: out of memory; not written", path);
        return -ENOMEM;
    }
    char tmp[4200];
    int rc = 0;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        free(text);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = write_all(fd, text, strlen(text));
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    else
        rc = fsync_dir_of(path);
out:
    free(text);
    if (rc < 0)
        rlb_log_error("state_file %s: cannot write: %s", path, strerror(-rc));
    return rc;
}

/* --- loading -------------------------------------------------------------------------------- */

/* One checked target entry of a state document, waiting to be applied. */
struct pending_target {
    char group[256];
    struct rlb_sockaddr addr;
    bool registered;
};

static int fail(char *err, size_t errlen, const char *what, size_t i, const char *why)
{
    snprintf(err, errlen, "%s[%zu]: %s", what, i, why);
    return -EINVAL;
}

/* Copy a JSON string into out[n] (non-empty, fits). */
static int get_name(struct fy_node *n, char *out, size_t outn)
{
    const char *s;
    size_t l;
    if (rlb_json_get_str(n, &s, &l) < 0 || l == 0 || l >= outn)
        return -EINVAL;
    memcpy(out, s, l);
    out[l] = '\0';
    return 0;
}

static int parse_target(struct fy_node *n, struct pending_target *pt, char *err, size_t errlen,
                        size_t i)
{
    static const char *const keys[] = {"target_group", "id", "port", "registered", NULL};
    char why[160];
    if (!rlb_json_is_obj(n))
        return fail(err, errlen, "targets", i, "expected an object");
    if (rlb_json_check_keys(n, keys, why, sizeof(why)) < 0)
        return fail(err, errlen, "targets", i, why);
    char id[64], hp[80];
    int64_t port;
    if (get_name(rlb_json_get(n, "target_group"), pt->group, sizeof(pt->group)) < 0)
        return fail(err, errlen, "targets", i, "target_group: expected a name");
    if (get_name(rlb_json_get(n, "id"), id, sizeof(id)) < 0)
        return fail(err, errlen, "targets", i, "id: expected an IP address");
    if (rlb_json_get_int(rlb_json_get(n, "port"), 1, 65535, &port) < 0)
        return fail(err, errlen, "targets", i, "port: expected 1..65535");
    if (rlb_json_get_bool(rlb_json_get(n, "registered"), &pt->registered) < 0)
        return fail(err, errlen, "targets", i, "registered: expected true or false");
    snprintf(hp, sizeof(hp), strchr(id, ':') ? "[%s]:%lld" : "%s:%lld", id, (long long)port);
    if (rlb_sockaddr_parse(hp, &pt->addr) < 0)
        return fail(err, errlen, "targets", i, "id: expected an IP address");
    return 0;
}

/* One checked weights entry (group names point into the parsed document). */
struct pending_weights {
    char listener[256];
    uint32_t priority;
    struct rlb_weight *w;
    size_t n;
};

static int parse_weights(struct fy_node *n, struct pending_weights *pw, char *err, size_t errlen,
                         size_t i)
{
    static const char *const keys[] = {"listener", "priority", "target_groups", NULL};
    static const char *const gkeys[] = {"name", "weight", NULL};
    char why[160];
    int64_t v;
    if (!rlb_json_is_obj(n))
        return fail(err, errlen, "weights", i, "expected an object");
    if (rlb_json_check_keys(n, keys, why, sizeof(why)) < 0)
        return fail(err, errlen, "weights", i, why);
    if (get_name(rlb_json_get(n, "listener"), pw->listener, sizeof(pw->listener)) < 0)
        return fail(err, errlen, "weights", i, "listener: expected a name");
    if (rlb_json_get_int(rlb_json_get(n, "priority"), 0, 50000, &v) < 0)
        return fail(err, errlen, "weights", i, "priority: expected 0..50000");
    pw->priority = (uint32_t)v;
    struct fy_node *gs = rlb_json_get(n, "target_groups");
    int count = rlb_json_is_arr(gs) ? fy_node_sequence_item_count(gs) : -1;
    if (count <= 0)
        return fail(err, errlen, "weights", i, "target_groups: expected a non-empty array");
    pw->w = calloc((size_t)count, sizeof(*pw->w));
    if (!pw->w)
        return -ENOMEM;
    bool positive = false;
    for (int k = 0; k < count; k++) {
        struct fy_node *g = fy_node_sequence_get_by_index(gs, k);
        const char *name;
        size_t nl;
        if (!rlb_json_is_obj(g) || rlb_json_check_keys(g, gkeys, why, sizeof(why)) < 0)
            return fail(err, errlen, "weights", i, "target_groups: bad entry");
        /* fy_node_get_scalar0: the unescaped name, NUL-terminated, owned by the document. */
        if (rlb_json_get_str(rlb_json_get(g, "name"), &name, &nl) < 0 || nl == 0)
            return fail(err, errlen, "weights", i, "target_groups: name expected");
        pw->w[k].group = fy_node_get_scalar0(rlb_json_get(g, "name"));
        if (!pw->w[k].group)
            return -ENOMEM;
        if (rlb_json_get_int(rlb_json_get(g, "weight"), 0, RLB_WEIGHT_MAX, &v) < 0)
            return fail(err, errlen, "weights", i, "target_groups: weight expected 0..999");
        pw->w[k].weight = (uint32_t)v;
        positive |= v > 0;
        pw->n++;
    }
    if (!positive)
        return fail(err, errlen, "weights", i, "every weight is 0");
    return 0;
}

/* One deployment that was in progress when the state was written: rolled back at load. */
struct pending_deploy {
    char id[24], from[256], to[256];
    struct pending_weights target;  /* listener and priority; w = the original weights or NULL */
};

static int parse_deploy(struct fy_node *n, struct pending_deploy *pd, char *err, size_t errlen,
                        size_t i)
{
    static const char *const keys[] = {"id", "listener", "priority", "from", "to", "original",
                                       NULL};
    char why[160];
    int64_t v;
    if (!rlb_json_is_obj(n))
        return fail(err, errlen, "deployments", i, "expected an object");
    if (rlb_json_check_keys(n, keys, why, sizeof(why)) < 0)
        return fail(err, errlen, "deployments", i, why);
    if (get_name(rlb_json_get(n, "id"), pd->id, sizeof(pd->id)) < 0 ||
        get_name(rlb_json_get(n, "listener"), pd->target.listener,
                 sizeof(pd->target.listener)) < 0 ||
        get_name(rlb_json_get(n, "from"), pd->from, sizeof(pd->from)) < 0 ||
        get_name(rlb_json_get(n, "to"), pd->to, sizeof(pd->to)) < 0)
        return fail(err, errlen, "deployments", i, "id, listener, from, to: expected names");
    if (rlb_json_get_int(rlb_json_get(n, "priority"), 0, 50000, &v) < 0)
        return fail(err, errlen, "deployments", i, "priority: expected 0..50000");
    pd->target.priority = (uint32_t)v;
    struct fy_node *orig = rlb_json_get(n, "original");
    if (orig) {
        struct pending_weights pw = {0};
        int rc = parse_weights(orig, &pw, err, errlen, i);
        if (rc < 0) {
            free(pw.w);
            return rc;
        }
        if (strcmp(pw.listener, pd->target.listener) != 0 || pw.priority != v) {
            free(pw.w);
            return fail(err, errlen, "deployments", i, "original: another rule");
        }
        pd->target.w = pw.w;
        pd->target.n = pw.n;
    }
    return 0;
}

/* Is (listener, priority) the rule of one of the deployments? */
static bool deployed(const struct pending_deploy *pds, size_t n, const char *listener,
                     uint32_t priority)
{
    for (size_t i = 0; i < n; i++)
        if (pds[i].target.priority == priority && strcmp(pds[i].target.listener, listener) == 0)
            return true;
    return false;
}

int rlb_state_apply_text(const char *text, size_t len, char *err, size_t errlen)
{
    struct fy_document *doc = rlb_json_parse(text, len, err, errlen);
    if (!doc)
        return -EINVAL;
    struct pending_target *pts = NULL;
    struct pending_weights *pws = NULL;
    struct pending_deploy *pds = NULL;
    size_t n_pts = 0, n_pws = 0, n_pds = 0;
    int rc = -EINVAL;
    static const char *const keys[] = {"version", "targets", "weights", "deployments", NULL};
    struct fy_node *root = fy_document_root(doc);
    int64_t version;
    if (!rlb_json_is_obj(root)) {
        snprintf(err, errlen, "expected an object");
        goto out;
    }
    if (rlb_json_check_keys(root, keys, err, errlen) < 0)
        goto out;
    if (rlb_json_get_int(rlb_json_get(root, "version"), 1, 1000000, &version) < 0 ||
        version != STATE_VERSION) {
        snprintf(err, errlen, "version: expected %d", STATE_VERSION);
        goto out;
    }
    struct fy_node *ts = rlb_json_get(root, "targets");
    struct fy_node *ws = rlb_json_get(root, "weights");
    if ((ts && !rlb_json_is_arr(ts)) || (ws && !rlb_json_is_arr(ws))) {
        snprintf(err, errlen, "targets and weights must be arrays");
        goto out;
    }
    struct fy_node *ds = rlb_json_get(root, "deployments");
    if (ds && !rlb_json_is_arr(ds)) {
        snprintf(err, errlen, "deployments must be an array");
        goto out;
    }
    int nd = ds ? fy_node_sequence_item_count(ds) : 0;
    pds = calloc((size_t)(nd > 0 ? nd : 1), sizeof(*pds));
    if (!pds) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < nd; i++) {
        n_pds++;
        if ((rc = parse_deploy(fy_node_sequence_get_by_index(ds, i), &pds[i], err, errlen,
                               (size_t)i)) < 0)
            goto out;
    }
    rc = -EINVAL;
    int nt = ts ? fy_node_sequence_item_count(ts) : 0;
    int nw = ws ? fy_node_sequence_item_count(ws) : 0;
    pts = calloc((size_t)(nt > 0 ? nt : 1), sizeof(*pts));
    pws = calloc((size_t)(nw > 0 ? nw : 1), sizeof(*pws));
    if (!pts || !pws) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < nt; i++) {
        if ((rc = parse_target(fy_node_sequence_get_by_index(ts, i), &pts[i], err, errlen,
                               (size_t)i)) < 0)
            goto out;
        n_pts++;
    }
    for (int i = 0; i < nw; i++) {
        n_pws++;
        if ((rc = parse_weights(fy_node_sequence_get_by_index(ws, i), &pws[i], err, errlen,
                                (size_t)i)) < 0)
            goto out;
    }
    /* Everything is valid: apply. */
    rc = 0;
    for (size_t i = 0; i < n_pts && rc == 0; i++)
        rc = rlb_targets_overlay_set(pts[i].group, &pts[i].addr, pts[i].registered);
    for (size_t i = 0; i < n_pws && rc == 0; i++)
        if (!deployed(pds, n_pds, pws[i].listener, pws[i].priority))
            rc = rlb_weights_put(pws[i].listener, pws[i].priority, pws[i].w, pws[i].n);
    /* deployments in progress are rolled back: the weights of before them (deploy.h) */
    for (size_t i = 0; i < n_pds && rc == 0; i++) {
        const struct pending_weights *t = &pds[i].target;
        if (t->w)
            rc = rlb_weights_put(t->listener, t->priority, t->w, t->n);
        if (rc == 0)
            rc = rlb_deploy_restored(pds[i].id, t->listener, t->priority, pds[i].from,
                                     pds[i].to);
        if (rc == 0)
            rlb_log_info("state_file: deployment %s on %s was in progress: rolled back",
                         pds[i].id, t->listener);
    }
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
out:
    for (size_t i = 0; i < n_pws; i++)
        free(pws[i].w);
    free(pws);
    for (size_t i = 0; i < n_pds; i++)
        free(pds[i].target.w);
    free(pds);
    free(pts);
    fy_document_destroy(doc);
    return rc;
}

int rlb_state_load(const char *path)
{
    if (!path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        rlb_log_error("state_file %s: cannot open: %s; starting without it", path, strerror(e));
        return -e;
    }
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
    } else if ((uint64_t)st.st_size > STATE_MAX_BYTES) {
        rc = -EFBIG;
    } else if (!(text = malloc((size_t)st.st_size + 1))) {
        rc = -ENOMEM;
    } else {
        while (len < (size_t)st.st_size) {
            ssize_t r = read(fd, text + len, (size_t)st.st_size - len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                rc = r < 0 ? -errno : 0;
                break;
            }
            len += (size_t)r;
        }
    }
    close(fd);
    if (rc < 0 && rc != -EFBIG) {
        rlb_log_error("state_file %s: cannot read: %s; starting without it", path,
                      strerror(-rc));
        free(text);
        return rc;
    }
    char err[300];
    if (rc == -EFBIG)
        snprintf(err, sizeof(err), "larger than %u bytes", STATE_MAX_BYTES);
    else
        rc = rlb_state_apply_text(text, len, err, sizeof(err));
    free(text);
    if (rc == -ENOMEM) {
        rlb_log_error("state_file %s: out of memory while loading; starting without it", path);
        return rc;
    }
    if (rc < 0) {
        char aside[4200];
        snprintf(aside, sizeof(aside), "%s.corrupt-%lld", path, (long long)time(NULL));
        if (rename(path, aside) == 0)
            rlb_log_error("state_file %s is corrupt (%s); moved aside to %s, starting without "
                          "it", path, err, aside);
        else
            rlb_log_error("state_file %s is corrupt (%s) and cannot be moved aside (%s); "
                          "starting without it", path, err, strerror(errno));
        return -EINVAL;
    }
    rlb_log_info("state_file %s: %zu target registration change(s), %zu weight override(s) "
                 "restored", path, rlb_targets_overlay_count(), rlb_weights_count());
    return 0;
}
