// SPDX-License-Identifier: GPL-2.0-or-later
// Runs one task once: takes its lock, writes its task record, runs it, records the outcome.
#pragma once

#include "config.hpp"
#include "db.hpp"
#include "tasks/task.hpp"

#include <atomic>
#include <chrono>
#include <string>

namespace keystone {

// Where a run is; read by the thread that handles SIGTERM so it cancels only the task's own
// statements, never the write of the task record.
enum class RunPhase : int { idle = 0, body = 1, recording = 2 };

struct RunOutcome {
    std::string task_id;     // empty when no record was started
    std::string status;      // SUCCESS, FAILURE, or SKIPPED (another run holds the lock)
    std::string result_json; // the run's JSON summary
    std::string error;       // the failure text (traceback column), empty on success
    bool recorded = false;   // the final status reached the database
    double seconds = 0;
};

// Runs `task` on a connection from `db`. Never throws for the task's own failures: they come back
// as a FAILURE outcome (and row). `connect_wait` bounds how long it waits for PostgreSQL before
// giving up with a FAILURE that could not be recorded. A run whose lock is held elsewhere (another
// keystoned or keystonectl) is SKIPPED with no record. Dry runs take no lock and write no record.
RunOutcome run_task(const TaskDef &task, const Config &config, Database &db,
                    const RunOptions &options, const std::atomic<bool> &stop,
                    std::chrono::seconds connect_wait, std::atomic<int> *phase = nullptr);

// The advisory-lock key of a task (a stable hash of its dotted name).
int task_lock_key(const std::string &dotted_name);

} // namespace keystone
