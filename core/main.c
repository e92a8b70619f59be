/* main.c -- the command line (-c, -p, -t, -s, -v) and the master process: it reads the
 * configuration, creates the shared-memory zones and listening sockets, forks the workers,
 * restarts a worker that dies, and turns signals into actions (SIGHUP reload, SIGQUIT
 * graceful stop, SIGTERM/SIGINT fast stop, SIGUSR1 reopen logs). */
#include "sluice.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <luajit.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf.h"
#include "listen.h"
#include "log.h"
#include "shm.h"
#include "worker.h"

#define MAX_PROCS  (SL_MAX_WORKERS * 4)

typedef struct {
    pid_t     pid;
    int       slot;
    unsigned  generation;
    int       retiring;     /* sent SIGQUIT after a reload */
    double    started;
} proc_t;

static sl_conf_t       *conf;
static sl_listeners_t   listeners;
static proc_t           procs[MAX_PROCS];
static unsigned         generation;
static int              stopping;       /* 0, SIGQUIT or SIGTERM */
static struct event_base *base;
static char             pid_path[PATH_MAX];


static double
now_sec(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
usage(void)
{
    fprintf(stderr,
            "usage: sluice [-c FILE] [-p DIR] [-t] [-s reload|quit|stop|reopen] [-v]\n"
            "  -c FILE   node configuration (default conf/sluice.json)\n"
            "  -p DIR    prefix: holds logs/, data/ and logs/sluice.pid (default .)\n"
            "  -t        check the configuration and exit\n"
            "  -s SIG    signal the running instance\n"
            "  -v        print versions and exit\n");
}


static void
print_versions(void)
{
    curl_version_info_data  *cv = curl_version_info(CURLVERSION_NOW);
    char                     pcre[64];

    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    printf("sluice/%s\n", SLUICE_VERSION);
    printf("LuaJIT %s\n", LUAJIT_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("libcurl %s\n", cv->version);
    printf("PCRE2 %s\n", pcre);
}


static char *
find_home(const char *argv0)
{
    char        buf[PATH_MAX], lua[PATH_MAX + 32];
    const char *env = getenv("SLUICE_HOME");
    ssize_t     n;
    char       *dir;
    int         i;

    if (env != NULL && *env != '\0') {
        return realpath(env, NULL);
    }

    n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) {
        snprintf(buf, sizeof(buf), "%s", argv0);
        n = (ssize_t) strlen(buf);
    }

    buf[n] = '\0';

    /* build/sluice or build/asan/sluice: walk up until lua/sluice exists */
    dir = buf;
    for (i = 0; i < 4; i++) {
        dir = dirname(dir);
        snprintf(lua, sizeof(lua), "%s/lua/sluice/init.lua", dir);
        if (access(lua, R_OK) == 0) {
            return realpath(dir, NULL);
        }
    }

    return realpath(".", NULL);
}


static int
send_signal(const char *prefix, const char *name)
{
    char    path[PATH_MAX];
    FILE   *f;
    long    pid = 0;
    int     sig;

    if (strcmp(name, "reload") == 0) {
        sig = SIGHUP;

    } else if (strcmp(name, "quit") == 0) {
        sig = SIGQUIT;

    } else if (strcmp(name, "stop") == 0) {
        sig = SIGTERM;

    } else if (strcmp(name, "reopen") == 0) {
        sig = SIGUSR1;

    } else {
        fprintf(stderr, "sluice: unknown signal \"%s\" (reload, quit, stop, reopen)\n", name);
        return 1;
    }

    snprintf(path, sizeof(path), "%s/logs/sluice.pid", prefix);
    f = fopen(path, "r");
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "sluice: cannot read the pid file %s\n", path);
        if (f) {
            fclose(f);
        }

        return 1;
    }

    fclose(f);

    if (kill((pid_t) pid, sig) != 0) {
        fprintf(stderr, "sluice: cannot signal process %ld: %s\n", pid, strerror(errno));
        return 1;
    }

    return 0;
}


static int
create_zones(const sl_conf_t *c, const char **err)
{
    size_t          i;
    sl_shm_zone_t  *z;

    for (i = 0; i < c->nzones; i++) {
        z = sl_shm_zone_find(c->zones[i].name, strlen(c->zones[i].name));
        if (z != NULL) {
            continue;       /* kept across reloads with its contents; size changes need a restart */
        }

        if (sl_shm_zone_create(c->zones[i].name, c->zones[i].size, err) == NULL) {
            return SL_ERROR;
        }
    }

    return SL_OK;
}


static void
spawn(int slot)
{
    pid_t   pid;
    size_t  i;

    for (i = 0; i < MAX_PROCS; i++) {
        if (procs[i].pid == 0) {
            break;
        }
    }

    if (i == MAX_PROCS) {
        sl_log_error("too many worker processes, not spawning slot %d", slot);
        return;
    }

    pid = fork();
    if (pid < 0) {
        sl_log_error("fork() failed: %s", strerror(errno));
        return;
    }

    if (pid == 0) {
        /* the epoll instance is shared with the master: give the inherited base a backend
         * of its own before freeing it, or we would unregister the master's events */
        event_reinit(base);
        event_base_free(base);
        base = NULL;
        signal(SIGCHLD, SIG_DFL);
        exit(sl_worker_run(conf, &listeners, slot, generation));
    }

    procs[i].pid = pid;
    procs[i].slot = slot;
    procs[i].generation = generation;
    procs[i].retiring = 0;
    procs[i].started = now_sec();
    sl_log_info("started worker %d in slot %d", (int) pid, slot);
}


static void
on_respawn(evutil_socket_t fd, short what, void *arg)
{
    int  slot = (int) (intptr_t) arg;

    if (!stopping) {
        spawn(slot);
    }
}


/* A worker that dies right after its start (bad plugin code, say) is restarted after a
 * pause, so a crash loop does not spin the machine; others are replaced at once. */
static void
respawn(int slot, double lived)
{
    struct timeval  tv = {0, 500000};

    if (lived >= 1.0) {
        spawn(slot);
        return;
    }

    event_base_once(base, -1, EV_TIMEOUT, on_respawn, (void *) (intptr_t) slot, &tv);
}


static size_t
alive(void)
{
    size_t  i, n = 0;

    for (i = 0; i < MAX_PROCS; i++) {
        n += procs[i].pid != 0;
    }

    return n;
}


static void
signal_all(int sig, int only_old)
{
    size_t  i;

    for (i = 0; i < MAX_PROCS; i++) {
        if (procs[i].pid == 0) {
            continue;
        }

        if (only_old && procs[i].generation == generation) {
            continue;
        }

        if (only_old) {
            procs[i].retiring = 1;
        }

        kill(procs[i].pid, sig);
    }
}


static void
reload(void)
{
    sl_conf_t   *next;
    char        *cerr = NULL;
    const char  *err;
    int          i;

    sl_log_notice("reloading the configuration %s", conf->path);

    next = sl_conf_load(conf->path, conf->prefix, conf->home, 1, &cerr);
    if (next == NULL) {
        sl_log_error("reload failed, keeping the running configuration: %s", cerr);
        free(cerr);
        return;
    }

    if (create_zones(next, &err) != SL_OK || sl_listen_sync(&listeners, next, &err) != SL_OK) {
        sl_log_error("reload failed, keeping the running configuration: %s", err);
        sl_conf_free(next);
        return;
    }

    sl_log_level = next->log_level;
    sl_conf_free(conf);
    conf = next;
    generation++;

    for (i = 0; i < conf->workers; i++) {
        spawn(i);
    }

    /* the old generation stops accepting, finishes in-flight requests and exits */
    signal_all(SIGQUIT, 1);
}


static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    switch (sig) {

    case SIGHUP:
        if (!stopping) {
            reload();
        }

        break;

    case SIGQUIT:
        sl_log_notice("graceful stop: draining in-flight requests");
        stopping = SIGQUIT;
        signal_all(SIGQUIT, 0);
        break;

    case SIGTERM:
    case SIGINT:
        sl_log_notice("fast stop");
        stopping = SIGTERM;
        signal_all(SIGTERM, 0);
        break;

    case SIGUSR1:
        sl_log_reopen();
        signal_all(SIGUSR1, 0);
        break;

    default:
        break;
    }

    if (stopping && alive() == 0) {
        event_base_loopbreak(base);
    }
}


static void
on_child(evutil_socket_t sig, short what, void *arg)
{
    pid_t   pid;
    int     status;
    size_t  i;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (i = 0; i < MAX_PROCS; i++) {
            if (procs[i].pid != pid) {
                continue;
            }

            procs[i].pid = 0;

            if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0)) {
                sl_log_error("worker %d exited %s %d", (int) pid,
                             WIFSIGNALED(status) ? "on signal" : "with status",
                             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            } else {
                sl_log_info("worker %d exited", (int) pid);
            }

            if (!stopping && !procs[i].retiring && procs[i].generation == generation) {
                respawn(procs[i].slot, now_sec() - procs[i].started);
            }

            break;
        }
    }

    if (stopping && alive() == 0) {
        event_base_loopbreak(base);
    }
}


static void
on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    /* a fast stop that takes too long: workers stuck in a plugin */
    if (stopping == SIGTERM) {
        signal_all(SIGKILL, 0);
    }
}


static int
write_pid(void)
{
    FILE  *f;

    snprintf(pid_path, sizeof(pid_path), "%s/logs/sluice.pid", conf->prefix);
    f = fopen(pid_path, "w");
    if (f == NULL) {
        return SL_ERROR;
    }

    fprintf(f, "%d\n", (int) getpid());
    fclose(f);
    return SL_OK;
}


int
sl_master_run(sl_conf_t *c)
{
    const char      *err;
    char             path[PATH_MAX];
    int              i, sigs[] = {SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1};
    struct event    *ev, *kill_ev;
    struct timeval   tv = {5, 0};

    conf = c;

    snprintf(path, sizeof(path), "%s/logs/error.log", conf->prefix);
    if (sl_log_open(path, 1, &err) != SL_OK) {
        fprintf(stderr, "sluice: %s %s\n", err, path);
        return 1;
    }

    sl_log_level = conf->log_level;

    if (create_zones(conf, &err) != SL_OK) {
        fprintf(stderr, "sluice: cannot create shared memory: %s\n", err);
        return 1;
    }

    if (sl_listen_sync(&listeners, conf, &err) != SL_OK) {
        fprintf(stderr, "sluice: cannot listen: %s\n", err);
        return 1;
    }

    if (write_pid() != SL_OK) {
        fprintf(stderr, "sluice: cannot write the pid file %s\n", pid_path);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    for (i = 0; i < (int) (sizeof(sigs) / sizeof(sigs[0])); i++) {
        ev = evsignal_new(base, sigs[i], on_signal, NULL);
        event_add(ev, NULL);
    }

    ev = evsignal_new(base, SIGCHLD, on_child, NULL);
    event_add(ev, NULL);

    sl_log_notice("sluice/%s starting %d worker(s)", SLUICE_VERSION, conf->workers);

    for (i = 0; i < conf->workers; i++) {
        spawn(i);
    }

    event_base_dispatch(base);

    if (stopping == SIGTERM && alive() > 0) {
        kill_ev = evtimer_new(base, on_kill_timer, NULL);
        evtimer_add(kill_ev, &tv);
        event_base_dispatch(base);
    }

    unlink(pid_path);
    sl_log_notice("stopped");
    return 0;
}


static void
make_dirs(const char *prefix)
{
    char  path[PATH_MAX];

    mkdir(prefix, 0755);
    snprintf(path, sizeof(path), "%s/logs", prefix);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/data", prefix);
    mkdir(path, 0700);
}


int
main(int argc, char **argv)
{
    const char  *conf_path = "conf/sluice.json", *prefix = ".", *sig = NULL;
    int          opt, test = 0;
    char        *home, *err = NULL, *abs_prefix;
    sl_conf_t   *c;

    while ((opt = getopt(argc, argv, "c:p:ts:vh")) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 's':
            sig = optarg;
            break;
        case 'v':
            print_versions();
            return 0;
        default:
            usage();
            return opt == 'h' ? 0 : 1;
        }
    }

    if (sig != NULL) {
        return send_signal(prefix, sig);
    }

    home = find_home(argv[0]);
    if (!test) {
        make_dirs(prefix);
    }

    abs_prefix = realpath(prefix, NULL);
    if (abs_prefix == NULL) {
        abs_prefix = strdup(prefix);
    }

    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        fprintf(stderr, "sluice: curl_global_init failed\n");
        return 1;
    }

    c = sl_conf_load(conf_path, abs_prefix, home, 1, &err);
    if (c == NULL) {
        fprintf(stderr, "sluice: %s: %s\n", conf_path, err);
        return 1;
    }

    if (test) {
        printf("sluice: configuration %s is ok\n", conf_path);
        return 0;
    }

    free(home);
    free(abs_prefix);
    return sl_master_run(c);
}
