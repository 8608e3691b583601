// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests for cron schedules: syntax, errors, and firing times across DST changes in real zones.
#include "cron.hpp"

#include <check.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using namespace keystone;

// ck_assert_msg() records a mark point (a write to Check's result channel) even when it passes;
// loops that check thousands of instants use this instead, which only acts on failure.
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

namespace {

// "2026-03-08 07:00" (UTC) as an instant; the tables read as UTC so they do not depend on TZ.
std::time_t utc(const char *text) {
    std::tm tm{};
    int sec = 0;
    const int n = std::sscanf(text, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                              &tm.tm_hour, &tm.tm_min, &sec);
    ck_assert_msg(n == 5 || n == 6, "bad time in test table: %s", text);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = sec;
    return timegm(&tm);
}

std::string show(std::time_t t) {
    std::tm u{};
    std::tm l{};
    gmtime_r(&t, &u);
    localtime_r(&t, &l);
    char utc_part[32];
    char local_part[40];
    std::strftime(utc_part, sizeof utc_part, "%Y-%m-%d %H:%M:%S", &u);
    std::strftime(local_part, sizeof local_part, "%Y-%m-%d %H:%M %Z", &l);
    return std::string(utc_part) + " UTC (" + local_part + ")";
}

std::string show(const std::optional<std::time_t> &t) {
    return t ? show(*t) : "nothing";
}

void set_zone(const char *zone) {
    ck_assert_int_eq(setenv("TZ", zone, 1), 0);
    tzset();
}

CronExpr parse_ok(const char *text) {
    try {
        return CronExpr::parse(text);
    } catch (const CronError &e) {
        ck_abort_msg("parse(\"%s\") failed: %s", text, e.what());
    }
}

std::time_t next_ok(const CronExpr &e, std::time_t after) {
    try {
        return e.next_after(after);
    } catch (const CronError &err) {
        ck_abort_msg("next_after(%s) failed: %s", show(after).c_str(), err.what());
    }
}

std::optional<std::time_t> last_ok(const CronExpr &e, std::time_t at) {
    try {
        return e.last_at_or_before(at);
    } catch (const CronError &err) {
        ck_abort_msg("last_at_or_before(%s) failed: %s", show(at).c_str(), err.what());
    }
}

// The first `n` firing times after `after`.
std::vector<std::time_t> firings(const CronExpr &e, std::time_t after, int n) {
    std::vector<std::time_t> out;
    for (int i = 0; i < n; ++i) {
        after = next_ok(e, after);
        out.push_back(after);
    }
    return out;
}

// Checks next_after() and last_at_or_before() against a list of consecutive firing times.
void check_sequence(const char *zone, const char *text, std::time_t start,
                    const std::vector<std::time_t> &want) {
    set_zone(zone);
    const CronExpr e = parse_ok(text);
    std::time_t from = start;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const std::time_t got = next_ok(e, from);
        REQUIRE(got == want[i], "%s \"%s\": firing %zu after %s: got %s, want %s", zone, text, i,
                show(from).c_str(), show(got).c_str(), show(want[i]).c_str());
        // Any instant in the minute before a firing leads to it, too.
        REQUIRE(next_ok(e, want[i] - 1) == want[i], "%s \"%s\": next_after(%s - 1s)", zone, text,
                show(want[i]).c_str());
        from = got;
    }
    for (std::size_t i = 0; i < want.size(); ++i) {
        const auto at = last_ok(e, want[i]);
        REQUIRE(at && *at == want[i], "%s \"%s\": last_at_or_before(%s) = %s", zone, text,
                show(want[i]).c_str(), show(at).c_str());
        const auto within = last_ok(e, want[i] + 59);
        REQUIRE(within && *within == want[i], "%s \"%s\": last_at_or_before(%s + 59s) = %s", zone,
                text, show(want[i]).c_str(), show(within).c_str());
        if (i + 1 < want.size()) {
            for (std::time_t before : {want[i + 1] - 1, want[i + 1] - 60}) {
                if (before < want[i])
                    continue;
                const auto prev = last_ok(e, before);
                REQUIRE(prev && *prev == want[i], "%s \"%s\": last_at_or_before(%s) = %s, want %s",
                        zone, text, show(before).c_str(), show(prev).c_str(),
                        show(want[i]).c_str());
            }
        }
    }
}

struct SequenceCase {
    const char *zone;
    const char *text;
    const char *start;              // UTC, exclusive
    std::vector<const char *> want; // UTC, the local time in the comment
};

std::vector<std::time_t> utc_list(const std::vector<const char *> &texts) {
    std::vector<std::time_t> out;
    for (const char *s : texts)
        out.push_back(utc(s));
    return out;
}

void run_sequence(const SequenceCase &c) {
    check_sequence(c.zone, c.text, utc(c.start), utc_list(c.want));
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Parsing

START_TEST(test_text_and_whitespace) {
    set_zone("UTC");
    static const struct {
        const char *given;
        const char *text;
    } cases[] = {
        {"0 0 * * *", "0 0 * * *"},
        {"  0 0 * * *\t", "0 0 * * *"},
        {"0\t0  *   *\t\t*", "0\t0  *   *\t\t*"},
        {"\n@daily\n", "@daily"},
    };
    const CronExpr daily = parse_ok("0 0 * * *");
    for (const auto &c : cases) {
        const CronExpr e = parse_ok(c.given);
        ck_assert_str_eq(e.text().c_str(), c.text);
        ck_assert(firings(e, utc("2026-01-01 12:00"), 3) ==
                  firings(daily, utc("2026-01-01 12:00"), 3));
    }
}
END_TEST

// Pairs of expressions that must select the same instants.
START_TEST(test_equivalent_forms) {
    set_zone("UTC");
    static const struct {
        const char *a;
        const char *b;
    } cases[] = {
        // Sunday is 0, 7 and sun in any case.
        {"0 12 * * 0", "0 12 * * 7"},
        {"0 12 * * 0", "0 12 * * sun"},
        {"0 12 * * 0", "0 12 * * SUN"},
        {"0 12 * * 0", "0 12 * * Sun"},
        {"0 12 * * 5-7", "0 12 * * 0,5,6"},
        {"0 12 * * 0-7", "0 12 * * *"},
        {"0 12 * * sun-sat", "0 12 * * *"},
        {"0 12 * jan-mar mon-fri", "0 12 * 1-3 1-5"},
        {"0 12 * JAN,Jul,dEc *", "0 12 * 1,7,12 *"},
        {"0 12 * * mon,wed,FRI", "0 12 * * 1,3,5"},
        // Steps.
        {"*/15 * * * *", "0,15,30,45 * * * *"},
        {"*/1 * * * *", "* * * * *"},
        {"0-59/20 * * * *", "0,20,40 * * * *"},
        {"10/20 * * * *", "10,30,50 * * * *"},
        {"0 0-23/6 * * *", "0 0,6,12,18 * * *"},
        {"0 0 1 jan/3 *", "0 0 1 1,4,7,10 *"},
        {"0 0 * * 1/2", "0 0 * * 1,3,5,7"}, // a/n in day-of-week runs to 7, Sunday
        {"0 0 * * */2", "0 0 * * 0,2,4,6"},
        {"0 0 */10 * *", "0 0 1,11,21,31 * *"},
        {"5,10-12,40/10 * * * *", "5,10,11,12,40,50 * * * *"},
        {"*/45 * * * *", "0,45 * * * *"},
        {"*/60 * * * *", "0 * * * *"},
        // Macros, in any case.
        {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"},
        {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"},
        {"@daily", "0 0 * * *"},
        {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
        {"@Daily", "0 0 * * *"},
    };
    static const char *const starts[] = {"2025-12-31 23:59", "2026-02-27 13:07", "2027-06-30 00:00",
                                         "2028-02-28 23:30"};
    for (const auto &c : cases) {
        const CronExpr a = parse_ok(c.a);
        const CronExpr b = parse_ok(c.b);
        for (const char *s : starts) {
            const std::vector<std::time_t> fa = firings(a, utc(s), 12);
            const std::vector<std::time_t> fb = firings(b, utc(s), 12);
            for (std::size_t i = 0; i < fa.size(); ++i)
                REQUIRE(fa[i] == fb[i], "\"%s\" vs \"%s\" from %s: firing %zu: %s vs %s", c.a, c.b,
                        s, i, show(fa[i]).c_str(), show(fb[i]).c_str());
        }
    }
}
END_TEST

START_TEST(test_hour_wildcard) {
    static const struct {
        const char *text;
        bool wildcard;
    } cases[] = {
        {"*/15 * * * *", true}, {"0 * * * *", true},   {"0 */1 * * *", true},
        {"0 0-23 * * *", true}, {"@hourly", true},     {"0 0 * * *", false},
        {"0 */2 * * *", false}, {"30 2 * * *", false}, {"* 0-22 * * *", false},
    };
    for (const auto &c : cases)
        ck_assert_msg(parse_ok(c.text).hour_is_wildcard() == c.wildcard, "\"%s\"", c.text);
}
END_TEST

// Errors: the message names the expression, the field and the reason.
static const struct {
    const char *text;
    const char *field; // "minute", or nullptr for errors about the whole expression
    const char *why;
} error_cases[] = {
    {"", nullptr, "empty"},
    {" \t ", nullptr, "empty"},
    {"* * * *", nullptr, "expected 5 fields (minute hour day-of-month month day-of-week), found 4"},
    {"* * * * * *", nullptr, "found 6"},
    {"0 0 * * * /bin/true", nullptr, "found 6"},
    {"@reboot", nullptr, "@reboot is not supported"},
    {"@often", nullptr, "unknown macro \"@often\""},
    {"@", nullptr, "unknown macro \"@\""},
    {"@daily 5", nullptr, "unexpected text after macro \"@daily\""},
    {"1,,2 * * * *", "minute", "empty element in list \"1,,2\""},
    {"1, * * * *", "minute", "empty element"},
    {",1 * * * *", "minute", "empty element"},
    {"* * , * *", "day-of-month", "empty element"},
    {"60 * * * *", "minute", "value 60 is out of range 0-59"},
    {"* 24 * * *", "hour", "value 24 is out of range 0-23"},
    {"* * 0 * *", "day-of-month", "value 0 is out of range 1-31"},
    {"* * 32 * *", "day-of-month", "value 32 is out of range 1-31"},
    {"* * * 0 *", "month", "value 0 is out of range 1-12"},
    {"* * * 13 *", "month", "value 13 is out of range 1-12"},
    {"* * * * 8", "day-of-week", "value 8 is out of range 0-7"},
    {"0-60 * * * *", "minute", "value 60 is out of range"},
    {"5-3 * * * *", "minute", "range \"5-3\" has its start (5) after its end (3)"},
    {"* * * * fri-mon", "day-of-week", "has its start (5) after its end (1)"},
    {"* * * dec-jan *", "month", "has its start (12) after its end (1)"},
    {"*/0 * * * *", "minute", "step must be at least 1"},
    {"* 1-5/0 * * *", "hour", "step must be at least 1"},
    {"* * * * 1/0", "day-of-week", "step must be at least 1"},
    {"*/ * * * *", "minute", "missing step after '/'"},
    {"*/x * * * *", "minute", "invalid step in \"*/x\""},
    {"*/5x * * * *", "minute", "invalid step \"5x\": not a number"},
    {"1- * * * *", "minute", "missing end of range"},
    {"1-/2 * * * *", "minute", "missing end of range"},
    {"5x * * * *", "minute", "invalid number \"5x\": not a number"},
    {"* 1.5 * * *", "hour", "invalid number \"1.5\""},
    {"* 12am * * *", "hour", "invalid number \"12am\""},
    {"* 1#2 * * *", "hour", "unexpected character '#'"},
    {"? * * * *", "minute", "unexpected character '?'"},
    {"-5 * * * *", "minute", "unexpected character '-'"},
    {"1-2-3 * * * *", "minute", "unexpected character '-' in \"1-2-3\""},
    {"1/2/3 * * * *", "minute", "unexpected character '/'"},
    {"*x * * * *", "minute", "unexpected character 'x' after '*'"},
    {"** * * * *", "minute", "unexpected character '*' after '*'"},
    {"*-5 * * * *", "minute", "after '*'"},
    {"1\n2 * * * *", "minute", "unexpected byte 0x0a"},
    {"99999999999 * * * *", "minute", "number \"99999999999\" is too large"},
    {"1-99999999999999999999 * * * *", "minute", "is too large"},
    {"*/99999999999 * * * *", "minute", "step \"99999999999\" is too large"},
    {"jan * * * *", "minute", "unexpected name \"jan\": this field takes numbers 0-59"},
    {"* * mon * *", "day-of-month", "unexpected name \"mon\""},
    {"* * * foo *", "month", "unknown month name \"foo\""},
    {"* * * january *", "month", "unknown month name \"january\""},
    {"* * * * funday", "day-of-week", "unknown day name \"funday\""},
    {"* * * * mon1", "day-of-week", "unknown day name \"mon1\""},
    {"0 0 30 2 *", "day-of-month", "never fires: no day 30 in month 2"},
    {"0 0 31 4,6,9,11 *", "day-of-month", "never fires: no day 31 in month 4,6,9,11"},
    {"0 0 30,31 feb *", "day-of-month", "no day 30,31 in month 2"},
    {"0 0 30 2 */7", "day-of-month", "never fires"},
    {"0 0 29 2 */7", "day-of-week", "fires too rarely"}, // every 28 years, or 40 around 2100
    {"0 0 */28 2 */7", "day-of-week", "matching days are up to 12 years apart"},
    {"0 0 1 1 */7", "day-of-week", "up to 11 years apart"},
};

START_TEST(test_parse_errors) {
    const auto &c = error_cases[_i];
    std::string want_prefix = std::string("schedule \"") + c.text + "\": ";
    // The message quotes the trimmed expression with control characters escaped.
    if (std::strcmp(c.text, " \t ") == 0)
        want_prefix = "schedule \"\": ";
    if (std::strchr(c.text, '\n') != nullptr)
        want_prefix = "schedule \"1\\x0a2 * * * *\": ";
    if (c.field != nullptr)
        want_prefix += std::string(c.field) + " field: ";
    try {
        (void)CronExpr::parse(c.text);
    } catch (const CronError &e) {
        const std::string what = e.what();
        ck_assert_msg(what.compare(0, want_prefix.size(), want_prefix) == 0,
                      "\"%s\": message \"%s\" does not start with \"%s\"", c.text, what.c_str(),
                      want_prefix.c_str());
        ck_assert_msg(what.find(c.why) != std::string::npos,
                      "\"%s\": message \"%s\" does not mention \"%s\"", c.text, what.c_str(),
                      c.why);
        return;
    }
    ck_abort_msg("\"%s\" was accepted", c.text);
}
END_TEST

START_TEST(test_error_message_exact) {
    try {
        (void)CronExpr::parse("*/0 * * * *");
        ck_abort_msg("accepted");
    } catch (const std::runtime_error &e) { // CronError is a runtime_error (via keystone::Error)
        ck_assert_str_eq(e.what(),
                         "schedule \"*/0 * * * *\": minute field: step must be at least 1");
    }
}
END_TEST

// Expressions that look odd but are valid and can fire.
START_TEST(test_unusual_but_valid) {
    set_zone("UTC");
    static const struct {
        const char *text;
        const char *start;
        const char *first;
    } cases[] = {
        // Both day fields restricted: February 30 never exists, but Mondays in February do.
        {"0 0 30 2 mon", "2026-01-01 00:00", "2026-02-02 00:00"},
        {"0 0 31 * *", "2026-04-01 00:00", "2026-05-31 00:00"},
        {"59 23 31 12 *", "2026-01-01 00:00", "2026-12-31 23:59"},
        {"0 0 29 feb *", "2028-02-28 00:00", "2028-02-29 00:00"},
        {"7 7 7 7 7", "2026-01-01 00:00", "2026-07-05 07:07"}, // Sunday July 5 before the 7th
        {"00 007 * * *", "2026-01-01 00:00", "2026-01-01 07:00"},
    };
    for (const auto &c : cases) {
        const std::time_t got = next_ok(parse_ok(c.text), utc(c.start));
        ck_assert_msg(got == utc(c.first), "\"%s\": got %s, want %s", c.text, show(got).c_str(),
                      c.first);
    }
}
END_TEST

// ---------------------------------------------------------------------------------------------
// Firing times without DST: UTC, month ends, the day rule, a half-hour zone

// clang-format off
static const SequenceCase plain_cases[] = {
    {"UTC", "*/15 * * * *", "2026-01-01 00:07",
        {"2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 00:45", "2026-01-01 01:00"}},
    {"UTC", "*/15 * * * *", "2026-01-01 00:15", {"2026-01-01 00:30"}}, // strictly after
    {"UTC", "0 * * * *", "2026-01-01 00:00",
        {"2026-01-01 01:00", "2026-01-01 02:00", "2026-01-01 03:00"}},
    {"UTC", "0 * * * *", "2026-12-31 23:00:30", {"2027-01-01 00:00", "2027-01-01 01:00"}},
    {"UTC", "* * * * *", "2026-01-01 00:00:30", {"2026-01-01 00:01", "2026-01-01 00:02"}},
    {"UTC", "*/5 * * * *", "2026-01-01 23:58", {"2026-01-02 00:00", "2026-01-02 00:05"}},
    {"UTC", "0 0 * * *", "2026-02-27 12:00",
        {"2026-02-28 00:00", "2026-03-01 00:00", "2026-03-02 00:00"}},

    // Month ends.
    {"UTC", "0 0 31 * *", "2026-01-31 00:00",
        {"2026-03-31 00:00", "2026-05-31 00:00", "2026-07-31 00:00", "2026-08-31 00:00",
         "2026-10-31 00:00", "2026-12-31 00:00", "2027-01-31 00:00"}},
    {"UTC", "0 0 29 2 *", "2026-01-01 00:00", {"2028-02-29 00:00", "2032-02-29 00:00"}},
    {"UTC", "0 0 29 2 *", "2099-01-01 00:00", {"2104-02-29 00:00"}}, // 2100 is no leap year
    {"UTC", "0 0 30 * *", "2026-01-30 00:00",
        {"2026-03-30 00:00", "2026-04-30 00:00", "2026-05-30 00:00"}},
    {"UTC", "0 0 30 * *", "2028-01-30 00:00", {"2028-03-30 00:00"}},
    {"UTC", "0 0 29 * *", "2027-01-29 00:00", {"2027-03-29 00:00"}},
    {"UTC", "0 0 29 * *", "2028-01-29 00:00", {"2028-02-29 00:00", "2028-03-29 00:00"}},
    {"UTC", "@yearly", "2026-06-01 00:00", {"2027-01-01 00:00", "2028-01-01 00:00"}},

    // Day-of-month OR day-of-week when both are restricted: the 13th or a Friday (in January
    // 2026 the 1st is a Thursday and the 13th a Tuesday).
    {"UTC", "0 0 13 * 5", "2026-01-01 00:00",
        {"2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00", "2026-01-16 00:00",
         "2026-01-23 00:00", "2026-01-30 00:00", "2026-02-06 00:00"}},
    {"UTC", "0 0 1,15 * mon", "2025-12-31 12:00",
        {"2026-01-01 00:00", "2026-01-05 00:00", "2026-01-12 00:00", "2026-01-15 00:00",
         "2026-01-19 00:00", "2026-01-26 00:00", "2026-02-01 00:00", "2026-02-02 00:00"}},
    // A field starting with '*' makes it AND: odd days that are Mondays, 1sts that are Sundays.
    {"UTC", "0 0 */2 * 1", "2026-01-01 00:00",
        {"2026-01-05 00:00", "2026-01-19 00:00", "2026-02-09 00:00", "2026-02-23 00:00"}},
    {"UTC", "0 0 1 * */7", "2026-01-01 00:00", {"2026-02-01 00:00", "2026-03-01 00:00"}},
    {"UTC", "0 0 * * 1", "2026-01-01 00:00", {"2026-01-05 00:00", "2026-01-12 00:00"}},
    {"UTC", "0 0 1 * *", "2026-01-01 00:00", {"2026-02-01 00:00", "2026-03-01 00:00"}},

    // Asia/Kolkata is UTC+05:30 all year.
    {"Asia/Kolkata", "0 0 * * *", "2026-01-01 00:00",
        {"2026-01-01 18:30", "2026-01-02 18:30"}},                      // 00:00 IST
    {"Asia/Kolkata", "*/45 * * * *", "2026-01-01 00:00",                // 05:30 IST
        {"2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 01:15"}},  // 05:45, 06:00, 06:45
    {"Asia/Kolkata", "0 * * * *", "2026-01-01 00:00", {"2026-01-01 00:30", "2026-01-01 01:30"}},
};
// clang-format on

START_TEST(test_plain_sequences) {
    run_sequence(plain_cases[_i]);
}
END_TEST

// ---------------------------------------------------------------------------------------------
// DST. Transitions (zdump -v -c 2025,2028, tzdata 2025b):
//   America/New_York    2026-03-08 07:00 UTC  01:59:59 EST -> 03:00 EDT
//                       2026-11-01 06:00 UTC  01:59:59 EDT -> 01:00 EST
//   Europe/Berlin       2026-03-29 01:00 UTC  01:59:59 CET -> 03:00 CEST
//                       2026-10-25 01:00 UTC  02:59:59 CEST -> 02:00 CET
//   America/Santiago    2026-04-05 03:00 UTC  Sat 23:59:59 -03 -> 23:00 -04
//                       2026-09-06 04:00 UTC  Sat 23:59:59 -04 -> Sun 01:00 -03 (no midnight)
//   Australia/Lord_Howe 2026-04-04 15:00 UTC  01:59:59 +11 -> 01:30 +1030
//                       2026-10-03 15:30 UTC  01:59:59 +1030 -> 02:30 +11
//   Europe/Moscow       2014-10-25 22:00 UTC  01:59:59 MSK+4 -> 01:00 MSK+3 (isdst 0 on both)
//   America/Caracas     2007-12-09 07:00 UTC  02:59:59 -04 -> 02:30 -0430 (a zone without DST)

// clang-format off
static const SequenceCase dst_cases[] = {
    // New York, spring forward, Keystone's defaults.
    {"America/New_York", "*/15 * * * *", "2026-03-08 06:30",
        {"2026-03-08 06:45", "2026-03-08 07:00", "2026-03-08 07:15"}}, // 01:45 EST, 03:00 EDT
    {"America/New_York", "0 * * * *", "2026-03-08 05:30",
        {"2026-03-08 06:00", "2026-03-08 07:00", "2026-03-08 08:00"}}, // 01:00 EST, 03:00 EDT
    {"America/New_York", "*/5 * * * *", "2026-03-08 06:50",
        {"2026-03-08 06:55", "2026-03-08 07:00", "2026-03-08 07:05"}},
    {"America/New_York", "0 0 * * *", "2026-03-07 00:00",
        {"2026-03-07 05:00", "2026-03-08 05:00", "2026-03-09 04:00", "2026-03-10 04:00"}},
    // A fixed hour in the skipped interval fires at 03:00 EDT, once.
    {"America/New_York", "30 2 * * *", "2026-03-07 00:00",
        {"2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"}},
    {"America/New_York", "0 2 * * *", "2026-03-07 12:00",
        {"2026-03-08 07:00", "2026-03-09 06:00"}},
    {"America/New_York", "* 2 * * *", "2026-03-08 06:00",
        {"2026-03-08 07:00", "2026-03-09 06:00"}},
    {"America/New_York", "30 3 * * *", "2026-03-08 05:00",
        {"2026-03-08 07:30", "2026-03-09 07:30"}},
    {"America/New_York", "0 */2 * * *", "2026-03-08 05:30",
        {"2026-03-08 07:00", "2026-03-08 08:00"}},                      // 03:00 EDT, 04:00 EDT

    // New York, fall back: wildcard hours fire in both passes of 01:00-01:59.
    {"America/New_York", "*/15 * * * *", "2026-11-01 05:30",
        {"2026-11-01 05:45", "2026-11-01 06:00", "2026-11-01 06:15", "2026-11-01 06:30",
         "2026-11-01 06:45", "2026-11-01 07:00"}}, // 01:45 EDT, 01:00 EST, ..., 02:00 EST
    {"America/New_York", "0 * * * *", "2026-11-01 04:30",
        {"2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00"}}, // 01:00 EDT, 01:00 EST
    {"America/New_York", "*/5 * * * *", "2026-11-01 05:50",
        {"2026-11-01 05:55", "2026-11-01 06:00", "2026-11-01 06:05"}},
    {"America/New_York", "0 0 * * *", "2026-10-31 00:00",
        {"2026-10-31 04:00", "2026-11-01 04:00", "2026-11-02 05:00"}},
    {"America/New_York", "*/30 * * * *", "2026-11-01 04:45",
        {"2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 06:00", "2026-11-01 06:30",
         "2026-11-01 07:00"}},
    // A fixed hour in the repeated interval fires in the first pass only.
    {"America/New_York", "30 1 * * *", "2026-10-31 00:00",
        {"2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"}},
    {"America/New_York", "* 1 * * *", "2026-11-01 05:58",
        {"2026-11-01 05:59", "2026-11-02 06:00"}},
    {"America/New_York", "0,30 1-2 * * *", "2026-11-01 04:45",
        {"2026-11-01 05:00", "2026-11-01 05:30", "2026-11-01 07:00", "2026-11-01 07:30",
         "2026-11-02 06:00"}},

    // Berlin, spring forward.
    {"Europe/Berlin", "*/15 * * * *", "2026-03-29 00:30",
        {"2026-03-29 00:45", "2026-03-29 01:00", "2026-03-29 01:15"}}, // 01:45 CET, 03:00 CEST
    {"Europe/Berlin", "0 * * * *", "2026-03-28 23:30",
        {"2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00"}},
    {"Europe/Berlin", "*/5 * * * *", "2026-03-29 00:50",
        {"2026-03-29 00:55", "2026-03-29 01:00", "2026-03-29 01:05"}},
    {"Europe/Berlin", "0 0 * * *", "2026-03-28 00:00",
        {"2026-03-28 23:00", "2026-03-29 22:00", "2026-03-30 22:00"}},
    {"Europe/Berlin", "30 2 * * *", "2026-03-28 00:00",
        {"2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"}}, // 02:30, 03:00, 02:30

    // Berlin, fall back: 02:00-02:59 twice.
    {"Europe/Berlin", "*/15 * * * *", "2026-10-25 00:30",
        {"2026-10-25 00:45", "2026-10-25 01:00", "2026-10-25 01:15"}}, // 02:45 CEST, 02:00 CET
    {"Europe/Berlin", "0 * * * *", "2026-10-24 23:30",
        {"2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"}},
    {"Europe/Berlin", "*/5 * * * *", "2026-10-25 00:50",
        {"2026-10-25 00:55", "2026-10-25 01:00", "2026-10-25 01:05"}},
    {"Europe/Berlin", "0 0 * * *", "2026-10-24 00:00",
        {"2026-10-24 22:00", "2026-10-25 23:00"}},
    {"Europe/Berlin", "30 2 * * *", "2026-10-24 00:00",
        {"2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"}},
    {"Europe/Berlin", "*/30 * * * *", "2026-10-24 23:45",
        {"2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 01:00", "2026-10-25 01:30",
         "2026-10-25 02:00"}},

    // Santiago skips midnight: the daily run moves to 01:00 that Sunday.
    {"America/Santiago", "0 0 * * *", "2026-09-04 12:00",
        {"2026-09-05 04:00", "2026-09-06 04:00", "2026-09-07 03:00"}},
    {"America/Santiago", "@weekly", "2026-09-01 00:00",
        {"2026-09-06 04:00", "2026-09-13 03:00"}},
    {"America/Santiago", "*/15 * * * *", "2026-09-06 03:30",
        {"2026-09-06 03:45", "2026-09-06 04:00", "2026-09-06 04:15"}}, // 23:45 -04, 01:00 -03
    {"America/Santiago", "30 * * * *", "2026-09-06 03:00",
        {"2026-09-06 03:30", "2026-09-06 04:30", "2026-09-06 05:30"}}, // no 00:30, no catch-up

    // Santiago repeats 23:00-23:59 on Saturday 2026-04-04.
    {"America/Santiago", "0 0 * * *", "2026-04-03 12:00",
        {"2026-04-04 03:00", "2026-04-05 04:00", "2026-04-06 04:00"}},
    {"America/Santiago", "30 23 * * *", "2026-04-04 00:00",
        {"2026-04-04 02:30", "2026-04-05 02:30", "2026-04-06 03:30"}},
    {"America/Santiago", "*/30 * * * *", "2026-04-05 02:15",
        {"2026-04-05 02:30", "2026-04-05 03:00", "2026-04-05 03:30", "2026-04-05 04:00"}},

    // Lord Howe moves its clock by 30 minutes.
    {"Australia/Lord_Howe", "*/15 * * * *", "2026-10-03 15:00",
        {"2026-10-03 15:15", "2026-10-03 15:30", "2026-10-03 15:45"}}, // 01:45, 02:30 +11
    {"Australia/Lord_Howe", "0 2 * * *", "2026-10-02 00:00",
        {"2026-10-02 15:30", "2026-10-03 15:30", "2026-10-04 15:00"}}, // 02:00, 02:30, 02:00
    {"Australia/Lord_Howe", "45 2 * * *", "2026-10-03 12:00",
        {"2026-10-03 15:45", "2026-10-04 15:45"}},
    {"Australia/Lord_Howe", "0 * * * *", "2026-10-03 14:00",
        {"2026-10-03 14:30", "2026-10-03 16:00"}},                      // 01:00, 03:00 +11
    {"Australia/Lord_Howe", "45 1 * * *", "2026-04-04 00:00",
        {"2026-04-04 14:45", "2026-04-05 15:15"}},                      // 01:45 +11, 01:45 +1030
    {"Australia/Lord_Howe", "*/15 * * * *", "2026-04-04 14:20",
        {"2026-04-04 14:30", "2026-04-04 14:45", "2026-04-04 15:00", "2026-04-04 15:15",
         "2026-04-04 15:30"}},
    {"Australia/Lord_Howe", "0 0 * * *", "2026-04-03 00:00",
        {"2026-04-03 13:00", "2026-04-04 13:00", "2026-04-05 13:30"}},

    // Moscow 2014: the clock went back without a change of tm_isdst.
    {"Europe/Moscow", "30 1 * * *", "2014-10-25 00:00",
        {"2014-10-25 21:30", "2014-10-26 22:30"}},
    {"Europe/Moscow", "*/30 * * * *", "2014-10-25 20:50",
        {"2014-10-25 21:00", "2014-10-25 21:30", "2014-10-25 22:00", "2014-10-25 22:30",
         "2014-10-25 23:00"}},

    // Caracas 2007 went back 30 minutes, in a zone that has never had DST.
    {"America/Caracas", "45 2 * * *", "2007-12-08 00:00",
        {"2007-12-08 06:45", "2007-12-09 06:45", "2007-12-10 07:15"}},
    {"America/Caracas", "*/15 * * * *", "2007-12-09 06:40",
        {"2007-12-09 06:45", "2007-12-09 07:00", "2007-12-09 07:15", "2007-12-09 07:30"}},
};
// clang-format on

START_TEST(test_dst_sequences) {
    run_sequence(dst_cases[_i]);
}
END_TEST

// ---------------------------------------------------------------------------------------------
// last_at_or_before beyond the sequences above

START_TEST(test_last_due_slot) {
    static const struct {
        const char *zone;
        const char *text;
        const char *at;
        const char *want;
    } cases[] = {
        // The daemon was down over the spring-forward night: the 02:30 slot was due at 03:00.
        {"America/New_York", "30 2 * * *", "2026-03-08 12:00", "2026-03-08 07:00"},
        {"America/New_York", "30 2 * * *", "2026-03-08 06:59:59", "2026-03-07 07:30"},
        {"America/New_York", "30 1 * * *", "2026-11-01 06:45", "2026-11-01 05:30"},
        {"America/New_York", "*/15 * * * *", "2026-11-01 06:14", "2026-11-01 06:00"},
        {"Europe/Berlin", "0 0 * * *", "2026-03-30 12:00", "2026-03-29 22:00"},
        {"America/Santiago", "0 0 * * *", "2026-09-06 03:59", "2026-09-05 04:00"},
        {"America/Santiago", "0 0 * * *", "2026-09-06 12:00", "2026-09-06 04:00"},
        {"Australia/Lord_Howe", "0 2 * * *", "2026-10-03 15:44", "2026-10-03 15:30"},
        {"UTC", "0 0 29 2 *", "2028-02-28 00:00", "2024-02-29 00:00"},
        {"UTC", "0 0 31 * *", "2026-05-30 00:00", "2026-03-31 00:00"},
        {"UTC", "*/15 * * * *", "2026-01-01 00:14:59", "2026-01-01 00:00"},
        {"UTC", "0 0 13 * 5", "2026-01-12 00:00", "2026-01-09 00:00"},
    };
    for (const auto &c : cases) {
        set_zone(c.zone);
        const auto got = last_ok(parse_ok(c.text), utc(c.at));
        ck_assert_msg(got && *got == utc(c.want), "%s \"%s\" at %s: got %s, want %s", c.zone,
                      c.text, c.at, show(got).c_str(), c.want);
    }
}
END_TEST

// Rare but accepted schedules: their days are never more than 10 years apart.
START_TEST(test_rare_schedules) {
    set_zone("UTC");
    static const struct {
        const char *text;
        const char *start;
        const char *first;
    } cases[] = {
        {"0 0 13 * */7", "2026-01-01 00:00", "2026-09-13 00:00"}, // a Sunday the 13th
        {"0 0 31 * */7", "2026-01-01 00:00", "2026-05-31 00:00"}, // a Sunday the 31st
        {"0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00"},   // 8 years, the longest gap
        {"0 0 29 2 mon", "2026-01-01 00:00", "2026-02-02 00:00"}, // OR: Mondays in February
    };
    for (const auto &c : cases) {
        const CronExpr e = parse_ok(c.text);
        const std::time_t got = next_ok(e, utc(c.start));
        ck_assert_msg(got == utc(c.first), "\"%s\": got %s, want %s", c.text, show(got).c_str(),
                      c.first);
        const auto back = last_ok(e, utc(c.first) + 3600);
        ck_assert_msg(back && *back == got, "\"%s\": last_at_or_before = %s", c.text,
                      show(back).c_str());
    }
}
END_TEST

// Instants that have no local time, or no room for the search, are errors naming the schedule.
START_TEST(test_out_of_range_times) {
    set_zone("UTC");
    const CronExpr e = parse_ok("0 0 * * *");
    const std::time_t huge = static_cast<std::time_t>(1) << 60; // beyond any tm_year
    const auto fails = [&e](bool forward, std::time_t t) {
        try {
            if (forward)
                (void)e.next_after(t);
            else
                (void)e.last_at_or_before(t);
        } catch (const CronError &err) {
            return std::strncmp(err.what(), "schedule \"0 0 * * *\": ", 22) == 0;
        }
        return false;
    };
    for (const std::time_t t : {std::numeric_limits<std::time_t>::max(),
                                std::numeric_limits<std::time_t>::min(), huge, -huge}) {
        ck_assert_msg(fails(true, t), "next_after(%lld)", static_cast<long long>(t));
        ck_assert_msg(fails(false, t), "last_at_or_before(%lld)", static_cast<long long>(t));
    }
}
END_TEST

// ---------------------------------------------------------------------------------------------
// Properties, and a minute-by-minute reference around every transition

namespace {

const char *const property_exprs[] = {
    "*/15 * * * *", "0 * * * *",   "*/5 * * * *",    "0 0 * * *",   "30 2 * * *",
    "30 1 * * *",   "* 2 * * *",   "0,30 0-3 * * *", "45 23 * * *", "17 * * * *",
    "@weekly",      "0 2 * * 1-5", "*/7 1-2 * * *",  "0 0 1 * *",   "15 0 * * *",
    "* * * * *",    "0 */2 * * *", "59 1 * * *",     "0 0 29 2 *",  "0 3 * * 6",
};

struct Transition {
    const char *zone;
    const char *at; // UTC
};

const Transition transitions[] = {
    {"America/New_York", "2026-03-08 07:00"},    {"America/New_York", "2026-11-01 06:00"},
    {"Europe/Berlin", "2026-03-29 01:00"},       {"Europe/Berlin", "2026-10-25 01:00"},
    {"America/Santiago", "2026-04-05 03:00"},    {"America/Santiago", "2026-09-06 04:00"},
    {"Australia/Lord_Howe", "2026-04-04 15:00"}, {"Australia/Lord_Howe", "2026-10-03 15:30"},
    {"Europe/Moscow", "2014-10-25 22:00"},       {"America/Havana", "2026-03-08 05:00"},
    {"America/Havana", "2026-11-01 05:00"},      {"America/Caracas", "2007-12-09 07:00"},
    {"Asia/Kolkata", "2026-03-08 00:00"},
};

bool same_wall(const std::tm &a, const std::tm &b) {
    return a.tm_year == b.tm_year && a.tm_mon == b.tm_mon && a.tm_mday == b.tm_mday &&
           a.tm_hour == b.tm_hour && a.tm_min == b.tm_min;
}

// The firing times in [from, to], found by applying the rules of cron.hpp to every minute the
// slow way: no jumps, and a wall time counts as repeated if any of the 3 hours before showed it.
std::vector<std::time_t> reference_firings(const CronExpr &e, std::time_t from, std::time_t to) {
    std::vector<std::time_t> out;
    const bool wildcard = e.hour_is_wildcard();
    std::tm before{};
    const std::time_t first_prev = from - 60;
    localtime_r(&first_prev, &before);
    for (std::time_t t = from; t <= to; t += 60) {
        std::tm now{};
        localtime_r(&t, &now);
        bool fires = false;
        if (!wildcard) {
            // Wall times between the previous minute's and this one's never happened.
            for (std::time_t w = t - 60 + before.tm_gmtoff + 60; w < t + now.tm_gmtoff; w += 60) {
                std::tm skipped{};
                gmtime_r(&w, &skipped);
                fires = fires || e.matches(skipped);
            }
        }
        if (!fires && e.matches(now)) {
            fires = true;
            for (std::time_t u = t - 60; fires && !wildcard && u >= t - 3 * 3600; u -= 60) {
                std::tm earlier{};
                localtime_r(&u, &earlier);
                fires = !same_wall(earlier, now);
            }
        }
        if (fires)
            out.push_back(t);
        before = now;
    }
    return out;
}

} // namespace

START_TEST(test_reference_around_transitions) {
    const Transition &tr = transitions[_i];
    set_zone(tr.zone);
    const std::time_t center = utc(tr.at);
    const std::time_t from = center - 30 * 3600;
    const std::time_t to = center + 30 * 3600;
    for (const char *text : property_exprs) {
        const CronExpr e = parse_ok(text);
        // With a margin, so that most queries have their answer in the list; those that do not
        // are skipped.
        const std::vector<std::time_t> fire =
            reference_firings(e, from - 2 * 86400, to + 2 * 86400);
        std::size_t k = 0; // fire[k] is the first firing > t
        for (std::time_t t = from; t <= to; t += 60) {
            // Every minute near the transition, every 17th elsewhere.
            if ((t < center - 2 * 3600 || t > center + 2 * 3600) && (t / 60) % 17 != 0)
                continue;
            while (k < fire.size() && fire[k] <= t)
                ++k;
            if (k < fire.size()) {
                const std::time_t got = next_ok(e, t);
                REQUIRE(got == fire[k], "%s \"%s\": next_after(%s) = %s, reference %s", tr.zone,
                        text, show(t).c_str(), show(got).c_str(), show(fire[k]).c_str());
            }
            if (k > 0) {
                const auto got = last_ok(e, t + 37);
                REQUIRE(got && *got == fire[k - 1],
                        "%s \"%s\": last_at_or_before(%s + 37s) = %s, reference %s", tr.zone, text,
                        show(t).c_str(), show(got).c_str(), show(fire[k - 1]).c_str());
            }
        }
    }
}
END_TEST

const char *const invariant_zones[] = {
    "UTC",         "America/New_York", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
    "Asia/Kolkata"};

START_TEST(test_invariants) {
    set_zone(invariant_zones[_i]);
    // A fixed pseudo-random walk over 2025-2028, so failures reproduce.
    unsigned long long state = 0x9e3779b97f4a7c15ULL + static_cast<unsigned>(_i);
    const std::time_t base = utc("2025-01-01 00:00");
    const std::time_t span = utc("2029-01-01 00:00") - base;
    for (const char *text : property_exprs) {
        const CronExpr e = parse_ok(text);
        for (int n = 0; n < 40; ++n) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            const std::time_t t = base + static_cast<std::time_t>((state >> 20) % span);
            const std::time_t next = next_ok(e, t);
            REQUIRE(next > t && next % 60 == 0, "\"%s\": next_after(%s) = %s", text,
                    show(t).c_str(), show(next).c_str());
            REQUIRE(next_ok(e, next - 1) == next, "\"%s\" at %s", text, show(t).c_str());
            const auto last = last_ok(e, t);
            REQUIRE(last && *last <= t && *last % 60 == 0, "\"%s\": last_at_or_before(%s)", text,
                    show(t).c_str());
            // Nothing fires between the last slot and the next one.
            REQUIRE(next_ok(e, *last) == next, "\"%s\": next_after(last_at_or_before(%s))", text,
                    show(t).c_str());
            REQUIRE(last_ok(e, next) == next, "\"%s\": last_at_or_before(next_after(%s))", text,
                    show(t).c_str());
            if (*last != t)
                REQUIRE(last_ok(e, next - 1) == last, "\"%s\" at %s", text, show(t).c_str());
        }
    }
}
END_TEST

#define N_ELEMENTS(a) static_cast<int>(sizeof(a) / sizeof((a)[0]))

int main() {
    Suite *s = suite_create("cron");

    TCase *tc_parse = tcase_create("parse");
    tcase_add_test(tc_parse, test_text_and_whitespace);
    tcase_add_test(tc_parse, test_equivalent_forms);
    tcase_add_test(tc_parse, test_hour_wildcard);
    tcase_add_test(tc_parse, test_error_message_exact);
    tcase_add_loop_test(tc_parse, test_parse_errors, 0, N_ELEMENTS(error_cases));
    tcase_add_test(tc_parse, test_unusual_but_valid);
    suite_add_tcase(s, tc_parse);

    TCase *tc_plain = tcase_create("plain");
    tcase_add_loop_test(tc_plain, test_plain_sequences, 0, N_ELEMENTS(plain_cases));
    suite_add_tcase(s, tc_plain);

    TCase *tc_dst = tcase_create("dst");
    tcase_add_loop_test(tc_dst, test_dst_sequences, 0, N_ELEMENTS(dst_cases));
    suite_add_tcase(s, tc_dst);

    TCase *tc_last = tcase_create("last_at_or_before");
    tcase_add_test(tc_last, test_last_due_slot);
    tcase_add_test(tc_last, test_rare_schedules);
    tcase_add_test(tc_last, test_out_of_range_times);
    suite_add_tcase(s, tc_last);

    TCase *tc_props = tcase_create("properties");
    // The reference walks every minute of about a week per schedule and zone: allow for valgrind.
    tcase_set_timeout(tc_props, 120);
    tcase_add_loop_test(tc_props, test_reference_around_transitions, 0, N_ELEMENTS(transitions));
    tcase_add_loop_test(tc_props, test_invariants, 0, N_ELEMENTS(invariant_zones));
    suite_add_tcase(s, tc_props);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
