// SPDX-License-Identifier: GPL-2.0-or-later
// One Slurm job as keystone_slurm.job holds it (sql/003_jobs.sql), whichever source it came from:
// the jobcomp/keystone spool (ingest.hpp) or slurmdbd (slurmdb.hpp). Both sources convert to
// JobRow, and one upsert writes either, so the two can be compared field by field.
#pragma once

#include <cstdint>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

// Which source wrote a row last (job.source).
enum class JobSource { jobcomp, slurmdbd };
const char *job_source_name(JobSource s); // "jobcomp" / "slurmdbd"

// One job. Every value is what `sacct -P` shows for the job's allocation line, typed:
// empty strings and sentinels (NO_VAL, time 0) are std::nullopt / "", which the table stores as
// NULL. Times are seconds since the epoch (UTC).
struct JobRow {
    std::string cluster;   // never empty
    std::int64_t job_id = 0;
    std::int64_t submit = 0; // > 0: part of the key
    std::string jobid;       // sacct's JobID: "123", "120_3", "130+1"
    std::optional<std::int64_t> array_job_id, array_task_id;
    std::optional<std::int64_t> het_job_id, het_job_offset;
    std::string het_job_info;
    std::string jobname;
    std::string username;
    std::optional<std::int64_t> uid;
    std::string group;
    std::optional<std::int64_t> gid;
    std::string account, partition, qos;
    std::string state;           // base state name as sacct prints it without "by UID"
    std::string exitcode;        // "code:signal"
    std::string derivedexitcode; // "code:signal"
    std::optional<std::int64_t> eligible, start, end;
    std::int64_t elapsed_sec = 0; // 0 for a job that never ran
    std::optional<std::int64_t> timelimit_min; // -1: UNLIMITED
    std::optional<std::int64_t> allocnodes;
    std::string nodelist;
    std::optional<std::int64_t> alloccpus;
    std::string alloctres;
    std::optional<double> billing;
    std::optional<std::int64_t> priority;
    std::string workdir, reservation;
};

// sacct's JobID text for a job: "<array_job_id>_<task>" for an array task, "<het_job_id>+<offset>"
// for a het job component, else the job id.
std::string sacct_jobid(const JobRow &row);

// "code:signal" as sacct prints ExitCode.
std::string exit_code_text(std::int64_t code, std::int64_t signal);

// What one upsert did.
struct UpsertCounts {
    std::int64_t inserted = 0;  // rows that were not there
    std::int64_t updated = 0;   // rows that changed
    std::int64_t unchanged = 0; // rows already equal, or kept because the stored job has ended
                                // and the new one has not (a late slurmdbd view never undoes an
                                // ending), or because the plugin delivered the ended job and the
                                // new row is a slurmdbd placeholder (no partition: slurmdbd got
                                // a job's end before its start, and after a slurmctld crash the
                                // start may never come; keystonectl jobs check shows these)
};

// Writes `rows` into keystone_slurm.job in the caller's transaction (a transaction block: it
// uses a savepoint). Rows whose key (cluster, job_id, submit) the table does not hold yet are
// copied straight into it (COPY, under a savepoint); the others (and all of them when another
// session inserted one of those keys meanwhile) go through a temporary staging table and one
// INSERT ... ON CONFLICT (cluster, job_id, submit) DO UPDATE. Either way a row gets the same
// values: the Keystone links (cluster_id, team_id from users_team.slug = account, user_id) as
// of this transaction, and updated_at set only where something changed; created_at is never
// changed. Rows repeated in `rows` (same key) are written once, the last one winning.
// Replaying the same rows changes nothing. Throws pqxx errors; the caller rolls back.
UpsertCounts upsert_jobs(pqxx::transaction_base &tx, const std::vector<JobRow> &rows,
                         JobSource source);
// The same for rows that live elsewhere (the ingest's parsed files): `rows` must stay valid
// during the call.
UpsertCounts upsert_jobs(pqxx::transaction_base &tx, const std::vector<const JobRow *> &rows,
                         JobSource source);

// The cluster's jobs that were active in [since, until): submitted before `until` and either not
// ended or ended at or after `since`. Ordered by job_id, submit.
std::vector<JobRow> load_jobs(pqxx::transaction_base &tx, const std::string &cluster,
                              std::int64_t since, std::int64_t until);

// A field that differs between two rows of the same job: its column name and both values as
// text ("" for NULL).
struct FieldDiff {
    std::string field, ours, theirs;
};
// Every field of `ours` that differs from `theirs` (keys included), in column order.
std::vector<FieldDiff> compare_jobs(const JobRow &ours, const JobRow &theirs);

} // namespace keystone
