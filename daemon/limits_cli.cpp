// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of keystonectl limits plan / history (see limits_cli.hpp).
#include "limits_cli.hpp"

#include "clusters.hpp"
#include "db.hpp"
#include "limits_run.hpp"
#include "log.hpp"
#include "migrate.hpp"
#include "notify.hpp"
#include "slurmdb.hpp"
#include "util.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <getopt.h>
#include <string>
#include <vector>

namespace keystone {

namespace {

constexpr int exit_usage = 2;

const char plan_help[] =
    "Usage: keystonectl limits plan [--cluster NAME] [--all] [--json]\n"
    "Shows what update_limits would do now, for every enabled cluster (or NAME): each Slurm\n"
    "account's current GrpTRESMins billing limit, its usage and the new limit, in service units\n"
    "(billing hours), and the allocations it would settle (final). Reads PostgreSQL, slurmdbd and\n"
    "slurmctld; changes nothing. The same as `keystonectl run update_limits --dry-run`.\n\n"
    "  --cluster NAME  only this cluster\n"
    "  --all           list every account, also the unchanged ones and those without a team\n"
    "  --json          print the plans as one JSON object\n\n"
    "Exit status: 0 planned, 1 a cluster or an account could not be planned, 2 usage.\n";

const char history_help[] =
    "Usage: keystonectl limits history [--cluster NAME] [--account NAME] [--since T] [--limit N]\n"
    "                                  [--json]\n"
    "Lists the changes update_limits made (keystone_slurm.limit_change), newest first: the\n"
    "limit before and after, the usage it read, the allocations it settled and why.\n\n"
    "  --cluster NAME  only this cluster\n"
    "  --account NAME  only this Slurm account\n"
    "  --since T       only changes since T (YYYY-MM-DD[THH:MM[:SS]][Z] or an age: 6h, 3d)\n"
    "  --limit N       at most N changes (default 50)\n"
    "  --json          print them as a JSON array\n\n"
    "Exit status: 0 listed, 1 database error, 2 usage.\n";

const char limits_help[] =
    "Usage: keystonectl limits plan|apply|history [OPTIONS]\n"
    "  plan     show what update_limits would change now (keystonectl limits plan --help)\n"
    "  apply    run update_limits now: keystonectl limits apply [--cluster NAME] [--force]\n"
    "           (--force applies a run the circuit breaker stopped)\n"
    "  history  list the changes update_limits made (keystonectl limits history --help)\n";

[[noreturn]] void usage_error(const std::string &msg, const char *sub) {
    std::fprintf(stderr, "keystonectl: %s (see keystonectl limits %s --help)\n", msg.c_str(), sub);
    std::exit(exit_usage);
}

template <typename F>
void parse_options(int argc, char **argv, const struct option *longopts, const char *help,
                   const char *sub, F handler) {
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
        if (ch == 'h') {
            std::fputs(help, stdout);
            std::exit(EXIT_SUCCESS);
        }
        if (ch == '?' || ch == ':')
            std::exit(exit_usage);
        handler(ch, optarg);
    }
    if (optind != argc)
        usage_error(std::string("unexpected argument '") + argv[optind] + "'", sub);
}

std::string su(const std::optional<std::uint64_t> &minutes) {
    if (!minutes)
        return "unset";
    std::string s = std::to_string(*minutes / 60);
    if (*minutes % 60)
        s += "+" + std::to_string(*minutes % 60) + "m";
    return s;
}

std::string settle_text(const AccountPlan &p) {
    std::string out;
    for (const auto &s : p.settlements)
        out += (out.empty() ? "" : ",") + std::to_string(s.allocation_id) + "=" +
               std::to_string(s.final_);
    return out.empty() ? "-" : out;
}

void print_plan(const ClusterPlan &plan, bool all) {
    std::printf("Cluster=%s today=%s: %zu account(s): %d to update (%d limits to write, %d finals "
                "to settle), %d unchanged, %d errors\n",
                plan.cluster.c_str(), day_text(plan.today).c_str(), plan.plans.size(),
                plan.count(LimitAction::update), plan.limits_to_write(), plan.settlements(),
                plan.count(LimitAction::keep), plan.count(LimitAction::error));
    std::printf("  %-24s %-7s %12s %12s %12s  %s\n", "ACCOUNT", "ACTION", "LIMIT_SU", "USAGE_SU",
                "NEW_SU", "SETTLE(allocation=final)");
    for (const auto &p : plan.plans) {
        if (!all && (p.action == LimitAction::keep || p.action == LimitAction::skip))
            continue;
        if (p.action == LimitAction::error) {
            std::printf("  %-24s %-7s %s\n", p.account.c_str(), "error", p.error.c_str());
            continue;
        }
        if (p.action == LimitAction::skip) {
            std::printf("  %-24s %-7s %12s %12s %12s  %s\n", p.account.c_str(), "skip",
                        su(p.old_minutes).c_str(), "-", "-",
                        p.account == "root" ? "root" : "no team with this slug");
            continue;
        }
        std::printf("  %-24s %-7s %12s %12lld %12lld  %s%s\n", p.account.c_str(),
                    action_name(p.action), su(p.old_minutes).c_str(),
                    static_cast<long long>(p.total_usage), static_cast<long long>(p.new_limit),
                    settle_text(p).c_str(), p.locked ? " (inactive team: locked at usage)" : "");
        for (const auto &w : p.warnings)
            std::printf("      warning: %s\n", w.c_str());
    }
    if (plan.breaker.tripped) {
        std::printf("  circuit breaker: update_limits would NOT apply this plan (apply it with "
                    "keystonectl limits apply --cluster %s --force):\n",
                    plan.cluster.c_str());
        for (const auto &r : plan.breaker.reasons)
            std::printf("    %s\n", r.c_str());
    }
    for (const auto &p : plan.prerequisites)
        if (!p.ok)
            std::printf("  Slurm setting: %s\n", p.advice.c_str());
}

int cmd_plan(int argc, char **argv, const std::function<Config()> &load_config) {
    static const struct option longopts[] = {{"cluster", required_argument, nullptr, 'c'},
                                             {"all", no_argument, nullptr, 'a'},
                                             {"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    std::optional<std::string> only;
    bool all = false, as_json = false;
    parse_options(argc, argv, longopts, plan_help, "plan", [&](int ch, const char *arg) {
        if (ch == 'c')
            only = arg;
        else if (ch == 'a')
            all = true;
        else if (ch == 'j')
            as_json = true;
    });
    const Config config = load_config();
    int status = EXIT_SUCCESS;
    JsonPtr out(json_object());
    try {
        Database db(db_conninfo(config), "keystonectl");
        pqxx::connection &conn = db.conn();
        check_schema(conn);
        std::vector<std::string> clusters;
        if (only) {
            clusters.push_back(*only);
        } else {
            pqxx::read_transaction tx(conn);
            clusters = enabled_clusters(tx);
        }
        if (clusters.empty() && !as_json)
            std::printf("no enabled cluster in allocations_cluster\n");
        SlurmdbConnection slurmdb(config.slurm_conf, config.slurmdb_timeout);
        const Day today = local_day(std::time(nullptr));
        for (const auto &cluster : clusters) {
            try {
                pqxx::work tx(conn); // rolled back: plan reads only
                const ClusterPlan plan = plan_cluster(tx, slurmdb, config, cluster, today, false);
                if (plan.count(LimitAction::error) > 0)
                    status = EXIT_FAILURE;
                if (as_json) {
                    json_t *c = json_object();
                    plan_summary(plan, c, plan.plans.size());
                    json_t *accounts = json_array();
                    for (const auto &p : plan.plans) {
                        json_t *a = json_object();
                        json_object_set_new(a, "account", json_string(p.account.c_str()));
                        json_object_set_new(a, "action", json_string(action_name(p.action)));
                        json_object_set_new(a, "team_id",
                                            p.team_id ? json_integer(*p.team_id) : json_null());
                        json_object_set_new(
                            a, "old_minutes",
                            p.old_minutes ? json_integer(static_cast<json_int_t>(*p.old_minutes))
                                          : json_null());
                        json_object_set_new(a, "new_minutes",
                                            json_integer(static_cast<json_int_t>(p.new_minutes)));
                        json_object_set_new(a, "new_limit_su", json_integer(p.new_limit));
                        json_object_set_new(a, "usage_su", json_integer(p.total_usage));
                        json_object_set_new(a, "limit_changes", json_boolean(p.limit_changes));
                        json_object_set_new(a, "locked", json_boolean(p.locked));
                        json_t *s = json_array();
                        for (const auto &st : p.settlements) {
                            json_t *o = json_object();
                            json_object_set_new(o, "allocation", json_integer(st.allocation_id));
                            json_object_set_new(o, "final", json_integer(st.final_));
                            json_array_append_new(s, o);
                        }
                        json_object_set_new(a, "settlements", s);
                        json_object_set_new(a, "reason", json_string(p.reason.c_str()));
                        json_object_set_new(a, "error",
                                            p.error.empty() ? json_null()
                                                            : json_string(p.error.c_str()));
                        json_array_append_new(accounts, a);
                    }
                    json_object_set_new(c, "plans", accounts);
                    json_object_set_new(out.get(), cluster.c_str(), c);
                } else {
                    print_plan(plan, all);
                }
            } catch (const pqxx::broken_connection &) {
                throw;
            } catch (const std::exception &e) {
                status = EXIT_FAILURE;
                if (as_json) {
                    json_t *c = json_object();
                    json_object_set_new(c, "error", json_string(one_line(e).c_str()));
                    json_object_set_new(out.get(), cluster.c_str(), c);
                } else {
                    std::printf("Cluster=%s: cannot plan: %s\n", cluster.c_str(),
                                one_line(e).c_str());
                }
            }
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", one_line(e).c_str());
        return EXIT_FAILURE;
    }
    if (as_json)
        std::printf("%s\n", json_text(out.get()).c_str());
    return status;
}

int cmd_history(int argc, char **argv, const std::function<Config()> &load_config) {
    static const struct option longopts[] = {{"cluster", required_argument, nullptr, 'c'},
                                             {"account", required_argument, nullptr, 'a'},
                                             {"since", required_argument, nullptr, 's'},
                                             {"limit", required_argument, nullptr, 'l'},
                                             {"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    std::optional<std::string> cluster, account, since_text;
    int limit = 50;
    bool as_json = false;
    parse_options(argc, argv, longopts, history_help, "history", [&](int ch, const char *arg) {
        if (ch == 'c')
            cluster = arg;
        else if (ch == 'a')
            account = arg;
        else if (ch == 's')
            since_text = arg;
        else if (ch == 'j')
            as_json = true;
        else if (ch == 'l') {
            char *end = nullptr;
            const long v = std::strtol(arg, &end, 10);
            if (!*arg || *end || v < 1 || v > 1000000)
                usage_error(std::string("--limit: not a number from 1 to 1000000: '") + arg + "'",
                            "history");
            limit = static_cast<int>(v);
        }
    });
    std::optional<std::time_t> since;
    if (since_text) {
        try {
            parse_user_time(*since_text, std::time(nullptr));
        } catch (const std::exception &e) {
            usage_error(std::string("--since: ") + e.what(), "history");
        }
    }
    const Config config = load_config();
    if (since_text)
        since = parse_user_time(*since_text, std::time(nullptr));
    try {
        Database db(db_conninfo(config), "keystonectl");
        pqxx::connection &conn = db.conn();
        check_schema(conn);
        pqxx::read_transaction tx(conn);
        const std::optional<std::int64_t> since_s =
            since ? std::optional<std::int64_t>(static_cast<std::int64_t>(*since)) : std::nullopt;
        auto rows = tx.exec_params(
            "SELECT to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "cluster, account, old_minutes, new_minutes, usage_minutes, limit_written, locked, "
            "settlements::text, reason, forced, COALESCE(task_id, '') "
            "FROM keystone_slurm.limit_change "
            "WHERE ($1::text IS NULL OR cluster = $1) AND ($2::text IS NULL OR account = $2) "
            "AND ($3::bigint IS NULL OR changed_at >= to_timestamp($3)) "
            "ORDER BY changed_at DESC, id DESC LIMIT $4",
            cluster, account, since_s, limit);
        JsonPtr arr(json_array());
        if (!as_json)
            std::printf("%-20s %-10s %-24s %12s %12s %12s  %s\n", "TIME", "CLUSTER", "ACCOUNT",
                        "OLD_SU", "NEW_SU", "USAGE_SU", "REASON");
        for (const auto &r : rows) {
            const std::optional<std::uint64_t> old_m =
                r[3].is_null() ? std::nullopt
                               : std::optional<std::uint64_t>(r[3].as<std::uint64_t>());
            const std::uint64_t new_m = r[4].as<std::uint64_t>();
            const std::uint64_t use_m = r[5].as<std::uint64_t>();
            if (as_json) {
                json_t *o = json_object();
                json_object_set_new(o, "time", json_string(r[0].c_str()));
                json_object_set_new(o, "cluster", json_string(r[1].c_str()));
                json_object_set_new(o, "account", json_string(r[2].c_str()));
                json_object_set_new(o, "old_minutes",
                                    old_m ? json_integer(static_cast<json_int_t>(*old_m))
                                          : json_null());
                json_object_set_new(o, "new_minutes", json_integer(static_cast<json_int_t>(new_m)));
                json_object_set_new(o, "usage_minutes",
                                    json_integer(static_cast<json_int_t>(use_m)));
                json_object_set_new(o, "limit_written", json_boolean(r[6].as<bool>()));
                json_object_set_new(o, "locked", json_boolean(r[7].as<bool>()));
                json_error_t err;
                json_t *s = json_loads(r[8].c_str(), 0, &err);
                json_object_set_new(o, "settlements", s ? s : json_array());
                json_object_set_new(o, "reason", json_string(r[9].c_str()));
                json_object_set_new(o, "forced", json_boolean(r[10].as<bool>()));
                json_object_set_new(o, "task_id", json_string(r[11].c_str()));
                json_array_append_new(arr.get(), o);
            } else {
                std::string reason = r[9].as<std::string>();
                if (r[10].as<bool>())
                    reason += " (forced)";
                if (std::strcmp(r[8].c_str(), "[]") != 0)
                    reason += "; settled " + r[8].as<std::string>();
                std::printf("%-20s %-10s %-24s %12s %12s %12s  %s\n", r[0].c_str(), r[1].c_str(),
                            r[2].c_str(), su(old_m).c_str(), su(new_m).c_str(), su(use_m).c_str(),
                            reason.c_str());
            }
        }
        if (as_json)
            std::printf("%s\n", json_text(arr.get()).c_str());
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", one_line(e).c_str());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

} // namespace

int limits_command(int argc, char **argv, const std::function<Config()> &load_config) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        std::fputs(limits_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? exit_usage : EXIT_SUCCESS;
    }
    const std::string sub = argv[1];
    if (sub == "plan")
        return cmd_plan(argc - 1, argv + 1, load_config);
    if (sub == "history")
        return cmd_history(argc - 1, argv + 1, load_config);
    std::fprintf(stderr, "keystonectl: limits: unknown subcommand '%s'\n%s", sub.c_str(),
                 limits_help);
    return exit_usage;
}

} // namespace keystone
