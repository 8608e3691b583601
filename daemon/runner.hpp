// SPDX-License-Identifier: GPL-2.0-or-later
// Runs one task once: takes its locks, claims its schedule slot, writes its task record, runs it,
// records the outcome.
#pragma once

#include "config.hpp"
#include "db.hpp"
#include "tasks/task.hpp"

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace keystone {

// Where a run is; read by the thread that handles SIGTERM so it cancels only the task's own
// statements, never the write of the task record.
enum class RunPhase : int { idle = 0, body = 1, recording = 2 };

struct RunOutcome {
    std::string task_id;     // empty when no record was started
    std::string status;      // SUCCESS, FAILURE, or SKIPPED (nothing run, no record)
    std::string result_json; // the run's JSON summary
    std::string error;       // the failure text (traceback column), or why it was SKIPPED
    bool recorded = false;   // the final status reached the database
    double seconds = 0;
    // What was not run, by scope ("" for a global task, else a cluster name):
    std::vector<std::string> busy;      // its lock is held elsewhere (a run in progress)
    std::vector<std::string> abandoned; // scheduled: its slot's claim was abandoned (see below)
    std::vector<std::string> elsewhere; // scheduled: its slot was claimed by another run
                                        // ("smp Worker=head2"), which ended or is running
};

// Runs `task` on a connection from `db`. Never throws for the task's own failures: they come back
// as a FAILURE outcome (and row). `connect_wait` bounds how long it waits for PostgreSQL before
// giving up with a FAILURE that could not be recorded. Dry runs take no lock and write no record.
//
// Locks: a global task takes the advisory lock (0x4b53, task_lock_key(dotted name)); a per-cluster
// task takes no task-wide lock but one per cluster it runs (0x4b53, cluster_lock_key(dotted name,
// cluster)), all held until the outcome is recorded and released with the connection if the
// process dies. Its clusters (RunOptions::clusters, set here) are options.cluster, or the
// enabled clusters this keystoned serves (served_clusters). A scope whose lock is held elsewhere
// is not run (`busy`); when no scope is left the run is SKIPPED with no record. A run by hand of
// a per-cluster task that had to leave some clusters out is a FAILURE naming them.
//
// Scheduled runs (options.slot): after taking a scope's lock the runner claims (task, scope,
// slot) in keystone_slurm.slot_claim with the run's task_id; only claimed scopes run, and their
// claims are marked done once the outcome is recorded, before the locks are released. A claim
// that exists already is either done or being run (`elsewhere`), or, having no done mark while
// this run holds its lock, abandoned by a claimer that died or lost PostgreSQL (`abandoned`);
// with options.takeover such a claim is taken over (logged as a warning) and run. A scheduled
// per-cluster run that serves no enabled cluster is SKIPPED with no record.
RunOutcome run_task(const TaskDef &task, const Config &config, Database &db,
                    const RunOptions &options, const std::atomic<bool> &stop,
                    std::chrono::seconds connect_wait, std::atomic<int> *phase = nullptr);

// The advisory-lock key of a global task (a stable hash of its dotted name; FNV-1a, 31 bits).
int task_lock_key(const std::string &dotted_name);

// The advisory-lock key of one cluster of a per-cluster task: task_lock_key of
// "<dotted name>_for_cluster:<cluster>".
int cluster_lock_key(const std::string &dotted_name, const std::string &cluster);

} // namespace keystone
