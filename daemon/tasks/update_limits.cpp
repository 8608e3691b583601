// SPDX-License-Identifier: GPL-2.0-or-later
// Task apps.allocations.tasks.limits.update_limits: sets each Slurm account's GrpTRESMins
// billing limit from Keystone's allocations and settles expired allocations (final), one sub-run
// per enabled cluster (Keystone's update_limits_for_cluster), spec §4.
//
// Unlike Keystone's task it talks to Slurm only through the slurmdb C API (no sacctmgr, no
// sshare), writes only the limits that change with one slurmdbd commit per cluster, writes
// nothing for a cluster it cannot read completely, records every change in
// keystone_slurm.limit_change, and stops (circuit breaker) before a mass lowering of limits or
// an active team's limit set to 0 unless run with --force (keystonectl limits apply --force).
#include "tasks/task.hpp"

#include "error.hpp"
#include "limits_run.hpp"
#include "log.hpp"
#include "notify.hpp"
#include "slurmdb.hpp"

#include <chrono>
#include <memory>

namespace keystone {

namespace {

struct Totals {
    long long accounts = 0, updated = 0, limits_written = 0, finals_written = 0, unchanged = 0,
              account_errors = 0;
};

std::string subtask_id(RunContext &ctx, const std::string &cluster) {
    json_t *subtasks = json_object_get(ctx.summary(), "subtasks");
    json_t *id = subtasks ? json_object_get(subtasks, cluster.c_str()) : nullptr;
    return json_is_string(id) ? json_string_value(id) : ctx.record().task_id;
}

void limits_cluster(RunContext &ctx, std::unique_ptr<SlurmdbConnection> &db,
                    const std::string &cluster, json_t *sub, Totals &totals) {
    const bool dry_run = ctx.options.dry_run;
    const Day today = local_day(Clock::to_time_t(ctx.now));
    json_object_set_new(sub, "dry_run", json_boolean(dry_run));
    ctx.check_stop();
    const auto t0 = std::chrono::steady_clock::now();
    if (!db)
        db = std::make_unique<SlurmdbConnection>(ctx.config.slurm_conf, ctx.config.slurmdb_timeout);

    pqxx::work tx(ctx.conn);
    const ClusterPlan plan = plan_cluster(tx, *db, ctx.config, cluster, today, !dry_run);
    plan_summary(plan, sub, 100);
    totals.accounts += static_cast<long long>(plan.plans.size());
    totals.unchanged += plan.count(LimitAction::keep);
    totals.account_errors += plan.count(LimitAction::error);
    ctx.check_stop();

    const bool forced = plan.breaker.tripped && ctx.options.force;
    if (plan.breaker.tripped && !ctx.options.force && !dry_run) {
        std::string list;
        for (const auto &r : plan.breaker.reasons)
            list += (list.empty() ? "" : "; ") + r;
        throw Error("Cluster=" + cluster + ": circuit breaker: nothing applied: " + list +
                    ". Check with `keystonectl limits plan --cluster " + cluster +
                    "`, then apply with `keystonectl limits apply --cluster " + cluster +
                    " --force`");
    }
    if (forced)
        log_warning("update_limits: Cluster=%s: applying over the circuit breaker (--force): %zu "
                    "reason(s)",
                    cluster.c_str(), plan.breaker.reasons.size());
    if (dry_run) {
        tx.abort();
    } else {
        const ApplyCounts n =
            apply_cluster_plan(tx, *db, plan, subtask_id(ctx, cluster), ctx.now, forced);
        try {
            tx.commit();
        } catch (...) {
            // slurmdbd already has the new limits; the next run finds them right and settles
            // the finals again (new limits depend only on Keystone's values).
            log_error("update_limits: Cluster=%s: %d limit(s) were written to slurmdbd but the "
                      "finals and audit rows could not be committed; the next run settles them",
                      cluster.c_str(), n.limits_written);
            throw;
        }
        totals.updated += plan.count(LimitAction::update);
        totals.limits_written += n.limits_written;
        totals.finals_written += n.finals_written;
        json_object_set_new(sub, "limits_written", json_integer(n.limits_written));
        json_object_set_new(sub, "finals_written", json_integer(n.finals_written));
        json_object_set_new(sub, "forced", json_boolean(forced));
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    json_object_set_new(sub, "ms", json_real(ms));
    log_info("update_limits: Cluster=%s: %zu accounts, %d to update (%d limits, %d finals), %d "
             "unchanged, %d without a team, %d errors%s in %.0f ms",
             cluster.c_str(), plan.plans.size(), plan.count(LimitAction::update),
             plan.limits_to_write(), plan.settlements(), plan.count(LimitAction::keep),
             static_cast<int>(json_integer_value(json_object_get(sub, "no_team"))),
             plan.count(LimitAction::error), dry_run ? " (dry run: nothing written)" : "", ms);

    // Accounts that could not be computed were left as they were; the sub-run is a failure that
    // names them (the others were applied).
    if (plan.count(LimitAction::error) > 0) {
        std::string list;
        int shown = 0;
        for (const auto &p : plan.plans)
            if (p.action == LimitAction::error && shown++ < 20)
                list += (list.empty() ? "" : "; ") + p.account + ": " + p.error;
        throw Error("Cluster=" + cluster + ": " + std::to_string(plan.count(LimitAction::error)) +
                    " account(s) left unchanged: " + list);
    }
}

} // namespace

void run_update_limits(RunContext &ctx) {
    // --cluster's one, or the enabled clusters this keystoned serves and (scheduled) claimed:
    // the runner chose them and holds their locks.
    const std::vector<std::string> &clusters = ctx.options.clusters;
    json_t *summary = ctx.summary();
    json_object_set_new(summary, "dry_run", json_boolean(ctx.options.dry_run));
    json_object_set_new(summary, "today",
                        json_string(day_text(local_day(Clock::to_time_t(ctx.now))).c_str()));
    if (clusters.empty())
        log_info("update_limits: no cluster to run: none enabled in allocations_cluster, or none "
                 "of them in KEYSTONED_CLUSTERS");

    std::unique_ptr<SlurmdbConnection> db;
    Totals totals;
    auto set_totals = [&] {
        json_object_set_new(summary, "accounts", json_integer(totals.accounts));
        json_object_set_new(summary, "updated", json_integer(totals.updated));
        json_object_set_new(summary, "limits_written", json_integer(totals.limits_written));
        json_object_set_new(summary, "finals_written", json_integer(totals.finals_written));
        json_object_set_new(summary, "unchanged", json_integer(totals.unchanged));
        json_object_set_new(summary, "account_errors", json_integer(totals.account_errors));
    };
    set_totals();
    try {
        for (const auto &cluster : clusters) {
            ctx.check_stop();
            ctx.run_for_cluster(
                cluster, [&](json_t *sub) { limits_cluster(ctx, db, cluster, sub, totals); });
        }
    } catch (...) {
        set_totals();
        throw;
    }
    set_totals();
}

} // namespace keystone
