// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of a single task run (see runner.hpp).
#include "runner.hpp"

#include "clusters.hpp"
#include "error.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "migrate.hpp"
#include "task_log.hpp"

#include <exception>
#include <functional>
#include <vector>

namespace keystone {

namespace {

constexpr int lock_class = 0x4b53; // "KS": the first key of every keystone-slurm advisory lock

// Releases the task's advisory lock; if that fails, dropping the connection releases it too.
void unlock(Database &db, pqxx::connection &conn, int key) noexcept
{
    try {
        pqxx::nontransaction tx(conn);
        tx.exec_params("SELECT pg_advisory_unlock($1, $2)", lock_class, key);
    } catch (...) {
        db.reset();
    }
}

void set_phase(std::atomic<int> *phase, RunPhase p)
{
    if (phase)
        phase->store(static_cast<int>(p));
}

bool try_lock(pqxx::connection &conn, int key)
{
    pqxx::nontransaction tx(conn);
    return tx.exec_params1("SELECT pg_try_advisory_lock($1, $2)", lock_class, key)[0].as<bool>();
}

// A lock this run holds: its scope ("" or a cluster) and key.
struct Held {
    std::string scope;
    int key;
};

enum class ClaimState { won, elsewhere, abandoned };
struct Claim {
    ClaimState state;
    std::string worker; // the claimer, when not won
};

// Claims (task, scope, slot) for the run `task_id`. Must be called holding the scope's lock: a
// claim found without a done mark is then known to have no live claimer (claimers hold the lock
// from before the claim until after the done mark), and with `takeover` it becomes this run's.
// The winner also prunes the scope's claims older than a week (the primary key's index makes
// that a short range scan). Throws what libpqxx throws.
Claim claim_slot(pqxx::connection &conn, const TaskDef &task, const std::string &scope,
                 std::time_t slot, const std::string &worker, const std::string &task_id,
                 bool takeover)
{
    const std::string table = std::string(own_schema) + ".slot_claim";
    const long long at = static_cast<long long>(slot);
    pqxx::work tx(conn);
    auto won = tx.exec_params("INSERT INTO " + table +
                                  " (task_name, scope, slot, worker, claimed_at, task_id) "
                                  "VALUES ($1, $2, to_timestamp($3), $4, now(), $5) "
                                  "ON CONFLICT (task_name, scope, slot) DO NOTHING RETURNING 1",
                              std::string(task.dotted_name), scope, at, worker, task_id);
    if (!won.empty()) {
        tx.exec_params0("DELETE FROM " + table +
                            " WHERE task_name = $1 AND scope = $2 "
                            "AND slot < to_timestamp($3) - interval '7 days'",
                        std::string(task.dotted_name), scope, at);
        tx.commit();
        return {ClaimState::won, worker};
    }
    auto row = tx.exec_params1(
        "SELECT worker, done_at IS NOT NULL, COALESCE(task_id, ''), "
        "to_char(claimed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM " +
            table + " WHERE task_name = $1 AND scope = $2 AND slot = to_timestamp($3)",
        std::string(task.dotted_name), scope, at);
    const std::string claimer = row[0].as<std::string>();
    if (row[1].as<bool>()) {
        tx.commit();
        return {ClaimState::elsewhere, claimer};
    }
    if (!takeover) {
        tx.commit();
        return {ClaimState::abandoned, claimer};
    }
    // The row lock of the UPDATE serialises two takers: the second finds done_at still NULL but
    // the worker changed, and takes nothing.
    auto taken = tx.exec_params("UPDATE " + table +
                                    " SET worker = $4, claimed_at = now(), task_id = $5, "
                                    "takeovers = takeovers + 1 WHERE task_name = $1 AND scope = $2 "
                                    "AND slot = to_timestamp($3) AND done_at IS NULL "
                                    "AND worker = $6 AND COALESCE(task_id, '') = $7 "
                                    "RETURNING 1",
                                std::string(task.dotted_name), scope, at, worker, task_id, claimer,
                                row[2].as<std::string>());
    tx.commit();
    if (taken.empty())
        return {ClaimState::elsewhere, claimer};
    log_warning("task: %s%s%s: took over the slot %s claimed by Worker=%s at %s%s%s: it recorded "
                "no outcome and holds no lock (it died or lost PostgreSQL)",
                task.short_name, scope.empty() ? "" : " Cluster=", scope.c_str(),
                iso_utc(slot).c_str(), claimer.c_str(), row[3].c_str(),
                row[2].as<std::string>().empty() ? "" : " TaskId=", row[2].c_str());
    return {ClaimState::won, worker};
}

// Marks this run's claims of `slot` done. Errors are logged: the claim then looks abandoned and
// another keystoned may run the slot again after its grace time (the run itself is recorded).
void finish_claims(pqxx::connection &conn, const TaskDef &task, const std::vector<Held> &scopes,
                   std::time_t slot, const std::string &task_id) noexcept
{
    try {
        pqxx::work tx(conn);
        for (const auto &h : scopes)
            tx.exec_params0(std::string("UPDATE ") + own_schema +
                                ".slot_claim SET done_at = now() WHERE task_name = $1 "
                                "AND scope = $2 AND slot = to_timestamp($3) AND task_id = $4",
                            std::string(task.dotted_name), h.scope, static_cast<long long>(slot),
                            task_id);
        tx.commit();
    } catch (const std::exception &e) {
        log_error("task: %s TaskId=%s: cannot mark the slot %s done in slot_claim: %s",
                  task.short_name, task_id.c_str(), iso_utc(slot).c_str(), one_line(e).c_str());
    }
}

} // namespace

int task_lock_key(const std::string &dotted_name)
{
    // FNV-1a, 32 bits: stable across builds and hosts, unlike std::hash.
    std::uint32_t h = 2166136261u;
    for (unsigned char ch : dotted_name) {
        h ^= ch;
        h *= 16777619u;
    }
    return static_cast<int>(h & 0x7fffffff);
}

int cluster_lock_key(const std::string &dotted_name, const std::string &cluster)
{
    return task_lock_key(dotted_name + "_for_cluster:" + cluster);
}

bool RunContext::run_for_cluster(const std::string &cluster,
                                 const std::function<void(json_t *)> &body)
{
    const RunRecord &parent = m_record;
    const bool recorded = !options.dry_run && !parent.task_id.empty();
    const std::string name = parent.short_name.empty() ? "task" : parent.short_name;
    JsonPtr sub(json_object());
    json_t *clusters = json_object_get(summary(), "clusters");
    if (!clusters) {
        clusters = json_object();
        json_object_set_new(summary(), "clusters", clusters);
    }
    json_object_set(clusters, cluster.c_str(), sub.get());

    TaskStart start;
    if (recorded) {
        start.task_id = make_uuid4();
        start.task_name = parent.task_name + "_for_cluster";
        start.args = {cluster};
        start.worker = parent.worker;
        // A failure to start the sub-run's record fails the whole run, like any database error
        // outside a unit of work.
        record_start(conn, start, Clock::now());
        json_t *subtasks = json_object_get(summary(), "subtasks");
        if (!subtasks) {
            subtasks = json_object();
            json_object_set_new(summary(), "subtasks", subtasks);
        }
        json_object_set_new(subtasks, cluster.c_str(), json_string(start.task_id.c_str()));
    }
    std::string error;
    bool rethrow = false;
    std::exception_ptr pending;
    const auto metrics_started = std::chrono::steady_clock::now();
    try {
        body(sub.get());
    } catch (const Interrupted &e) {
        error = one_line(e);
        rethrow = true;
        pending = std::current_exception();
    } catch (const std::exception &e) {
        error = one_line(e);
        if (is_connection_error(e) || !conn.is_open()) {
            rethrow = true;
            pending = std::current_exception();
        }
    }
    if (recorded) {
        std::optional<std::string> traceback;
        if (!error.empty())
            traceback = error + "\n";
        try {
            record_finish(conn, start.task_id, error.empty() ? "SUCCESS" : "FAILURE",
                          json_text(sub.get()), traceback, Clock::now());
        } catch (const std::exception &e) {
            // Left STARTED: the next start of keystoned closes it as abandoned.
            log_error("task: %s Cluster=%s TaskId=%s: cannot write the sub-run's outcome: %s",
                      name.c_str(), cluster.c_str(), start.task_id.c_str(), one_line(e).c_str());
            if (!rethrow)
                throw;
        }
    }
    metrics_record_cluster_run(name, cluster, error.empty(), metrics_started, sub.get());
    if (rethrow)
        std::rethrow_exception(pending);
    if (error.empty()) {
        log_verbose("task: %s Cluster=%s%s%s: SUCCESS", name.c_str(), cluster.c_str(),
                    recorded ? " TaskId=" : "", recorded ? start.task_id.c_str() : "");
        return true;
    }
    add_error(name + " Cluster=" + cluster +
              (recorded ? " TaskId=" + start.task_id : std::string()) + ": " + error);
    log_error("task: %s Cluster=%s: FAILURE: %s", name.c_str(), cluster.c_str(), error.c_str());
    return false;
}

namespace {

// run_task without the metrics.
RunOutcome run_task_once(const TaskDef &task, const Config &config, Database &db,
                         const RunOptions &asked, const std::atomic<bool> &stop,
                         std::chrono::seconds connect_wait, std::atomic<int> *phase)
{
    RunOutcome out;
    const auto started = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    };
    const std::string worker = config.worker.empty() ? host_name() : config.worker;
    // The run's own options: the runner fills in the clusters it took.
    RunOptions options = asked;
    // Scheduled: the slot to claim (`has_slot`), seconds since the epoch.
    const bool has_slot = options.slot.has_value();
    const std::time_t slot = has_slot ? Clock::to_time_t(*options.slot) : 0;

    pqxx::connection *conn = nullptr;
    try {
        conn = &db.conn_retry(&stop, connect_wait);
        // After a restart of PostgreSQL the idle connection is dead but looks open: find out now
        // rather than fail the run on its first statement.
        if (!db.alive()) {
            log_info("%s: the database connection was lost while idle: connecting again",
                     task.short_name);
            db.reset();
            conn = &db.conn_retry(&stop, connect_wait);
        }
    } catch (const std::exception &e) {
        out.status = "FAILURE";
        out.error = std::string(task.short_name) + ": " + one_line(e);
        out.result_json = "{}";
        out.seconds = elapsed();
        log_error("%s; the run could not be recorded", out.error.c_str());
        return out;
    }

    std::vector<Held> held; // the locks taken, in scope order; claimed too when scheduled
    auto release = [&] {
        for (const auto &h : held)
            unlock(db, *conn, h.key);
        held.clear();
    };
    auto skipped = [&](const std::string &why) {
        out.status = "SKIPPED";
        out.result_json = "{}";
        out.error = std::string(task.short_name) + ": " + why;
        out.seconds = elapsed();
        return out;
    };
    TaskStart start;
    try {
        std::vector<std::string> scopes{""};
        if (task.per_cluster) {
            if (options.cluster) {
                options.clusters = {*options.cluster};
            } else {
                pqxx::read_transaction tx(*conn);
                options.clusters = served_clusters(tx, config);
            }
            scopes = options.clusters;
            if (scopes.empty() && has_slot && !options.dry_run)
                return skipped("this keystoned serves none of the enabled clusters "
                               "(KEYSTONED_CLUSTERS)");
        } else {
            options.clusters.clear();
        }
        if (!options.dry_run) {
            start.task_id = make_uuid4();
            std::vector<std::string> taken;
            for (const auto &scope : scopes) {
                const int key = scope.empty() ? task_lock_key(task.dotted_name)
                                              : cluster_lock_key(task.dotted_name, scope);
                if (!try_lock(*conn, key)) {
                    out.busy.push_back(scope);
                    continue;
                }
                held.push_back({scope, key});
                if (has_slot) {
                    const Claim c = claim_slot(*conn, task, scope, slot, worker, start.task_id,
                                               options.takeover);
                    if (c.state != ClaimState::won) {
                        unlock(db, *conn, key);
                        held.pop_back();
                        if (c.state == ClaimState::abandoned)
                            out.abandoned.push_back(scope);
                        else
                            out.elsewhere.push_back((scope.empty() ? "" : scope + " ") +
                                                    "Worker=" + c.worker);
                        continue;
                    }
                }
                taken.push_back(scope);
            }
            if (task.per_cluster)
                options.clusters = taken;
            if (taken.empty() && !scopes.empty()) {
                if (!out.busy.empty() && out.elsewhere.empty() && out.abandoned.empty())
                    return skipped(std::string("another run of this task") +
                                   (task.per_cluster ? " for this cluster" : "") +
                                   " is in progress (keystoned or keystonectl on a host using "
                                   "this database)");
                std::string why = "the slot " + iso_utc(slot) + " is";
                if (!out.elsewhere.empty()) {
                    why += " claimed by";
                    for (const auto &e : out.elsewhere)
                        why += " " + e;
                }
                if (!out.abandoned.empty()) {
                    why += std::string(out.elsewhere.empty() ? "" : ";") +
                           " claimed without an outcome by a run that is gone (taken over "
                           "after a grace time) for";
                    for (const auto &a : out.abandoned)
                        why += a.empty() ? std::string(" the task") : " " + a;
                }
                if (!out.busy.empty())
                    why += std::string("; another run is in progress for") +
                           (out.busy[0].empty() ? std::string(" the task") : "");
                for (const auto &b : out.busy)
                    why += b.empty() ? "" : " " + b;
                return skipped(why);
            }
            start.task_name = task.dotted_name;
            if (asked.cluster)
                start.args.push_back(*asked.cluster);
            if (options.scheduled)
                start.periodic_task_name = task.dotted_name;
            start.worker = worker;
            record_start(*conn, start, Clock::now());
            out.task_id = start.task_id;
        }
    } catch (const std::exception &e) {
        out.status = "FAILURE";
        out.task_id.clear();
        out.error = std::string(task.short_name) + ": cannot start the task record: " + one_line(e);
        out.result_json = "{}";
        out.seconds = elapsed();
        log_error("%s", out.error.c_str());
        // Claims taken stay without a done mark: with the locks gone they look abandoned and are
        // run by a later try (this lane's or another keystoned's).
        if (is_connection_error(e))
            db.reset();
        else
            release();
        return out;
    }

    log_info("task: %s started%s%s%s%s TaskId=%s", task.short_name,
             options.dry_run ? " (dry run)" : "", options.scheduled ? " by the schedule" : "",
             has_slot ? " for " : "", has_slot ? iso_utc(slot).c_str() : "",
             out.task_id.empty() ? "-" : out.task_id.c_str());
    set_phase(phase, RunPhase::body);
    RunContext ctx(config, *conn, options, stop, Clock::now());
    ctx.set_record({out.task_id, task.dotted_name, task.short_name, worker});
    if (has_slot)
        json_object_set_new(ctx.summary(), "slot", json_string(iso_utc(slot).c_str()));
    // A run by hand that left clusters out (their lock is held) is not a complete run; a
    // scheduled one tries them again (Scheduler).
    for (const auto &b : has_slot ? std::vector<std::string>() : out.busy)
        ctx.add_error(std::string(task.short_name) + " Cluster=" + b +
                      ": not run: another run of this task for this cluster is in progress");
    std::string fatal;
    bool broken = false;
    try {
        task.run(ctx);
    } catch (const std::exception &e) {
        broken = is_connection_error(e) || !conn->is_open();
        fatal = std::string(task.short_name) + ": " +
                (broken ? "lost the connection to PostgreSQL: " : "") + one_line(e);
    }
    set_phase(phase, RunPhase::recording);

    out.status = fatal.empty() && ctx.errors().empty() ? "SUCCESS" : "FAILURE";
    if (!ctx.errors().empty())
        json_object_set_new(ctx.summary(), "errors",
                            json_integer(static_cast<json_int_t>(ctx.errors().size())));
    out.result_json = json_text(ctx.summary());
    out.error = out.status == "SUCCESS" ? "" : failure_text(fatal, ctx.errors());
    out.seconds = elapsed();

    if (!options.dry_run) {
        std::optional<std::string> traceback;
        if (!out.error.empty())
            traceback = out.error;
        // Two tries: on the run's connection, then on a fresh one (the old one may be broken,
        // or the server may be restarting). If both fail, the next start of keystoned closes
        // the row as abandoned.
        std::vector<Held> claimed = held;
        for (int attempt = 0; attempt < 2 && !out.recorded; ++attempt) {
            try {
                if (broken || attempt > 0) {
                    db.reset();
                    held.clear(); // the locks went with the old connection
                    std::atomic<bool> no_stop(false);
                    conn = &db.conn_retry(&no_stop, std::chrono::seconds(stop.load() ? 5 : 30));
                }
                record_finish(*conn, out.task_id, out.status, out.result_json, traceback,
                              Clock::now());
                out.recorded = true;
            } catch (const std::exception &e) {
                log_error("task: %s TaskId=%s: cannot write the outcome (%s): %s",
                          task.short_name, out.task_id.c_str(), out.status.c_str(),
                          one_line(e).c_str());
                broken = true;
            }
        }
        // Done before the locks go: a claim without its done mark and without a lock holder is
        // what another keystoned takes over.
        if (has_slot && out.recorded)
            finish_claims(*conn, task, claimed, slot, out.task_id);
        release();
    }
    set_phase(phase, RunPhase::idle);

    if (out.status == "SUCCESS")
        log_info("task: %s finished: SUCCESS in %.2f s: %s", task.short_name, out.seconds,
                 out.result_json.c_str());
    else
        log_error("task: %s finished: FAILURE in %.2f s: %s", task.short_name, out.seconds,
                  out.error.c_str());
    return out;
}

} // namespace

RunOutcome run_task(const TaskDef &task, const Config &config, Database &db,
                    const RunOptions &options, const std::atomic<bool> &stop,
                    std::chrono::seconds connect_wait, std::atomic<int> *phase)
{
    RunOutcome out = run_task_once(task, config, db, options, stop, connect_wait, phase);
    metrics_record_run(task.short_name, out);
    return out;
}

} // namespace keystone
