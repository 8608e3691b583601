// SPDX-License-Identifier: GPL-2.0-or-later
// keystone_slurm.job rows: sacct's JobID text, the bulk upsert (COPY into a staging table, one
// INSERT ... ON CONFLICT) and the window read used by the reconciliation (see jobs.hpp).
#include "jobs.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <tuple>

namespace keystone {

namespace {

// The session's staging table. Temporary, so every connection has its own; ON COMMIT DELETE
// ROWS keeps it empty between transactions. Its times are epoch seconds: PostgreSQL parses an
// integer faster than a timestamp literal, and to_timestamp() is exact for whole seconds.
constexpr const char *stage_table = "keystone_job_stage";

// One round trip, no NOTICE ("already exists, skipping" would land on stderr through libpqxx):
// create the table on first use in the session (or after a rollback dropped it), else empty
// it, so a second upsert in the same transaction starts from nothing.
constexpr const char *stage_sql = R"SQL(DO $stage$
BEGIN
    IF to_regclass('pg_temp.keystone_job_stage') IS NULL THEN
        CREATE TEMP TABLE keystone_job_stage (
            cluster text, job_id bigint, submit bigint, jobid text,
            array_job_id bigint, array_task_id bigint, het_job_id bigint, het_job_offset bigint,
            het_job_info text, jobname text, username text, uid bigint, "group" text, gid bigint,
            account text, partition text, qos text, state text, exitcode text,
            derivedexitcode text, eligible bigint, start bigint, "end" bigint, elapsed bigint,
            timelimit_min bigint, allocnodes bigint, nodelist text, alloccpus bigint,
            alloctres text, billing double precision, priority bigint, workdir text,
            reservation text
        ) ON COMMIT DELETE ROWS;
    ELSE
        TRUNCATE pg_temp.keystone_job_stage;
    END IF;
END
$stage$)SQL";

// The data columns every write sets (all but the key), in table order.
#define KS_JOB_DATA_COLUMNS                                                                        \
    "jobid, array_job_id, array_task_id, het_job_id, het_job_offset, het_job_info, jobname, "      \
    "username, uid, \"group\", gid, account, partition, qos, state, exitcode, derivedexitcode, "   \
    "eligible, start, \"end\", elapsed, timelimit_min, allocnodes, nodelist, alloccpus, "          \
    "alloctres, billing, priority, workdir, reservation"

#define KS_JOB_EXCLUDED_COLUMNS                                                                    \
    "EXCLUDED.jobid, EXCLUDED.array_job_id, EXCLUDED.array_task_id, EXCLUDED.het_job_id, "         \
    "EXCLUDED.het_job_offset, EXCLUDED.het_job_info, EXCLUDED.jobname, EXCLUDED.username, "        \
    "EXCLUDED.uid, EXCLUDED.\"group\", EXCLUDED.gid, EXCLUDED.account, EXCLUDED.partition, "       \
    "EXCLUDED.qos, EXCLUDED.state, EXCLUDED.exitcode, EXCLUDED.derivedexitcode, "                  \
    "EXCLUDED.eligible, EXCLUDED.start, EXCLUDED.\"end\", EXCLUDED.elapsed, "                      \
    "EXCLUDED.timelimit_min, EXCLUDED.allocnodes, EXCLUDED.nodelist, EXCLUDED.alloccpus, "         \
    "EXCLUDED.alloctres, EXCLUDED.billing, EXCLUDED.priority, EXCLUDED.workdir, "                  \
    "EXCLUDED.reservation"

#define KS_JOB_STORED_COLUMNS                                                                      \
    "job.jobid, job.array_job_id, job.array_task_id, job.het_job_id, job.het_job_offset, "         \
    "job.het_job_info, job.jobname, job.username, job.uid, job.\"group\", job.gid, job.account, "  \
    "job.partition, job.qos, job.state, job.exitcode, job.derivedexitcode, job.eligible, "         \
    "job.start, job.\"end\", job.elapsed, job.timelimit_min, job.allocnodes, job.nodelist, "       \
    "job.alloccpus, job.alloctres, job.billing, job.priority, job.workdir, job.reservation"

// $1: the source name. The row comparison decides "changed": data and links, not the source,
// so a replay (or the other source seeing the same job) leaves updated_at alone. A stored job
// that has ended is never turned back into a running one by a later, older view.
constexpr const char *upsert_sql =
    "WITH w AS (\n"
    "INSERT INTO keystone_slurm.job (cluster, job_id, submit, " KS_JOB_DATA_COLUMNS ",\n"
    "    cluster_id, team_id, user_id, source)\n"
    "SELECT s.cluster, s.job_id, to_timestamp(s.submit), s.jobid, s.array_job_id,\n"
    "    s.array_task_id, s.het_job_id, s.het_job_offset, s.het_job_info, s.jobname,\n"
    "    s.username, s.uid, s.\"group\", s.gid, s.account, s.partition, s.qos, s.state,\n"
    "    s.exitcode, s.derivedexitcode, to_timestamp(s.eligible), to_timestamp(s.start),\n"
    "    to_timestamp(s.\"end\"), make_interval(secs => s.elapsed), s.timelimit_min,\n"
    "    s.allocnodes::integer, s.nodelist, s.alloccpus::integer, s.alloctres, s.billing,\n"
    "    s.priority, s.workdir, s.reservation, c.id, t.id, u.id, $1\n"
    "FROM keystone_job_stage s\n"
    "LEFT JOIN allocations_cluster c ON c.name = s.cluster\n"
    "LEFT JOIN users_team t ON t.slug = s.account\n"
    "LEFT JOIN users_user u ON u.username = s.username\n"
    "ON CONFLICT ON CONSTRAINT job_key DO UPDATE SET\n"
    "    (" KS_JOB_DATA_COLUMNS ", cluster_id, team_id, user_id, source, updated_at) =\n"
    "    (" KS_JOB_EXCLUDED_COLUMNS ", EXCLUDED.cluster_id, EXCLUDED.team_id,\n"
    "     EXCLUDED.user_id, EXCLUDED.source, now())\n"
    "WHERE (" KS_JOB_STORED_COLUMNS ", job.cluster_id, job.team_id, job.user_id)\n"
    "    IS DISTINCT FROM (" KS_JOB_EXCLUDED_COLUMNS ", EXCLUDED.cluster_id,\n"
    "    EXCLUDED.team_id, EXCLUDED.user_id)\n"
    "  AND NOT (job.\"end\" IS NOT NULL AND EXCLUDED.\"end\" IS NULL)\n"
    "  AND NOT (job.source = 'jobcomp' AND job.\"end\" IS NOT NULL\n"
    "           AND EXCLUDED.source = 'slurmdbd' AND EXCLUDED.partition IS NULL)\n"
    "RETURNING (xmax = 0) AS inserted)\n"
    "SELECT count(*) FILTER (WHERE inserted), count(*) FROM w";

constexpr const char *load_sql =
    "SELECT cluster, job_id, EXTRACT(EPOCH FROM submit)::bigint, jobid, array_job_id,\n"
    "    array_task_id, het_job_id, het_job_offset, het_job_info, jobname, username, uid,\n"
    "    \"group\", gid, account, partition, qos, state, exitcode, derivedexitcode,\n"
    "    EXTRACT(EPOCH FROM eligible)::bigint, EXTRACT(EPOCH FROM start)::bigint,\n"
    "    EXTRACT(EPOCH FROM \"end\")::bigint, EXTRACT(EPOCH FROM elapsed)::bigint,\n"
    "    timelimit_min, allocnodes, nodelist, alloccpus, alloctres, billing, priority, workdir,\n"
    "    reservation\n"
    "FROM keystone_slurm.job\n"
    "WHERE cluster = $1 AND submit < to_timestamp($3)\n"
    "  AND (\"end\" IS NULL OR \"end\" >= to_timestamp($2))\n"
    "ORDER BY job_id, submit";

// NULL for the empty string, as the table stores it.
inline const char *text_or_null(const std::string &s)
{
    return s.empty() ? nullptr : s.c_str();
}

// COPY's text for a double that reads back as the same double.
std::optional<std::string> real_text(const std::optional<double> &v)
{
    if (!v)
        return std::nullopt;
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.17g", *v);
    return std::string(buf);
}

bool key_less(const JobRow &a, const JobRow &b)
{
    if (a.job_id != b.job_id)
        return a.job_id < b.job_id;
    if (a.submit != b.submit)
        return a.submit < b.submit;
    return a.cluster < b.cluster;
}

bool key_equal(const JobRow &a, const JobRow &b)
{
    return a.job_id == b.job_id && a.submit == b.submit && a.cluster == b.cluster;
}

// Positions in `rows` of the rows to write: one per key, the last given, in key order (which
// also inserts into the key index in order).
std::vector<size_t> distinct_last(const std::vector<JobRow> &rows)
{
    std::vector<size_t> idx(rows.size());
    for (size_t i = 0; i < idx.size(); ++i)
        idx[i] = i;
    std::stable_sort(idx.begin(), idx.end(),
                     [&](size_t a, size_t b) { return key_less(rows[a], rows[b]); });
    std::vector<size_t> out;
    out.reserve(idx.size());
    for (size_t i = 0; i < idx.size(); ++i) {
        // Stable: the last of a run of equal keys is the last one given.
        if (i + 1 < idx.size() && key_equal(rows[idx[i]], rows[idx[i + 1]]))
            continue;
        out.push_back(idx[i]);
    }
    return out;
}

template <typename T> std::optional<T> opt(const pqxx::field &f)
{
    if (f.is_null())
        return std::nullopt;
    return f.as<T>();
}

std::string str(const pqxx::field &f)
{
    return f.is_null() ? std::string() : f.as<std::string>();
}

} // namespace

const char *job_source_name(JobSource s)
{
    switch (s) {
    case JobSource::jobcomp:
        return "jobcomp";
    case JobSource::slurmdbd:
        return "slurmdbd";
    }
    return "jobcomp";
}

std::string sacct_jobid(const JobRow &row)
{
    if (row.array_job_id && row.array_task_id)
        return std::to_string(*row.array_job_id) + "_" + std::to_string(*row.array_task_id);
    if (row.het_job_id && row.het_job_offset)
        return std::to_string(*row.het_job_id) + "+" + std::to_string(*row.het_job_offset);
    return std::to_string(row.job_id);
}

std::string exit_code_text(std::int64_t code, std::int64_t signal)
{
    return std::to_string(code) + ":" + std::to_string(signal);
}

UpsertCounts upsert_jobs(pqxx::transaction_base &tx, const std::vector<JobRow> &rows,
                         JobSource source)
{
    UpsertCounts counts;
    if (rows.empty())
        return counts;
    // ON COMMIT DELETE ROWS empties the staging table at the end of every statement outside a
    // transaction block: the COPY and the INSERT must share one.
    if (dynamic_cast<pqxx::dbtransaction *>(&tx) == nullptr)
        throw std::logic_error("upsert_jobs: needs a transaction block, not a nontransaction");

    const std::vector<size_t> keep = distinct_last(rows);
    tx.exec0(stage_sql);
    {
        // Columns in table order: the COPY names none. libpqxx 7 deprecates this constructor
        // (for stream_to::table, which 6.4 lacks); it still works there.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        pqxx::stream_to copy(tx, stage_table);
#pragma GCC diagnostic pop
        for (size_t i : keep) {
            const JobRow &r = rows[i];
            copy << std::make_tuple(
                r.cluster.c_str(), r.job_id, r.submit, r.jobid.c_str(), r.array_job_id,
                r.array_task_id, r.het_job_id, r.het_job_offset, text_or_null(r.het_job_info),
                text_or_null(r.jobname), text_or_null(r.username), r.uid, text_or_null(r.group),
                r.gid, text_or_null(r.account), text_or_null(r.partition), text_or_null(r.qos),
                r.state.c_str(), text_or_null(r.exitcode), text_or_null(r.derivedexitcode),
                r.eligible, r.start, r.end, r.elapsed_sec, r.timelimit_min, r.allocnodes,
                text_or_null(r.nodelist), r.alloccpus, text_or_null(r.alloctres),
                real_text(r.billing), r.priority, text_or_null(r.workdir),
                text_or_null(r.reservation));
        }
        copy.complete();
    }
    const pqxx::row n = tx.exec_params1(upsert_sql, std::string(job_source_name(source)));
    counts.inserted = n[0].as<std::int64_t>();
    counts.updated = n[1].as<std::int64_t>() - counts.inserted;
    counts.unchanged = static_cast<std::int64_t>(keep.size()) - n[1].as<std::int64_t>();
    return counts;
}

std::vector<JobRow> load_jobs(pqxx::transaction_base &tx, const std::string &cluster,
                              std::int64_t since, std::int64_t until)
{
    const pqxx::result res = tx.exec_params(load_sql, cluster, since, until);
    std::vector<JobRow> out;
    out.reserve(res.size());
    for (const auto &f : res) {
        JobRow r;
        int c = 0;
        r.cluster = f[c++].as<std::string>();
        r.job_id = f[c++].as<std::int64_t>();
        r.submit = f[c++].as<std::int64_t>();
        r.jobid = f[c++].as<std::string>();
        r.array_job_id = opt<std::int64_t>(f[c++]);
        r.array_task_id = opt<std::int64_t>(f[c++]);
        r.het_job_id = opt<std::int64_t>(f[c++]);
        r.het_job_offset = opt<std::int64_t>(f[c++]);
        r.het_job_info = str(f[c++]);
        r.jobname = str(f[c++]);
        r.username = str(f[c++]);
        r.uid = opt<std::int64_t>(f[c++]);
        r.group = str(f[c++]);
        r.gid = opt<std::int64_t>(f[c++]);
        r.account = str(f[c++]);
        r.partition = str(f[c++]);
        r.qos = str(f[c++]);
        r.state = str(f[c++]);
        r.exitcode = str(f[c++]);
        r.derivedexitcode = str(f[c++]);
        r.eligible = opt<std::int64_t>(f[c++]);
        r.start = opt<std::int64_t>(f[c++]);
        r.end = opt<std::int64_t>(f[c++]);
        r.elapsed_sec = f[c++].as<std::int64_t>();
        r.timelimit_min = opt<std::int64_t>(f[c++]);
        r.allocnodes = opt<std::int64_t>(f[c++]);
        r.nodelist = str(f[c++]);
        r.alloccpus = opt<std::int64_t>(f[c++]);
        r.alloctres = str(f[c++]);
        r.billing = opt<double>(f[c++]);
        r.priority = opt<std::int64_t>(f[c++]);
        r.workdir = str(f[c++]);
        r.reservation = str(f[c++]);
        out.push_back(std::move(r));
    }
    return out;
}

} // namespace keystone
