// SPDX-License-Identifier: GPL-2.0-or-later
// What the spool holds, read without the database: the batch files waiting in the spool folder,
// the files in the quarantine folder, and the jobcomp/keystone worker's plugin-stats.json. Read
// by the metrics endpoint at scrape time and by keystonectl doctor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keystone {

struct SpoolScan {
    bool spool_ok = false;            // the spool folder could be listed
    int spool_errno = 0;              // why not
    std::int64_t files = 0;           // batch files waiting (regular, ks_spool_is_batch_name)
    std::optional<double> oldest_age; // seconds since the oldest of them was written
    bool quarantine_ok = false;       // listed, or absent (created with the first file)
    std::int64_t quarantined = 0;     // files in the quarantine folder, .reason files excepted
};

// Lists both folders, counting at most 1,000,000 entries each. The oldest batch file is the
// first by name (names sort in write order); its age comes from its mtime.
SpoolScan scan_spool(const std::string &spool_dir, const std::string &quarantine_dir);

// A histogram bucket of the plugin's callback time: at most `le` seconds, cumulative.
struct StatsBucket {
    double le; // +Inf for the last
    std::uint64_t cumulative;
};

// plugin-stats.json (format keystone-jobcomp-stats, version 1), as the plugin's worker
// rewrites it every stats_interval_ms.
struct PluginStats {
    bool up = false;  // read and valid
    std::string why;  // when !up: the file and what is wrong with it
    double time = 0;  // when the plugin wrote it (unix time)
    long long pid = 0;
    long long interval_ms = 5000;      // stats_interval_ms (5000 when absent)
    std::string plugin_version;        // "" when the plugin does not say (older plugins)
    std::string slurm_version;
    std::int64_t capacity = 0, depth = 0, high_water = 0, pushed = 0, dropped = 0;
    std::int64_t files_written = 0, records_written = 0, write_errors = 0, retry_pending = 0,
                 lost_at_stop = 0;
    double sum_sec = 0, max_sec = 0;
    std::vector<StatsBucket> buckets;
};

// Reads SPOOL/plugin-stats.json: a regular file of at most 1 MiB, not followed through a
// symbolic link. Never throws for what the file holds.
PluginStats read_plugin_stats(const std::string &spool_dir);

} // namespace keystone
