// SPDX-License-Identifier: GPL-2.0-or-later
// Small helpers shared by the daemon and the CLI: UUIDs, host name, time formatting, JSON handles.
#pragma once

#include <chrono>
#include <jansson.h>
#include <memory>
#include <string>

namespace keystone {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// A random (version 4) UUID in its canonical 36-character text form, from getrandom(2).
// Throws std::system_error if the kernel cannot supply randomness.
std::string make_uuid4();

// This host's name (gethostname), or "localhost" when it cannot be read.
std::string host_name();

// "2026-11-28 12:00:00.123456+00": a timestamptz literal PostgreSQL reads exactly, in UTC.
std::string pg_timestamp(TimePoint t);
// "2026-11-28T12:00:00Z" (seconds precision, UTC), for people.
std::string iso_utc(std::time_t t);
// "2026-11-28 13:00 CET": local wall time in the process time zone, for people.
std::string local_time_text(std::time_t t);

// Parses a user-supplied time for --since/--until: "2026-11-28", "2026-11-28T12:00[:SS]" (local
// time zone, or UTC with a trailing Z) or a relative age "90s", "15m", "6h", "2d" before `now`.
// Throws std::invalid_argument naming the text.
std::time_t parse_user_time(const std::string &text, std::time_t now);

struct JsonDeleter {
    void operator()(json_t *j) const noexcept { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDeleter>;

// Compact JSON text of `j` with keys in insertion order.
std::string json_text(const json_t *j);

// Overwrites a secret in memory before it is released.
void wipe(std::string &secret) noexcept;

} // namespace keystone
