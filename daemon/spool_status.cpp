// SPDX-License-Identifier: GPL-2.0-or-later
// Reading the spool folder, the quarantine folder and plugin-stats.json (see spool_status.hpp).
#include "spool_status.hpp"

#include "util.hpp"

extern "C" {
#include "spool.h"
}

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace keystone {

namespace {

// Bounds on what one read takes: entries counted per folder, bytes of plugin-stats.json.
constexpr std::int64_t max_entries = 1000000;
constexpr off_t max_stats_bytes = 1 << 20;

double wall_now()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

struct DirCloser {
    void operator()(DIR *d) const noexcept { ::closedir(d); }
};

std::int64_t int_at(const json_t *obj, const char *key, bool &ok)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        ok = false;
        return 0;
    }
    return static_cast<std::int64_t>(json_integer_value(v));
}

} // namespace

SpoolScan scan_spool(const std::string &spool, const std::string &quarantine)
{
    SpoolScan s;
    std::unique_ptr<DIR, DirCloser> d(::opendir(spool.c_str()));
    if (!d)
        s.spool_errno = errno;
    if (d) {
        s.spool_ok = true;
        std::string oldest;
        std::int64_t seen = 0;
        while (struct dirent *de = ::readdir(d.get())) {
            if (++seen > max_entries)
                break;
            if (!ks_spool_is_batch_name(de->d_name))
                continue;
            // Regular files only, as the ingest takes them (a stray folder or link is not one).
            struct stat es;
            if (de->d_type != DT_REG &&
                (de->d_type != DT_UNKNOWN ||
                 ::fstatat(::dirfd(d.get()), de->d_name, &es, AT_SYMLINK_NOFOLLOW) != 0 ||
                 !S_ISREG(es.st_mode)))
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
    const json_t *interval = json_object_get(doc.get(), "stats_interval_ms");
    if (json_is_integer(interval) && json_integer_value(interval) > 0)
        p.interval_ms = static_cast<long long>(json_integer_value(interval));
    for (auto [member, field] : {std::pair{"plugin_version", &p.plugin_version},
                                 std::pair{"slurm_version", &p.slurm_version}}) {
        const char *v = json_string_value(json_object_get(doc.get(), member));
        *field = v ? v : "";
    }
    p.up = true;
    return p;
}

} // namespace keystone
