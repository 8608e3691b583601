// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests for task-record formatting: Celery-style arguments, failure text, UUIDs, timestamps.
#include "runner.hpp"
#include "task_log.hpp"
#include "tasks/task.hpp"
#include "util.hpp"

#include <cstdlib>
#include <regex>
#include <set>
#include <unistd.h>

// Last: check.h defines a macro `fail` that breaks standard headers included after it.
#include <check.h>

using namespace keystone;

// ck_assert_str_eq keeps the pointer it is given: compare a std::string that outlives it.
#define CK_STREQ(expr, want)                                                                       \
    do {                                                                                           \
        const std::string got_ = (expr);                                                           \
        ck_assert_str_eq(got_.c_str(), want);                                                      \
    } while (0)

START_TEST(test_args_repr)
{
    // What Python's repr() of the args tuple prints, which is what Celery stores in task_args.
    static const struct {
        std::vector<std::string> args;
        const char *want;
    } cases[] = {
        {{}, "()"},
        {{"smp"}, "('smp',)"},
        {{"smp", "gpu"}, "('smp', 'gpu')"},
        {{"it's"}, "(\"it's\",)"},
        {{"a'b\"c"}, "('a\\'b\"c',)"},
        {{"back\\slash"}, "('back\\\\slash',)"},
        {{"new\nline\ttab"}, "('new\\nline\\ttab',)"},
        {{std::string("nul\x01", 4)}, "('nul\\x01',)"},
        {{""}, "('',)"},
    };
    for (const auto &c : cases)
        CK_STREQ(python_args_repr(c.args), c.want);
}
END_TEST

START_TEST(test_failure_text)
{
    CK_STREQ(failure_text("", {}), "");
    CK_STREQ(failure_text("boom", {}), "boom\n");
    CK_STREQ(failure_text("", {"a failed"}), "1 error during the run:\n  a failed\n");
    CK_STREQ(failure_text("stopped", {"x", "y"}),
                     "stopped\n2 errors during the run:\n  x\n  y\n");
}
END_TEST

START_TEST(test_uuid4)
{
    static const std::regex shape("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        std::string u = make_uuid4();
        ck_assert_msg(std::regex_match(u, shape), "bad uuid %s", u.c_str());
        seen.insert(u);
    }
    ck_assert_uint_eq(seen.size(), 1000);
}
END_TEST

START_TEST(test_pg_timestamp)
{
    TimePoint t = Clock::from_time_t(1795867200) + std::chrono::microseconds(123456);
    CK_STREQ(pg_timestamp(t), "2026-11-28 12:00:00.123456+00");
    CK_STREQ(pg_timestamp(Clock::from_time_t(0)), "1970-01-01 00:00:00.000000+00");
    CK_STREQ(iso_utc(1795867200), "2026-11-28T12:00:00Z");
}
END_TEST

START_TEST(test_parse_user_time)
{
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
    const std::time_t now = 1795867200; // 2026-11-28T12:00:00Z
    ck_assert_int_eq(parse_user_time("90s", now), now - 90);
    ck_assert_int_eq(parse_user_time("15m", now), now - 900);
    ck_assert_int_eq(parse_user_time("6h", now), now - 6 * 3600);
    ck_assert_int_eq(parse_user_time("2d", now), now - 2 * 86400);
    ck_assert_int_eq(parse_user_time("2026-11-28T12:00:00Z", now), now);
    ck_assert_int_eq(parse_user_time("2026-11-28T13:00", now), now); // CET = UTC+1
    ck_assert_int_eq(parse_user_time("2026-11-28", now), now - 13 * 3600);
    const char *bad[] = {"", "yesterday", "5", "5w", "2026-13-01", "2026-11-27T25:00",
                         "2026-11-27 12", "-3h"};
    for (const char *b : bad) {
        bool threw = false;
        try {
            parse_user_time(b, now);
        } catch (const std::invalid_argument &e) {
            threw = std::string(e.what()).find(b) != std::string::npos;
        }
        ck_assert_msg(threw, "'%s' was accepted or the error did not quote it", b);
    }
}
END_TEST

START_TEST(test_process_start_ticks)
{
    ck_assert_int_gt(process_start_ticks(getpid()), 0);
    ck_assert_int_eq(process_start_ticks(getpid()), process_start_ticks(getpid()));
    ck_assert_int_eq(process_start_ticks(999999999), -1);
}
END_TEST

START_TEST(test_lock_key_and_registry)
{
    // The key must never change between releases: two versions of keystoned on one database
    // (an upgrade in progress) have to agree on it.
    ck_assert_int_eq(task_lock_key("apps.logging.tasks.clear_log_records"),
                     task_lock_key("apps.logging.tasks.clear_log_records"));
    ck_assert_int_ne(task_lock_key("a"), task_lock_key("b"));
    ck_assert_int_ge(task_lock_key("apps.logging.tasks.clear_log_records"), 0);
    const TaskDef *t = find_task("clear_log_records");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_eq(find_task("apps.logging.tasks.clear_log_records"), t);
    ck_assert_ptr_null(find_task("clear_log"));
    ck_assert_ptr_null(find_task(""));
}
END_TEST

int main()
{
    Suite *s = suite_create("task_log");
    TCase *tc = tcase_create("formatting");
    tcase_add_test(tc, test_args_repr);
    tcase_add_test(tc, test_failure_text);
    tcase_add_test(tc, test_uuid4);
    tcase_add_test(tc, test_pg_timestamp);
    tcase_add_test(tc, test_parse_user_time);
    tcase_add_test(tc, test_process_start_ticks);
    tcase_add_test(tc, test_lock_key_and_registry);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
