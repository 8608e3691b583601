// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl: runs a task now, lists task records, and manages the database schema.
#include "config.h"

#include "config.hpp"
#include "db.hpp"
#include "error.hpp"
#include "log.hpp"
#include "migrate.hpp"
#include "runner.hpp"
#include "scheduler.hpp"
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
                 "  run TASK [--cluster NAME] [--dry-run] [--force] [--json]\n"
                 "                      run one task now, in the foreground\n"
                 "  tasks [--since T] [--task NAME] [--limit N] [--json]\n"
                 "                      list recent task records, newest first\n"
                 "  db migrate [--keystone-schema]\n"
                 "                      apply keystone_slurm's schema migrations\n"
                 "  db status           show the schema versions\n\n"
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

Config load(const Global &g)
{
    try {
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
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        std::exit(EXIT_FAILURE);
    }
}

pqxx::connection &connect(Database &db)
{
    try {
        return db.conn();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", e.what());
        std::exit(EXIT_FAILURE);
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
        "Usage: keystonectl run TASK [--cluster NAME] [--dry-run] [--force] [--json]\n"
        "Runs TASK now in the foreground, records it like a scheduled run, prints its outcome.\n"
        "TASK is a short name (clear_log_records) or Keystone's dotted name.\n\n"
        "  --cluster NAME  per-cluster tasks: only this cluster\n"
        "  --dry-run       report what the run would change; change nothing, record nothing\n"
        "  --force         apply a run a safety guard stops (ldap_update_users: mass removal,\n"
        "                  empty directory)\n"
        "  --json          print the outcome as one JSON object\n\n"
        "Exit status: 0 SUCCESS, 1 FAILURE, 2 usage error, 75 another run of TASK is in "
        "progress.\n";
    static const struct option longopts[] = {{"cluster", required_argument, nullptr, 'c'},
                                             {"dry-run", no_argument, nullptr, 'n'},
                                             {"force", no_argument, nullptr, 'F'},
                                             {"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    RunOptions options;
    bool as_json = false;
    parse_sub(argc, argv, "h", longopts, help, [&](int ch, const char *arg) {
        if (ch == 'c')
            options.cluster = arg;
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

    Config config = load(g);
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
    if (since_text) {
        try {
            parse_user_time(*since_text, std::time(nullptr));
        } catch (const std::exception &e) {
            usage_error(std::string("--since: ") + e.what());
        }
    }
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
    if (cmd == "help") {
        main_usage(stdout);
        return EXIT_SUCCESS;
    }
    usage_error("unknown command '" + cmd + "'");
}
