// SPDX-License-Identifier: GPL-2.0-or-later
// One cluster's pass of update_limits: read Keystone's allocations (PostgreSQL) and the
// accounts' limits and usage (slurmdbd, slurmctld), plan every account (limits.hpp), and apply
// the plan: finals and the audit rows in PostgreSQL, the changed limits in slurmdbd with one
// commit. Used by the task (tasks/update_limits.cpp) and by `keystonectl limits plan`.
#pragma once

#include "config.hpp"
#include "limits.hpp"
#include "slurmdb.hpp"
#include "util.hpp"

#include <cstdint>
#include <jansson.h>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

struct ClusterPlan {
    std::string cluster;
    std::int64_t cluster_id = 0; // allocations_cluster.id
    Day today = 0;
    std::vector<AccountPlan> plans; // one per direct child of root in slurmdbd, by name
    BreakerVerdict breaker;
    std::vector<SlurmPrerequisite> prerequisites;

    int count(LimitAction a) const;
    int limits_to_write() const; // plans whose Slurm limit changes
    int settlements() const;     // finals to write
};

// Reads everything one cluster's computation needs and plans it; writes nothing. The reads of
// Keystone's tables happen in `tx`; with `lock_rows` the allocation rows of the matched teams
// are locked (FOR UPDATE) until `tx` ends, so an award edited meanwhile waits for the apply.
// Freeze on doubt: throws (SlurmError, pqxx errors, Error) when slurmdbd, slurmctld or
// PostgreSQL cannot be read completely, or when the cluster is not in allocations_cluster. An
// account that slurmctld reports no usage for becomes an error plan (nothing written for it).
// Prerequisite problems (PriorityDecayHalfLife, ...) are returned, and logged as warnings.
ClusterPlan plan_cluster(pqxx::transaction_base &tx, SlurmdbConnection &slurmdb,
                         const Config &config, const std::string &cluster, Day today,
                         bool lock_rows);

struct ApplyCounts {
    int limits_written = 0;
    int finals_written = 0;
    int audit_rows = 0;
};

// Applies `plan` (every plan whose action is update): writes the finals and one
// keystone_slurm.limit_change row per account in `tx`, then the changed limits through
// `slurmdb` and one slurmdbd commit. The caller commits `tx` afterwards. A final that is no
// longer NULL (settled meanwhile), or any slurmdbd error, throws: slurmdbd's changes are rolled
// back and the caller aborts `tx`, so nothing of the cluster is written. `task_id` names the run
// in the audit rows (may be empty); `forced` marks them as applied over the breaker.
ApplyCounts apply_cluster_plan(pqxx::transaction_base &tx, SlurmdbConnection &slurmdb,
                               const ClusterPlan &plan, const std::string &task_id, TimePoint now,
                               bool forced);

// The plan as JSON for the run's summary: counts, the breaker, prerequisite problems, account
// errors and warnings, and the changes (at most `max_listed` of each list, with a count).
void plan_summary(const ClusterPlan &plan, json_t *out, std::size_t max_listed);

// keystoned's start-up check of the Slurm settings update_limits relies on: for every enabled
// cluster in allocations_cluster, check_limit_prerequisites(); each problem is logged as a
// warning naming the setting and the value it needs, and a cluster that cannot be asked is
// logged too. Never throws (a check that cannot run is a warning, not a reason to stop).
// Returns the number of problems found.
int log_limit_prerequisites(const Config &config);

// "update", "keep", "skip", "error".
const char *action_name(LimitAction a);

} // namespace keystone
