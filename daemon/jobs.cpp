// SPDX-License-Identifier: GPL-2.0-or-later
// keystone_slurm.job rows: sacct's JobID text, the bulk upsert (COPY into a staging table, one
// INSERT ... ON CONFLICT) and the window read used by the reconciliation (see jobs.hpp).
#include "jobs.hpp"

#include <pqxx/tablewriter>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <unordered_map>

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

// The rows of one upsert, wherever they live (a vector of rows, or the parsed files of a batch).
class Rows {
public:
    explicit Rows(const std::vector<const JobRow *> &rows) : m_rows(rows) {}
    const JobRow &operator[](size_t i) const { return *m_rows[i]; }
    size_t size() const { return m_rows.size(); }

private:
    const std::vector<const JobRow *> &m_rows;
};

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
std::vector<size_t> distinct_last(const Rows &rows)
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

// Latest time the direct COPY writes as text (9999-12-31T23:59:59Z); rows with a time outside
// [epoch, this] take the staged path, where to_timestamp() converts them.
constexpr std::int64_t max_text_time = 253402300799;

bool direct_copy_fits(const JobRow &r)
{
    auto fits = [](const std::optional<std::int64_t> &t) {
        return !t || (*t >= 0 && *t <= max_text_time);
    };
    return r.submit > 0 && r.submit <= max_text_time && fits(r.eligible) && fits(r.start) &&
           fits(r.end);
}

// Epoch seconds as COPY text for timestamptz, "YYYY-MM-DD hh:mm:ss+00" (what to_timestamp()
// gives for the same seconds); nullptr for nullopt. `t` within [0, max_text_time].
const char *time_text(const std::optional<std::int64_t> &t, char (&buf)[32])
{
    if (!t)
        return nullptr;
    const std::int64_t days = *t / 86400, secs = *t % 86400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    const std::int64_t z = days + 719468;
    const std::int64_t era = z / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    auto put2 = [](char *p, std::int64_t v) {
        p[0] = static_cast<char>('0' + v / 10);
        p[1] = static_cast<char>('0' + v % 10);
    };
    put2(buf, y / 100);
    put2(buf + 2, y % 100);
    buf[4] = '-';
    put2(buf + 5, m);
    buf[7] = '-';
    put2(buf + 8, d);
    buf[10] = ' ';
    put2(buf + 11, secs / 3600);
    buf[13] = ':';
    put2(buf + 14, secs / 60 % 60);
    buf[16] = ':';
    put2(buf + 17, secs % 60);
    std::memcpy(buf + 19, "+00", 4);
    return buf;
}

// An SQL array literal of bigints / of texts (for $n::bigint[] / $n::text[]).
std::string bigint_array(const std::vector<std::int64_t> &v)
{
    std::string out = "{";
    for (size_t i = 0; i < v.size(); ++i) {
        if (i > 0)
            out += ',';
        out += std::to_string(v[i]);
    }
    return out + "}";
}

std::string text_array(const std::vector<std::string> &v)
{
    std::string out = "{";
    for (size_t i = 0; i < v.size(); ++i) {
        if (i > 0)
            out += ',';
        out += '"';
        for (char c : v[i]) {
            if (c == '"' || c == '\\')
                out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

// Job ids of one cluster closer than this share one range scan of the key index.
constexpr std::int64_t range_gap = 16;

// The keys the table holds: per cluster, one index range scan per run of nearby job ids.
// The cluster is compared outside the scan, and OFFSET 0 keeps the planner from pushing it in:
// while a large backlog loads, the statistics lag behind the table, and with `cluster = $1`
// inside, PostgreSQL took that for a few hundred rows, read every row of the cluster once and
// compared it with every range, a cost that grew with the table (a second per transaction at
// 500,000 rows). The job id range alone leaves it the key index's leading column.
constexpr const char *stored_sql =
    "SELECT j.job_id, EXTRACT(EPOCH FROM j.submit)::bigint\n"
    "FROM unnest($2::bigint[], $3::bigint[]) AS r(lo, hi)\n"
    "CROSS JOIN LATERAL (SELECT job_id, submit, cluster FROM keystone_slurm.job\n"
    "    WHERE job_id BETWEEN r.lo AND r.hi OFFSET 0) j\n"
    "WHERE j.cluster = $1";

// For each position in `keep` (key order), whether keystone_slurm.job has that key already.
std::vector<bool> stored_keys(pqxx::transaction_base &tx, const Rows &rows,
                              const std::vector<size_t> &keep)
{
    std::vector<bool> stored(keep.size(), false);
    // Positions by cluster, each list in job id order (keep is sorted by job id first).
    std::map<std::string, std::vector<size_t>> by_cluster;
    for (size_t k = 0; k < keep.size(); ++k)
        by_cluster[rows[keep[k]].cluster].push_back(k);
    for (const auto &[cluster, ks] : by_cluster) {
        std::vector<std::int64_t> lo, hi;
        for (size_t k : ks) {
            const std::int64_t id = rows[keep[k]].job_id;
            if (hi.empty() || id - hi.back() > range_gap) {
                lo.push_back(id);
                hi.push_back(id);
            } else {
                hi.back() = std::max(hi.back(), id);
            }
        }
        const pqxx::result res =
            tx.exec_params(stored_sql, cluster, bigint_array(lo), bigint_array(hi));
        if (res.empty())
            continue;
        std::vector<std::pair<std::int64_t, std::int64_t>> have;
        have.reserve(res.size());
        for (const auto &f : res)
            have.emplace_back(f[0].as<std::int64_t>(), f[1].as<std::int64_t>());
        std::sort(have.begin(), have.end());
        for (size_t k : ks) {
            const JobRow &r = rows[keep[k]];
            stored[k] = std::binary_search(have.begin(), have.end(),
                                           std::make_pair(r.job_id, r.submit));
        }
    }
    return stored;
}

// The ids of Keystone's rows whose `column` is one of `values` (the links the upsert's LEFT
// JOINs set), read in the caller's transaction.
std::unordered_map<std::string, std::int64_t> link_ids(pqxx::transaction_base &tx,
                                                       const char *sql,
                                                       std::vector<std::string> values)
{
    std::unordered_map<std::string, std::int64_t> ids;
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    if (values.empty())
        return ids;
    for (const auto &f : tx.exec_params(sql, text_array(values)))
        ids.emplace(f[0].as<std::string>(), f[1].as<std::int64_t>());
    return ids;
}

constexpr const char *cluster_ids_sql =
    "SELECT name::text, id FROM allocations_cluster WHERE name = ANY($1::text[])";
constexpr const char *team_ids_sql =
    "SELECT slug::text, id FROM users_team WHERE slug = ANY($1::text[])";
constexpr const char *user_ids_sql =
    "SELECT username::text, id FROM users_user WHERE username = ANY($1::text[])";

std::optional<std::int64_t> link(const std::unordered_map<std::string, std::int64_t> &ids,
                                 const std::string &key)
{
    if (key.empty())
        return std::nullopt; // NULL in the upsert's join
    auto it = ids.find(key);
    if (it == ids.end())
        return std::nullopt;
    return it->second;
}

// COPY FROM STDIN in text format, the lines built here: libpqxx 6.4's stream_to formats every
// field through a std::string of its own (3-4 us a row, more than PostgreSQL needs to store it).
// Lines are sent in chunks of about 64 KiB through tablewriter::write_raw_line, which adds the
// chunk's last newline. Text escaping follows COPY's rules for the text format: backslash,
// newline, carriage return and tab are escaped, NULL is \N; the connection's client encoding is
// UTF8, where none of those bytes occurs inside a multibyte character. tablewriter is
// deprecated in libpqxx 6.4 (for stream_to, whose raw-line write is private there).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class CopyWriter {
public:
    CopyWriter(pqxx::transaction_base &tx, const std::string &table,
               const std::vector<std::string> &columns)
        : m_copy(tx, table, columns.begin(), columns.end())
    {
        m_buf.reserve(chunk + 4096);
    }

    void text(const std::string &s) { s.empty() ? null() : escaped(s); }
    // Never NULL: an empty string is stored as ''.
    void text_not_null(const std::string &s) { escaped(s); }
    void text(const char *s) { s ? escaped(std::string_view(s)) : null(); }
    void integer(std::int64_t v)
    {
        sep();
        char b[24];
        const auto r = std::to_chars(b, b + sizeof b, v);
        m_buf.append(b, r.ptr);
    }
    void integer(const std::optional<std::int64_t> &v) { v ? integer(*v) : null(); }
    // The shortest text that reads back as the same double (PostgreSQL's float8in is exact).
    void real(const std::optional<double> &v)
    {
        if (!v)
            return null();
        sep();
        char b[40];
        const auto r = std::to_chars(b, b + sizeof b, *v);
        m_buf.append(b, r.ptr);
    }
    void end_row()
    {
        m_buf += '\n';
        m_first = true;
        if (m_buf.size() >= chunk)
            flush();
    }
    void complete()
    {
        flush();
        m_copy.complete();
    }

private:
    static constexpr std::size_t chunk = 64 * 1024;

    void sep()
    {
        if (!m_first)
            m_buf += '\t';
        m_first = false;
    }
    void null()
    {
        sep();
        m_buf.append("\\N", 2);
    }
    void escaped(std::string_view s)
    {
        sep();
        std::size_t start = 0;
        for (std::size_t i = 0; i < s.size(); ++i) {
            const char c = s[i];
            const char *esc = c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                              : c == '\t' ? "\\t" : nullptr;
            if (esc == nullptr)
                continue;
            m_buf.append(s.data() + start, i - start);
            m_buf.append(esc, 2);
            start = i + 1;
        }
        m_buf.append(s.data() + start, s.size() - start);
    }
    void flush()
    {
        if (m_buf.empty())
            return;
        m_buf.pop_back(); // write_raw_line adds the last newline
        m_copy.write_raw_line(m_buf);
        m_buf.clear();
    }

    pqxx::tablewriter m_copy;
    std::string m_buf;
    bool m_first = true;
};
#pragma GCC diagnostic pop

// The 33 columns a job row has in both the job table and the staging table, in table order.
const std::vector<std::string> job_field_columns = {
    "cluster", "job_id", "submit", "jobid", "array_job_id", "array_task_id", "het_job_id",
    "het_job_offset", "het_job_info", "jobname", "username", "uid", "\"group\"", "gid",
    "account", "partition", "qos", "state", "exitcode", "derivedexitcode", "eligible", "start",
    "\"end\"", "elapsed", "timelimit_min", "allocnodes", "nodelist", "alloccpus", "alloctres",
    "billing", "priority", "workdir", "reservation"};

// Writes job_field_columns of `r`. Times go in as COPY text for timestamptz (`epoch` false: the
// row fits direct_copy_fits) or as epoch seconds (the staging table's bigints).
void put_job_fields(CopyWriter &copy, const JobRow &r, bool epoch)
{
    char tb[32];
    auto time = [&](const std::optional<std::int64_t> &t) {
        epoch ? copy.integer(t) : copy.text(time_text(t, tb));
    };
    copy.text_not_null(r.cluster);
    copy.integer(r.job_id);
    time(r.submit);
    copy.text_not_null(r.jobid);
    copy.integer(r.array_job_id);
    copy.integer(r.array_task_id);
    copy.integer(r.het_job_id);
    copy.integer(r.het_job_offset);
    copy.text(r.het_job_info);
    copy.text(r.jobname);
    copy.text(r.username);
    copy.integer(r.uid);
    copy.text(r.group);
    copy.integer(r.gid);
    copy.text(r.account);
    copy.text(r.partition);
    copy.text(r.qos);
    copy.text_not_null(r.state);
    copy.text(r.exitcode);
    copy.text(r.derivedexitcode);
    time(r.eligible);
    time(r.start);
    time(r.end);
    copy.integer(r.elapsed_sec);
    copy.integer(r.timelimit_min);
    copy.integer(r.allocnodes);
    copy.text(r.nodelist);
    copy.integer(r.alloccpus);
    copy.text(r.alloctres);
    copy.real(r.billing);
    copy.integer(r.priority);
    copy.text(r.workdir);
    copy.text(r.reservation);
}

// COPY of rows[idx] (keys the table does not hold) straight into keystone_slurm.job, with the
// values and links the upsert's INSERT would give them; created_at and updated_at take their
// defaults (now()), as there.
void copy_into_job(pqxx::transaction_base &tx, const Rows &rows,
                   const std::vector<size_t> &idx, JobSource source)
{
    std::vector<std::string> clusters, teams, users;
    for (size_t i : idx) {
        clusters.push_back(rows[i].cluster);
        if (!rows[i].account.empty())
            teams.push_back(rows[i].account);
        if (!rows[i].username.empty())
            users.push_back(rows[i].username);
    }
    const auto cluster_ids = link_ids(tx, cluster_ids_sql, std::move(clusters));
    const auto team_ids = link_ids(tx, team_ids_sql, std::move(teams));
    const auto user_ids = link_ids(tx, user_ids_sql, std::move(users));
    static const std::vector<std::string> columns = [] {
        std::vector<std::string> c = job_field_columns;
        c.insert(c.end(), {"cluster_id", "team_id", "user_id", "source"});
        return c;
    }();
    const std::string source_name = job_source_name(source);
    CopyWriter copy(tx, "keystone_slurm.job", columns);
    for (size_t i : idx) {
        const JobRow &r = rows[i];
        put_job_fields(copy, r, false);
        copy.integer(link(cluster_ids, r.cluster));
        copy.integer(link(team_ids, r.account));
        copy.integer(link(user_ids, r.username));
        copy.text_not_null(source_name);
        copy.end_row();
    }
    copy.complete();
}

// rows[idx] (distinct keys, key order) through the staging table and the upsert.
UpsertCounts upsert_staged(pqxx::transaction_base &tx, const Rows &rows,
                           const std::vector<size_t> &idx, JobSource source)
{
    UpsertCounts counts;
    tx.exec0(stage_sql);
    {
        CopyWriter copy(tx, stage_table, job_field_columns);
        for (size_t i : idx) {
            put_job_fields(copy, rows[i], true);
            copy.end_row();
        }
        copy.complete();
    }
    const pqxx::row n = tx.exec_params1(upsert_sql, std::string(job_source_name(source)));
    counts.inserted = n[0].as<std::int64_t>();
    counts.updated = n[1].as<std::int64_t>() - counts.inserted;
    counts.unchanged = static_cast<std::int64_t>(idx.size()) - n[1].as<std::int64_t>();
    return counts;
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
    std::vector<const JobRow *> refs;
    refs.reserve(rows.size());
    for (const JobRow &r : rows)
        refs.push_back(&r);
    return upsert_jobs(tx, refs, source);
}

UpsertCounts upsert_jobs(pqxx::transaction_base &tx, const std::vector<const JobRow *> &refs,
                         JobSource source)
{
    UpsertCounts counts;
    if (refs.empty())
        return counts;
    const Rows rows(refs);
    // ON COMMIT DELETE ROWS empties the staging table at the end of every statement outside a
    // transaction block: the COPY and the INSERT must share one (and the direct COPY needs a
    // savepoint).
    auto *block = dynamic_cast<pqxx::dbtransaction *>(&tx);
    if (block == nullptr)
        throw std::logic_error("upsert_jobs: needs a transaction block, not a nontransaction");

    const std::vector<size_t> keep = distinct_last(rows);
    // New keys go straight into the table; the keys it holds already take the upsert with its
    // rules. A key another session adds meanwhile fails the direct COPY (unique violation): its
    // savepoint is rolled back and those rows take the upsert too.
    const std::vector<bool> stored = stored_keys(tx, rows, keep);
    std::vector<size_t> direct, staged;
    direct.reserve(keep.size());
    for (size_t k = 0; k < keep.size(); ++k)
        (!stored[k] && direct_copy_fits(rows[keep[k]]) ? direct : staged).push_back(keep[k]);
    if (!direct.empty()) {
        try {
            pqxx::subtransaction sub(*block, "ingest_direct");
            copy_into_job(sub, rows, direct, source);
            sub.commit();
            counts.inserted += static_cast<std::int64_t>(direct.size());
        } catch (const pqxx::unique_violation &) {
            staged.insert(staged.end(), direct.begin(), direct.end());
            std::sort(staged.begin(), staged.end(),
                      [&](size_t a, size_t b) { return key_less(rows[a], rows[b]); });
        }
    }
    if (!staged.empty()) {
        const UpsertCounts u = upsert_staged(tx, rows, staged, source);
        counts.inserted += u.inserted;
        counts.updated += u.updated;
        counts.unchanged += u.unchanged;
    }
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
