// SPDX-License-Identifier: GPL-2.0-or-later
// keystoned: runs Keystone's background tasks on their schedules against Keystone's database.
#include "config.h"

#include "config.hpp"
#include "error.hpp"
#include "ingest.hpp"
#include "limits_run.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "scheduler.hpp"
#include "sdnotify.hpp"
#include "util.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <malloc.h>
#include <string>
#include <thread>

using namespace keystone;

namespace {

struct Options {
    std::string config_path;
    bool check_config = false;
    int verbose = 0;
};

void usage(FILE *out)
{
    std::fprintf(out,
                 "Usage: keystoned [-f FILE] [-v]... [--check-config]\n"
                 "Runs Keystone's background tasks on their schedules (see keystoned(8)).\n\n"
                 "  -f, --config FILE   configuration file (default $KEYSTONE_CONF or %s)\n"
                 "      --check-config  validate the configuration, print the effective settings\n"
                 "                      with secrets masked, and exit\n"
                 "  -v, --verbose       more log output (repeat for more)\n"
                 "  -V, --version       print the version and exit\n"
                 "  -h, --help          print this help and exit\n",
                 default_config_path);
}

Options parse_args(int argc, char **argv)
{
    Options o;
    static const struct option longopts[] = {{"config", required_argument, nullptr, 'f'},
                                             {"check-config", no_argument, nullptr, 'C'},
                                             {"verbose", no_argument, nullptr, 'v'},
                                             {"version", no_argument, nullptr, 'V'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "f:vVh", longopts, nullptr)) != -1) {
        switch (ch) {
        case 'f':
            o.config_path = optarg;
            break;
        case 'C':
            o.check_config = true;
            break;
        case 'v':
            ++o.verbose;
            break;
        case 'V':
            std::printf("keystoned %s\n", PACKAGE_VERSION);
            std::exit(EXIT_SUCCESS);
        case 'h':
            usage(stdout);
            std::exit(EXIT_SUCCESS);
        default:
            usage(stderr);
            std::exit(2);
        }
    }
    if (optind < argc) {
        std::fprintf(stderr, "keystoned: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        std::exit(2);
    }
    o.config_path = config_path(o.config_path);
    return o;
}

LogLevel raise_level(LogLevel level, int verbose)
{
    int l = static_cast<int>(level) + verbose;
    return static_cast<LogLevel>(std::min(l, static_cast<int>(LogLevel::debug2)));
}

// Loads and fully validates a configuration, schedules included. Throws ConfigError.
std::shared_ptr<const Config> load_valid(const std::string &path)
{
    auto config = std::make_shared<Config>(load_config(path, process_environment()));
    parse_schedules(*config);
    return config;
}

} // namespace

int main(int argc, char **argv)
{
    // The ingest allocates and frees a transaction's rows (hundreds of KiB to tens of MiB) over
    // and over. With glibc's defaults each such block is a fresh mmap, paid again in page faults
    // every time; kept in the heap instead (and the heap trimmed only past 64 MiB free), a
    // backlog of 1,000,000 records loaded in 5.3-5.7 s instead of 6.0-6.2 s (bench/ingest.sh).
    // An environment that sets MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ keeps its own.
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr)
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
    if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr)
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
    Options opts = parse_args(argc, argv);
    std::shared_ptr<const Config> config;
    try {
        config = load_valid(opts.config_path);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystoned: error: %s\n", e.what());
        return EXIT_FAILURE;
    }
    if (opts.check_config) {
        std::printf("# keystoned %s: effective configuration from %s\n", PACKAGE_VERSION,
                    opts.config_path.c_str());
        for (const auto &line : describe(*config))
            std::printf("%s=%s  # %s\n", line.name.c_str(), line.value.c_str(),
                        line.origin.c_str());
        return EXIT_SUCCESS;
    }

    // Every local date and wall-clock schedule is in CONFIG_TIMEZONE, as in Keystone (Django sets
    // the process TZ). Set once, before any thread starts.
    setenv("TZ", config->timezone.c_str(), 1);
    tzset();
    log_setup("keystoned", raise_level(config->log_level, opts.verbose), config->syslog);

    // Signals are taken synchronously by the main loop (sigtimedwait); every thread created
    // from here on inherits the blocked mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    log_info("keystoned %s starting: config %s, database %s:%d/%s, CONFIG_TIMEZONE=%s",
             PACKAGE_VERSION, opts.config_path.c_str(), config->db_host.c_str(), config->db_port,
             config->db_name.c_str(), config->timezone.c_str());

    // systemd (Type=notify): readiness, reload, stop and watchdog pings; a no-op elsewhere.
    SystemdNotify systemd;
    systemd.notify_status("starting: waiting for PostgreSQL and checking the schema");

    std::atomic<bool> stop(false);
    Scheduler scheduler(config, stop);
    IngestService ingest(config, stop);
    // First, so it answers while start-up waits for PostgreSQL; a bind failure is logged only.
    MetricsServer metrics;
    (void)metrics.start(config);

    // start() retries while PostgreSQL is down; a signal must still end it, so a helper thread
    // watches for one meanwhile, and keeps the watchdog fed (main() does not touch `systemd`
    // until it has joined).
    bool started = false;
    {
        std::atomic<bool> starting_done(false);
        std::thread watcher([&] {
            while (!starting_done.load()) {
                systemd.watchdog_tick(std::chrono::steady_clock::now());
                struct timespec ts = {0, 200 * 1000 * 1000};
                int sig = sigtimedwait(&signals, nullptr, &ts);
                if (sig == SIGTERM || sig == SIGINT) {
                    log_info("keystoned: %s received while starting: stopping", strsignal(sig));
                    systemd.notify_stopping();
                    stop.store(true);
                    return;
                }
            }
        });
        try {
            started = scheduler.start();
        } catch (const std::exception &e) {
            log_error("%s", e.what());
            starting_done.store(true);
            watcher.join();
            return EXIT_FAILURE;
        }
        starting_done.store(true);
        watcher.join();
    }
    if (!started || stop.load()) {
        log_info("keystoned: stopped before start-up finished");
        scheduler.shutdown();
        return EXIT_SUCCESS;
    }
    // After the scheduler: its start-up waited for PostgreSQL and checked the schema.
    metrics_record_database(true);
    ingest.start();
    // The Slurm settings the limits task relies on, checked once at start (in the background:
    // a slurmctld that does not answer must not hold up the start).
    std::thread preflight;
    if (!config->schedules.at("update_limits").empty())
        preflight = std::thread([cfg = config] { log_limit_prerequisites(*cfg); });
    log_info("keystoned: running");
    systemd.notify_ready("running");

    while (!stop.load()) {
        TimePoint next = scheduler.tick(Clock::now());
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
        // Wake for the next watchdog ping too (every WATCHDOG_USEC/2 under systemd).
        const auto now = std::chrono::steady_clock::now();
        const auto ping_wait =
            std::chrono::ceil<std::chrono::milliseconds>(systemd.watchdog_tick(now) - now);
        if (ping_wait < wait)
            wait = ping_wait;
        if (wait.count() < 0)
            wait = std::chrono::milliseconds(0);
        struct timespec ts;
        ts.tv_sec = static_cast<time_t>(wait.count() / 1000);
        ts.tv_nsec = static_cast<long>((wait.count() % 1000) * 1000000);
        int sig = sigtimedwait(&signals, nullptr, &ts);
        if (sig < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_error("keystoned: sigtimedwait: %s", std::strerror(errno));
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("keystoned: %s received: stopping", strsignal(sig));
            systemd.notify_stopping();
            stop.store(true);
        } else if (sig == SIGHUP) {
            systemd.notify_reloading();
            try {
                auto fresh = load_valid(opts.config_path);
                if (fresh->timezone != config->timezone)
                    log_warning("keystoned: CONFIG_TIMEZONE changed from %s to %s: this takes a "
                                "restart; schedules stay in %s until then",
                                config->timezone.c_str(), fresh->timezone.c_str(),
                                config->timezone.c_str());
                log_set_level(raise_level(fresh->log_level, opts.verbose));
                scheduler.reload(fresh);
                ingest.reload(fresh);
                metrics.reload(fresh);
                config = fresh;
                log_info("keystoned: configuration reloaded from %s", opts.config_path.c_str());
                systemd.notify_ready("running; configuration reloaded");
            } catch (const std::exception &e) {
                log_error("keystoned: reload refused, keeping the running configuration: %s",
                          e.what());
                systemd.notify_ready("running; reload refused, see the log");
            }
        }
    }
    // Reverse order of start-up. The ingest rolls back an open transaction: its files stay.
    if (preflight.joinable())
        preflight.join();
    const bool ingest_clean = ingest.shutdown();
    const bool clean = scheduler.shutdown();
    metrics.stop();
    if (!ingest_clean) {
        log_error("keystoned: exiting with a spool ingest transaction still open; PostgreSQL "
                  "rolls it back and its files are ingested after the next start");
        std::fflush(stderr);
        std::_Exit(EXIT_FAILURE);
    }
    if (!clean) {
        log_error("keystoned: exiting with a run still in progress; its transaction is rolled "
                  "back and its record is closed at the next start");
        std::fflush(stderr);
        std::_Exit(EXIT_FAILURE);
    }
    log_info("keystoned: stopped");
    return EXIT_SUCCESS;
}
