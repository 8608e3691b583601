// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the slurmdbd reader (see slurmdb.hpp). Each JobRow field is what sacct -P
// prints for the job's allocation line (Slurm 22.05, src/sacct/print.c), typed:
//
//   jobid          JobID: "123"; "120_3" for an array task; "130+1" for a het job component;
//                  "120_[4-10%2]" for the record of an array's tasks still pending
//   jobname, account, partition, workdir, reservation: as stored; NULL is ""
//   username, uid  User (the association's user, else the uid's name), UID
//   group, gid     Group (the gid's name, "" when the system has none), GID
//   qos            QOS: the name of the QOS id (deleted QOS included); "Unknown" for an id
//                  slurmdbd does not know, "" for none
//   state          State without sacct's " by UID" for cancelled jobs: COMPLETED, FAILED, ...;
//                  REQUEUED, RESIZING, REVOKED for the records slurmdbd keeps of those events
//   exitcode       ExitCode "code:signal" ("" when unset); derivedexitcode DerivedExitCode
//   submit, eligible, start, end: seconds; sacct's "Unknown" / "None" (0, INFINITE, NO_VAL)
//                  are std::nullopt
//   elapsed_sec    ElapsedRaw (slurmdbd's clock for a job still running)
//   timelimit_min  TimelimitRaw: minutes; UNLIMITED -1; Partition_Limit (unset) std::nullopt
//   allocnodes     AllocNodes as a number (sacct prints 1024 as "1K")
//   nodelist       NodeList, except that "None assigned" (never ran) and "(unknown)" are ""
//   alloccpus      AllocCPUS: the cpu count of the allocated TRES, else of the requested ones
//                  (a job that never ran shows what it asked for)
//   alloctres      AllocTRES with TRES names, sorted, memory with a unit suffix
//   billing        the billing count of the allocated TRES; std::nullopt when there is none
//   priority       Priority
//   het_job_info   "" (slurmdbd does not keep it)
#include "slurmdb.hpp"

#include "log.hpp"
#include "slurm_internal.hpp"
#include "slurm_watchdog.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <grp.h>
#include <memory>
#include <mutex>
#include <pwd.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
#include <slurm/slurmdb.h>

extern "C" {
// Exported by libslurm 22.05 but not declared in its public headers.
char *slurm_job_state_string(uint32_t state);
}

namespace keystone {

namespace slurm_internal {

std::mutex &slurm_mutex() {
    static std::mutex m;
    return m;
}

} // namespace slurm_internal

using namespace slurm_internal;

namespace {

// What slurm_init() was called with; guarded by slurm_mutex().
struct LibraryState {
    bool initialised = false;
    std::string path;
};
LibraryState &library_state() {
    static LibraryState s;
    return s;
}

constexpr const char *builtin_slurm_conf = "/etc/slurm/slurm.conf";

std::optional<std::int64_t> time_value(time_t t) {
    // sacct prints 0 and INFINITE as "Unknown", NO_VAL as "None".
    if (t <= 0 || t == static_cast<time_t>(INFINITE) || t == static_cast<time_t>(NO_VAL))
        return std::nullopt;
    return static_cast<std::int64_t>(t);
}

std::optional<std::int64_t> uint_value(std::uint32_t v) {
    // print_fields_uint leaves NO_VAL and INFINITE empty.
    if (v == NO_VAL || v == INFINITE)
        return std::nullopt;
    return static_cast<std::int64_t>(v);
}

// getpwuid_r / getgrgid_r with a cache for one read (thousands of jobs, a few users).
class NameCache {
public:
    std::string user(std::uint32_t uid) {
        auto it = m_users.find(uid);
        if (it != m_users.end())
            return it->second;
        std::string name;
        struct passwd pw, *res = nullptr;
        std::vector<char> buf(16384);
        if (getpwuid_r(static_cast<uid_t>(uid), &pw, buf.data(), buf.size(), &res) == 0 && res)
            name = res->pw_name;
        m_users.emplace(uid, name);
        return name;
    }
    std::string group(std::uint32_t gid) {
        auto it = m_groups.find(gid);
        if (it != m_groups.end())
            return it->second;
        std::string name;
        struct group gr, *res = nullptr;
        std::vector<char> buf(16384);
        if (getgrgid_r(static_cast<gid_t>(gid), &gr, buf.data(), buf.size(), &res) == 0 && res)
            name = res->gr_name;
        m_groups.emplace(gid, name);
        return name;
    }

private:
    std::map<std::uint32_t, std::string> m_users, m_groups;
};

} // namespace

namespace slurm_internal {

void free_item(void *p) {
    std::free(p);
}

// A list of strings libslurm can pack (cluster_list, state_list): we own it and its items.
ListPtr string_list(const std::vector<std::string> &items) {
    ListPtr l(slurm_list_create(free_item));
    for (const auto &s : items) {
        char *copy = strdup(s.c_str());
        if (!copy)
            throw std::bad_alloc();
        slurm_list_append(l.get(), copy);
    }
    return l;
}

std::string slurm_error_text() {
    const int e = slurm_get_errno();
    if (e == 0)
        return "no error code from libslurm";
    const char *s = slurm_strerror(e);
    return std::string(s ? s : "unknown error") + " (" + std::to_string(e) + ")";
}

std::string text(const char *s) {
    return s ? s : "";
}

// "id=count,id=count" -> (id, count) pairs in order; malformed parts are skipped, as Slurm does.
std::vector<std::pair<std::uint32_t, std::uint64_t>> parse_tres(const std::string &s) {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
    size_t pos = 0;
    while (pos < s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos)
            comma = s.size();
        const std::string part = s.substr(pos, comma - pos);
        pos = comma + 1;
        const size_t eq = part.find('=');
        if (eq == std::string::npos)
            continue;
        const long id = std::strtol(part.c_str(), nullptr, 10);
        if (id <= 0)
            continue;
        const unsigned long long count = std::strtoull(part.c_str() + eq + 1, nullptr, 10);
        out.emplace_back(static_cast<std::uint32_t>(id), static_cast<std::uint64_t>(count));
    }
    return out;
}

// slurmdb_find_tres_count_in_string(): the count of `id`, INFINITE64 when it is not there.
std::uint64_t tres_count(const std::string &s, std::uint32_t id) {
    for (const auto &[i, c] : parse_tres(s))
        if (i == id)
            return c;
    return INFINITE64;
}

// Declared in slurm_internal.hpp.
void library_init_locked(const std::string &setting) {
    LibraryState &st = library_state();
    const std::string path = slurm_conf_path(setting);
    if (st.initialised) {
        if (path != st.path)
            log_warning("slurmdb: the slurm.conf in effect is %s, not %s: libslurm reads its "
                        "configuration once per process; restart keystoned to change it",
                        st.path.c_str(), path.c_str());
        return;
    }
    const std::string origin = !setting.empty() ? "KEYSTONED_SLURM_CONF"
                               : std::getenv("SLURM_CONF") && *std::getenv("SLURM_CONF")
                                   ? "$SLURM_CONF"
                                   : "Slurm's default path; set KEYSTONED_SLURM_CONF";
    // slurm_init() calls fatal(), which exits the process, when it finds no configuration.
    if (access(path.c_str(), R_OK) != 0) {
        const int e = errno;
        throw SlurmError("slurmdb: cannot read the Slurm configuration " + path + " (" + origin +
                         "): " + std::strerror(e));
    }
    slurm_init(path.c_str());
    st.initialised = true;
    st.path = path;
    log_verbose("slurmdb: libslurm initialised from %s", path.c_str());
}

} // namespace slurm_internal

std::string slurm_conf_path(const std::string &setting) {
    if (!setting.empty())
        return setting;
    const char *env = std::getenv("SLURM_CONF");
    if (env && *env)
        return env;
    return builtin_slurm_conf;
}

void slurm_library_init(const std::string &setting) {
    std::lock_guard<std::mutex> lock(slurm_mutex());
    library_init_locked(setting);
}

std::string format_megabytes(std::uint64_t mb) {
    // The arithmetic of Slurm's convert_num_unit() with CONVERT_NUM_UNIT_EXACT (sacct's
    // default): divide by 1024 while the value is at least 1024 and a multiple of 512, so
    // halves still count as exact (1536M is 1.50G), in double precision as Slurm does.
    static const char units[] = {'M', 'G', 'T', 'P'};
    double num = static_cast<double>(mb);
    if (static_cast<std::int64_t>(num) == 0)
        return "0";
    size_t unit = 0;
    while (num >= 1024 && static_cast<std::uint64_t>(num) % 512 == 0) {
        num /= 1024;
        ++unit;
    }
    const char u = unit < sizeof units ? units[unit] : '?';
    char buf[64];
    const auto whole = static_cast<std::uint64_t>(num);
    if (static_cast<double>(whole) == num)
        std::snprintf(buf, sizeof buf, "%llu%c", static_cast<unsigned long long>(whole), u);
    else
        std::snprintf(buf, sizeof buf, "%.2f%c", num, u);
    return buf;
}

std::string format_tres(const std::string &tres_ids,
                        const std::map<std::uint32_t, std::pair<std::string, bool>> &names) {
    if (tres_ids.empty() || tres_ids[0] < '0' || tres_ids[0] > '9')
        return "";
    std::vector<std::string> parts;
    for (const auto &[id, count] : parse_tres(tres_ids)) {
        auto it = names.find(id);
        if (it == names.end() || count == NO_VAL64)
            continue; // unknown TRES, or never set (energy without a plugin)
        std::string part = it->second.first + "=";
        if (count == INFINITE64)
            part += "NONE";
        else if (it->second.second)
            part += format_megabytes(count);
        else
            part += std::to_string(count);
        parts.push_back(std::move(part));
    }
    // sacct sorts the "name=value" texts as plain strings.
    std::sort(parts.begin(), parts.end());
    std::string out;
    for (const auto &p : parts) {
        if (!out.empty())
            out += ',';
        out += p;
    }
    return out;
}

std::string format_array_tasks(const std::string &hex_mask, std::uint32_t max_tasks) {
    // The mask is "0x" and hex digits, the last digit holding tasks 0-3.
    std::vector<std::int64_t> tasks;
    if (hex_mask.size() >= 3 && hex_mask[1] == 'x') {
        std::int64_t bit = 0;
        for (size_t i = hex_mask.size(); i-- > 2; bit += 4) {
            const char c = hex_mask[i];
            int v = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : 0;
            for (int j = 0; j < 4; ++j)
                if (v & (1 << j))
                    tasks.push_back(bit + j);
        }
        std::sort(tasks.begin(), tasks.end());
    } else {
        return hex_mask; // not a mask: Slurm leaves such text as it is
    }
    std::string out;
    if (!tasks.empty()) {
        const std::int64_t first = tasks.front(), last = tasks.back();
        const bool next_set = tasks.size() > 1 && tasks[1] == first + 1;
        // More than 5 tasks over more than 10 ids, evenly spaced: "first-last:step".
        if (last - first > 10 && tasks.size() > 5 && !next_set) {
            const std::int64_t step = tasks[1] - tasks[0];
            bool even = true;
            for (size_t i = 1; i < tasks.size() && even; ++i)
                even = tasks[i] - tasks[i - 1] == step;
            if (even)
                out =
                    std::to_string(first) + "-" + std::to_string(last) + ":" + std::to_string(step);
        }
        if (out.empty()) {
            for (size_t i = 0; i < tasks.size();) {
                size_t j = i;
                while (j + 1 < tasks.size() && tasks[j + 1] == tasks[j] + 1)
                    ++j;
                if (!out.empty())
                    out += ',';
                out += std::to_string(tasks[i]);
                if (j > i)
                    out += "-" + std::to_string(tasks[j]);
                i = j + 1;
            }
            // Slurm formats the ranges into a 64-byte buffer and marks a cut with "...".
            if (out.size() > 61)
                out = out.substr(0, 60) + "...";
        }
    }
    if (max_tasks)
        out += "%" + std::to_string(max_tasks);
    return out;
}

std::string exit_code_of(std::uint32_t status) {
    if (status == NO_VAL)
        return "";
    const int st = static_cast<int>(status);
    int code = 0, sig = 0;
    if (WIFSIGNALED(st))
        sig = WTERMSIG(st);
    else if (WIFEXITED(st))
        code = WEXITSTATUS(st);
    if (code >= 128)
        code -= 128;
    return exit_code_text(code, sig);
}

std::string derived_exit_code_of(std::uint32_t status) {
    int code = 0, sig = 0;
    if (status != NO_VAL) {
        const int st = static_cast<int>(status);
        if (WIFSIGNALED(st))
            sig = WTERMSIG(st);
        else if (WIFEXITED(st))
            code = WEXITSTATUS(st);
    }
    return exit_code_text(code, sig);
}

SlurmdbConnection::SlurmdbConnection(const std::string &slurm_conf_setting, int timeout_seconds)
    : m_timeout(timeout_seconds) {
    std::lock_guard<std::mutex> lock(slurm_mutex());
    library_init_locked(slurm_conf_setting);
    m_conf = library_state().path;
    slurm_seterrno(0);
    std::uint16_t flags = 0; // no persistent-connection flags, as sacct
    SlurmdbdDeadline deadline(m_timeout, "opening a connection", "");
    m_db = slurmdb_connection_get(&flags);
    if (deadline.finish()) {
        // libslurm returns a handle whose connection failed; the first request would reconnect
        // and wait as long again.
        if (m_db)
            slurmdb_connection_close(&m_db);
        throw SlurmdbdTimeout(deadline.message());
    }
    if (!m_db)
        throw SlurmError("slurmdb: cannot open a connection to slurmdbd (" + where() +
                         "): " + slurm_error_text());
}

SlurmdbConnection::~SlurmdbConnection() {
    std::lock_guard<std::mutex> lock(slurm_mutex());
    if (m_db)
        slurmdb_connection_close(&m_db);
}

std::string SlurmdbConnection::where() const {
    return "slurmdbd at AccountingStorageHost=" + text(slurm_conf.accounting_storage_host) +
           " AccountingStoragePort=" + std::to_string(slurm_conf.accounting_storage_port) + " of " +
           m_conf;
}

bool SlurmdbConnection::cluster_exists(const std::string &cluster) {
    std::lock_guard<std::mutex> lock(slurm_mutex());
    slurmdb_cluster_cond_t cond;
    slurmdb_init_cluster_cond(&cond, false);
    ListPtr names = string_list({cluster});
    cond.cluster_list = names.get();
    slurm_seterrno(0);
    // Never slurmdb_destroy_cluster_cond(&cond): it frees the struct itself, which is ours.
    SlurmdbdDeadline deadline(m_timeout, "looking up the cluster", cluster);
    ListPtr found(slurmdb_clusters_get(m_db, &cond));
    deadline.done(!found);
    if (!found)
        throw SlurmError("slurmdbd: cannot look up Cluster=" + cluster + ": " + slurm_error_text() +
                         " (" + where() + ")");
    bool exists = false;
    for_each_item<slurmdb_cluster_rec_t>(found.get(), [&](const slurmdb_cluster_rec_t &c) {
        if (c.name && cluster == c.name)
            exists = true;
    });
    return exists;
}

void SlurmdbConnection::load_names(const std::string &cluster) {
    slurmdb_qos_cond_t qcond;
    std::memset(&qcond, 0, sizeof qcond);
    qcond.with_deleted = 1; // old jobs may name a QOS deleted since, as in sacct
    slurm_seterrno(0);
    SlurmdbdDeadline qos_deadline(m_timeout, "reading the QOS names", cluster);
    ListPtr qos(slurmdb_qos_get(m_db, &qcond));
    qos_deadline.done(!qos);
    if (!qos)
        throw SlurmError("cannot read the QOS names: " + slurm_error_text());
    std::map<std::uint32_t, std::string> qos_names;
    for_each_item<slurmdb_qos_rec_t>(
        qos.get(), [&](const slurmdb_qos_rec_t &q) { qos_names[q.id] = text(q.name); });

    slurmdb_tres_cond_t tcond;
    std::memset(&tcond, 0, sizeof tcond);
    tcond.with_deleted = 1;
    slurm_seterrno(0);
    SlurmdbdDeadline tres_deadline(m_timeout, "reading the TRES names", cluster);
    ListPtr tres(slurmdb_tres_get(m_db, &tcond));
    tres_deadline.done(!tres);
    if (!tres)
        throw SlurmError("cannot read the TRES names: " + slurm_error_text());
    std::map<std::uint32_t, std::pair<std::string, bool>> tres_names;
    for_each_item<slurmdb_tres_rec_t>(tres.get(), [&](const slurmdb_tres_rec_t &t) {
        const std::string type = text(t.type), name = text(t.name);
        // "type/name" (gres/gpu), just "type" (cpu), or the id when the type is missing.
        const std::string label = type.empty()   ? std::to_string(t.id)
                                  : name.empty() ? type
                                                 : type + "/" + name;
        // Memory and burst buffers are counted in MB and printed with a unit.
        tres_names[t.id] = {label, type == "mem" || strcasecmp(type.c_str(), "bb") == 0};
        if (name.empty() && type == "cpu")
            m_tres_cpu = t.id;
        else if (name.empty() && type == "node")
            m_tres_node = t.id;
        else if (name.empty() && type == "billing")
            m_tres_billing = t.id;
    });
    m_qos = std::move(qos_names);
    m_tres = std::move(tres_names);
    m_names_loaded = true;
}

std::vector<JobRow> SlurmdbConnection::read_jobs(const std::string &cluster, std::int64_t since,
                                                 std::int64_t until) {
    JobQuery q;
    q.cluster = cluster;
    q.since = since;
    q.until = until;
    return read_jobs(q);
}

std::vector<JobRow> SlurmdbConnection::read_jobs(const JobQuery &q) {
    const std::string what = "slurmdbd: reading the jobs of Cluster=" + q.cluster + " failed: ";
    if (q.cluster.empty() || q.since <= 0 || q.until <= q.since)
        throw std::invalid_argument("read_jobs: empty cluster or window [" +
                                    std::to_string(q.since) + ", " + std::to_string(q.until) + ")");
    // Job ids go into the request as one list; large lists are sent in parts.
    if (q.job_ids.size() > 1000) {
        std::vector<JobRow> all;
        for (size_t i = 0; i < q.job_ids.size(); i += 1000) {
            JobQuery part = q;
            part.job_ids.assign(q.job_ids.begin() + static_cast<std::ptrdiff_t>(i),
                                q.job_ids.begin() + static_cast<std::ptrdiff_t>(
                                                        std::min(i + 1000, q.job_ids.size())));
            auto rows = read_jobs(part);
            all.insert(all.end(), std::make_move_iterator(rows.begin()),
                       std::make_move_iterator(rows.end()));
        }
        return all;
    }

    std::lock_guard<std::mutex> lock(slurm_mutex());
    if (!m_names_loaded) {
        try {
            load_names(q.cluster);
        } catch (const SlurmdbdTimeout &) {
            throw; // names the request, the cluster and the address already
        } catch (const SlurmError &e) {
            throw SlurmError(what + e.what() + " (" + where() + ")");
        }
    }

    slurmdb_job_cond_t cond;
    std::memset(&cond, 0, sizeof cond);
    // 0 would mean "jobs whose scheduling flags are 0", which matches nothing useful.
    cond.db_flags = SLURMDB_JOB_FLAG_NOTSET;
    // sacct's own defaults plus -X: start and end as recorded (not cut to the window), no steps.
    cond.flags = JOBCOND_FLAG_NO_TRUNC | JOBCOND_FLAG_NO_STEP;
    if (q.duplicates)
        cond.flags |= JOBCOND_FLAG_DUP;
    cond.usage_start = static_cast<time_t>(q.since);
    cond.usage_end = static_cast<time_t>(q.until);
    ListPtr clusters = string_list({q.cluster});
    cond.cluster_list = clusters.get();
    ListPtr states;
    if (q.cancelled_only) {
        states = string_list({std::to_string(JOB_CANCELLED)});
        cond.state_list = states.get();
    }
    ListPtr steps;
    if (!q.job_ids.empty()) {
        cond.flags |= JOBCOND_FLAG_NO_WHOLE_HETJOB; // the ids asked for, not their het siblings
        steps.reset(slurm_list_create(free_item));
        for (auto id : q.job_ids) {
            auto *s =
                static_cast<slurm_selected_step_t *>(std::calloc(1, sizeof(slurm_selected_step_t)));
            if (!s)
                throw std::bad_alloc();
            s->array_task_id = NO_VAL;
            s->het_job_offset = NO_VAL;
            s->step_id.job_id = static_cast<std::uint32_t>(id);
            s->step_id.step_id = NO_VAL;
            s->step_id.step_het_comp = NO_VAL;
            slurm_list_append(steps.get(), s);
        }
        cond.step_list = steps.get();
    }

    slurm_seterrno(0);
    // Never slurmdb_destroy_job_cond(&cond): it frees the struct itself (ours, on the stack);
    // its lists are ours too and go with their ListPtr.
    SlurmdbdDeadline deadline(m_timeout, "reading the jobs", q.cluster);
    ListPtr jobs(slurmdb_jobs_get(m_db, &cond));
    deadline.done(!jobs);
    if (!jobs)
        throw SlurmError(what + slurm_error_text() + " (" + where() + ")");

    std::vector<JobRow> rows;
    rows.reserve(static_cast<size_t>(std::max(0, slurm_list_count(jobs.get()))));
    NameCache names;
    std::int64_t skipped = 0;
    for_each_item<slurmdb_job_rec_t>(jobs.get(), [&](slurmdb_job_rec_t &job) {
        if (job.submit <= 0 || job.submit == static_cast<time_t>(NO_VAL) ||
            job.submit == static_cast<time_t>(INFINITE)) {
            ++skipped;
            log_warning("slurmdb: Cluster=%s JobId=%u has no submit time in slurmdbd: left out",
                        q.cluster.c_str(), job.jobid);
            return;
        }
        JobRow r;
        r.cluster = q.cluster;
        r.job_id = job.jobid;
        r.submit = static_cast<std::int64_t>(job.submit);

        if (job.array_job_id)
            r.array_job_id = job.array_job_id;
        if (job.array_task_id != NO_VAL && job.array_job_id)
            r.array_task_id = job.array_task_id;
        if (job.het_job_id)
            r.het_job_id = job.het_job_id;
        if (job.het_job_id && job.het_job_offset != NO_VAL)
            r.het_job_offset = job.het_job_offset;
        // JobID as slurmdb_get_job_id_str() builds it for sacct.
        if (job.array_task_str && job.array_task_str[0])
            r.jobid = std::to_string(job.array_job_id) + "_[" +
                      format_array_tasks(job.array_task_str, job.array_max_tasks) + "]";
        else if (job.array_task_id != NO_VAL)
            r.jobid = std::to_string(job.array_job_id) + "_" + std::to_string(job.array_task_id);
        else if (job.het_job_id)
            r.jobid = std::to_string(job.het_job_id) + "+" + std::to_string(job.het_job_offset);
        else
            r.jobid = std::to_string(job.jobid);

        r.jobname = text(job.jobname);
        r.uid = uint_value(job.uid);
        r.username = job.user ? job.user : r.uid ? names.user(job.uid) : "";
        r.gid = uint_value(job.gid);
        r.group = names.group(job.gid);
        r.account = text(job.account);
        r.partition = text(job.partition);
        if (job.qosid != NO_VAL) {
            auto it = m_qos.find(job.qosid);
            r.qos = it != m_qos.end() ? it->second : "Unknown";
        }
        // Unmasked, as sacct prints it: flag states slurmdbd stores for requeue, resize and
        // revoke records name themselves; every other value is the base state.
        const char *st = slurm_job_state_string(job.state);
        r.state = st ? st : "?";
        r.exitcode = exit_code_of(job.exitcode);
        r.derivedexitcode = derived_exit_code_of(job.derived_ec);
        r.eligible = time_value(job.eligible);
        r.start = time_value(job.start);
        r.end = time_value(job.end);
        r.elapsed_sec = job.elapsed;
        if (job.timelimit == INFINITE)
            r.timelimit_min = -1;
        else if (job.timelimit != NO_VAL && job.timelimit != 0)
            r.timelimit_min = job.timelimit;

        const std::string alloc = text(job.tres_alloc_str);
        std::uint32_t nodes = job.alloc_nodes;
        if (!nodes && job.tres_alloc_str) {
            const std::uint64_t n = tres_count(alloc, m_tres_node);
            if (n != INFINITE64)
                nodes = static_cast<std::uint32_t>(n);
        }
        r.allocnodes = nodes;
        const std::string nl = text(job.nodes);
        r.nodelist = nl == "None assigned" || nl == "(unknown)" ? "" : nl;
        // sacct keeps the count in an int and prints it as unsigned: NO_VAL64 shows as empty.
        std::uint64_t cpus = tres_count(alloc.empty() ? text(job.tres_req_str) : alloc, m_tres_cpu);
        if (cpus == INFINITE64)
            cpus = 0;
        r.alloccpus = uint_value(static_cast<std::uint32_t>(static_cast<int>(cpus)));
        r.alloctres = format_tres(alloc, m_tres);
        const std::uint64_t billing = tres_count(alloc, m_tres_billing);
        if (billing != INFINITE64 && billing != NO_VAL64)
            r.billing = static_cast<double>(billing);
        r.priority = uint_value(job.priority);
        r.workdir = text(job.work_dir);
        r.reservation = text(job.resv_name);
        rows.push_back(std::move(r));
    });
    log_debug("slurmdb: Cluster=%s [%lld, %lld): %zu jobs%s", q.cluster.c_str(),
              static_cast<long long>(q.since), static_cast<long long>(q.until), rows.size(),
              skipped ? " (some without submit time left out)" : "");
    return rows;
}

} // namespace keystone
