// SPDX-License-Identifier: GPL-2.0-or-later
// One cluster's update_limits pass (see limits_run.hpp).
#include "limits_run.hpp"

#include "clusters.hpp"
#include "db.hpp"
#include "error.hpp"
#include "log.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace keystone {

namespace {

std::optional<Day> day_field(const pqxx::field &f) {
    if (f.is_null())
        return std::nullopt;
    return f.as<long>();
}

std::optional<std::int64_t> int_field(const pqxx::field &f) {
    if (f.is_null())
        return std::nullopt;
    return f.as<std::int64_t>();
}

// Postgres text[] literal of names (bound as one parameter, never spliced into SQL).
std::string text_array(const std::vector<std::string> &items) {
    std::string out = "{";
    for (size_t i = 0; i < items.size(); ++i) {
        if (i)
            out += ',';
        out += '"';
        for (char c : items[i]) {
            if (c == '"' || c == '\\')
                out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

std::string su_text(const std::optional<std::uint64_t> &minutes) {
    if (!minutes)
        return "unset";
    return std::to_string(*minutes / 60) + " SU";
}

} // namespace

const char *action_name(LimitAction a) {
    switch (a) {
    case LimitAction::skip:
        return "skip";
    case LimitAction::error:
        return "error";
    case LimitAction::keep:
        return "keep";
    case LimitAction::update:
        return "update";
    }
    return "?";
}

int ClusterPlan::count(LimitAction a) const {
    return static_cast<int>(std::count_if(plans.begin(), plans.end(),
                                          [a](const AccountPlan &p) { return p.action == a; }));
}

int ClusterPlan::limits_to_write() const {
    return static_cast<int>(std::count_if(plans.begin(), plans.end(), [](const AccountPlan &p) {
        return p.action == LimitAction::update && p.limit_changes;
    }));
}

int ClusterPlan::settlements() const {
    int n = 0;
    for (const auto &p : plans)
        if (p.action == LimitAction::update)
            n += static_cast<int>(p.settlements.size());
    return n;
}

ClusterPlan plan_cluster(pqxx::transaction_base &tx, SlurmdbConnection &slurmdb,
                         const Config &config, const std::string &cluster, Day today,
                         bool lock_rows) {
    ClusterPlan out;
    out.cluster = cluster;
    out.today = today;

    auto crow = tx.exec_params("SELECT id FROM allocations_cluster WHERE name = $1", cluster);
    if (crow.empty())
        // Keystone's subtask logged "cluster not found" and returned; asking for a cluster
        // that is not there is an error here.
        throw Error("Cluster=" + cluster + " is not in allocations_cluster");
    out.cluster_id = crow[0][0].as<std::int64_t>();

    // Slurm first: the settings, the accounts with their limits, the usage. Any failure
    // throws before a single value is planned.
    out.prerequisites =
        check_limit_prerequisites(config.slurm_conf, cluster, config.slurmdb_timeout);
    for (const auto &p : out.prerequisites)
        if (!p.ok)
            log_warning("update_limits: Cluster=%s: %s", cluster.c_str(), p.advice.c_str());
    std::vector<AccountLimit> accounts = slurmdb.read_root_accounts(cluster);
    const std::map<std::string, std::uint64_t> usage =
        read_account_usage(config.slurm_conf, cluster, config.slurmdb_timeout);
    std::sort(accounts.begin(), accounts.end(),
              [](const AccountLimit &a, const AccountLimit &b) { return a.account < b.account; });

    // Keystone's teams whose slug is an account name (exact, case-sensitive), and their
    // approved allocations on this cluster.
    std::vector<std::string> names;
    for (const auto &a : accounts)
        names.push_back(a.account);
    struct Team {
        std::int64_t id;
        std::string name;
        bool active;
    };
    std::map<std::string, Team> teams; // slug -> team
    for (const auto &row : tx.exec_params(
             "SELECT slug, id, name, is_active FROM users_team WHERE slug = ANY($1::text[])",
             text_array(names)))
        teams.emplace(row[0].as<std::string>(),
                      Team{row[1].as<std::int64_t>(), row[2].as<std::string>(), row[3].as<bool>()});
    std::vector<std::int64_t> team_ids;
    for (const auto &[slug, t] : teams)
        team_ids.push_back(t.id);
    std::string ids = "{";
    for (size_t i = 0; i < team_ids.size(); ++i)
        ids += (i ? "," : "") + std::to_string(team_ids[i]);
    ids += "}";
    std::map<std::int64_t, std::vector<LimitAllocation>> allocations; // team id -> rows
    const std::string alloc_sql =
        std::string("SELECT r.team_id, a.id, r.id, a.awarded, a.final, "
                    "r.active - DATE '1970-01-01', r.expire - DATE '1970-01-01' "
                    "FROM allocations_resourceallocation a "
                    "JOIN allocations_allocationrequest r ON r.id = a.request_id "
                    "WHERE a.cluster_id = $1 AND r.status = 'AP' AND r.team_id = ANY($2::bigint[]) "
                    "ORDER BY a.id") +
        (lock_rows ? " FOR UPDATE OF a" : "");
    for (const auto &row : tx.exec_params(alloc_sql, out.cluster_id, ids)) {
        LimitAllocation a;
        a.id = row[1].as<std::int64_t>();
        a.request_id = row[2].as<std::int64_t>();
        a.awarded = int_field(row[3]);
        a.final_ = int_field(row[4]);
        a.active = day_field(row[5]);
        a.expire = day_field(row[6]);
        allocations[row[0].as<std::int64_t>()].push_back(a);
    }

    for (const auto &acct : accounts) {
        LimitAccount in;
        in.account = acct.account;
        in.limit_minutes = acct.billing_minutes;
        auto t = teams.find(acct.account);
        if (t != teams.end()) {
            in.team_id = t->second.id;
            in.team_name = t->second.name;
            in.team_active = t->second.active;
            in.allocations = allocations[t->second.id];
        }
        auto u = usage.find(acct.account);
        if (u != usage.end())
            in.usage_minutes = u->second;
        AccountPlan plan = plan_account(in, today);
        if (u == usage.end() && plan.action != LimitAction::skip) {
            plan.action = LimitAction::error;
            plan.error = "slurmctld of Cluster=" + cluster +
                         " reports no usage for Account=" + acct.account +
                         " (an account slurmdbd has not pushed to slurmctld yet?); left as it is";
        }
        for (const auto &w : plan.warnings)
            log_warning("update_limits: Cluster=%s: %s", cluster.c_str(), w.c_str());
        out.plans.push_back(std::move(plan));
    }
    BreakerSettings bs;
    bs.max_lower_share = config.limits_max_lower_percent / 100.0;
    bs.min_lowered = config.limits_min_lowered;
    out.breaker = check_breaker(out.plans, bs);
    return out;
}

ApplyCounts apply_cluster_plan(pqxx::transaction_base &tx, SlurmdbConnection &slurmdb,
                               const ClusterPlan &plan, const std::string &task_id, TimePoint now,
                               bool forced) {
    ApplyCounts n;
    const std::int64_t now_s = static_cast<std::int64_t>(Clock::to_time_t(now));
    // PostgreSQL first (inside the caller's transaction, not yet committed): finals, audit.
    for (const auto &p : plan.plans) {
        if (p.action != LimitAction::update)
            continue;
        JsonPtr settled(json_array());
        for (const auto &s : p.settlements) {
            auto r = tx.exec_params("UPDATE allocations_resourceallocation SET final = $2 "
                                    "WHERE id = $1 AND final IS NULL",
                                    s.allocation_id, s.final_);
            if (r.affected_rows() != 1)
                throw Error("Cluster=" + plan.cluster + " Account=" + p.account + ": allocation " +
                            std::to_string(s.allocation_id) +
                            " was settled by someone else during the run; nothing written");
            ++n.finals_written;
            json_t *o = json_object();
            json_object_set_new(o, "allocation", json_integer(s.allocation_id));
            json_object_set_new(o, "request", json_integer(s.request_id));
            json_object_set_new(o, "awarded", json_integer(s.awarded));
            json_object_set_new(o, "final", json_integer(s.final_));
            json_object_set_new(o, "expire", json_string(day_text(s.expire).c_str()));
            json_array_append_new(settled.get(), o);
        }
        const std::optional<std::int64_t> old_minutes =
            p.old_minutes ? std::optional<std::int64_t>(static_cast<std::int64_t>(*p.old_minutes))
                          : std::nullopt;
        const std::optional<std::int64_t> team = p.team_id;
        const std::optional<std::string> tid =
            task_id.empty() ? std::nullopt : std::optional<std::string>(task_id);
        tx.exec_params0(
            "INSERT INTO keystone_slurm.limit_change (task_id, changed_at, cluster, account, "
            "team_id, old_minutes, new_minutes, usage_minutes, limit_written, locked, "
            "settlements, reason, forced) VALUES ($1, to_timestamp($2), $3, $4, $5, $6, $7, $8, "
            "$9, $10, $11::jsonb, $12, $13)",
            tid, now_s, plan.cluster, p.account, team, old_minutes,
            static_cast<std::int64_t>(p.limit_changes ? p.new_minutes
                                                      : p.old_minutes.value_or(p.new_minutes)),
            static_cast<std::int64_t>(p.usage_minutes), p.limit_changes, p.locked,
            json_text(settled.get()), p.reason, forced);
        ++n.audit_rows;
    }

    // Then slurmdbd: every changed limit, one commit. A failure rolls slurmdbd back and
    // throws, so the caller's transaction is aborted too.
    std::vector<const AccountPlan *> writes;
    for (const auto &p : plan.plans)
        if (p.action == LimitAction::update && p.limit_changes)
            writes.push_back(&p);
    if (writes.empty())
        return n;
    try {
        for (const AccountPlan *p : writes) {
            slurmdb.set_billing_minutes(plan.cluster, p->account, p->new_minutes);
            log_info("update_limits: Cluster=%s Account=%s GrpTRESMins billing %s -> %llu min "
                     "(%lld SU)%s: %s",
                     plan.cluster.c_str(), p->account.c_str(),
                     p->old_minutes ? std::to_string(*p->old_minutes).c_str() : "unset",
                     static_cast<unsigned long long>(p->new_minutes),
                     static_cast<long long>(p->new_limit), forced ? " (forced)" : "",
                     p->reason.c_str());
            ++n.limits_written;
        }
        slurmdb.commit(true);
    } catch (...) {
        try {
            slurmdb.commit(false);
        } catch (const std::exception &e) {
            log_error("update_limits: Cluster=%s: rolling back slurmdbd's changes failed: %s",
                      plan.cluster.c_str(), e.what());
        }
        throw;
    }
    return n;
}

int log_limit_prerequisites(const Config &config) {
    int problems = 0;
    try {
        std::vector<std::string> clusters;
        {
            Database db(db_conninfo(config), "keystoned-preflight");
            pqxx::read_transaction tx(db.conn());
            // Only the clusters whose limits this keystoned sets (KEYSTONED_CLUSTERS).
            clusters = served_clusters(tx, config);
        }
        for (const auto &cluster : clusters) {
            try {
                int bad = 0;
                for (const auto &p :
                     check_limit_prerequisites(config.slurm_conf, cluster, config.slurmdb_timeout))
                    if (!p.ok) {
                        ++bad;
                        log_warning("update_limits: Cluster=%s: %s", cluster.c_str(),
                                    p.advice.c_str());
                    }
                if (bad == 0)
                    log_verbose("update_limits: Cluster=%s: the Slurm settings the limits rely "
                                "on are right",
                                cluster.c_str());
                problems += bad;
            } catch (const std::exception &e) {
                ++problems;
                log_warning("update_limits: Cluster=%s: cannot check the Slurm settings the "
                            "limits rely on: %s",
                            cluster.c_str(), one_line(e).c_str());
            }
        }
    } catch (const std::exception &e) {
        ++problems;
        log_warning("update_limits: cannot check the Slurm settings the limits rely on: %s",
                    one_line(e).c_str());
    }
    return problems;
}

void plan_summary(const ClusterPlan &plan, json_t *out, std::size_t max_listed) {
    json_object_set_new(out, "today", json_string(day_text(plan.today).c_str()));
    json_object_set_new(out, "accounts", json_integer(static_cast<json_int_t>(plan.plans.size())));
    json_object_set_new(out, "managed", json_integer(plan.breaker.managed));
    json_object_set_new(out, "unchanged", json_integer(plan.count(LimitAction::keep)));
    json_object_set_new(out, "to_update", json_integer(plan.count(LimitAction::update)));
    json_object_set_new(out, "limits_to_write", json_integer(plan.limits_to_write()));
    json_object_set_new(out, "finals_to_settle", json_integer(plan.settlements()));
    json_object_set_new(out, "lowered", json_integer(plan.breaker.lowered));
    int locked = 0;
    for (const auto &p : plan.plans)
        if (p.action == LimitAction::update && p.locked)
            ++locked;
    json_object_set_new(out, "locked", json_integer(locked));

    JsonPtr no_team(json_array()), errors(json_array()), changes(json_array()),
        warnings(json_array());
    std::size_t n_no_team = 0, n_errors = 0, n_changes = 0, n_warnings = 0;
    for (const auto &p : plan.plans) {
        if (p.action == LimitAction::skip && p.account != "root" && !p.team_id) {
            if (n_no_team++ < max_listed)
                json_array_append_new(no_team.get(), json_string(p.account.c_str()));
        }
        if (p.action == LimitAction::error) {
            if (n_errors++ < max_listed) {
                json_t *o = json_object();
                json_object_set_new(o, "account", json_string(p.account.c_str()));
                json_object_set_new(o, "error", json_string(p.error.c_str()));
                json_array_append_new(errors.get(), o);
            }
        }
        if (p.action == LimitAction::update) {
            if (n_changes++ < max_listed) {
                json_t *o = json_object();
                json_object_set_new(o, "account", json_string(p.account.c_str()));
                json_object_set_new(o, "old", json_string(su_text(p.old_minutes).c_str()));
                json_object_set_new(o, "new",
                                    json_string((std::to_string(p.new_limit) + " SU").c_str()));
                json_object_set_new(o, "usage",
                                    json_string((std::to_string(p.total_usage) + " SU").c_str()));
                json_object_set_new(o, "limit_changes", json_boolean(p.limit_changes));
                json_object_set_new(o, "settled",
                                    json_integer(static_cast<json_int_t>(p.settlements.size())));
                json_object_set_new(o, "reason", json_string(p.reason.c_str()));
                json_array_append_new(changes.get(), o);
            }
        }
        if (p.action != LimitAction::skip || !p.team_id)
            for (const auto &w : p.warnings)
                if (n_warnings++ < max_listed)
                    json_array_append_new(warnings.get(),
                                          json_string((p.account + ": " + w).c_str()));
    }
    json_object_set_new(out, "no_team", json_integer(static_cast<json_int_t>(n_no_team)));
    json_object_set_new(out, "no_team_accounts", no_team.release());
    json_object_set_new(out, "errors", json_integer(static_cast<json_int_t>(n_errors)));
    json_object_set_new(out, "account_errors", errors.release());
    json_object_set_new(out, "changes", changes.release());
    if (n_changes > max_listed)
        json_object_set_new(out, "changes_not_listed",
                            json_integer(static_cast<json_int_t>(n_changes - max_listed)));
    json_object_set_new(out, "warnings", warnings.release());
    JsonPtr prereq(json_array());
    for (const auto &p : plan.prerequisites)
        if (!p.ok)
            json_array_append_new(prereq.get(), json_string(p.advice.c_str()));
    json_object_set_new(out, "slurm_settings", prereq.release());
    json_t *b = json_object();
    json_object_set_new(b, "tripped", json_boolean(plan.breaker.tripped));
    JsonPtr reasons(json_array());
    for (const auto &r : plan.breaker.reasons)
        json_array_append_new(reasons.get(), json_string(r.c_str()));
    json_object_set_new(b, "reasons", reasons.release());
    json_object_set_new(out, "breaker", b);
}

} // namespace keystone
