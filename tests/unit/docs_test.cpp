// SPDX-License-Identifier: GPL-2.0-or-later
// Checks that every setting the configuration parser knows is documented in keystoned.conf(5),
// and every task in keystoned(8) and keystonectl's help, so the man pages cannot fall behind.
#include "config.hpp"
#include "tasks/task.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

// Last: check.h defines a macro `fail` that breaks standard headers included after it.
#include <check.h>

using namespace keystone;

namespace {

std::string read_doc(const char *name)
{
    const char *src = std::getenv("KS_SRCDIR");
    std::string path = std::string(src ? src : ".") + "/doc/" + name;
    std::ifstream in(path);
    ck_assert_msg(in.good(), "cannot read %s (set KS_SRCDIR)", path.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// `word` appears in `text` with no name character on either side.
bool mentions(const std::string &text, const std::string &word)
{
    auto is_name = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; };
    for (size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
        bool left = pos == 0 || !is_name(text[pos - 1]);
        bool right = pos + word.size() >= text.size() || !is_name(text[pos + word.size()]);
        if (left && right)
            return true;
    }
    return false;
}

} // namespace

START_TEST(test_every_setting_documented)
{
    const std::string page = read_doc("keystoned.conf.5.in");
    for (const auto &name : known_setting_names())
        ck_assert_msg(mentions(page, name), "%s is not documented in doc/keystoned.conf.5.in",
                      name.c_str());
}
END_TEST

START_TEST(test_every_task_documented)
{
    const std::string daemon = read_doc("keystoned.8.in");
    for (const auto &task : all_tasks()) {
        ck_assert_msg(daemon.find(task.short_name) != std::string::npos,
                      "task %s is not in doc/keystoned.8.in", task.short_name);
        ck_assert_msg(daemon.find(task.dotted_name) != std::string::npos,
                      "task %s is not in doc/keystoned.8.in", task.dotted_name);
    }
}
END_TEST

int main()
{
    Suite *s = suite_create("docs");
    TCase *tc = tcase_create("man pages");
    tcase_add_test(tc, test_every_setting_documented);
    tcase_add_test(tc, test_every_task_documented);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
