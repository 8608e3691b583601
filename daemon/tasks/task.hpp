// SPDX-License-Identifier: GPL-2.0-or-later
// What a task is: its names, and the context one run of it gets.
#pragma once

#include "config.hpp"
#include "util.hpp"

#include <atomic>
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

private:
    const std::atomic<bool> &m_stop;
    JsonPtr m_summary;
    std::vector<std::string> m_errors;
};

struct TaskDef {
    const char *short_name;  // "clear_log_records": keystonectl and KEYSTONED_SCHEDULE_* names
    const char *dotted_name; // "apps.logging.tasks.clear_log_records": task_name in task records
    const char *description; // one line for --help
    bool per_cluster;        // takes --cluster (one sub-run per enabled cluster)
    void (*run)(RunContext &);
};

// Every task this build can run, in a stable order.
const std::vector<TaskDef> &all_tasks();

// Looks a task up by its short or dotted name; nullptr when unknown.
const TaskDef *find_task(const std::string &name);

// The tasks (one function per file under tasks/).
void run_clear_log_records(RunContext &ctx);
void run_ldap_update_users(RunContext &ctx);

} // namespace keystone
