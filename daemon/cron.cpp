// SPDX-License-Identifier: GPL-2.0-or-later
// Cron-style schedules for keystoned's tasks: parsing, and firing times in the local time zone.
#include "cron.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <vector>

namespace keystone {

namespace {

// How far next_after() and last_at_or_before() search (10 years, leap days included).
constexpr std::time_t kHorizon = 3653LL * 86400;
constexpr int kMinutesPerDay = 24 * 60;
// parse() refuses schedules whose matching days can be further apart than this: with the time of
// day and a UTC offset on top, the next firing is then always within kHorizon.
constexpr int kMaxGapDays = 3653 - 2;

const std::array<const char *, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec"};
const std::array<const char *, 7> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct FieldSpec {
    const char *name;
    int min;
    int max;
    const char *const *names; // nullptr: numbers only
    int name_count;
    int first_named; // value of names[0]
    const char *name_kind;
};

const std::array<FieldSpec, 5> kFields = {{
    {"minute", 0, 59, nullptr, 0, 0, nullptr},
    {"hour", 0, 23, nullptr, 0, 0, nullptr},
    {"day-of-month", 1, 31, nullptr, 0, 0, nullptr},
    {"month", 1, 12, kMonthNames.data(), 12, 1, "month"},
    {"day-of-week", 0, 7, kDayNames.data(), 7, 0, "day"},
}};

struct Macro {
    const char *name;
    const char *expansion;
};

const std::array<Macro, 7> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

// Days each month can have (February: in a leap year).
const std::array<int, 13> kMaxMonthDays = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

// Thrown inside the field parser; parse() adds the expression and the field name.
struct FieldProblem {
    std::string why;
};

bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char lower(char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

// The text between double quotes with control and non-ASCII bytes escaped, so that a message
// always fits on one log line.
std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u >= 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

std::string describe_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "byte 0x%02x", u);
        return buf;
    }
    return std::string("character '") + c + "'";
}

// Reads a decimal number at s[i]; i ends after the last digit. `what` names it in messages.
int read_number(std::string_view s, std::size_t &i, const char *what) {
    const std::size_t start = i;
    long long value = 0;
    bool too_large = false;
    while (i < s.size() && is_digit(s[i])) {
        value = value * 10 + (s[i] - '0');
        if (value > INT_MAX) {
            too_large = true;
            value = INT_MAX; // keep consuming digits for the message
        }
        ++i;
    }
    if (i < s.size() && (is_alpha(s[i]) || s[i] == '_' || s[i] == '.')) {
        std::size_t end = i;
        while (end < s.size() && s[end] != ',' && s[end] != '-' && s[end] != '/')
            ++end;
        throw FieldProblem{std::string("invalid ") + what + " " +
                           quoted(s.substr(start, end - start)) + ": not a number"};
    }
    if (too_large)
        throw FieldProblem{std::string(what) + " " + quoted(s.substr(start, i - start)) +
                           " is too large"};
    return static_cast<int>(value);
}

// Reads a value (number or name) at s[i] and checks it against the field's range.
int read_value(std::string_view s, std::size_t &i, const FieldSpec &spec) {
    if (i >= s.size())
        throw FieldProblem{"missing value in " + quoted(s)};
    if (is_digit(s[i])) {
        const int v = read_number(s, i, "number");
        if (v < spec.min || v > spec.max)
            throw FieldProblem{"value " + std::to_string(v) + " is out of range " +
                               std::to_string(spec.min) + "-" + std::to_string(spec.max)};
        return v;
    }
    if (is_alpha(s[i])) {
        const std::size_t start = i;
        while (i < s.size() && (is_alpha(s[i]) || is_digit(s[i])))
            ++i;
        const std::string_view word = s.substr(start, i - start);
        if (spec.names == nullptr)
            throw FieldProblem{"unexpected name " + quoted(word) + ": this field takes numbers " +
                               std::to_string(spec.min) + "-" + std::to_string(spec.max)};
        for (int k = 0; k < spec.name_count; ++k)
            if (iequals(word, spec.names[k]))
                return spec.first_named + k;
        throw FieldProblem{std::string("unknown ") + spec.name_kind + " name " + quoted(word)};
    }
    throw FieldProblem{"unexpected " + describe_char(s[i]) + " in " + quoted(s)};
}

// One list element: `*`, `n`, `a-b`, each optionally followed by `/step`.
std::uint64_t parse_element(std::string_view e, const FieldSpec &spec) {
    std::size_t i = 0;
    int lo = 0;
    int hi = 0;
    if (e[0] == '*') {
        lo = spec.min;
        hi = spec.max;
        i = 1;
        if (i < e.size() && e[i] != '/')
            throw FieldProblem{"unexpected " + describe_char(e[i]) + " after '*' in " + quoted(e)};
    } else {
        lo = read_value(e, i, spec);
        hi = lo;
        if (i < e.size() && e[i] == '-') {
            ++i;
            if (i >= e.size() || e[i] == '/')
                throw FieldProblem{"missing end of range in " + quoted(e)};
            hi = read_value(e, i, spec);
            if (lo > hi)
                throw FieldProblem{"range " + quoted(e.substr(0, i)) + " has its start (" +
                                   std::to_string(lo) + ") after its end (" + std::to_string(hi) +
                                   ")"};
        } else if (i < e.size() && e[i] == '/') {
            hi = spec.max; // `a/s` means `a-max/s`
        }
    }
    int step = 1;
    if (i < e.size() && e[i] == '/') {
        ++i;
        if (i >= e.size())
            throw FieldProblem{"missing step after '/' in " + quoted(e)};
        if (!is_digit(e[i]))
            throw FieldProblem{"invalid step in " + quoted(e) + ": not a number"};
        step = read_number(e, i, "step");
        if (step < 1)
            throw FieldProblem{"step must be at least 1"};
    }
    if (i < e.size())
        throw FieldProblem{"unexpected " + describe_char(e[i]) + " in " + quoted(e)};

    std::uint64_t bits = 0;
    for (long long v = lo; v <= hi; v += step)
        bits |= std::uint64_t{1} << v;
    return bits;
}

std::uint64_t parse_field(std::string_view field, const FieldSpec &spec) {
    std::uint64_t bits = 0;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t comma = field.find(',', pos);
        const std::string_view element = field.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (element.empty())
            throw FieldProblem{"empty element in list " + quoted(field)};
        bits |= parse_element(element, spec);
        if (comma == std::string_view::npos)
            return bits;
        pos = comma + 1;
    }
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split_fields(std::string_view s) {
    std::vector<std::string_view> fields;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_blank(s[i]))
            ++i;
        const std::size_t start = i;
        while (i < s.size() && !is_blank(s[i]))
            ++i;
        if (i > start)
            fields.push_back(s.substr(start, i - start));
    }
    return fields;
}

int lowest_bit(std::uint64_t bits) {
    return __builtin_ctzll(bits);
}

int highest_bit(std::uint64_t bits) {
    return 63 - __builtin_clzll(bits);
}

// Two broken-down times show the same wall clock (date and time of day).
bool same_wall(const std::tm &a, const std::tm &b) {
    return a.tm_year == b.tm_year && a.tm_mon == b.tm_mon && a.tm_mday == b.tm_mday &&
           a.tm_hour == b.tm_hour && a.tm_min == b.tm_min && a.tm_sec == b.tm_sec;
}

std::string utc_text(std::time_t t) {
    std::tm tm{};
    char buf[32];
    if (gmtime_r(&t, &tm) == nullptr ||
        std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return std::to_string(static_cast<long long>(t));
    return buf;
}

// "4,6,9,11": the set bits of `bits` between lo and hi.
std::string bit_list(std::uint64_t bits, int lo, int hi) {
    std::string out;
    for (int v = lo; v <= hi; ++v) {
        if ((bits >> v) & 1) {
            if (!out.empty())
                out += ',';
            out += std::to_string(v);
        }
    }
    return out;
}

std::time_t floor_minute(std::time_t t) {
    std::time_t r = t % 60;
    if (r < 0)
        r += 60;
    return t - r;
}

} // namespace

CronExpr CronExpr::parse(std::string_view text) {
    const std::string_view trimmed = trim(text);
    const std::string prefix = "schedule " + quoted(trimmed) + ": ";
    std::string_view body = trimmed;

    if (trimmed.empty())
        throw CronError(prefix + "empty; expected 5 fields (minute hour day-of-month month "
                                 "day-of-week) or a macro such as @daily");
    if (trimmed.front() == '@') {
        std::size_t end = 0;
        while (end < trimmed.size() && !is_space(trimmed[end]))
            ++end;
        const std::string_view name = trimmed.substr(0, end);
        if (end < trimmed.size())
            throw CronError(prefix + "unexpected text after macro " + quoted(name));
        if (iequals(name, "@reboot"))
            throw CronError(prefix + "@reboot is not supported: keystoned runs tasks on a clock "
                                     "schedule only");
        body = {};
        for (const Macro &m : kMacros)
            if (iequals(name, m.name))
                body = m.expansion;
        if (body.empty())
            throw CronError(prefix + "unknown macro " + quoted(name) +
                            " (known: @yearly @annually @monthly @weekly @daily @midnight "
                            "@hourly)");
    }

    const std::vector<std::string_view> fields = split_fields(body);
    if (fields.size() != kFields.size())
        throw CronError(prefix +
                        "expected 5 fields (minute hour day-of-month month day-of-week), " +
                        "found " + std::to_string(fields.size()));

    std::array<std::uint64_t, 5> bits{};
    for (std::size_t f = 0; f < kFields.size(); ++f) {
        try {
            bits[f] = parse_field(fields[f], kFields[f]);
        } catch (const FieldProblem &p) {
            throw CronError(prefix + kFields[f].name + " field: " + p.why);
        }
    }

    CronExpr e;
    e.m_text = std::string(trimmed);
    e.m_minutes = bits[0];
    e.m_hours = static_cast<std::uint32_t>(bits[1]);
    e.m_days = static_cast<std::uint32_t>(bits[2]);
    e.m_months = static_cast<std::uint32_t>(bits[3]);
    // Day of week 7 is Sunday, like 0.
    e.m_weekdays = static_cast<std::uint32_t>((bits[4] & 0x7f) | ((bits[4] >> 7) & 1));
    e.m_days_star = fields[2].front() == '*';
    e.m_weekdays_star = fields[4].front() == '*';

    // With the OR rule any weekday makes some day match. Otherwise the day of month must exist in
    // a selected month (weekdays then follow, as dates drift through the week over the years).
    if (e.m_days_star || e.m_weekdays_star) {
        bool possible = false;
        for (int m = 1; m <= 12 && !possible; ++m)
            if ((e.m_months >> m) & 1)
                possible = (e.m_days & ((std::uint32_t{2} << kMaxMonthDays[m]) - 2)) != 0;
        if (!possible)
            throw CronError(prefix + "day-of-month field: never fires: no day " +
                            bit_list(e.m_days, 1, 31) + " in month " + bit_list(e.m_months, 1, 12));
        // Dates that must also fall on given weekdays can be decades apart (February 29 on a
        // Sunday: 28 years and more). Refuse what next_after() could not find within its horizon.
        if (e.m_weekdays != 0x7f) {
            const int gap = e.longest_gap_in_days();
            if (gap > kMaxGapDays)
                throw CronError(prefix + "day-of-week field: fires too rarely: with the " +
                                "day-of-month and month fields, matching days are up to " +
                                std::to_string((gap + 182) / 365) +
                                " years apart (at most 10 are supported)");
        }
    }
    return e;
}

// The longest distance in days between consecutive matching days, over the 400-year cycle of the
// Gregorian calendar (after which dates and weekdays repeat). Only the date fields count.
int CronExpr::longest_gap_in_days() const {
    constexpr int kCycleDays = 146097;
    std::tm day{};
    int year = 2000; // 2000-01-01 was a Saturday
    day.tm_mon = 0;
    day.tm_mday = 1;
    day.tm_wday = 6;
    int first = -1;
    int last = -1;
    int longest = 0;
    for (int n = 0; n < kCycleDays; ++n) {
        if (day_matches(day)) {
            if (first < 0)
                first = n;
            else
                longest = std::max(longest, n - last);
            last = n;
        }
        // Advance by one day.
        const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const int month_days = day.tm_mon == 1
                                   ? (leap ? 29 : 28)
                                   : kMaxMonthDays[static_cast<std::size_t>(day.tm_mon) + 1];
        day.tm_wday = (day.tm_wday + 1) % 7;
        if (++day.tm_mday > month_days) {
            day.tm_mday = 1;
            if (++day.tm_mon == 12) {
                day.tm_mon = 0;
                ++year;
            }
        }
    }
    if (first < 0)
        return kCycleDays;
    return std::max(longest, first + kCycleDays - last);
}

bool CronExpr::day_matches(const std::tm &wall) const {
    const bool dom = (m_days >> wall.tm_mday) & 1;
    const bool dow = (m_weekdays >> wall.tm_wday) & 1;
    if (!((m_months >> (wall.tm_mon + 1)) & 1))
        return false;
    if (m_days_star || m_weekdays_star)
        return dom && dow;
    return dom || dow;
}

bool CronExpr::matches(const std::tm &wall) const {
    return ((m_minutes >> wall.tm_min) & 1) && ((m_hours >> wall.tm_hour) & 1) && day_matches(wall);
}

std::tm CronExpr::local(std::time_t t) const {
    std::tm tm{};
    if (localtime_r(&t, &tm) == nullptr)
        throw CronError("schedule " + quoted(m_text) + ": cannot convert " + std::to_string(t) +
                        " to local time");
    return tm;
}

// Whether no earlier instant shows the same wall clock as t, i.e. t is not in the second pass of
// wall times the clock fell back over.
bool CronExpr::first_pass(std::time_t t, const std::tm &wall) const {
    // Wall times repeat only after the clock went back, by less than a day, so unless the offset
    // was larger a day earlier t is the only instant with its wall time. This also spares most
    // calls of mktime(), which is slow when asked for a tm_isdst that is not in force.
    const std::tm day_before = local(t - 86400);
    if (day_before.tm_gmtoff <= wall.tm_gmtoff)
        return true;
    for (int dst : {0, 1}) {
        std::tm probe{};
        probe.tm_year = wall.tm_year;
        probe.tm_mon = wall.tm_mon;
        probe.tm_mday = wall.tm_mday;
        probe.tm_hour = wall.tm_hour;
        probe.tm_min = wall.tm_min;
        probe.tm_sec = wall.tm_sec;
        probe.tm_isdst = dst;
        // For a tm_isdst that is not in force, glibc's mktime() borrows the offset of a nearby time
        // that has it; the result then shows another wall clock and is discarded below.
        const std::time_t r = std::mktime(&probe);
        if (r == static_cast<std::time_t>(-1) || r >= t)
            continue;
        if (same_wall(local(r), wall))
            return false;
    }
    // Some zones move the clock back without a change of tm_isdst (Europe/Moscow on 2014-10-26,
    // America/Caracas on 2007-12-09), and mktime() then names only one of the two instants; try the
    // offset that was in force a day earlier as well.
    const std::time_t r = t - (day_before.tm_gmtoff - wall.tm_gmtoff);
    return !same_wall(local(r), wall);
}

bool CronExpr::fires_at(std::time_t t, const std::tm &wall) const {
    const bool wildcard_hour = hour_is_wildcard();
    if (!wildcard_hour) {
        const std::tm previous = local(t - 60);
        if (wall.tm_gmtoff > previous.tm_gmtoff) {
            // The clock jumped forward between t - 60 and t: wall times from one minute after the
            // previous wall time up to (excluding) this one never happened. A match among them
            // fires now, once.
            const std::time_t first = t + previous.tm_gmtoff;
            const std::time_t end = t + wall.tm_gmtoff;
            for (std::time_t w = first; w < end; w += 60) {
                std::tm skipped{};
                if (gmtime_r(&w, &skipped) != nullptr && matches(skipped))
                    return true;
            }
        }
    }
    if (!matches(wall))
        return false;
    return wildcard_hour || first_pass(t, wall);
}

// Minutes from `wall` to the next wall time that could match (at most to the next midnight),
// assuming the UTC offset stays the same.
int CronExpr::minutes_to_next_candidate(const std::tm &wall) const {
    const int now = wall.tm_hour * 60 + wall.tm_min;
    if (!day_matches(wall))
        return kMinutesPerDay - now;
    if ((m_hours >> wall.tm_hour) & 1) {
        const std::uint64_t later = m_minutes & ~((std::uint64_t{2} << wall.tm_min) - 1);
        if (later != 0)
            return lowest_bit(later) - wall.tm_min;
    }
    const std::uint32_t later_hours = m_hours & ~((std::uint32_t{2} << wall.tm_hour) - 1);
    if (later_hours != 0)
        return lowest_bit(later_hours) * 60 + lowest_bit(m_minutes) - now;
    return kMinutesPerDay - now;
}

// Minutes from `wall` back to the previous wall time that could match (at most to 23:59 of the
// day before), assuming the UTC offset stays the same.
int CronExpr::minutes_to_previous_candidate(const std::tm &wall) const {
    const int now = wall.tm_hour * 60 + wall.tm_min;
    if (!day_matches(wall))
        return now + 1;
    if ((m_hours >> wall.tm_hour) & 1) {
        const std::uint64_t earlier = m_minutes & ((std::uint64_t{1} << wall.tm_min) - 1);
        if (earlier != 0)
            return wall.tm_min - highest_bit(earlier);
    }
    const std::uint32_t earlier_hours = m_hours & ((std::uint32_t{1} << wall.tm_hour) - 1);
    if (earlier_hours != 0)
        return now - (highest_bit(earlier_hours) * 60 + highest_bit(m_minutes));
    return now + 1;
}

// Keeps the arithmetic of the searches (a minute and the horizon either side) within time_t.
void CronExpr::check_searchable(std::time_t t) const {
    if (t < std::numeric_limits<std::time_t>::min() + kHorizon + 120 ||
        t > std::numeric_limits<std::time_t>::max() - kHorizon - 120)
        throw CronError("schedule " + quoted(m_text) + ": time " + std::to_string(t) +
                        " is out of range");
}

// The search visits only wall times that could match, jumping over the rest, at most a day at a
// time. A jump is taken only if the UTC offset is the same at both ends; otherwise the offset
// changed in between (once, as a zone changes it at most once a day) and the first minute after
// the change is found by bisection and examined, since a skipped wall time may fire there.
std::time_t CronExpr::next_after(std::time_t after) const {
    check_searchable(after);
    const std::time_t limit = after + kHorizon;
    std::time_t t = floor_minute(after) + 60;
    std::tm wall = local(t);
    while (t <= limit) {
        if (fires_at(t, wall))
            return t;
        const std::time_t target =
            t + 60 * static_cast<std::time_t>(minutes_to_next_candidate(wall));
        std::tm target_wall = local(target);
        if (target_wall.tm_gmtoff == wall.tm_gmtoff) {
            t = target;
            wall = target_wall;
            continue;
        }
        // Offset of lo equals wall's, offset of hi differs; narrow down to adjacent minutes.
        std::time_t lo = t;
        std::time_t hi = target;
        while (hi - lo > 60) {
            const std::time_t mid = lo + (hi - lo) / 120 * 60;
            const std::tm mid_wall = local(mid);
            if (mid_wall.tm_gmtoff == wall.tm_gmtoff) {
                lo = mid;
            } else {
                hi = mid;
                target_wall = mid_wall;
            }
        }
        t = hi;
        wall = target_wall;
    }
    throw CronError("schedule " + quoted(m_text) + ": does not fire within 10 years after " +
                    utc_text(after));
}

std::optional<std::time_t> CronExpr::last_at_or_before(std::time_t at) const {
    check_searchable(at);
    const std::time_t limit = at - kHorizon;
    std::time_t t = floor_minute(at);
    std::tm wall = local(t);
    while (t >= limit) {
        if (fires_at(t, wall))
            return t;
        const std::time_t target =
            t - 60 * static_cast<std::time_t>(minutes_to_previous_candidate(wall));
        const std::tm target_wall = local(target);
        if (target_wall.tm_gmtoff == wall.tm_gmtoff) {
            t = target;
            wall = target_wall;
            continue;
        }
        // Offset of hi equals wall's, offset of lo differs: find the first minute with t's offset.
        // The minutes after it up to t cannot fire; it can, if the clock jumped forward there.
        std::time_t lo = target;
        std::time_t hi = t;
        std::tm hi_wall = wall;
        while (hi - lo > 60) {
            const std::time_t mid = lo + (hi - lo) / 120 * 60;
            const std::tm mid_wall = local(mid);
            if (mid_wall.tm_gmtoff == wall.tm_gmtoff) {
                hi = mid;
                hi_wall = mid_wall;
            } else {
                lo = mid;
            }
        }
        if (hi == t) {
            // The change is between t - 60 and t, and t is done: go on with the minute before.
            t -= 60;
            wall = local(t);
        } else {
            t = hi;
            wall = hi_wall;
        }
    }
    return std::nullopt;
}

} // namespace keystone
