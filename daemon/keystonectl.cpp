// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl: runs a task now, lists task records, and manages the database schema.
#include "config.h"

#include "clusters.hpp"
#include "config.hpp"
#include "db.hpp"
#include "doctor.hpp"
#include "error.hpp"
#include "job_check.hpp"
#include "limits_cli.hpp"
#include "log.hpp"
#include "migrate.hpp"
#include "notify_cli.hpp"
#include "runner.hpp"
#include "scheduler.hpp"
#include "slurmdb.hpp"
#include "task_log.hpp"
#include "tasks/task.hpp"
#include "util.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <string>
#include <vector>

using namespace keystone;

namespace {

constexpr int exit_usage = 2;
constexpr int exit_busy = 75; // EX_TEMPFAIL: another run holds the task's lock
// jobs check: 0 agree, 1 differ, 2 usage, 3 the check could not be made (configuration,
// PostgreSQL, slurmdbd, unknown cluster).
constexpr int exit_check_error = 3;

struct Global {
    std::string config_path;
    int verbose = 0;
};

void main_usage(FILE *out)
{
    std::fprintf(out,
                 "Usage: keystonectl [-f FILE] [-v] COMMAND [ARGS]\n"
                 "Operates keystone-slurm (see keystonectl(1)).\n\n"
                 "Commands:\n"
                 "  run TASK [--cluster NAME] [--since T] [--dry-run] [--force] [--json]\n"
                 "                      run one task now, in the foreground\n"
                 "  jobs check [--cluster NAME] --since T [--until T] [--json]\n"
                 "                      compare keystone_slurm.job with slurmdbd\n"
                 "  tasks [--since T] [--task NAME] [--limit N] [--json]\n"
                 "                      list recent task records, newest first\n"
                 "  db migrate [--keystone-schema]\n"
                 "                      apply keystone_slurm's schema migrations\n"
                 "  db status           show the schema versions\n"
                 "  limits plan [--cluster NAME] [--all] [--json]\n"
                 "                      show what update_limits would change, change nothing\n"
                 "  limits apply [--cluster NAME] [--force]\n"
                 "                      run update_limits now (--force: over the circuit breaker)\n"
                 "  limits history [--cluster NAME] [--account NAME] [--since T] [--json]\n"
                 "                      list the limit changes update_limits made\n"
                 "  doctor [--json]     check the installation, say what to change\n"
                 "  notify preview [--request ID] [--user NAME] [--raw]\n"
                 "                      render the expiration notices due today, send nothing\n\n"
                 "Options:\n"
                 "  -f, --config FILE   configuration file (default $KEYSTONE_CONF or %s)\n"
                 "  -v, --verbose       log progress on stderr (repeat for more)\n"
                 "  -V, --version       print the version and exit\n"
                 "  -h, --help          print this help (or COMMAND --help) and exit\n\n"
                 "Tasks:\n",
                 default_config_path);
    for (const auto &t : all_tasks())
        std::fprintf(out, "  %-22s %s\n                         (%s)\n", t.short_name,
                     t.description, t.dotted_name);
}

[[noreturn]] void usage_error(const std::string &msg)
{
    std::fprintf(stderr, "keystonectl: %s (see keystonectl --help)\n", msg.c_str());
    std::exit(exit_usage);
}

// Reads and checks the configuration and sets up the time zone and logging; throws on a bad
// configuration (ConfigError naming file:line, or a schedule's error).
Config load_or_throw(const Global &g)
{
    Config c = load_config(g.config_path, process_environment());
    parse_schedules(c);
    setenv("TZ", c.timezone.c_str(), 1);
    tzset();
    LogLevel level = g.verbose > 0 ? static_cast<LogLevel>(std::min(
                                         static_cast<int>(LogLevel::info) + g.verbose - 1,
                                         static_cast<int>(LogLevel::debug2)))
                                   : LogLevel::warning;
    log_setup("keystonectl", level, false);
    return c;
}

Config load(const Global &g, int error_exit = EXIT_FAILURE)
{
    try {
        return load_or_throw(g);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        std::exit(error_exit);
    }
}

pqxx::connection &connect(Database &db, int error_exit = EXIT_FAILURE)
{
    try {
        return db.conn();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        std::exit(error_exit);
    }
}

// Checks the syntax of a --since/--until value before the configuration is read (relative ages
// do not depend on the time zone); the caller parses it for real in CONFIG_TIMEZONE.
void check_time_option(const char *option, const std::optional<std::string> &text)
{
    if (!text)
        return;
    try {
        parse_user_time(*text, std::time(nullptr));
    } catch (const std::exception &e) {
        usage_error(std::string(option) + ": " + e.what());
    }
}

// Parses subcommand options with getopt_long; `handler` gets each option.
template <typename F>
void parse_sub(int argc, char **argv, const char *shortopts, const struct option *longopts,
               const char *help, F handler)
{
    optind = 0; // glibc: 0 re-initialises getopt (it already parsed the global options)
    int ch;
    while ((ch = getopt_long(argc, argv, shortopts, longopts, nullptr)) != -1) {
        if (ch == 'h') {
            std::fputs(help, stdout);
            std::exit(EXIT_SUCCESS);
        }
        if (ch == '?' || ch == ':')
            std::exit(exit_usage);
        handler(ch, optarg);
    }
}

void print_pretty_json(const std::string &text, const char *indent)
{
    json_error_t err;
    JsonPtr j(json_loads(text.c_str(), 0, &err));
    if (!j) {
        std::printf("%s%s\n", indent, text.c_str());
        return;
    }
    char *s = json_dumps(j.get(), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    std::string body = s ? s : "";
    std::free(s);
    size_t pos = 0;
    while (pos <= body.size()) {
        size_t nl = body.find('\n', pos);
        std::printf("%s%s\n", indent, body.substr(pos, nl - pos).c_str());
        if (nl == std::string::npos)
            break;
        pos = nl + 1;
    }
}

int cmd_run(const Global &g, int argc, char **argv)
{
    static const char help[] =
        "Usage: keystonectl run TASK [--cluster NAME] [--since T] [--dry-run] [--force] [--json]\n"
        "Runs TASK now in the foreground, records it like a scheduled run, prints its outcome.\n"
        "TASK is a short name (clear_log_records) or Keystone's dotted name.\n\n"
        "  --cluster NAME  per-cluster tasks: only this cluster\n"
        "  --since T       slurm_update_job_stats: read slurmdbd from T instead of the last\n"
        "                  run's watermark (a backfill after a long slurmdbd outage);\n"
        "                  T: YYYY-MM-DD[THH:MM[:SS]][Z] or an age such as 6h, 3d\n"
        "  --dry-run       report what the run would change; change nothing, record nothing\n"
        "  --force         apply a run a safety guard stops (ldap_update_users: mass removal,\n"
        "                  empty directory; update_limits: the circuit breaker (mass\n"
        "                  lowering, an active team set to 0); notify_past_expirations: do not\n"
        "                  wait for update_limits to settle the day)\n"
        "  --json          print the outcome as one JSON object\n\n"
        "Exit status: 0 SUCCESS, 1 FAILURE, 2 usage error, 75 another run of TASK is in "
        "progress.\n";
    static const struct option longopts[] = {{"cluster", required_argument, nullptr, 'c'},
                                             {"since", required_argument, nullptr, 's'},
                                             {"dry-run", no_argument, nullptr, 'n'},
                                             {"force", no_argument, nullptr, 'F'},
                                             {"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    RunOptions options;
    bool as_json = false;
    std::optional<std::string> since_text;
    parse_sub(argc, argv, "h", longopts, help, [&](int ch, const char *arg) {
        if (ch == 'c')
            options.cluster = arg;
        else if (ch == 's')
            since_text = arg;
        else if (ch == 'n')
            options.dry_run = true;
        else if (ch == 'F')
            options.force = true;
        else if (ch == 'j')
            as_json = true;
    });
    if (optind != argc - 1)
        usage_error("run takes exactly one TASK");
    const TaskDef *task = find_task(argv[optind]);
    if (!task)
        usage_error(std::string("unknown task '") + argv[optind] + "'");
    if (options.cluster && !task->per_cluster)
        usage_error(std::string(task->short_name) + " is not a per-cluster task: no --cluster");
    if (since_text && !task_takes_since(*task))
        usage_error(std::string(task->short_name) + " reads no time window: no --since");
    check_time_option("--since", since_text);

    Config config = load(g);
    if (since_text)
        options.since = parse_user_time(*since_text, std::time(nullptr));
    Database db(db_conninfo(config), "keystonectl");
    try {
        check_schema(connect(db));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        return EXIT_FAILURE;
    }
    std::atomic<bool> stop(false);
    RunOutcome out = run_task(*task, config, db, options, stop, std::chrono::seconds(0));

    if (as_json) {
        JsonPtr j(json_object());
        json_object_set_new(j.get(), "task", json_string(task->dotted_name));
        json_object_set_new(j.get(), "task_id",
                            out.task_id.empty() ? json_null() : json_string(out.task_id.c_str()));
        json_object_set_new(j.get(), "status", json_string(out.status.c_str()));
        json_object_set_new(j.get(), "dry_run", json_boolean(options.dry_run));
        json_object_set_new(j.get(), "seconds", json_real(out.seconds));
        json_error_t err;
        json_t *result = json_loads(out.result_json.c_str(), 0, &err);
        json_object_set_new(j.get(), "result", result ? result : json_null());
        json_object_set_new(j.get(), "error",
                            out.error.empty() ? json_null() : json_string(out.error.c_str()));
        json_object_set_new(j.get(), "recorded", json_boolean(out.recorded));
        std::printf("%s\n", json_text(j.get()).c_str());
    } else {
        std::printf("%s: %s%s in %.2f s", task->short_name, out.status.c_str(),
                    options.dry_run ? " (dry run: nothing changed)" : "", out.seconds);
        if (!out.task_id.empty())
            std::printf(" (TaskId=%s)", out.task_id.c_str());
        std::printf("\n");
        if (out.status != "SKIPPED")
            print_pretty_json(out.result_json, "  ");
        if (!out.error.empty())
            std::printf("%s%s", out.error.c_str(), out.error.back() == '\n' ? "" : "\n");
        if (!options.dry_run && !out.task_id.empty() && !out.recorded)
            std::printf("warning: the outcome could not be written to the task record\n");
    }
    if (out.status == "SUCCESS")
        return EXIT_SUCCESS;
    if (out.status == "SKIPPED")
        return exit_busy;
    return EXIT_FAILURE;
}

int cmd_tasks(const Global &g, int argc, char **argv)
{
    static const char help[] =
        "Usage: keystonectl tasks [--since T] [--task NAME] [--limit N] [--json]\n"
        "Lists task records (django_celery_results_taskresult), newest first: what Keystone's\n"
        "/logs/tasks/ shows.\n\n"
        "  --since T     only runs created at or after T: YYYY-MM-DD[THH:MM[:SS]][Z] (local time\n"
        "                in CONFIG_TIMEZONE unless Z) or an age such as 90m, 6h, 2d\n"
        "  --task NAME   only this task (short or dotted name)\n"
        "  --limit N     at most N rows (default 50)\n"
        "  --json        one JSON array with every column, result and traceback included\n";
    static const struct option longopts[] = {{"since", required_argument, nullptr, 's'},
                                             {"task", required_argument, nullptr, 't'},
                                             {"limit", required_argument, nullptr, 'l'},
                                             {"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    std::optional<std::string> since_text, name;
    int limit = 50;
    bool as_json = false;
    parse_sub(argc, argv, "h", longopts, help, [&](int ch, const char *arg) {
        if (ch == 's')
            since_text = arg;
        else if (ch == 't')
            name = arg;
        else if (ch == 'j')
            as_json = true;
        else if (ch == 'l') {
            char *end = nullptr;
            long v = std::strtol(arg, &end, 10);
            if (!*arg || *end || v < 1 || v > 100000)
                usage_error(std::string("--limit: not a number from 1 to 100000: '") + arg + "'");
            limit = static_cast<int>(v);
        }
    });
    if (optind != argc)
        usage_error("tasks takes no arguments");
    // Relative ages do not depend on the time zone: check the syntax before reading the
    // configuration, then parse for real in CONFIG_TIMEZONE.
    check_time_option("--since", since_text);
    Config config = load(g);
    std::optional<std::time_t> since;
    if (since_text)
        since = parse_user_time(*since_text, std::time(nullptr));
    if (name) {
        if (const TaskDef *t = find_task(*name))
            name = std::string(t->dotted_name);
    }
    Database db(db_conninfo(config), "keystonectl");
    std::vector<TaskRow> rows;
    try {
        rows = list_task_rows(connect(db), since, name, limit);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        return EXIT_FAILURE;
    }
    if (as_json) {
        JsonPtr arr(json_array());
        for (const auto &r : rows) {
            json_t *o = json_object();
            auto opt = [](const std::optional<std::string> &v) {
                return v ? json_string(v->c_str()) : json_null();
            };
            json_object_set_new(o, "task_id", json_string(r.task_id.c_str()));
            json_object_set_new(o, "task_name", json_string(r.task_name.c_str()));
            json_object_set_new(o, "task_args", opt(r.args));
            json_object_set_new(o, "periodic_task_name", opt(r.periodic_task_name));
            json_object_set_new(o, "status", json_string(r.status.c_str()));
            json_object_set_new(o, "worker", json_string(r.worker.c_str()));
            json_object_set_new(o, "date_created", json_string(r.date_created.c_str()));
            json_object_set_new(o, "date_done", json_string(r.date_done.c_str()));
            json_object_set_new(o, "seconds", json_real(r.seconds));
            json_error_t err;
            json_t *res = r.result ? json_loads(r.result->c_str(), 0, &err) : nullptr;
            json_object_set_new(o, "result",
                                res ? res : (r.result ? json_string(r.result->c_str()) : json_null()));
            json_object_set_new(o, "traceback", opt(r.traceback));
            json_array_append_new(arr.get(), o);
        }
        std::printf("%s\n", json_text(arr.get()).c_str());
        return EXIT_SUCCESS;
    }
    if (rows.empty()) {
        std::printf("no task records%s\n", since_text ? " in that window" : "");
        return EXIT_SUCCESS;
    }
    std::printf("%-20s  %-8s  %8s  %-45s  %-16s  %s\n", "CREATED (UTC)", "STATUS", "SECONDS",
                "TASK", "WORKER", "TASK ID");
    for (const auto &r : rows) {
        std::string task = r.task_name + (r.args && *r.args != "()" ? " " + *r.args : "");
        std::printf("%-20s  %-8s  %8.2f  %-45s  %-16s  %s\n", r.date_created.c_str(),
                    r.status.c_str(), r.seconds, task.c_str(), r.worker.c_str(),
                    r.task_id.c_str());
        if (r.result && *r.result != "{}" && *r.result != "null")
            std::printf("    result: %s\n", r.result->c_str());
        if (r.traceback && !r.traceback->empty()) {
            std::string tb = *r.traceback;
            size_t pos = 0;
            while (pos < tb.size()) {
                size_t nl = tb.find('\n', pos);
                std::printf("    %s\n", tb.substr(pos, nl - pos).c_str());
                if (nl == std::string::npos)
                    break;
                pos = nl + 1;
            }
        }
    }
    return EXIT_SUCCESS;
}

int cmd_db(const Global &g, int argc, char **argv)
{
    static const char help[] =
        "Usage: keystonectl db migrate [--keystone-schema]\n"
        "       keystonectl db status\n"
        "migrate applies keystone_slurm's numbered migrations (each in its own transaction;\n"
        "refuses a database newer than this build). --keystone-schema first creates the Keystone\n"
        "tables keystone-slurm uses that do not exist yet (for sites without a Keystone API);\n"
        "an existing Keystone table is never changed.\n"
        "status prints the schema version of the database and of this build.\n";
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        std::fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? exit_usage : EXIT_SUCCESS;
    }
    const std::string sub = argv[1];
    bool keystone_schema = false;
    static const struct option longopts[] = {{"keystone-schema", no_argument, nullptr, 'k'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    parse_sub(argc - 1, argv + 1, "h", longopts, help, [&](int ch, const char *) {
        if (ch == 'k')
            keystone_schema = true;
    });
    if (optind != argc - 1)
        usage_error("db " + sub + ": unexpected argument");
    if (sub != "migrate" && sub != "status")
        usage_error("db: unknown subcommand '" + sub + "'");
    if (sub == "status" && keystone_schema)
        usage_error("db status takes no --keystone-schema");
    Config config = load(g);
    Database db(db_conninfo(config), "keystonectl");
    pqxx::connection &c = connect(db);
    try {
        if (sub == "status") {
            int have = database_schema_version(c);
            std::printf("keystone_slurm schema: database %d, this build %d%s\n", have,
                        known_schema_version(),
                        have == known_schema_version() ? " (up to date)"
                        : have < known_schema_version() ? " (run keystonectl db migrate)"
                                                        : " (database is newer: upgrade)");
            try {
                check_schema(c);
                std::printf("Keystone tables: present\n");
            } catch (const SchemaError &e) {
                std::printf("%s\n", e.what());
                return EXIT_FAILURE;
            }
            return EXIT_SUCCESS;
        }
        MigrateReport r = migrate(c, keystone_schema);
        for (const auto &t : r.keystone_created)
            std::printf("created Keystone table %s\n", t.c_str());
        if (keystone_schema && r.keystone_created.empty())
            std::printf("Keystone tables: all present, none changed\n");
        for (const auto &m : r.applied)
            std::printf("applied %s\n", m.c_str());
        std::printf("keystone_slurm schema at version %d%s\n", r.to,
                    r.applied.empty() ? " (already up to date)" : "");
        check_schema(c);
        return EXIT_SUCCESS;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        return EXIT_FAILURE;
    }
}

void print_check_text(const ClusterCheck &c)
{
    for (const auto &d : c.differences) {
        const char *kind = difference_kind_name(d.kind);
        if (d.kind != JobDifference::Kind::different) {
            std::printf("%s Cluster=%s JobID=%s JobIDRaw=%lld Submit=%s State=%s\n", kind,
                        d.cluster.c_str(), d.jobid.c_str(), static_cast<long long>(d.job_id),
                        iso_utc(static_cast<std::time_t>(d.submit)).c_str(), d.state.c_str());
            continue;
        }
        for (const auto &f : d.fields)
            std::printf("%s Cluster=%s JobID=%s %s: ours=%s slurmdbd=%s\n", kind,
                        d.cluster.c_str(), d.jobid.c_str(), f.field.c_str(), f.ours.c_str(),
                        f.theirs.c_str());
    }
    long long missing = 0, extra = 0, different = 0, fields = 0;
    for (const auto &d : c.differences) {
        if (d.kind == JobDifference::Kind::missing)
            ++missing;
        else if (d.kind == JobDifference::Kind::extra)
            ++extra;
        else {
            ++different;
            fields += static_cast<long long>(d.fields.size());
        }
    }
    std::printf("Cluster=%s [%s, %s): %lld jobs in slurmdbd, %lld in keystone_slurm.job: %s"
                "%lld missing, %lld extra, %lld different (%lld field%s)\n",
                c.cluster.c_str(), iso_utc(static_cast<std::time_t>(c.since)).c_str(),
                iso_utc(static_cast<std::time_t>(c.until)).c_str(),
                static_cast<long long>(c.slurmdbd_jobs), static_cast<long long>(c.our_jobs),
                c.agree() ? "agree: " : "DIFFER: ", missing, extra, different, fields,
                fields == 1 ? "" : "s");
}

json_t *check_json(const ClusterCheck &c)
{
    json_t *o = json_object();
    json_object_set_new(o, "cluster", json_string(c.cluster.c_str()));
    json_object_set_new(o, "since",
                        json_string(iso_utc(static_cast<std::time_t>(c.since)).c_str()));
    json_object_set_new(o, "until",
                        json_string(iso_utc(static_cast<std::time_t>(c.until)).c_str()));
    json_object_set_new(o, "slurmdbd_jobs", json_integer(c.slurmdbd_jobs));
    json_object_set_new(o, "our_jobs", json_integer(c.our_jobs));
    json_object_set_new(o, "agree", json_boolean(c.agree()));
    json_t *diffs = json_array();
    for (const auto &d : c.differences) {
        json_t *j = json_object();
        json_object_set_new(j, "kind", json_string(difference_kind_name(d.kind)));
        json_object_set_new(j, "jobid", json_string(d.jobid.c_str()));
        json_object_set_new(j, "job_id", json_integer(d.job_id));
        json_object_set_new(j, "submit",
                            json_string(iso_utc(static_cast<std::time_t>(d.submit)).c_str()));
        json_object_set_new(j, "state", json_string(d.state.c_str()));
        if (d.kind == JobDifference::Kind::different) {
            json_t *fields = json_array();
            for (const auto &f : d.fields) {
                json_t *fj = json_object();
                json_object_set_new(fj, "field", json_string(f.field.c_str()));
                json_object_set_new(fj, "ours", json_string(f.ours.c_str()));
                json_object_set_new(fj, "slurmdbd", json_string(f.theirs.c_str()));
                json_array_append_new(fields, fj);
            }
            json_object_set_new(j, "fields", fields);
        }
        json_array_append_new(diffs, j);
    }
    json_object_set_new(o, "differences", diffs);
    return o;
}

int cmd_jobs_check(const Global &g, int argc, char **argv)
{
    static const char help[] =
        "Usage: keystonectl jobs check [--cluster NAME] --since T [--until T] [--json]\n"
        "Compares the jobs in keystone_slurm.job with slurmdbd's, job by job and field by\n"
        "field, for jobs active in [T, UNTIL): submitted before UNTIL, not ended before T.\n"
        "Prints one line per difference: missing (in slurmdbd, not ours), extra (ours, not in\n"
        "slurmdbd) or different (one line per field), then a summary line per cluster.\n\n"
        "  --cluster NAME  only this cluster (default: every enabled cluster of\n"
        "                  allocations_cluster)\n"
        "  --since T       start of the window: YYYY-MM-DD[THH:MM[:SS]][Z] (local time in\n"
        "                  CONFIG_TIMEZONE unless Z) or an age such as 90m, 6h, 2d\n"
        "  --until T       end of the window (default: now)\n"
        "  --json          one JSON object with every difference\n\n"
        "Exit status: 0 the two agree, 1 they differ, 2 usage error, 3 the check could not be\n"
        "made (configuration, PostgreSQL, slurmdbd, unknown cluster).\n";
    static const struct option longopts[] = {{"cluster", required_argument, nullptr, 'c'},
                                             {"since", required_argument, nullptr, 's'},
                                             {"until", required_argument, nullptr, 'u'},
                                             {"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    std::optional<std::string> cluster, since_text, until_text;
    bool as_json = false;
    parse_sub(argc, argv, "h", longopts, help, [&](int ch, const char *arg) {
        if (ch == 'c')
            cluster = arg;
        else if (ch == 's')
            since_text = arg;
        else if (ch == 'u')
            until_text = arg;
        else if (ch == 'j')
            as_json = true;
    });
    if (optind != argc)
        usage_error("jobs check takes no arguments");
    if (!since_text)
        usage_error("jobs check needs --since");
    check_time_option("--since", since_text);
    check_time_option("--until", until_text);

    Config config = load(g, exit_check_error);
    const std::time_t now = std::time(nullptr);
    const std::int64_t since = parse_user_time(*since_text, now);
    const std::int64_t until = until_text ? parse_user_time(*until_text, now) : now;
    if (since >= until)
        usage_error("--since must be before --until (" + iso_utc(since) + " >= " +
                    iso_utc(until) + ")");

    Database db(db_conninfo(config), "keystonectl");
    pqxx::connection &conn = connect(db, exit_check_error);
    std::vector<ClusterCheck> results;
    try {
        check_schema(conn);
        std::vector<std::string> clusters;
        if (cluster) {
            clusters.push_back(*cluster);
        } else {
            pqxx::read_transaction tx(conn);
            clusters = enabled_clusters(tx);
        }
        if (clusters.empty()) {
            std::fprintf(stderr, "keystonectl: error: no enabled cluster in allocations_cluster "
                                 "(name one with --cluster)\n");
            return exit_check_error;
        }
        SlurmdbConnection slurmdb(config.slurm_conf, config.slurmdb_timeout);
        for (const auto &c : clusters)
            results.push_back(check_jobs(conn, slurmdb, c, since, until));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        return exit_check_error;
    }

    bool agree = true;
    for (const auto &r : results)
        agree = agree && r.agree();
    if (as_json) {
        JsonPtr j(json_object());
        json_object_set_new(j.get(), "since", json_string(iso_utc(since).c_str()));
        json_object_set_new(j.get(), "until", json_string(iso_utc(until).c_str()));
        json_object_set_new(j.get(), "agree", json_boolean(agree));
        json_t *arr = json_array();
        for (const auto &r : results)
            json_array_append_new(arr, check_json(r));
        json_object_set_new(j.get(), "clusters", arr);
        std::printf("%s\n", json_text(j.get()).c_str());
    } else {
        for (const auto &r : results)
            print_check_text(r);
    }
    return agree ? EXIT_SUCCESS : EXIT_FAILURE;
}

int cmd_jobs(const Global &g, int argc, char **argv)
{
    static const char help[] =
        "Usage: keystonectl jobs check [--cluster NAME] --since T [--until T] [--json]\n"
        "check compares keystone_slurm.job with slurmdbd (keystonectl jobs check --help).\n";
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        std::fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2 ? exit_usage : EXIT_SUCCESS;
    }
    const std::string sub = argv[1];
    if (sub == "check")
        return cmd_jobs_check(g, argc - 1, argv + 1);
    usage_error("jobs: unknown subcommand '" + sub + "'");
}

} // namespace

int main(int argc, char **argv)
{
    // A peer that goes away (slapd, PostgreSQL) must be an error from the library, not a
    // SIGPIPE that kills the process in the middle of a run.
    std::signal(SIGPIPE, SIG_IGN);
    Global g;
    static const struct option longopts[] = {{"config", required_argument, nullptr, 'f'},
                                             {"verbose", no_argument, nullptr, 'v'},
                                             {"version", no_argument, nullptr, 'V'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "+f:vVh", longopts, nullptr)) != -1) {
        switch (ch) {
        case 'f':
            g.config_path = optarg;
            break;
        case 'v':
            ++g.verbose;
            break;
        case 'V':
            std::printf("keystonectl %s\n", PACKAGE_VERSION);
            return EXIT_SUCCESS;
        case 'h':
            main_usage(stdout);
            return EXIT_SUCCESS;
        default:
            main_usage(stderr);
            return exit_usage;
        }
    }
    if (optind >= argc) {
        main_usage(stderr);
        return exit_usage;
    }
    g.config_path = config_path(g.config_path);
    const std::string cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    if (cmd == "run")
        return cmd_run(g, sub_argc, sub_argv);
    if (cmd == "tasks")
        return cmd_tasks(g, sub_argc, sub_argv);
    if (cmd == "db")
        return cmd_db(g, sub_argc, sub_argv);
    if (cmd == "jobs")
        return cmd_jobs(g, sub_argc, sub_argv);
    if (cmd == "notify")
        return notify_command(sub_argc, sub_argv, [&] { return load(g); });
    if (cmd == "doctor")
        // doctor reports a bad configuration as a finding instead of exiting.
        return doctor_command(sub_argc, sub_argv, g.config_path, [&] { return load_or_throw(g); });
    if (cmd == "limits") {
        // limits apply [OPTIONS] is run update_limits [OPTIONS].
        if (sub_argc >= 2 && std::strcmp(sub_argv[1], "apply") == 0) {
            std::vector<char *> args = {sub_argv[0], const_cast<char *>("update_limits")};
            for (int i = 2; i < sub_argc; ++i)
                args.push_back(sub_argv[i]);
            args.push_back(nullptr);
            return cmd_run(g, static_cast<int>(args.size()) - 1, args.data());
        }
        return limits_command(sub_argc, sub_argv, [&] { return load(g); });
    }

    if (cmd == "help") {
        main_usage(stdout);
        return EXIT_SUCCESS;
    }
    usage_error("unknown command '" + cmd + "'");
}
