// SPDX-License-Identifier: GPL-2.0-or-later
// Task records: rows of django_celery_results_taskresult written the way Celery wrote them, so
// Keystone's /logs/tasks/, /logs/feed/ and its retention keep working unchanged.
#pragma once

#include "util.hpp"

#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

struct TaskStart {
    std::string task_id;                           // a fresh UUID
    std::string task_name;                         // Keystone's dotted name
    std::vector<std::string> args;                 // positional arguments (a cluster name)
    std::optional<std::string> periodic_task_name; // set for scheduled runs, as Celery beat does
    std::string worker;                            // host name (or KEYSTONED_WORKER)
};

// Python's repr() of a tuple of strings, as Celery stores task_args: () ('smp',) ('a', 'b').
std::string python_args_repr(const std::vector<std::string> &args);

// The traceback text of a failed run: the fatal error (if any) and every partial error, one a
// line, so an admin reading /logs/tasks/ sees all of it.
std::string failure_text(const std::string &fatal, const std::vector<std::string> &errors);

// Inserts the STARTED row (and our running_task bookkeeping row) in one transaction.
void record_start(pqxx::connection &c, const TaskStart &start, TimePoint now);

// Sets the final status (SUCCESS or FAILURE), result JSON and traceback, and drops the
// bookkeeping row. Throws on database errors (the caller retries on a fresh connection).
void record_finish(pqxx::connection &c, const std::string &task_id, const std::string &status,
                   const std::string &result_json, const std::optional<std::string> &traceback,
                   TimePoint now);

// Closes as FAILURE the STARTED rows of runs on `worker` whose process no longer exists (killed,
// crashed, host rebooted), so they stop looking like running tasks and the retention can prune
// them. Returns how many it closed.
int recover_abandoned(pqxx::connection &c, const std::string &worker);

struct TaskRow {
    std::string task_id, task_name, status, worker;
    std::optional<std::string> args, result, traceback, periodic_task_name;
    std::string date_created, date_done; // ISO-8601 UTC text
    double seconds = 0;                  // date_done - date_created
};

// Recent task records, newest first. `name` filters on task_name (short names match the end).
std::vector<TaskRow> list_task_rows(pqxx::connection &c, std::optional<std::time_t> since,
                                    const std::optional<std::string> &name, int limit);

// /proc/PID/stat field 22 (start time in clock ticks since boot), or -1 if there is no such process
// or it is a zombie.
long long process_start_ticks(long pid);

} // namespace keystone
