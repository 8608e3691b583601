// SPDX-License-Identifier: GPL-2.0-or-later
// Cron-style schedules for keystoned's tasks: parsing, and firing times in the local time zone.
#pragma once

#include "error.hpp"

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace keystone {

// A schedule expression that cannot be used. what() names the expression, the field and why:
// `schedule "*/0 * * * *": minute field: step must be at least 1`.
class CronError : public Error {
public:
    using Error::Error;
};

// A parsed cron schedule, immutable once parsed; copy it freely.
//
// Syntax (Vixie cron, crontab(5)): five fields separated by spaces or tabs,
//
//     minute (0-59)  hour (0-23)  day-of-month (1-31)  month (1-12, jan-dec)
//     day-of-week (0-7, sun-sat; 0 and 7 are both Sunday)
//
// Each field is a comma list of `*`, `n`, `a-b`, `*/s`, `a-b/s` or `a/s` (`a` to the field's
// maximum, which is 7 for day-of-week, in steps of s). Names are case-insensitive three-letter
// English abbreviations and may appear wherever a number may (`mon-fri`, `jan-jun/2`).
// Macros: @yearly and @annually (`0 0 1 1 *`), @monthly (`0 0 1 * *`), @weekly (`0 0 * * 0`),
// @daily and @midnight (`0 0 * * *`), @hourly (`0 * * * *`), case-insensitive. @reboot is refused.
// Day-of-month and day-of-week combine as in Vixie cron: when both fields are restricted (neither
// starts with `*`) a day matches if EITHER matches, otherwise it must match both.
//
// Time zone and daylight saving time (DST) rules:
//  - Fields match the wall-clock time of the process's local time zone (TZ, see tzset(3)), so
//    `0 2 * * *` runs at 02:00 local time whatever the UTC offset of the day is.
//  - A schedule "has a wildcard hour" when its hour field selects every hour (`*`, `*/1`, `0-23`).
//    Such a schedule runs every so many minutes of real time and ignores the rules below for
//    fixed hours: when the clock jumps forward it continues with the next wall time that exists;
//    when the clock falls back it fires in both passes of the repeated wall times.
//  - Clock jumps forward (spring forward, e.g. America/New_York on 2026-03-08 02:00 -> 03:00): a
//    schedule with a fixed hour that would have fired at a wall time inside the skipped interval
//    fires once at the first minute after the jump instead (`30 2 * * *` fires at 03:00 that day;
//    `0 0 * * *` fires at 01:00 on a day whose midnight is skipped, as in America/Santiago).
//  - Clock falls back (e.g. America/New_York on 2026-11-01, 01:00-01:59 happens twice): a schedule
//    with a fixed hour fires only in the first pass (`30 1 * * *` runs once, at 01:30 EDT).
//  - Firing instants are whole minutes (t % 60 == 0) of real time.
//
// The queries call localtime_r(3) and mktime(3): they are thread-safe as long as no thread changes
// TZ (setenv + tzset) while they run. They assume that a zone's UTC offset changes at most once in
// any 24 hours, which holds for every zone of tzdata 2025b from 1970 on.
class CronExpr {
public:
    // Parses a five-field expression or a macro; leading and trailing whitespace is ignored.
    // Throws CronError naming the expression, the offending field and the reason, for: an empty
    // text, a wrong number of fields, an unknown macro or @reboot, an empty list element, a value
    // out of range, a reversed range (`5-3`), a step of 0, unexpected characters, numbers with
    // trailing characters, numbers too large to represent, schedules that can never fire because
    // no selected month has any of the selected days (`0 0 30 2 *`), and schedules whose days can
    // be more than 10 years apart (`0 0 29 2 */7`: February 29 on a Sunday, every 28 years).
    static CronExpr parse(std::string_view text);

    // The smallest instant t > after with t % 60 == 0 at which the schedule fires, under the rules
    // above. Throws CronError if nothing fires within 10 years after `after` (which parse() rules
    // out) or if a time cannot be converted to local time (years beyond the range of struct tm).
    std::time_t next_after(std::time_t after) const;

    // The latest firing instant t <= at (a whole minute), or std::nullopt if the schedule did not
    // fire within the 10 years before `at` (which parse() rules out). This is "the slot that was
    // due" when the daemon starts after being down. Throws CronError if a time cannot be converted
    // to local time.
    std::optional<std::time_t> last_at_or_before(std::time_t at) const;

    // The expression as given to parse(), without leading and trailing whitespace.
    const std::string &text() const { return m_text; }

    // Whether a wall-clock time (tm_min, tm_hour, tm_mday, tm_mon, tm_wday of a broken-down time)
    // matches the five fields, applying the day-of-month/day-of-week rule but no DST rule.
    bool matches(const std::tm &wall) const;

    // Whether the hour field selects every hour, which decides the DST rules above.
    bool hour_is_wildcard() const { return m_hours == kAllHours; }

private:
    static constexpr std::uint32_t kAllHours = (1U << 24) - 1;

    CronExpr() = default;

    bool day_matches(const std::tm &wall) const;
    int longest_gap_in_days() const;
    bool fires_at(std::time_t t, const std::tm &wall) const;
    bool first_pass(std::time_t t, const std::tm &wall) const;
    int minutes_to_next_candidate(const std::tm &wall) const;
    int minutes_to_previous_candidate(const std::tm &wall) const;
    std::tm local(std::time_t t) const;
    void check_searchable(std::time_t t) const;

    std::string m_text;
    std::uint64_t m_minutes = 0;  // bit m: minute m (0-59)
    std::uint32_t m_hours = 0;    // bit h: hour h (0-23)
    std::uint32_t m_days = 0;     // bit d: day of month d (1-31)
    std::uint32_t m_months = 0;   // bit m: month m (1-12)
    std::uint32_t m_weekdays = 0; // bit d: day of week d (0 = Sunday .. 6 = Saturday)
    bool m_days_star = false;     // the day-of-month field starts with `*`
    bool m_weekdays_star = false; // the day-of-week field starts with `*`
};

} // namespace keystone
