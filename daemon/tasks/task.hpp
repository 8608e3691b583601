// SPDX-License-Identifier: GPL-2.0-or-later
// What a task is: its names, and the context one run of it gets.
#pragma once

#include "config.hpp"
#include "util.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

struct RunOptions {
    bool dry_run = false;                // report what would change, change nothing
    std::optional<std::string> cluster;  // per-cluster tasks: only this cluster
    bool scheduled = false;              // started by the scheduler (sets periodic_task_name)
    bool force = false;                  // apply a run a safety guard would stop (--force)
    // Tasks that read a time window (task_takes_since): start it here, in seconds since the
    // epoch, instead of where the last run left off (--since, for a backfill).
    std::optional<std::int64_t> since;
    // Scheduled runs: the schedule slot this run is for. The runner claims the slot in
    // keystone_slurm.slot_claim (per cluster for per-cluster tasks) and runs only what it
    // claimed, so each slot runs once across every keystoned using the database.
    std::optional<TimePoint> slot;
    // Scheduled runs: take over a claim of `slot` that its claimer abandoned (no outcome, and
    // nobody holds its lock). The scheduler sets it once it has seen the claim abandoned for a
    // while (runner.hpp).
    bool takeover = false;
    // Per-cluster tasks: the clusters this run covers, in order. Set by the runner (run_task)
    // before the task runs, whatever the caller put here: `cluster` alone when given, else the
    // enabled clusters this keystoned serves (KEYSTONED_CLUSTERS) whose (task, cluster) lock it
    // took and, for a scheduled run, whose slot it claimed.
    std::vector<std::string> clusters;
};

// The run's own task record, set by the runner (run_task) so that a run can record sub-runs.
struct RunRecord {
    std::string task_id;    // the run's task_id; empty for dry runs (no record)
    std::string task_name;  // the run's dotted task name
    std::string short_name; // the task's short name, for messages
    std::string worker;     // the worker column
};

// Everything one run of a task may use. A task reads the clock only through `now`, so a run has
// one consistent "now" (Keystone's tasks take it once too).
class RunContext {
public:
    RunContext(const Config &config, pqxx::connection &conn, const RunOptions &options,
               const std::atomic<bool> &stop, TimePoint now);

    const Config &config;
    pqxx::connection &conn;
    const RunOptions &options;
    const TimePoint now;

    // Throws Interrupted when the daemon is stopping; call between units of work.
    void check_stop() const;
    bool stopping() const { return m_stop.load(); }

    // The run's JSON summary (the task result's `result`): tasks set counts on it.
    json_t *summary() const { return m_summary.get(); }

    // Records a failure that did not stop the run (one account, one record). Any such error makes
    // the run a FAILURE, with every message in the traceback: a partial failure is never SUCCESS.
    void add_error(const std::string &message);
    const std::vector<std::string> &errors() const { return m_errors; }

    void set_record(RunRecord record) { m_record = std::move(record); }
    const RunRecord &record() const { return m_record; }

    // Runs `body` for one cluster as a sub-run with its own task record, as Keystone's Celery
    // tasks fanned out one subtask per cluster: task_name "<this task's dotted name>_for_cluster",
    // task_args ('<cluster>',), same worker. `body` fills the sub-run's JSON summary (its
    // record's result), which also goes into this run's summary under "clusters"; "subtasks"
    // maps each cluster to its sub-run's task_id. The sub-run ends SUCCESS when `body` returns,
    // FAILURE with the error text when it throws; a failure is also added to this run
    // (add_error) as "<task> Cluster=<name> TaskId=<id>: <text>", so this run is a FAILURE too
    // while the other clusters carry on. Returns whether `body` succeeded. Interrupted and lost
    // PostgreSQL connections are rethrown after the sub-run's record is closed (when it still
    // can be): the whole run ends. Dry runs, and runs without a record, write no sub-run record.
    bool run_for_cluster(const std::string &cluster, const std::function<void(json_t *)> &body);

private:
    const std::atomic<bool> &m_stop;
    JsonPtr m_summary;
    std::vector<std::string> m_errors;
    RunRecord m_record;
};

struct TaskDef {
    const char *short_name;  // "clear_log_records": keystonectl and KEYSTONED_SCHEDULE_* names
    const char *dotted_name; // "apps.logging.tasks.clear_log_records": task_name in task records
    const char *description; // one line for --help
    // Takes --cluster; one sub-run per cluster of RunOptions::clusters, each under its own
    // (task, cluster) advisory lock and slot claim, so head nodes of different clusters never
    // skip each other.
    bool per_cluster;
    void (*run)(RunContext &);
};

// Every task this build can run, in a stable order.
const std::vector<TaskDef> &all_tasks();

// Looks a task up by its short or dotted name; nullptr when unknown.
const TaskDef *find_task(const std::string &name);

// Whether the task reads a time window that RunOptions::since (--since) can move.
bool task_takes_since(const TaskDef &task);

// The tasks (one function per file under tasks/).
void run_clear_log_records(RunContext &ctx);
void run_ldap_update_users(RunContext &ctx);
void run_slurm_update_job_stats(RunContext &ctx);
void run_update_limits(RunContext &ctx);
void run_notify_upcoming_expirations(RunContext &ctx);
void run_notify_past_expirations(RunContext &ctx);

} // namespace keystone
