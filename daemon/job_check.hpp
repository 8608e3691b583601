// SPDX-License-Identifier: GPL-2.0-or-later
// `keystonectl jobs check`: compares keystone_slurm.job with slurmdbd for a time window, job by
// job and field by field. compare_jobs() (declared in jobs.hpp) is defined here too.
#pragma once

#include "jobs.hpp"

#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

class SlurmdbConnection;

// One job on which the two sides disagree.
struct JobDifference {
    enum class Kind {
        missing,  // slurmdbd has it, keystone_slurm.job does not
        extra,    // keystone_slurm.job has it, slurmdbd does not
        different // both have it (same cluster, job id and submit time); `fields` differ
    };
    Kind kind = Kind::different;
    std::string cluster;
    std::string jobid; // sacct's JobID text, from the side that has the job (slurmdbd's first)
    std::int64_t job_id = 0, submit = 0;
    std::string state;             // the job's state on the side that has it (slurmdbd's first)
    std::vector<FieldDiff> fields; // for `different`: field, ours, slurmdbd's ("theirs")
};

// "missing", "extra", "different".
const char *difference_kind_name(JobDifference::Kind kind);

// The outcome for one cluster and window.
struct ClusterCheck {
    std::string cluster;
    std::int64_t since = 0, until = 0;
    std::int64_t slurmdbd_jobs = 0;         // jobs slurmdbd has in the window
    std::int64_t our_jobs = 0;              // rows keystone_slurm.job has in the window
    std::vector<JobDifference> differences; // ordered by job id, submit
    bool agree() const { return differences.empty(); }
};

// Fields slurmdbd does not keep (het_job_info) and, for a job that has not ended on either side,
// its elapsed time (which grows with the clock): left out of the comparison.
std::vector<FieldDiff> check_fields(const JobRow &ours, const JobRow &slurmdbd);

// Matches the two lists by key (cluster, job id, submit) and classifies every job that is not
// the same on both sides. Pure: no I/O.
std::vector<JobDifference> diff_job_lists(const std::vector<JobRow> &ours,
                                          const std::vector<JobRow> &slurmdbd);

// Reads the cluster's jobs in [since, until) from keystone_slurm.job (load_jobs) and from
// slurmdbd (the reconciliation's reads: sacct's window plus the cancelled jobs that ended in it),
// then looks up in slurmdbd, by job id and with every record of an id, the jobs only we have
// (sacct's window leaves out jobs that were never eligible, and older records of a reused or
// requeued job id), and compares. Throws SlurmError when slurmdbd cannot be read or does not
// know the cluster, pqxx errors for PostgreSQL.
ClusterCheck check_jobs(pqxx::connection &conn, SlurmdbConnection &db, const std::string &cluster,
                        std::int64_t since, std::int64_t until);

} // namespace keystone
