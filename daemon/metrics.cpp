// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of keystoned's Prometheus metrics (see metrics.hpp): the counters, the
// scrape-time reads of the spool folder and plugin-stats.json, the text format, the endpoint.
#include "config.h"

#include "metrics.hpp"

#include "log.hpp"
#include "tasks/task.hpp"
#include "util.hpp"

extern "C" {
#include "spool.h"
}

#include <microhttpd.h>

#include <arpa/inet.h>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <netdb.h>
#include <netinet/in.h>
#include <optional>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace keystone {

namespace {

#if MHD_VERSION >= 0x00097002
using MhdResult = enum MHD_Result;
#else
using MhdResult = int;
#endif

constexpr const char *content_type = "text/plain; version=0.0.4; charset=utf-8";
constexpr unsigned max_connections = 8;
constexpr unsigned max_per_client = 4;
constexpr unsigned idle_timeout_sec = 5;
// The folder scans and the stats file are read at most this often; scrapes in between get the
// previous result, so any number of scrapes costs at most one scan a second.
constexpr double scan_cache_sec = 1.0;
// Bounds on what a scrape reads: entries counted per folder, bytes of plugin-stats.json.
constexpr std::int64_t max_entries = 1000000;
constexpr off_t max_stats_bytes = 1 << 20;

double wall_now()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

double steady_now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// What the runs of one task (or one task on one cluster) did.
struct RunStats {
    std::map<std::string, std::uint64_t> runs; // by status
    std::uint64_t failures = 0;
    bool ran = false;
    double last_end = 0, last_duration = 0, last_items = 0;
    bool last_ok = false;
    bool succeeded = false;
    double last_success = 0;

    void add(const std::string &status, double end, double seconds, double items)
    {
        ++runs[status];
        if (status == "SKIPPED")
            return;
        if (status != "SUCCESS")
            ++failures;
        ran = true;
        last_end = end;
        last_duration = seconds;
        last_items = items;
        last_ok = status == "SUCCESS";
        if (last_ok) {
            succeeded = true;
            last_success = end;
        }
    }
};

struct SpoolScan {
    bool spool_ok = false;
    std::int64_t files = 0;
    std::optional<double> oldest_age;
    bool quarantine_ok = false;
    std::int64_t quarantined = 0;
};

struct Bucket {
    double le; // seconds; +Inf for the last
    std::uint64_t cumulative;
};

struct PluginStats {
    bool up = false;
    std::string why; // when !up (debug log only)
    double time = 0; // when the plugin wrote it
    long long pid = 0;
    std::int64_t capacity = 0, depth = 0, high_water = 0, pushed = 0, dropped = 0;
    std::int64_t files_written = 0, records_written = 0, write_errors = 0, retry_pending = 0,
                 lost_at_stop = 0;
    double sum_sec = 0, max_sec = 0;
    std::vector<Bucket> buckets;
};

// The process-wide state (see metrics.hpp on why it is global).
struct Registry {
    std::mutex mutex; // held only to copy or add numbers: never during I/O
    const double start_time = wall_now();
    std::map<std::string, RunStats> tasks;
    std::map<std::pair<std::string, std::string>, RunStats> clusters;
    std::map<std::string, std::uint64_t> filled; // cluster -> jobs filled in by reconciliation
    std::int64_t ingest_files = 0, ingest_records = 0, ingest_commits = 0, quarantined = 0;
    double last_commit = 0;
    int database = -1; // -1 unknown, 0 down, 1 up
    double database_at = 0;

    std::mutex scan_mutex; // one scan at a time; guards the cache below
    double scan_at = -1e9;
    std::string scan_key;
    SpoolScan scan;
    PluginStats plugin;
};

Registry &registry()
{
    static Registry r;
    return r;
}

// --- Reading the spool folder and plugin-stats.json ------------------------------------------

struct DirCloser {
    void operator()(DIR *d) const noexcept { ::closedir(d); }
};

SpoolScan scan_folders(const std::string &spool, const std::string &quarantine)
{
    SpoolScan s;
    std::unique_ptr<DIR, DirCloser> d(::opendir(spool.c_str()));
    if (d) {
        s.spool_ok = true;
        std::string oldest;
        std::int64_t seen = 0;
        while (struct dirent *de = ::readdir(d.get())) {
            if (++seen > max_entries)
                break;
            if (!ks_spool_is_batch_name(de->d_name))
                continue;
            ++s.files;
            if (oldest.empty() || std::strcmp(de->d_name, oldest.c_str()) < 0)
                oldest = de->d_name;
        }
        // Names sort in write order: the first is the oldest; its age from its mtime.
        struct stat st;
        if (!oldest.empty() && ::fstatat(::dirfd(d.get()), oldest.c_str(), &st, 0) == 0)
            s.oldest_age = std::max(0.0, wall_now() - static_cast<double>(st.st_mtim.tv_sec) -
                                             st.st_mtim.tv_nsec / 1e9);
    }
    std::unique_ptr<DIR, DirCloser> q(::opendir(quarantine.c_str()));
    if (q) {
        s.quarantine_ok = true;
        std::int64_t seen = 0;
        while (struct dirent *de = ::readdir(q.get())) {
            if (++seen > max_entries)
                break;
            const std::size_t n = std::strlen(de->d_name);
            if (de->d_name[0] == '.' || (n > 7 && std::strcmp(de->d_name + n - 7, ".reason") == 0))
                continue;
            ++s.quarantined;
        }
    } else if (errno == ENOENT) {
        s.quarantine_ok = true; // created with the first quarantined file
    }
    return s;
}

std::int64_t int_at(const json_t *obj, const char *key, bool &ok)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        ok = false;
        return 0;
    }
    return static_cast<std::int64_t>(json_integer_value(v));
}

PluginStats read_plugin_stats(const std::string &spool)
{
    PluginStats p;
    const std::string path = spool + "/" KS_SPOOL_STATS_FILE;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        p.why = path + ": " + std::strerror(errno);
        return p;
    }
    std::string text;
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > max_stats_bytes) {
        ::close(fd);
        p.why = path + ": not a regular file of at most 1 MiB";
        return p;
    }
    text.resize(static_cast<std::size_t>(st.st_size));
    const ssize_t n = ::read(fd, text.data(), text.size());
    ::close(fd);
    if (n < 0) {
        p.why = path + ": " + std::strerror(errno);
        return p;
    }
    text.resize(static_cast<std::size_t>(n));
    json_error_t err;
    JsonPtr doc(json_loadb(text.data(), text.size(), 0, &err));
    if (!doc || !json_is_object(doc.get())) {
        p.why = path + ": not a JSON object";
        return p;
    }
    const json_t *format = json_object_get(doc.get(), "format");
    if (!json_is_string(format) ||
        std::strcmp(json_string_value(format), "keystone-jobcomp-stats") != 0 ||
        json_integer_value(json_object_get(doc.get(), "format_version")) != 1) {
        p.why = path + ": not format keystone-jobcomp-stats version 1";
        return p;
    }
    bool ok = true;
    const json_t *queue = json_object_get(doc.get(), "queue");
    const json_t *sp = json_object_get(doc.get(), "spool");
    const json_t *cb = json_object_get(doc.get(), "callback");
    p.time = static_cast<double>(int_at(doc.get(), "time", ok));
    p.pid = int_at(doc.get(), "pid", ok);
    p.capacity = int_at(queue, "capacity", ok);
    p.depth = int_at(queue, "depth", ok);
    p.high_water = int_at(queue, "high_water", ok);
    p.pushed = int_at(queue, "pushed", ok);
    p.dropped = int_at(queue, "dropped", ok);
    p.files_written = int_at(sp, "files_written", ok);
    p.records_written = int_at(sp, "records_written", ok);
    p.write_errors = int_at(sp, "write_errors", ok);
    p.retry_pending = int_at(sp, "retry_pending", ok);
    p.lost_at_stop = int_at(sp, "lost_at_stop", ok);
    p.sum_sec = static_cast<double>(int_at(cb, "sum_ns", ok)) / 1e9;
    p.max_sec = static_cast<double>(int_at(cb, "max_ns", ok)) / 1e9;
    const json_t *buckets = json_object_get(cb, "buckets");
    if (!ok || !json_is_array(buckets) || json_array_size(buckets) == 0) {
        p.why = path + ": a member is missing or not an integer";
        return p;
    }
    std::uint64_t total = 0;
    double previous = -1;
    for (std::size_t i = 0; i < json_array_size(buckets); ++i) {
        const json_t *b = json_array_get(buckets, i);
        const json_t *bound = json_object_get(b, "lt_usec");
        const json_t *count = json_object_get(b, "count");
        const bool last = i + 1 == json_array_size(buckets);
        if (!json_is_integer(count) || json_integer_value(count) < 0 ||
            (last ? !json_is_null(bound) : !json_is_number(bound))) {
            p.why = path + ": callback bucket " + std::to_string(i) + " is not valid";
            return p;
        }
        const double le = last ? INFINITY : json_number_value(bound) / 1e6;
        if (!(le > previous)) {
            p.why = path + ": callback bucket bounds do not increase";
            return p;
        }
        previous = le;
        total += static_cast<std::uint64_t>(json_integer_value(count));
        p.buckets.push_back({le, total});
    }
    p.up = true;
    return p;
}

// The cached scan and stats for `config`, refreshed when older than scan_cache_sec.
void folder_state(const Config &config, SpoolScan &scan, PluginStats &plugin)
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.scan_mutex);
    const std::string key = config.spool_dir + '\n' + config.quarantine_path();
    const double now = steady_now();
    if (key != r.scan_key || now - r.scan_at >= scan_cache_sec) {
        r.scan = scan_folders(config.spool_dir, config.quarantine_path());
        PluginStats fresh = read_plugin_stats(config.spool_dir);
        if (!fresh.up && (r.plugin.up || key != r.scan_key))
            log_debug("metrics: plugin statistics not available: %s", fresh.why.c_str());
        r.plugin = std::move(fresh);
        r.scan_key = key;
        r.scan_at = now;
    }
    scan = r.scan;
    plugin = r.plugin;
}

// --- The text format --------------------------------------------------------------------------

using Labels = std::vector<std::pair<const char *, std::string>>;

class Exposition {
public:
    void family(const char *name, const char *type, const char *help)
    {
        m_out += "# HELP ";
        m_out += name;
        m_out += ' ';
        m_out += help; // fixed texts without backslashes or newlines
        m_out += "\n# TYPE ";
        m_out += name;
        m_out += ' ';
        m_out += type;
        m_out += '\n';
    }

    void sample(const std::string &name, const Labels &labels, double value)
    {
        m_out += name;
        if (!labels.empty()) {
            m_out += '{';
            bool first = true;
            for (const auto &l : labels) {
                if (!first)
                    m_out += ',';
                first = false;
                m_out += l.first;
                m_out += "=\"";
                m_out += metrics_escape_label(l.second);
                m_out += '"';
            }
            m_out += '}';
        }
        m_out += ' ';
        m_out += number(value);
        m_out += '\n';
    }

    // A one-sample family.
    void single(const char *name, const char *type, const char *help, double value)
    {
        family(name, type, help);
        sample(name, {}, value);
    }

    static std::string number(double v)
    {
        if (std::isnan(v))
            return "NaN";
        if (std::isinf(v))
            return v > 0 ? "+Inf" : "-Inf";
        std::array<char, 64> buf;
        const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
        return std::string(buf.data(), res.ptr);
    }

    std::string take() { return std::move(m_out); }

private:
    std::string m_out;
};

// One family per run statistic, a sample per task (and cluster).
template <typename Key>
void run_families(Exposition &x, const std::map<Key, RunStats> &stats, const char *prefix,
                  const char *what, Labels (*labels)(const Key &))
{
    const std::string p = prefix;
    const std::string w = what;
    auto name = [&](const char *suffix) { return p + suffix; };
    auto help = [&](const std::string &text) { return text + w; };

    std::string n = name("_runs_total");
    x.family(n.c_str(), "counter", help("Runs by final status (SUCCESS, FAILURE, SKIPPED)").c_str());
    for (const auto &[key, s] : stats)
        for (const auto &[status, count] : s.runs) {
            Labels l = labels(key);
            l.emplace_back("status", status);
            x.sample(n, l, static_cast<double>(count));
        }
    n = name("_failures_total");
    x.family(n.c_str(), "counter", help("Runs that ended FAILURE").c_str());
    for (const auto &[key, s] : stats)
        x.sample(n, labels(key), static_cast<double>(s.failures));
    n = name("_last_run_timestamp_seconds");
    x.family(n.c_str(), "gauge", help("When the last run ended (unix time)").c_str());
    for (const auto &[key, s] : stats)
        if (s.ran)
            x.sample(n, labels(key), s.last_end);
    n = name("_last_success_timestamp_seconds");
    x.family(n.c_str(), "gauge", help("When the last SUCCESS run ended (unix time)").c_str());
    for (const auto &[key, s] : stats)
        if (s.succeeded)
            x.sample(n, labels(key), s.last_success);
    n = name("_last_duration_seconds");
    x.family(n.c_str(), "gauge", help("How long the last run took").c_str());
    for (const auto &[key, s] : stats)
        if (s.ran)
            x.sample(n, labels(key), s.last_duration);
    n = name("_last_success");
    x.family(n.c_str(), "gauge", help("1 if the last run ended SUCCESS, 0 if FAILURE").c_str());
    for (const auto &[key, s] : stats)
        if (s.ran)
            x.sample(n, labels(key), s.last_ok ? 1 : 0);
    n = name("_last_items_changed");
    x.family(n.c_str(), "gauge",
             help("Items the last run changed (see keystoned(8), METRICS)").c_str());
    for (const auto &[key, s] : stats)
        if (s.ran)
            x.sample(n, labels(key), s.last_items);
}

Labels task_labels(const std::string &task)
{
    return {{"task", task}};
}

Labels cluster_labels(const std::pair<std::string, std::string> &key)
{
    return {{"task", key.first}, {"cluster", key.second}};
}

double json_sum(const json_t *v)
{
    if (json_is_number(v))
        return json_number_value(v);
    double sum = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(const_cast<json_t *>(v), k, item)
        {
            if (json_is_number(item))
                sum += json_number_value(item);
        }
    }
    return sum;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Recording

double metrics_items_changed(const std::string &task, const json_t *summary) noexcept
{
    static const std::map<std::string, std::vector<const char *>> fields = {
        {"clear_log_records", {"deleted"}},
        {"ldap_update_users", {"created", "updated", "reactivated", "deactivated", "deleted"}},
        {"update_limits", {"limits_written", "finals_written"}},
        {"slurm_update_job_stats", {"filled_in", "updated"}},
        {"notify_upcoming_expirations", {"sent"}},
        {"notify_past_expirations", {"sent"}},
    };
    const auto it = fields.find(task);
    if (!json_is_object(summary) || it == fields.end())
        return 0;
    double sum = 0;
    for (const char *f : it->second)
        sum += json_sum(json_object_get(summary, f));
    return sum;
}

void metrics_record_run(const std::string &task, const RunOutcome &out) noexcept
{
    try {
        json_error_t err;
        JsonPtr summary(json_loads(out.result_json.c_str(), 0, &err));
        const double items = metrics_items_changed(task, summary.get());
        const bool db_ok = out.recorded || out.status == "SKIPPED";
        Registry &r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        r.tasks[task].add(out.status.empty() ? "FAILURE" : out.status, wall_now(), out.seconds,
                          items);
        r.database = db_ok ? 1 : 0;
        r.database_at = wall_now();
    } catch (...) {
        // Out of memory: a metric missed is better than a run disturbed.
    }
}

void metrics_record_cluster_run(const std::string &task, const std::string &cluster, bool success,
                                std::chrono::steady_clock::time_point started,
                                const json_t *summary) noexcept
{
    try {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        const double items = metrics_items_changed(task, summary);
        const json_t *filled = json_object_get(summary, "filled_in");
        Registry &r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        r.clusters[{task, cluster}].add(success ? "SUCCESS" : "FAILURE", wall_now(), seconds,
                                        items);
        if (task == "slurm_update_job_stats") {
            std::uint64_t &n = r.filled[cluster];
            if (json_is_integer(filled) && json_integer_value(filled) > 0)
                n += static_cast<std::uint64_t>(json_integer_value(filled));
        }
    } catch (...) {
    }
}

void metrics_record_ingest_commit(std::int64_t files, std::int64_t records) noexcept
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.ingest_files += files;
    r.ingest_records += records;
    r.ingest_commits += 1;
    r.last_commit = wall_now();
    r.database = 1;
    r.database_at = r.last_commit;
}

void metrics_record_quarantine() noexcept
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.quarantined += 1;
}

void metrics_record_database(bool reachable) noexcept
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.database = reachable ? 1 : 0;
    r.database_at = wall_now();
}

std::string metrics_escape_label(const std::string &value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Rendering

std::string metrics_render(const Config &config)
{
    Registry &r = registry();
    std::map<std::string, RunStats> tasks;
    std::map<std::pair<std::string, std::string>, RunStats> clusters;
    std::map<std::string, std::uint64_t> filled;
    std::int64_t files, records, commits, quarantined;
    double last_commit, database_at;
    int database;
    {
        std::lock_guard<std::mutex> lock(r.mutex);
        // Every task has its series from the start (0 runs), so rates and absences are plain.
        for (const TaskDef &t : all_tasks()) {
            RunStats &s = r.tasks[t.short_name];
            for (const char *status : {"SUCCESS", "FAILURE", "SKIPPED"})
                s.runs.emplace(status, 0);
        }
        tasks = r.tasks;
        clusters = r.clusters;
        filled = r.filled;
        files = r.ingest_files;
        records = r.ingest_records;
        commits = r.ingest_commits;
        quarantined = r.quarantined;
        last_commit = r.last_commit;
        database = r.database;
        database_at = r.database_at;
    }

    Exposition x;
    x.single("keystoned_up", "gauge", "1 while keystoned serves metrics", 1);
    x.family("keystoned_build_info", "gauge", "keystoned's version, as a label; always 1");
    x.sample("keystoned_build_info", {{"version", PACKAGE_VERSION}}, 1);
    x.single("keystoned_process_start_time_seconds", "gauge",
             "When keystoned started (unix time)", r.start_time);
    x.family("keystoned_database_up", "gauge",
             "1 if the last run or ingest transaction reached PostgreSQL, 0 if it did not "
             "(no query per scrape; absent before the first attempt)");
    x.family("keystoned_database_last_check_timestamp_seconds", "gauge",
             "When keystoned_database_up was last set (unix time)");
    if (database >= 0) {
        x.sample("keystoned_database_up", {}, database);
        x.sample("keystoned_database_last_check_timestamp_seconds", {}, database_at);
    }

    run_families<std::string>(x, tasks, "keystoned_task", " of keystoned's runs of the task",
                              task_labels);
    run_families<std::pair<std::string, std::string>>(
        x, clusters, "keystoned_task_cluster", " of per-cluster sub-runs of the task",
        cluster_labels);
    x.family("keystoned_reconcile_jobs_filled_total", "counter",
             "Jobs slurm_update_job_stats found in slurmdbd but not in keystone_slurm.job and "
             "filled in (the plugin never delivered them)");
    for (const auto &[cluster, n] : filled)
        x.sample("keystoned_reconcile_jobs_filled_total", {{"cluster", cluster}},
                 static_cast<double>(n));

    x.single("keystoned_ingest_files_total", "counter",
             "Spool batch files ingested (committed and deleted)", static_cast<double>(files));
    x.single("keystoned_ingest_records_total", "counter", "Job records in the ingested files",
             static_cast<double>(records));
    x.single("keystoned_ingest_transactions_total", "counter", "Ingest transactions committed",
             static_cast<double>(commits));
    x.single("keystoned_ingest_quarantined_total", "counter",
             "Spool files moved to the quarantine folder", static_cast<double>(quarantined));
    x.family("keystoned_ingest_last_commit_timestamp_seconds", "gauge",
             "When the last ingest transaction committed (unix time)");
    if (commits > 0)
        x.sample("keystoned_ingest_last_commit_timestamp_seconds", {}, last_commit);

    if (config.spool_dir.empty()) {
        x.single("keystoned_plugin_stats_up", "gauge",
                 "1 if plugin-stats.json in the spool folder was read and valid", 0);
        return x.take();
    }
    SpoolScan scan;
    PluginStats p;
    folder_state(config, scan, p);
    x.single("keystoned_spool_readable", "gauge",
             "1 if the spool folder could be listed at the last scan", scan.spool_ok ? 1 : 0);
    x.single("keystoned_spool_files", "gauge", "Batch files waiting in the spool folder",
             static_cast<double>(scan.files));
    x.family("keystoned_spool_oldest_file_age_seconds", "gauge",
             "Age (by mtime) of the oldest batch file waiting; absent when none waits");
    if (scan.oldest_age)
        x.sample("keystoned_spool_oldest_file_age_seconds", {}, *scan.oldest_age);
    x.single("keystoned_spool_quarantined_files", "gauge",
             "Files in the quarantine folder now (.reason files not counted)",
             static_cast<double>(scan.quarantined));

    x.single("keystoned_plugin_stats_up", "gauge",
             "1 if plugin-stats.json in the spool folder was read and valid", p.up ? 1 : 0);
    if (p.up) {
        x.single("keystoned_plugin_stats_age_seconds", "gauge",
                 "Seconds since the plugin wrote plugin-stats.json", std::max(0.0, wall_now() - p.time));
        x.single("keystoned_plugin_queue_capacity", "gauge", "The plugin's queue size (records)",
                 static_cast<double>(p.capacity));
        x.single("keystoned_plugin_queue_depth", "gauge", "Records waiting in the plugin's queue",
                 static_cast<double>(p.depth));
        x.single("keystoned_plugin_queue_high_water", "gauge",
                 "Most records ever waiting in the plugin's queue", static_cast<double>(p.high_water));
        x.single("keystoned_plugin_records_pushed_total", "counter",
                 "Records the plugin queued (job completions)", static_cast<double>(p.pushed));
        x.single("keystoned_plugin_records_dropped_total", "counter",
                 "Records the plugin dropped because its queue was full",
                 static_cast<double>(p.dropped));
        x.single("keystoned_plugin_files_written_total", "counter",
                 "Batch files the plugin wrote", static_cast<double>(p.files_written));
        x.single("keystoned_plugin_records_written_total", "counter",
                 "Records the plugin wrote to batch files", static_cast<double>(p.records_written));
        x.single("keystoned_plugin_write_errors_total", "counter",
                 "Failed batch file writes (retried)", static_cast<double>(p.write_errors));
        x.single("keystoned_plugin_retry_pending", "gauge",
                 "Records in the batch the plugin is retrying", static_cast<double>(p.retry_pending));
        x.single("keystoned_plugin_lost_at_stop_total", "counter",
                 "Records still queued when slurmctld stopped and the drain time ran out",
                 static_cast<double>(p.lost_at_stop));
        x.single("keystoned_plugin_callback_max_seconds", "gauge",
                 "The slowest jobcomp callback on slurmctld's thread", p.max_sec);
        const char *h = "keystoned_plugin_callback_duration_seconds";
        x.family(h, "histogram",
                 "Time the jobcomp callback took on slurmctld's thread (from plugin-stats.json)");
        for (const Bucket &b : p.buckets)
            x.sample(std::string(h) + "_bucket", {{"le", Exposition::number(b.le)}},
                     static_cast<double>(b.cumulative));
        x.sample(std::string(h) + "_sum", {}, p.sum_sec);
        x.sample(std::string(h) + "_count", {}, static_cast<double>(p.buckets.back().cumulative));
    }
    return x.take();
}

// ---------------------------------------------------------------------------------------------
// The endpoint

namespace {

void mhd_log(void *, const char *fmt, va_list ap)
{
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    std::size_t n = std::strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    log_verbose("metrics: %s", buf);
}

MhdResult reply(MHD_Connection *c, unsigned status, const std::string &type,
                const std::string &body, const char *allow = nullptr)
{
    MHD_Response *r = MHD_create_response_from_buffer(
        body.size(), const_cast<char *>(body.data()), MHD_RESPMEM_MUST_COPY);
    if (r == nullptr)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type.c_str());
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    const MhdResult rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

MhdResult handle(void *cls, MHD_Connection *c, const char *url, const char *method,
                 const char * /*version*/, const char * /*upload_data*/,
                 size_t * /*upload_data_size*/, void ** /*state*/)
{
    auto *server = static_cast<MetricsServer *>(cls);
    // Answered at the first call, before any request body is read: MHD then discards the body
    // and closes the connection.
    if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                     "method not allowed: GET /metrics\n", "GET, HEAD");
    if (std::strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                     "not found: the metrics are at /metrics\n");
    try {
        const auto config = server->config();
        return reply(c, MHD_HTTP_OK, content_type, metrics_render(*config));
    } catch (const std::exception &e) {
        log_error_limited("metrics-render", 60, "metrics: cannot render the metrics: %s",
                          e.what());
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                     "cannot render the metrics\n");
    }
}

} // namespace

MetricsServer::MetricsServer()
{
    (void)registry(); // its start time is keystoned's
}

MetricsServer::~MetricsServer()
{
    stop();
}

std::shared_ptr<const Config> MetricsServer::config() const
{
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_config;
}

bool MetricsServer::start(std::shared_ptr<const Config> config)
{
    const std::string address = config->metrics_address;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_config = std::move(config);
    }
    if (address.empty() || address == "off") {
        log_info("metrics: KEYSTONED_METRICS_ADDRESS=%s: no metrics endpoint",
                 address.empty() ? "(empty)" : address.c_str());
        return false;
    }
    return listen(address);
}

void MetricsServer::reload(std::shared_ptr<const Config> config)
{
    const std::string address = config->metrics_address;
    std::string old;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_config = std::move(config);
        old = m_address;
    }
    const bool want = !(address.empty() || address == "off");
    if (want && address == old)
        return;
    if (!want && old.empty())
        return;
    stop();
    if (want)
        (void)listen(address);
    else
        log_info("metrics: KEYSTONED_METRICS_ADDRESS=%s: metrics endpoint closed",
                 address.empty() ? "(empty)" : address.c_str());
}

void MetricsServer::stop() noexcept
{
    MHD_Daemon *d;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        d = m_daemon;
        m_daemon = nullptr;
        m_address.clear();
    }
    // Outside the lock: the handler of a scrape in progress takes it (config()).
    if (d)
        MHD_stop_daemon(d);
}

bool MetricsServer::listen(const std::string &address)
{
    auto fail = [&](const std::string &why) {
        log_error("metrics: cannot serve KEYSTONED_METRICS_ADDRESS=%s: %s; keystoned runs on "
                  "without a metrics endpoint",
                  address.c_str(), why.c_str());
        return false;
    };
    // Validated by the configuration: HOST:PORT or [IPV6]:PORT.
    const std::size_t colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);

    struct addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *found = nullptr;
    // Resolved once, here: a name's later changes take a reload with a changed address or a
    // restart.
    const int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (gai != 0)
        return fail("cannot resolve " + host + ": " + ::gai_strerror(gai));
    std::unique_ptr<struct addrinfo, void (*)(struct addrinfo *)> hold(found, ::freeaddrinfo);

    std::string why;
    for (const struct addrinfo *ai = found; ai != nullptr; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN + 8] = "";
        ::getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST);
        const std::string where = ai->ai_family == AF_INET6 ? "[" + std::string(text) + "]:" + port
                                                            : std::string(text) + ":" + port;
        const int fd =
            ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            why += (why.empty() ? "" : "; ") + where + ": socket: " + std::strerror(errno);
            continue;
        }
        const int one = 1;
        // A restart must not wait for the previous process's connections in TIME_WAIT; without
        // SO_REUSEPORT two live listeners on one port are still refused (EADDRINUSE).
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
            why += (why.empty() ? "" : "; ") + where + ": " + std::strerror(errno);
            ::close(fd);
            continue;
        }
        const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                               (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
        MHD_Daemon *d = MHD_start_daemon(
            flags, 0, nullptr, nullptr, &handle, this, MHD_OPTION_LISTEN_SOCKET, fd,
            MHD_OPTION_CONNECTION_LIMIT, max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            max_per_client, MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout_sec,
            MHD_OPTION_EXTERNAL_LOGGER, &mhd_log, nullptr, MHD_OPTION_END);
        if (d == nullptr) {
            why += (why.empty() ? "" : "; ") + where + ": libmicrohttpd did not start";
            ::close(fd);
            continue;
        }
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_daemon = d;
            m_address = address;
        }
        log_info("metrics: serving http://%s/metrics (KEYSTONED_METRICS_ADDRESS=%s)",
                 where.c_str(), address.c_str());
        return true;
    }
    return fail(why.empty() ? "no address" : why);
}

} // namespace keystone
