/* test_state.c — unit tests of the admin API's building blocks: state_file documents (apply,
 * reject as a whole, save and read back), runtime weight validation, the admin token (loading
 * and trimming, constant-time comparison) and duration formatting of GET /api/v1/config. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringlb/admin.h"
#include "ringlb/config.h"
#include "ringlb/config_json.h"
#include "ringlb/state.h"
#include "ringlb/targets.h"
#include "ringlb/weights.h"
#include "test.h"

static const char CONFIG[] =
    "listeners:\n"
    "  - name: main\n"
    "    listen: 127.0.0.1:18080\n"
    "    rules:\n"
    "      - priority: 10\n"
    "        conditions: { path_pattern: [\"/a*\"] }\n"
    "        action: { forward: { target_groups: [ {name: a, weight: 1},\n"
    "                                              {name: b, weight: 0} ] } }\n"
    "      - priority: 20\n"
    "        conditions: { path_pattern: [\"/f*\"] }\n"
    "        action: { fixed_response: { status_code: 200 } }\n"
    "    default_action: { forward: { target_groups: [ {name: a} ] } }\n"
    "target_groups:\n"
    "  - { name: a, port: 80, targets: [127.0.0.1:8081] }\n"
    "  - { name: b, port: 80, targets: [127.0.0.1:8082] }\n"
    "  - { name: c, port: 80 }\n";

static struct rlb_config *load_config(void)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load_string("t.yaml", CONFIG, sizeof(CONFIG) - 1, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    rlb_config_errors_free(&errs);
    return cfg;
}

static void reset(void)
{
    rlb_targets_destroy();
    rlb_weights_destroy();
}

static const char GOOD[] =
    "{\"version\":1,"
    " \"targets\":[{\"target_group\":\"a\",\"id\":\"127.0.0.1\",\"port\":8083,\"registered\":true},"
    "              {\"target_group\":\"a\",\"id\":\"::1\",\"port\":8084,\"registered\":false}],"
    " \"weights\":[{\"listener\":\"main\",\"priority\":10,"
    "               \"target_groups\":[{\"name\":\"a\",\"weight\":30},"
    "                                {\"name\":\"c\",\"weight\":70}]},"
    "              {\"listener\":\"main\",\"priority\":0,"
    "               \"target_groups\":[{\"name\":\"b\",\"weight\":1}]}]}";

TEST(state_apply_good)
{
    reset();
    char err[256] = "";
    CHECK_EQ_INT(rlb_state_apply_text(GOOD, strlen(GOOD), err, sizeof(err)), 0);
    CHECK_EQ_INT(rlb_targets_overlay_count(), 2);
    const char *g;
    struct rlb_sockaddr addr, want;
    bool reg;
    CHECK(rlb_targets_overlay_at(1, &g, &addr, &reg));
    CHECK_EQ_STR(g, "a");
    CHECK(!reg);
    CHECK(rlb_sockaddr_parse("[::1]:8084", &want) == 0 && rlb_sockaddr_equal(&addr, &want));
    CHECK_EQ_INT(rlb_weights_count(), 2);
    const struct rlb_weights_override *o = rlb_weights_find("main", 10);
    CHECK(o && o->n == 2 && o->weights[1] == 70);
    CHECK(o && strcmp(o->groups[1], "c") == 0);
    CHECK(rlb_weights_find("main", 0) != NULL);
    CHECK(rlb_weights_find("main", 20) == NULL);
    reset();
}

TEST(state_apply_rejects_whole_document)
{
    static const char *const bad[] = {
        "", "{", "[]", "42", "{\"version\":2}", "{\"targets\":[]}",
        "{\"version\":1,\"extra\":1}",
        "{\"version\":1,\"targets\":{}}",
        "{\"version\":1,\"targets\":[{\"target_group\":\"a\",\"id\":\"x\",\"port\":1,"
        "\"registered\":true}]}",
        "{\"version\":1,\"targets\":[{\"target_group\":\"a\",\"id\":\"127.0.0.1\",\"port\":0,"
        "\"registered\":true}]}",
        "{\"version\":1,\"targets\":[{\"target_group\":\"a\",\"id\":\"127.0.0.1\",\"port\":1,"
        "\"registered\":\"yes\"}]}",
        "{\"version\":1,\"targets\":[{\"target_group\":\"a\",\"id\":\"127.0.0.1\",\"port\":1,"
        "\"registered\":true}],\"weights\":[{\"listener\":\"main\",\"priority\":10,"
        "\"target_groups\":[{\"name\":\"a\",\"weight\":0}]}]}",
        "{\"version\":1,\"weights\":[{\"listener\":\"main\",\"priority\":10,"
        "\"target_groups\":[{\"name\":\"a\",\"weight\":1000}]}]}",
        "{\"version\":1,\"weights\":[{\"listener\":\"main\",\"priority\":\"10\","
        "\"target_groups\":[{\"name\":\"a\",\"weight\":1}]}]}",
        "{\"version\":1,\"weights\":[{\"listener\":\"main\",\"priority\":10,"
        "\"target_groups\":[]}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reset();
        char err[256] = "";
        int rc = rlb_state_apply_text(bad[i], strlen(bad[i]), err, sizeof(err));
        if (rc != -EINVAL)
            fprintf(stderr, "bad[%zu] accepted: %s\n", i, bad[i]);
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK(err[0] != '\0');
        CHECK_EQ_INT(rlb_targets_overlay_count(), 0);
        CHECK_EQ_INT(rlb_weights_count(), 0);
    }
    reset();
}

TEST(state_save_and_load_round_trip)
{
    reset();
    char dir[] = "/tmp/ringlb-test-state-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    char err[256];
    CHECK_EQ_INT(rlb_state_apply_text(GOOD, strlen(GOOD), err, sizeof(err)), 0);
    CHECK_EQ_INT(rlb_state_save(path), 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0); /* renamed, nothing left behind */
    reset();
    CHECK_EQ_INT(rlb_state_load(path), 0);
    CHECK_EQ_INT(rlb_targets_overlay_count(), 2);
    CHECK_EQ_INT(rlb_weights_count(), 2);
    reset();
    /* a missing file is fine; a corrupt one is moved aside */
    unlink(path);
    CHECK_EQ_INT(rlb_state_load(path), 0);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"version\":1,\"targets\":[1]}", f);
        fclose(f);
    }
    CHECK_EQ_INT(rlb_state_load(path), -EINVAL);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ_INT(rlb_targets_overlay_count(), 0);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    /* no path: nothing to do */
    CHECK_EQ_INT(rlb_state_save(NULL), 0);
    CHECK_EQ_INT(rlb_state_load(NULL), 0);
}

TEST(weights_validate_and_prune)
{
    reset();
    struct rlb_config *cfg = load_config();
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    char err[256];
    struct rlb_weight ok[] = {{"a", 50}, {"c", 50}};
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 10, ok, 2, err, sizeof(err)), 0);
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 0, ok, 1, err, sizeof(err)), 0);
    CHECK_EQ_INT(rlb_weights_validate(cfg, "nope", 10, ok, 2, err, sizeof(err)), -ENOENT);
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 11, ok, 2, err, sizeof(err)), -ENOENT);
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 20, ok, 2, err, sizeof(err)), -EOPNOTSUPP);
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 10, ok, 0, err, sizeof(err)), -EINVAL);
    struct rlb_weight zero[] = {{"a", 0}, {"b", 0}};
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 10, zero, 2, err, sizeof(err)), -EINVAL);
    struct rlb_weight big[] = {{"a", 1000}};
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 10, big, 1, err, sizeof(err)), -EINVAL);
    struct rlb_weight unknown[] = {{"zz", 1}};
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 10, unknown, 1, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "zz") != NULL);
    struct rlb_weight twice[] = {{"a", 1}, {"a", 2}};
    CHECK_EQ_INT(rlb_weights_validate(cfg, "main", 10, twice, 2, err, sizeof(err)), -EINVAL);
    /* prune keeps what fits and drops the rest */
    CHECK_EQ_INT(rlb_weights_put("main", 10, ok, 2), 0);
    CHECK_EQ_INT(rlb_weights_put("main", 20, ok, 2), 0);  /* fixed response */
    CHECK_EQ_INT(rlb_weights_put("main", 30, ok, 2), 0);  /* no such rule */
    CHECK_EQ_INT(rlb_weights_put("other", 0, ok, 2), 0);  /* no such listener */
    CHECK_EQ_INT(rlb_weights_put("main", 0, unknown, 1), 0); /* unknown group */
    CHECK_EQ_INT(rlb_weights_put("main", 10, ok, 1), 0);  /* replaces */
    CHECK_EQ_INT(rlb_weights_count(), 5);
    CHECK_EQ_INT(rlb_weights_prune(cfg), 4);
    CHECK_EQ_INT(rlb_weights_count(), 1);
    const struct rlb_weights_override *o = rlb_weights_find("main", 10);
    CHECK(o && o->n == 1);
    rlb_config_free(cfg);
    reset();
}

TEST(token_compare)
{
    CHECK(rlb_admin_token_equal("abc", 3, "abc", 3));
    CHECK(!rlb_admin_token_equal("abc", 3, "abd", 3));
    CHECK(!rlb_admin_token_equal("abc", 3, "abcd", 4));
    CHECK(!rlb_admin_token_equal("abc", 3, "", 0));
    CHECK(rlb_admin_token_equal("", 0, "", 0));
    char a[600], b[600];
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    CHECK(rlb_admin_token_equal(a, sizeof(a), b, sizeof(b)));
    b[599] = 'y';
    CHECK(!rlb_admin_token_equal(a, sizeof(a), b, sizeof(b)));
}

static int token_from(const char *content, char **out, char *err, size_t errlen)
{
    char path[] = "/tmp/ringlb-test-token-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    ssize_t w = write(fd, content, strlen(content));
    close(fd);
    int rc = w < 0 ? -EIO : rlb_admin_token_load(path, out, err, errlen);
    unlink(path);
    return rc;
}

TEST(token_load)
{
    char *t = NULL;
    char err[256];
    CHECK_EQ_INT(token_from("  \n\ts3cret-token \r\n", &t, err, sizeof(err)), 0);
    CHECK_EQ_STR(t, "s3cret-token");
    free(t);
    t = NULL;
    CHECK_EQ_INT(token_from(" \n ", &t, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "empty") != NULL);
    CHECK_EQ_INT(token_from("two words", &t, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "two") == NULL); /* the content is never echoed */
    CHECK(t == NULL);
    CHECK_EQ_INT(rlb_admin_token_load("/nonexistent/ringlb.token", &t, err, sizeof(err)),
                 -ENOENT);
    char big[5000];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_EQ_INT(token_from(big, &t, err, sizeof(err)), -EFBIG);
}

TEST(durations)
{
    char b[32];
    CHECK_EQ_STR(rlb_config_json_duration(0, b, sizeof(b)), "0s");
    CHECK_EQ_STR(rlb_config_json_duration(250, b, sizeof(b)), "250ms");
    CHECK_EQ_STR(rlb_config_json_duration(1500, b, sizeof(b)), "1500ms");
    CHECK_EQ_STR(rlb_config_json_duration(30000, b, sizeof(b)), "30s");
    CHECK_EQ_STR(rlb_config_json_duration(300000, b, sizeof(b)), "5m");
    CHECK_EQ_STR(rlb_config_json_duration(3600000, b, sizeof(b)), "1h");
    CHECK_EQ_STR(rlb_config_json_duration(86400000, b, sizeof(b)), "1d");
    uint64_t ms;
    CHECK(rlb_duration_parse(rlb_config_json_duration(90000, b, sizeof(b)), &ms) == 0 &&
          ms == 90000);
}

int main(void)
{
    RUN(state_apply_good);
    RUN(state_apply_rejects_whole_document);
    RUN(state_save_and_load_round_trip);
    RUN(weights_validate_and_prune);
    RUN(token_compare);
    RUN(token_load);
    RUN(durations);
    return TEST_SUMMARY();
}
