/* main.c — the ringlb command line and the main thread.
 *
 *   ringlb -c FILE [--threads N] [--log-level L]   run in the foreground
 *   ringlb check -c FILE [--alb-limits]            validate a configuration
 *   ringlb version                                 versions of ringlb and its libraries
 *
 * The main thread loads the configuration, starts the workers, then runs its own ring: signals
 * arrive through a signalfd (SIGHUP reload, SIGTERM/SIGINT graceful drain, SIGQUIT immediate
 * exit, SIGUSR1 log reopen), the admin API is served and the active health checks run from the
 * same ring. A timer wheel of the main thread (health-check intervals, draining deadlines) is
 * run after each batch of completions; the ring wait is bounded by its next deadline.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <liburing.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <libfyaml.h>
#ifdef RINGLB_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "ringlb/action.h"
#include "ringlb/accesslog.h"
#include "ringlb/admin.h"
#include "ringlb/cluster.h"
#include "ringlb/config.h"
#include "ringlb/deploy.h"
#include "ringlb/health.h"
#include "ringlb/http1.h"
#include "ringlb/log.h"
#include "ringlb/metrics.h"
#include "ringlb/scaling.h"
#include "ringlb/snapshot.h"
#include "ringlb/state.h"
#include "ringlb/targets.h"
#include "ringlb/timer.h"
#include "ringlb/weights.h"
#include "ringlb/worker.h"

int rlb_route_main(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ringlb -c FILE [--threads N] [--log-level error|warn|info|debug]\n"
            "       ringlb check -c FILE [--alb-limits]\n"
            "       ringlb route -c FILE [--listener NAME] [--method M] [--host H] [--path P]\n"
            "                    [--query Q] [--header 'Name: value']... [--source-ip IP]\n"
            "                    [--cookie 'k=v']\n"
            "       ringlb version\n");
}

static int cmd_version(void)
{
#ifdef RINGLB_HAVE_JEMALLOC
    const char *je = JEMALLOC_VERSION;
#else
    const char *je = "not linked (sanitizer build)";
#endif
    printf("ringlb %s\n", RINGLB_VERSION);
    printf("liburing %s\n", RINGLB_LIBURING_VERSION);
    printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
           LLHTTP_VERSION_PATCH);
    printf("jemalloc %s\n", je);
    printf("libfyaml %s\n", fy_library_version());
    return 0;
}

static void print_errors(const struct rlb_config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
}

static unsigned resolve_threads(unsigned cli, const struct rlb_config *cfg)
{
    unsigned n = cli ? cli : cfg->threads;
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    return n;
}

static int drop_privileges(const char *user)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        rlb_log_error("user %s: no such user", user);
        return -ENOENT;
    }
    if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid && getgid() == pw->pw_gid &&
        getegid() == pw->pw_gid)
        return 0; /* already that user (e.g. systemd's User=): nothing to drop */
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        rlb_log_error("cannot switch to user %s: %s", user, strerror(errno));
        return -errno;
    }
    return 0;
}

/* The main thread's state. Owner: main(); main thread only. */
struct main_state {
    const char *config_path;
    unsigned threads;
    struct io_uring ring;
    int sfd;
    struct signalfd_siginfo si;
    uint64_t shutdown_ms;       /* shutdown_timeout of the configuration started with */
    bool stopping;              /* draining after SIGTERM/SIGINT */
    uint64_t stop_deadline;     /* when draining gives up */
};

/* Timers of the main thread (health checks, draining deadlines). */
static struct rlb_timer_wheel main_timers;

static void arm_signal(struct main_state *ms)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ms->ring);
    if (!sqe) {
        io_uring_submit(&ms->ring);
        sqe = io_uring_get_sqe(&ms->ring);
    }
    io_uring_prep_read(sqe, ms->sfd, &ms->si, sizeof(ms->si), 0);
    io_uring_sqe_set_data64(sqe, RLB_MAIN_SIGNAL);
}

/* Append a formatted message to errs (NULL: nothing; out of memory: dropped). */
static void errs_add(struct rlb_config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void errs_add(struct rlb_config_errors *errs, const char *fmt, ...)
{
    if (!errs)
        return;
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char **m = realloc(errs->msgs, (errs->n + 1) * sizeof(*m));
    if (!m) {
        free(msg);
        return;
    }
    errs->msgs = m;
    errs->msgs[errs->n++] = msg;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Reload the configuration file; on success publish a new snapshot (runtime registrations and
 * weights kept, state_file rewritten when it moved or weights were dropped) and store its
 * generation in *gen_out (may be NULL). On failure the running configuration stays; the
 * reasons are logged and appended to errs_out (may be NULL). Shared by SIGHUP and
 * POST /api/v1/reload. Returns 0, -EINVAL or -ENOMEM. */
static int reload(struct main_state *ms, struct rlb_config_errors *errs_out, uint64_t *gen_out)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load(ms->config_path, &errs);
    if (!cfg) {
        rlb_log_error("reload of %s rejected; the running configuration stays:",
                      ms->config_path);
        for (size_t i = 0; i < errs.n; i++) {
            rlb_log_error("  %s", errs.msgs[i]);
            errs_add(errs_out, "%s", errs.msgs[i]);
        }
        if (errs.n == 0)
            errs_add(errs_out, "%s: cannot be loaded", ms->config_path);
        rlb_config_errors_free(&errs);
        return -EINVAL;
    }
    rlb_config_errors_free(&errs);
    char *token = NULL;
    if (cfg->admin.listen && cfg->admin.token_file) {
        char terr[512];
        if (rlb_admin_token_load(cfg->admin.token_file, &token, terr, sizeof(terr)) < 0) {
            rlb_log_error("reload of %s rejected; the running configuration stays: %s",
                          ms->config_path, terr);
            errs_add(errs_out, "%s", terr);
            rlb_config_free(cfg);
            return -EINVAL;
        }
    }
    rlb_metrics_set_window(cfg->metrics.window_ms);
    if (rlb_accesslog_set_path(cfg->access_log.path) < 0)
        rlb_log_error("access_log.path %s cannot be opened; logging stays as it was",
                      cfg->access_log.path);
    struct rlb_snapshot *cur = rlb_snapshot_current();
    uint64_t gen = cur->generation + 1;
    bool state_moved = !same_str(cur->cfg->state_file, cfg->state_file);
    if (cfg->admin.listen && !same_str(cur->cfg->admin.listen, cfg->admin.listen))
        rlb_log_warn("admin.listen changed to %s: takes effect at the next start",
                     cfg->admin.listen);
    bool has_admin = cfg->admin.listen != NULL;
    struct rlb_snapshot *s = rlb_snapshot_build(cfg, cur, rlb_workers_count(), gen);
    if (!s) {
        rlb_log_error("reload rejected (%s); the running configuration stays",
                      rlb_snapshot_last_error());
        errs_add(errs_out, "%s", rlb_snapshot_last_error());
        if (token) { /* not applied: wipe it */
            OPENSSL_cleanse(token, strlen(token));
            free(token);
        }
        return -ENOMEM;
    }
    rlb_targets_publish(s); /* workers, health checker; runtime registrations kept */
    if (has_admin)          /* without an admin block the running admin server keeps its token */
        rlb_admin_set_token(token);
    if ((rlb_weights_prune(s->cfg) > 0 || state_moved) && s->cfg->state_file &&
        !rlb_cluster_enabled())
        rlb_state_save(s->cfg->state_file);
    rlb_log_info("configuration reloaded (generation %llu)", (unsigned long long)gen);
    if (gen_out)
        *gen_out = gen;
    return 0;
}

/* POST /api/v1/reload (admin.h). */
static int admin_reload(void *arg, struct rlb_config_errors *errs, uint64_t *generation)
{
    return reload(arg, errs, generation);
}

/* Handle one completion of the main ring. Returns -1 when the process must exit now
 * (SIGQUIT), else 0. */
static int dispatch(struct main_state *ms, uint64_t ud, int res)
{
    enum rlb_main_op op = (enum rlb_main_op)(ud & 7);
    void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)7);
    if (op == RLB_MAIN_SIGNAL) {
        if (res == (int)sizeof(ms->si)) {
            switch (ms->si.ssi_signo) {
            case SIGHUP:
                reload(ms, NULL, NULL);
                break;
            case SIGTERM:
            case SIGINT:
                if (!ms->stopping) {
                    rlb_log_info("draining (shutdown_timeout %llums)",
                                 (unsigned long long)ms->shutdown_ms);
                    ms->stopping = true;
                    ms->stop_deadline = rlb_now_ms() + ms->shutdown_ms + 1000;
                    rlb_admin_stop(&ms->ring);
                    rlb_health_stop();
                    rlb_workers_stop(true);
                }
                break;
            case SIGQUIT:
                rlb_log_info("SIGQUIT: exiting now");
                rlb_workers_stop(false);
                rlb_workers_join(2000);
                ms->stopping = true;
                return -1;
            case SIGUSR1:
                if (rlb_accesslog_reopen() < 0)
                    rlb_log_error("access log: cannot reopen %s", "(access_log.path)");
                break;
            default:
                break;
            }
        }
        arm_signal(ms);
    } else if (op >= RLB_MAIN_ADMIN_ACCEPT && op <= RLB_MAIN_ADMIN_SEND) {
        rlb_admin_complete(&ms->ring, op, ptr, res);
    } else if (op == RLB_MAIN_HEALTH) {
        rlb_health_complete(ptr, res);
    } else if (op == RLB_MAIN_CLUSTER) {
        if (rlb_cluster_poll_current(ud))
            rlb_cluster_complete(res);
    }
    return 0;
}

static int run(struct main_state *ms)
{
    struct rlb_config_errors errs = {0};
    struct rlb_config *cfg = rlb_config_load(ms->config_path, &errs);
    if (!cfg) {
        print_errors(&errs);
        rlb_config_errors_free(&errs);
        return 2;
    }
    rlb_config_errors_free(&errs);
    unsigned n = resolve_threads(ms->threads, cfg);
    ms->shutdown_ms = cfg->shutdown_timeout_ms;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    ms->sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (ms->sfd < 0) {
        rlb_log_error("signalfd: %s", strerror(errno));
        rlb_config_free(cfg);
        return 1;
    }
    rlb_http1_settings(); /* initialise before any worker parses */
    int kerr = rlb_sticky_key_init(cfg->stickiness_key_file);
    if (kerr < 0) {
        rlb_log_error("stickiness_key_file %s: %s (want 32 bytes, or 64 hex digits)",
                      cfg->stickiness_key_file, strerror(-kerr));
        rlb_config_free(cfg);
        return 2;
    }

    rlb_metrics_init(cfg->metrics.window_ms, rlb_now_ms());
    if (cfg->access_log.path && rlb_accesslog_start(cfg->access_log.path) < 0) {
        rlb_log_error("access_log.path %s: cannot open", cfg->access_log.path);
        rlb_config_free(cfg);
        return 1;
    }
    if (cfg->admin.listen && cfg->admin.token_file) {
        char terr[512];
        char *token = NULL;
        if (rlb_admin_token_load(cfg->admin.token_file, &token, terr, sizeof(terr)) < 0) {
            rlb_log_error("%s", terr);
            rlb_config_free(cfg);
            return 2;
        }
        rlb_admin_set_token(token);
    }
    if (cfg->cluster.present) {
        /* The fleet's runtime state lives in etcd (cluster.h); state_file is not used. */
        if (cfg->state_file)
            rlb_log_warn("state_file is ignored with a cluster block: etcd keeps the state");
        if (rlb_cluster_init(cfg) < 0) {
            rlb_config_free(cfg);
            return 2;
        }
    } else {
        rlb_state_load(cfg->state_file); /* runtime changes of the last run (state.h) */
    }
    struct rlb_snapshot *snap = rlb_snapshot_build(cfg, NULL, n, 1);
    if (!snap) {
        const char *why = rlb_snapshot_last_error();
        rlb_log_error("%s", why);
        /* An unloadable certificate is a configuration error; anything else is runtime. */
        return strncmp(why, "listener ", 9) == 0 ? 2 : 1;
    }
    if (rlb_weights_prune(snap->cfg) > 0 && snap->cfg->state_file && !rlb_cluster_enabled())
        rlb_state_save(snap->cfg->state_file);
    rlb_metrics_snapshot_prepare(snap);
    rlb_snapshot_set_current(snap);
    int ret = rlb_workers_start(n, snap);
    if (ret < 0) {
        rlb_log_error("cannot start workers: %s", strerror(-ret));
        rlb_snapshot_set_current(NULL);
        return 1;
    }
    ret = io_uring_queue_init(64, &ms->ring, 0);
    if (ret < 0) {
        rlb_log_error("main io_uring: %s", strerror(-ret));
        rlb_workers_stop(false);
        rlb_workers_join(5000);
        rlb_snapshot_set_current(NULL);
        return 1;
    }
    rlb_admin_set_reload(admin_reload, ms);
    ret = rlb_admin_start(&ms->ring, snap->cfg);
    if (ret < 0) {
        rlb_log_error("admin: cannot listen on %s: %s", snap->cfg->admin.listen,
                      strerror(-ret));
        rlb_workers_stop(false);
        rlb_workers_join(5000);
        io_uring_queue_exit(&ms->ring);
        rlb_snapshot_set_current(NULL);
        return 1;
    }
    if (snap->cfg->user && drop_privileges(snap->cfg->user) < 0) {
        rlb_workers_stop(false);
        rlb_workers_join(5000);
        io_uring_queue_exit(&ms->ring);
        rlb_snapshot_set_current(NULL);
        return 1;
    }
    rlb_timer_wheel_init(&main_timers, rlb_now_ms());
    rlb_targets_init(&main_timers);
    rlb_health_init(&ms->ring, &main_timers);
    rlb_deploy_init(&main_timers);
    rlb_scaling_init();
    rlb_health_sync(snap);
    rlb_cluster_start(&ms->ring, &main_timers);
    rlb_log_info("ringlb %s running with %u worker thread(s)", RINGLB_VERSION, n);
    arm_signal(ms);

    int exit_code = 0;
    for (;;) {
        if (ms->stopping) {
            /* Workers drain on their own; wait for them in small steps so SIGQUIT still
             * works. */
            if (rlb_workers_join(100))
                break;
            if (rlb_now_ms() >= ms->stop_deadline) {
                rlb_workers_stop(false);
                rlb_workers_join(5000);
                break;
            }
        }
        io_uring_submit(&ms->ring);
        struct io_uring_cqe *cqe = NULL;
        uint64_t wait_ms = rlb_timer_wheel_next_ms(&main_timers, 100);
        struct __kernel_timespec ts = {.tv_sec = (long long)(wait_ms / 1000),
                                       .tv_nsec = (long long)(wait_ms % 1000) * 1000000};
        ret = io_uring_wait_cqe_timeout(&ms->ring, &cqe, &ts);
        if (ret < 0 && ret != -ETIME && ret != -EINTR) {
            rlb_log_error("main loop: %s", strerror(-ret));
            exit_code = 1;
            break;
        }
        if (ret < 0)
            cqe = NULL;
        /* Handle every completion that is there, then the timers that are due. */
        while (cqe) {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(&ms->ring, cqe);
            if (dispatch(ms, ud, res) < 0)
                goto out;
            if (io_uring_peek_cqe(&ms->ring, &cqe) != 0)
                cqe = NULL;
        }
        rlb_timer_wheel_run(&main_timers, rlb_now_ms());
        rlb_metrics_tick(rlb_now_ms());
        rlb_scaling_tick(rlb_snapshot_current(), rlb_now_ms());
    }
out:
    rlb_cluster_stop();
    rlb_admin_stop(&ms->ring);
    rlb_health_stop();
    io_uring_queue_exit(&ms->ring);
    rlb_admin_destroy();
    rlb_deploy_destroy();
    rlb_health_destroy();
    rlb_scaling_stop();
    close(ms->sfd);
    rlb_snapshot_set_current(NULL);
    rlb_targets_destroy();
    rlb_weights_destroy();
    if (rlb_workers_count() == 0) {
        /* Shards are freed only once no worker can write to them any more. */
        rlb_accesslog_stop();
        rlb_metrics_shutdown();
    }
    rlb_log_info("stopped");
    return exit_code;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "version") == 0)
        return cmd_version();
    if (argc >= 2 && strcmp(argv[1], "check") == 0)
        return rlb_config_check_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "route") == 0)
        return rlb_route_main(argc - 1, argv + 1);

    struct main_state ms;
    memset(&ms, 0, sizeof(ms));
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:t:l:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            ms.config_path = optarg;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 256) {
                fprintf(stderr, "ringlb: --threads takes a number from 1 to 256\n");
                return 2;
            }
            ms.threads = (unsigned)v;
            break;
        }
        case 'l':
            if (rlb_log_level_parse(optarg, &rlb_log_level_current) < 0) {
                fprintf(stderr, "ringlb: unknown log level '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!ms.config_path || optind != argc) {
        usage(stderr);
        return 2;
    }
    return run(&ms);
}
