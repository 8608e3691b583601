// SPDX-License-Identifier: GPL-2.0-or-later
// Task apps.allocations.tasks.jobstats.slurm_update_job_stats: reconciles keystone_slurm.job
// with slurmdbd, one sub-run per cluster (Keystone's slurm_update_job_stats_for_cluster).
//
// Keystone ran `sacct` for "midnight until now" and overwrote rows keyed on the job id alone
// (spec §5). Here each cluster reads slurmdbd through the slurmdb API from its watermark minus
// KEYSTONED_JOBS_OVERLAP (first run: KEYSTONED_JOBS_FIRST_WINDOW back) until the run's "now",
// upserts the jobs with the ingest's key (cluster, job id, submit), and moves the watermark to
// "now" in the same transaction, so a failed run reads the same window again next time. Jobs
// the jobcomp/keystone plugin never delivered are inserted ("filled_in"); running jobs are
// recorded as running and updated by later runs until they end.
#include "tasks/task.hpp"

#include "db.hpp"
#include "error.hpp"
#include "jobs.hpp"
#include "log.hpp"
#include "slurmdb.hpp"

#include <chrono>
#include <memory>
#include <set>
#include <tuple>

namespace keystone {

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Per-run totals over the clusters.
struct Totals {
    long long read = 0, filled_in = 0, updated = 0, unchanged = 0, running = 0, pending = 0;
};

// The default window of sacct (eligible jobs) misses jobs cancelled before they were ever
// eligible (held, or waiting on a dependency); the plugin records those, so the reconciliation
// reads them too: the cancelled jobs that ended in the window. A job in both reads is taken
// once, from the first.
std::vector<JobRow> read_cluster(SlurmdbConnection &db, const std::string &cluster,
                                 std::int64_t since, std::int64_t until) {
    std::vector<JobRow> rows = db.read_jobs(cluster, since, until);
    JobQuery cancelled;
    cancelled.cluster = cluster;
    cancelled.since = since;
    cancelled.until = until;
    cancelled.cancelled_only = true;
    std::set<std::tuple<std::int64_t, std::int64_t>> seen;
    for (const auto &r : rows)
        seen.emplace(r.job_id, r.submit);
    for (auto &r : db.read_jobs(cancelled))
        if (seen.emplace(r.job_id, r.submit).second)
            rows.push_back(std::move(r));
    return rows;
}

void reconcile_cluster(RunContext &ctx, std::unique_ptr<SlurmdbConnection> &db,
                       const std::string &cluster, bool in_keystone, json_t *sub, Totals &totals) {
    const bool dry_run = ctx.options.dry_run;
    const std::int64_t now = static_cast<std::int64_t>(Clock::to_time_t(ctx.now));
    json_object_set_new(sub, "dry_run", json_boolean(dry_run));
    if (!in_keystone)
        // Keystone's subtask failed the same way (Cluster.objects.get raised).
        throw Error("Cluster=" + cluster + " is not in allocations_cluster");
    ctx.check_stop();

    std::optional<std::int64_t> watermark;
    {
        pqxx::read_transaction tx(ctx.conn);
        auto res = tx.exec_params("SELECT EXTRACT(EPOCH FROM reconciled_to)::bigint "
                                  "FROM keystone_slurm.job_watermark WHERE cluster = $1",
                                  cluster);
        if (!res.empty())
            watermark = res[0][0].as<std::int64_t>();
    }
    std::int64_t since = ctx.options.since ? *ctx.options.since
                         : watermark       ? *watermark - ctx.config.jobs_overlap
                                           : now - ctx.config.jobs_first_window;
    const std::int64_t until = now;
    if (since >= until && ctx.options.since)
        throw Error("Cluster=" + cluster + ": --since " + iso_utc(since) +
                    " is not before the run's time " + iso_utc(until));
    if (since >= until) {
        // The watermark is ahead of this host's clock (the clock was set back, or another
        // host's keystoned ran last): read the overlap before now; the watermark stays.
        log_warning("slurm_update_job_stats: Cluster=%s: the watermark %s is ahead of the clock "
                    "(%s); reading the last %d s",
                    cluster.c_str(), iso_utc(*watermark).c_str(), iso_utc(until).c_str(),
                    std::max(ctx.config.jobs_overlap, 60));
        since = until - std::max(ctx.config.jobs_overlap, 60);
    }
    json_object_set_new(sub, "since", json_string(iso_utc(since).c_str()));
    json_object_set_new(sub, "until", json_string(iso_utc(until).c_str()));

    const auto t_read = std::chrono::steady_clock::now();
    if (!db)
        db = std::make_unique<SlurmdbConnection>(ctx.config.slurm_conf, ctx.config.slurmdb_timeout);
    std::vector<JobRow> rows = read_cluster(*db, cluster, since, until);
    // slurmdbd answers an unknown cluster with no jobs: ask only then (one request less).
    if (rows.empty() && !db->cluster_exists(cluster))
        throw SlurmError("slurmdbd does not know Cluster=" + cluster + " (sacctmgr show cluster; " +
                         db->where() + ")");
    const double read_ms = ms_since(t_read);
    long long running = 0, pending = 0;
    for (const auto &r : rows) {
        if (r.state == "RUNNING")
            ++running;
        else if (r.state == "PENDING")
            ++pending;
    }
    ctx.check_stop();

    // The watermark only moves forward, and only over a window that starts at or before it:
    // a --since later than the watermark would otherwise skip what lies between.
    const bool move = !watermark || since <= *watermark;
    UpsertCounts n;
    const auto t_write = std::chrono::steady_clock::now();
    {
        pqxx::work tx(ctx.conn);
        n = upsert_jobs(tx, rows, JobSource::slurmdbd);
        if (move)
            tx.exec_params0(
                "INSERT INTO keystone_slurm.job_watermark (cluster, reconciled_to, updated_at) "
                "VALUES ($1, to_timestamp($2), now()) ON CONFLICT (cluster) DO UPDATE SET "
                "reconciled_to = GREATEST(keystone_slurm.job_watermark.reconciled_to, "
                "EXCLUDED.reconciled_to), updated_at = EXCLUDED.updated_at",
                cluster, until);
        // A dry run does the same work and rolls it back: its counts are exact, and nothing
        // is kept.
        if (dry_run)
            tx.abort();
        else
            tx.commit();
    }
    const double write_ms = ms_since(t_write);

    json_object_set_new(sub, "read", json_integer(static_cast<json_int_t>(rows.size())));
    json_object_set_new(sub, "filled_in", json_integer(n.inserted));
    json_object_set_new(sub, "updated", json_integer(n.updated));
    json_object_set_new(sub, "unchanged", json_integer(n.unchanged));
    json_object_set_new(sub, "running", json_integer(running));
    json_object_set_new(sub, "pending", json_integer(pending));
    json_object_set_new(sub, "slurmdbd_ms", json_real(read_ms));
    json_object_set_new(sub, "write_ms", json_real(write_ms));
    const std::int64_t new_mark = move ? std::max(until, watermark.value_or(until)) : *watermark;
    json_object_set_new(sub, "watermark",
                        dry_run
                            ? (watermark ? json_string(iso_utc(*watermark).c_str()) : json_null())
                            : json_string(iso_utc(new_mark).c_str()));
    totals.read += static_cast<long long>(rows.size());
    totals.filled_in += n.inserted;
    totals.updated += n.updated;
    totals.unchanged += n.unchanged;
    totals.running += running;
    totals.pending += pending;
    log_info("slurm_update_job_stats: Cluster=%s [%s, %s): %zu jobs in slurmdbd: %s%lld filled "
             "in, %lld updated, %lld unchanged; %lld running, %lld pending",
             cluster.c_str(), iso_utc(since).c_str(), iso_utc(until).c_str(), rows.size(),
             dry_run ? "(dry run, nothing kept) " : "", static_cast<long long>(n.inserted),
             static_cast<long long>(n.updated), static_cast<long long>(n.unchanged), running,
             pending);
}

} // namespace

void run_slurm_update_job_stats(RunContext &ctx) {
    // The clusters, chosen by the runner (which holds their locks): the enabled ones this
    // keystoned serves (and, scheduled, claimed), or the one asked for (enabled or not, as
    // Keystone's subtask did not check; one that is not in allocations_cluster fails its sub-run).
    const std::vector<std::string> &clusters = ctx.options.clusters;
    bool in_keystone = true;
    if (ctx.options.cluster) {
        pqxx::read_transaction tx(ctx.conn);
        in_keystone = !tx.exec_params("SELECT 1 FROM allocations_cluster WHERE name = $1",
                                      *ctx.options.cluster)
                           .empty();
    }
    json_t *summary = ctx.summary();
    json_object_set_new(summary, "dry_run", json_boolean(ctx.options.dry_run));
    if (clusters.empty())
        log_info("slurm_update_job_stats: no cluster to run: none enabled in allocations_cluster, "
                 "or none of them in KEYSTONED_CLUSTERS");

    // One slurmdbd connection for the run, opened when the first cluster needs it.
    std::unique_ptr<SlurmdbConnection> db;
    Totals totals;
    auto set_totals = [&] {
        json_object_set_new(summary, "read", json_integer(totals.read));
        json_object_set_new(summary, "filled_in", json_integer(totals.filled_in));
        json_object_set_new(summary, "updated", json_integer(totals.updated));
        json_object_set_new(summary, "unchanged", json_integer(totals.unchanged));
        json_object_set_new(summary, "running", json_integer(totals.running));
        json_object_set_new(summary, "pending", json_integer(totals.pending));
    };
    set_totals(); // first in the summary, before the per-cluster details
    try {
        for (const auto &cluster : clusters) {
            ctx.check_stop();
            ctx.run_for_cluster(cluster, [&](json_t *sub) {
                reconcile_cluster(ctx, db, cluster, in_keystone, sub, totals);
            });
        }
    } catch (...) {
        set_totals(); // what was done before the run was stopped
        throw;
    }
    set_totals();
}

} // namespace keystone
