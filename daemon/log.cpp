// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the process-wide logger (see log.hpp).
#include "log.hpp"

#include "config.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <syslog.h>
#include <sys/time.h>

namespace keystone {

namespace {

struct Logger {
    std::mutex mutex;
    std::string ident = "keystoned";
    LogLevel level = LogLevel::info;
    bool use_syslog = false;
    bool timestamps = true;
    struct Limit {
        std::time_t last = 0;
        unsigned suppressed = 0;
    };
    std::map<std::string, Limit> limits;
};

Logger &logger()
{
    static Logger instance;
    return instance;
}

int syslog_priority(LogLevel level)
{
    switch (level) {
    case LogLevel::error:
        return LOG_ERR;
    case LogLevel::warning:
        return LOG_WARNING;
    case LogLevel::info:
        return LOG_INFO;
    default:
        return LOG_DEBUG;
    }
}

void vlog(LogLevel level, const char *fmt, va_list ap)
{
    Logger &lg = logger();
    char body[4096];
    std::vsnprintf(body, sizeof body, fmt, ap);
    std::lock_guard<std::mutex> lock(lg.mutex);
    if (static_cast<int>(level) > static_cast<int>(lg.level))
        return;
    if (lg.use_syslog) {
        syslog(syslog_priority(level), "%s: %s", log_level_name(level), body);
        return;
    }
    if (lg.timestamps) {
        struct timeval tv;
        gettimeofday(&tv, nullptr);
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        char stamp[40];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        std::fprintf(stderr, "[%s.%03ldZ] %s: %s: %s\n", stamp, static_cast<long>(tv.tv_usec / 1000),
                     lg.ident.c_str(), log_level_name(level), body);
    } else {
        std::fprintf(stderr, "%s: %s: %s\n", lg.ident.c_str(), log_level_name(level), body);
    }
}

} // namespace

void log_setup(const std::string &ident, LogLevel level, bool use_syslog)
{
    Logger &lg = logger();
    std::lock_guard<std::mutex> lock(lg.mutex);
    if (lg.use_syslog && !use_syslog)
        closelog();
    lg.ident = ident;
    lg.level = level;
    lg.use_syslog = use_syslog;
    // journald time-stamps what it reads from our stderr; anything else gets our own stamp.
    lg.timestamps = std::getenv("JOURNAL_STREAM") == nullptr;
    if (use_syslog)
        openlog(lg.ident.c_str(), LOG_PID, LOG_DAEMON);
}

void log_set_level(LogLevel level)
{
    std::lock_guard<std::mutex> lock(logger().mutex);
    logger().level = level;
}

LogLevel log_level()
{
    std::lock_guard<std::mutex> lock(logger().mutex);
    return logger().level;
}

bool log_enabled(LogLevel level)
{
    return static_cast<int>(level) <= static_cast<int>(log_level());
}

#define KS_DEFINE_LOG(fn, lvl)                                                                     \
    void fn(const char *fmt, ...)                                                                  \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(lvl, fmt, ap);                                                                        \
        va_end(ap);                                                                                \
    }
KS_DEFINE_LOG(log_error, LogLevel::error)
KS_DEFINE_LOG(log_warning, LogLevel::warning)
KS_DEFINE_LOG(log_info, LogLevel::info)
KS_DEFINE_LOG(log_verbose, LogLevel::verbose)
KS_DEFINE_LOG(log_debug, LogLevel::debug)
KS_DEFINE_LOG(log_debug2, LogLevel::debug2)
#undef KS_DEFINE_LOG

void log_error_limited(const std::string &key, int interval_sec, const char *fmt, ...)
{
    unsigned suppressed = 0;
    {
        Logger &lg = logger();
        std::lock_guard<std::mutex> lock(lg.mutex);
        Logger::Limit &limit = lg.limits[key];
        std::time_t now = std::time(nullptr);
        if (limit.last != 0 && now - limit.last < interval_sec) {
            ++limit.suppressed;
            return;
        }
        suppressed = limit.suppressed;
        limit.suppressed = 0;
        limit.last = now;
    }
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (suppressed > 0)
        log_error("%s (%u similar messages suppressed)", body, suppressed);
    else
        log_error("%s", body);
}

} // namespace keystone
