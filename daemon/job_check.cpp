// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the job comparison (see job_check.hpp) and of compare_jobs() (jobs.hpp).
#include "job_check.hpp"

#include "slurmdb.hpp"
#include "util.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

namespace keystone {

namespace {

std::string opt_text(const std::optional<std::int64_t> &v) {
    return v ? std::to_string(*v) : "";
}

std::string time_text(const std::optional<std::int64_t> &v) {
    return v ? iso_utc(static_cast<std::time_t>(*v)) : "";
}

// sacct's Elapsed form: [D-]HH:MM:SS.
std::string elapsed_text(std::int64_t secs) {
    char buf[48];
    const long long d = secs / 86400, h = secs / 3600 % 24, m = secs / 60 % 60, s = secs % 60;
    if (d)
        std::snprintf(buf, sizeof buf, "%lld-%02lld:%02lld:%02lld", d, h, m, s);
    else
        std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", h, m, s);
    return buf;
}

std::string real_text(const std::optional<double> &v) {
    if (!v)
        return "";
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.15g", *v);
    return buf;
}

using Key = std::tuple<std::string, std::int64_t, std::int64_t>;
Key key_of(const JobRow &r) {
    return {r.cluster, r.job_id, r.submit};
}

} // namespace

std::vector<FieldDiff> compare_jobs(const JobRow &ours, const JobRow &theirs) {
    std::vector<FieldDiff> out;
    auto field = [&](const char *name, const std::string &a, const std::string &b) {
        if (a != b)
            out.push_back({name, a, b});
    };
    // Column order of keystone_slurm.job (sql/003_jobs.sql).
    field("cluster", ours.cluster, theirs.cluster);
    field("job_id", std::to_string(ours.job_id), std::to_string(theirs.job_id));
    field("submit", iso_utc(static_cast<std::time_t>(ours.submit)),
          iso_utc(static_cast<std::time_t>(theirs.submit)));
    field("jobid", ours.jobid, theirs.jobid);
    field("array_job_id", opt_text(ours.array_job_id), opt_text(theirs.array_job_id));
    field("array_task_id", opt_text(ours.array_task_id), opt_text(theirs.array_task_id));
    field("het_job_id", opt_text(ours.het_job_id), opt_text(theirs.het_job_id));
    field("het_job_offset", opt_text(ours.het_job_offset), opt_text(theirs.het_job_offset));
    field("het_job_info", ours.het_job_info, theirs.het_job_info);
    field("jobname", ours.jobname, theirs.jobname);
    field("username", ours.username, theirs.username);
    field("uid", opt_text(ours.uid), opt_text(theirs.uid));
    field("group", ours.group, theirs.group);
    field("gid", opt_text(ours.gid), opt_text(theirs.gid));
    field("account", ours.account, theirs.account);
    field("partition", ours.partition, theirs.partition);
    field("qos", ours.qos, theirs.qos);
    field("state", ours.state, theirs.state);
    field("exitcode", ours.exitcode, theirs.exitcode);
    field("derivedexitcode", ours.derivedexitcode, theirs.derivedexitcode);
    field("eligible", time_text(ours.eligible), time_text(theirs.eligible));
    field("start", time_text(ours.start), time_text(theirs.start));
    field("end", time_text(ours.end), time_text(theirs.end));
    field("elapsed", elapsed_text(ours.elapsed_sec), elapsed_text(theirs.elapsed_sec));
    field("timelimit_min", opt_text(ours.timelimit_min), opt_text(theirs.timelimit_min));
    field("allocnodes", opt_text(ours.allocnodes), opt_text(theirs.allocnodes));
    field("nodelist", ours.nodelist, theirs.nodelist);
    field("alloccpus", opt_text(ours.alloccpus), opt_text(theirs.alloccpus));
    field("alloctres", ours.alloctres, theirs.alloctres);
    field("billing", real_text(ours.billing), real_text(theirs.billing));
    field("priority", opt_text(ours.priority), opt_text(theirs.priority));
    field("workdir", ours.workdir, theirs.workdir);
    field("reservation", ours.reservation, theirs.reservation);
    return out;
}

const char *difference_kind_name(JobDifference::Kind kind) {
    switch (kind) {
    case JobDifference::Kind::missing:
        return "missing";
    case JobDifference::Kind::extra:
        return "extra";
    case JobDifference::Kind::different:
        return "different";
    }
    return "different";
}

std::vector<FieldDiff> check_fields(const JobRow &ours, const JobRow &slurmdbd) {
    std::vector<FieldDiff> all = compare_jobs(ours, slurmdbd);
    const bool still_running = !ours.end && !slurmdbd.end;
    all.erase(std::remove_if(all.begin(), all.end(),
                             [&](const FieldDiff &d) {
                                 return d.field == "het_job_info" ||
                                        (still_running && d.field == "elapsed");
                             }),
              all.end());
    return all;
}

std::vector<JobDifference> diff_job_lists(const std::vector<JobRow> &ours,
                                          const std::vector<JobRow> &slurmdbd) {
    std::map<Key, const JobRow *> mine, theirs;
    for (const auto &r : ours)
        mine[key_of(r)] = &r;
    for (const auto &r : slurmdbd)
        theirs[key_of(r)] = &r;
    std::set<Key> keys;
    for (const auto &[k, r] : mine)
        keys.insert(k);
    for (const auto &[k, r] : theirs)
        keys.insert(k);

    std::vector<JobDifference> out;
    for (const auto &k : keys) {
        auto a = mine.find(k);
        auto b = theirs.find(k);
        JobDifference d;
        d.cluster = std::get<0>(k);
        d.job_id = std::get<1>(k);
        d.submit = std::get<2>(k);
        const JobRow &shown = b != theirs.end() ? *b->second : *a->second;
        d.jobid = shown.jobid;
        d.state = shown.state;
        if (a == mine.end()) {
            d.kind = JobDifference::Kind::missing;
        } else if (b == theirs.end()) {
            d.kind = JobDifference::Kind::extra;
        } else {
            d.fields = check_fields(*a->second, *b->second);
            if (d.fields.empty())
                continue;
            d.kind = JobDifference::Kind::different;
        }
        out.push_back(std::move(d));
    }
    return out;
}

ClusterCheck check_jobs(pqxx::connection &conn, SlurmdbConnection &db, const std::string &cluster,
                        std::int64_t since, std::int64_t until) {
    ClusterCheck out;
    out.cluster = cluster;
    out.since = since;
    out.until = until;
    if (!db.cluster_exists(cluster))
        throw SlurmError("slurmdbd does not know Cluster=" + cluster + " (sacctmgr show cluster; " +
                         db.where() + ")");

    std::vector<JobRow> ours;
    {
        pqxx::read_transaction tx(conn);
        ours = load_jobs(tx, cluster, since, until);
    }

    // What the reconciliation reads: sacct's window, plus cancelled jobs that ended in it.
    std::vector<JobRow> theirs = db.read_jobs(cluster, since, until);
    JobQuery cancelled;
    cancelled.cluster = cluster;
    cancelled.since = since;
    cancelled.until = until;
    cancelled.cancelled_only = true;
    std::set<Key> seen;
    for (const auto &r : theirs)
        seen.insert(key_of(r));
    for (auto &r : db.read_jobs(cancelled))
        if (seen.insert(key_of(r)).second)
            theirs.push_back(std::move(r));

    // Our jobs slurmdbd's window did not list: ask for them by id, every record of each id, in
    // the window load_jobs uses (submitted before `until`, not ended before `since`).
    JobQuery by_id;
    by_id.cluster = cluster;
    by_id.since = since;
    by_id.until = until;
    by_id.duplicates = true;
    std::set<std::int64_t> ids;
    for (const auto &r : ours)
        if (!seen.count(key_of(r)))
            ids.insert(r.job_id);
    if (!ids.empty()) {
        by_id.job_ids.assign(ids.begin(), ids.end());
        std::set<Key> wanted;
        for (const auto &r : ours)
            wanted.insert(key_of(r));
        for (auto &r : db.read_jobs(by_id))
            // Only the records we were looking for: an id also matches an array's tasks, and
            // other records of the id are either listed already or outside our window.
            if (wanted.count(key_of(r)) && seen.insert(key_of(r)).second)
                theirs.push_back(std::move(r));
    }
    // The same window on both sides: slurmdbd's cancelled-jobs read includes an end at `until`.
    theirs.erase(std::remove_if(theirs.begin(), theirs.end(),
                                [&](const JobRow &r) { return r.submit >= until; }),
                 theirs.end());

    out.our_jobs = static_cast<std::int64_t>(ours.size());
    out.slurmdbd_jobs = static_cast<std::int64_t>(theirs.size());
    out.differences = diff_job_lists(ours, theirs);
    return out;
}

} // namespace keystone
