// SPDX-License-Identifier: GPL-2.0-or-later
// Process-wide logger with Slurm-style levels: stderr by default, syslog on request.
#pragma once

#include <string>

namespace keystone {

enum class LogLevel;

// Configures the logger. `ident` is the program name used as prefix and syslog ident.
// When `use_syslog` is true messages go to syslog(3) (facility daemon) instead of stderr.
// Safe to call again on reload; the logger is the only global mutable state of the daemon.
void log_setup(const std::string &ident, LogLevel level, bool use_syslog);
void log_set_level(LogLevel level);
LogLevel log_level();
bool log_enabled(LogLevel level);

// printf-style logging. Messages follow `component: what happened: detail` with `Key=value` pairs.
// Output on stderr carries an ISO-8601 UTC time stamp unless journald is the reader
// (JOURNAL_STREAM is set), which adds its own.
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug2(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Logs an error at most once per `interval_sec` for the same `key`; the next line that gets
// through says how many were suppressed. For failures that repeat on every retry.
void log_error_limited(const std::string &key, int interval_sec, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

} // namespace keystone
