// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of a single task run (see runner.hpp).
#include "runner.hpp"

#include "error.hpp"
#include "log.hpp"
#include "task_log.hpp"

#include <exception>
#include <functional>

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

RunOutcome run_task(const TaskDef &task, const Config &config, Database &db,
                    const RunOptions &options, const std::atomic<bool> &stop,
                    std::chrono::seconds connect_wait, std::atomic<int> *phase)
{
    RunOutcome out;
    const auto started = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    };
    const std::string worker = config.worker.empty() ? host_name() : config.worker;

    pqxx::connection *conn = nullptr;
    try {
        conn = &db.conn_retry(&stop, connect_wait);
    } catch (const std::exception &e) {
        out.status = "FAILURE";
        out.error = std::string(task.short_name) + ": " + one_line(e);
        out.result_json = "{}";
        out.seconds = elapsed();
        log_error("%s; the run could not be recorded", out.error.c_str());
        return out;
    }

    const int key = task_lock_key(task.dotted_name);
    bool locked = false;
    TaskStart start;
    try {
        if (!options.dry_run) {
            {
                pqxx::nontransaction tx(*conn);
                locked = tx.exec_params1("SELECT pg_try_advisory_lock($1, $2)", lock_class, key)[0]
                             .as<bool>();
            }
            if (!locked) {
                out.status = "SKIPPED";
                out.result_json = "{}";
                out.error = std::string(task.short_name) +
                            ": another run of this task is in progress (keystoned or keystonectl "
                            "on a host using this database)";
                out.seconds = elapsed();
                return out;
            }
            start.task_id = make_uuid4();
            start.task_name = task.dotted_name;
            if (options.cluster)
                start.args.push_back(*options.cluster);
            if (options.scheduled)
                start.periodic_task_name = task.dotted_name;
            start.worker = worker;
            record_start(*conn, start, Clock::now());
            out.task_id = start.task_id;
        }
    } catch (const std::exception &e) {
        out.status = "FAILURE";
        out.error = std::string(task.short_name) + ": cannot start the task record: " + one_line(e);
        out.result_json = "{}";
        out.seconds = elapsed();
        log_error("%s", out.error.c_str());
        if (is_connection_error(e))
            db.reset();
        else if (locked)
            unlock(db, *conn, key);
        return out;
    }

    log_info("task: %s started%s%s TaskId=%s", task.short_name,
             options.dry_run ? " (dry run)" : "", options.scheduled ? " by the schedule" : "",
             out.task_id.empty() ? "-" : out.task_id.c_str());
    set_phase(phase, RunPhase::body);
    RunContext ctx(config, *conn, options, stop, Clock::now());
    ctx.set_record({out.task_id, task.dotted_name, task.short_name, worker});
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
        for (int attempt = 0; attempt < 2 && !out.recorded; ++attempt) {
            try {
                if (broken || attempt > 0) {
                    db.reset();
                    locked = false; // the lock went with the old connection
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
        if (locked)
            unlock(db, *conn, key);
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

} // namespace keystone
