// SPDX-License-Identifier: GPL-2.0-or-later
// keystoned's Prometheus metrics (see metrics.hpp): the counters and the text format. The
// endpoint is metrics_server.cpp; the spool reads are spool_status.cpp.
#include "config.h"

#include "metrics.hpp"

#include "log.hpp"
#include "spool_status.hpp"
#include "tasks/task.hpp"
#include "util.hpp"

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace keystone {

namespace {

// The folder scans and the stats file are read at most this often; scrapes in between get the
// previous result, so any number of scrapes costs at most one scan a second.
constexpr double scan_cache_sec = 1.0;

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

// --- The spool, read at most once a second ----------------------------------------------------

// The cached scan and stats for `config`, refreshed when older than scan_cache_sec.
void folder_state(const Config &config, SpoolScan &scan, PluginStats &plugin)
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.scan_mutex);
    const std::string key = config.spool_dir + '\n' + config.quarantine_path();
    const double now = steady_now();
    if (key != r.scan_key || now - r.scan_at >= scan_cache_sec) {
        r.scan = scan_spool(config.spool_dir, config.quarantine_path());
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

void metrics_record_ingest_files(std::int64_t files) noexcept
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.ingest_files += files;
}

void metrics_record_ingest_commit(std::int64_t records) noexcept
{
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
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

void metrics_mark_start() noexcept
{
    (void)registry();
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
        for (const StatsBucket &b : p.buckets)
            x.sample(std::string(h) + "_bucket", {{"le", Exposition::number(b.le)}},
                     static_cast<double>(b.cumulative));
        x.sample(std::string(h) + "_sum", {}, p.sum_sec);
        x.sample(std::string(h) + "_count", {}, static_cast<double>(p.buckets.back().cumulative));
    }
    return x.take();
}

} // namespace keystone
