// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests for job rows: sacct's JobID and ExitCode text, and spool records as JobRows
// (sentinels, unlimited time limit, names from ids, hostile strings through the spool's JSON).
#include "ingest.hpp"
#include "jobs.hpp"
#include "spool_parse.hpp"
#include "util.hpp"

extern "C" {
#include "keystone_record.h"
#include "spool.h"
}

#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// Last: check.h defines a macro `fail` that breaks standard headers included after it.
#include <check.h>

using namespace keystone;

// ck_assert_str_eq keeps the pointer it is given: compare a std::string that outlives it.
#define CK_STREQ(expr, want)                                                                       \
    do {                                                                                           \
        const std::string got_ = (expr);                                                           \
        const std::string want_ = (want);                                                          \
        ck_assert_msg(got_ == want_, "%s: got \"%s\", want \"%s\"", #expr, got_.c_str(),          \
                      want_.c_str());                                                              \
    } while (0)

namespace {

const std::string fffd = "\xEF\xBF\xBD";

struct FreeDeleter {
    void operator()(void *p) const noexcept { std::free(p); }
};

// A record the table accepts, with nothing but the key and the state set.
std::unique_ptr<ks_record> minimal_record()
{
    auto r = std::make_unique<ks_record>();
    ks_record_init(r.get());
    ks_record_set_str(r.get(), KS_STR_CLUSTER, "smp");
    r->job_id = 123;
    r->submit_time = 1790000000;
    ks_record_set_str(r.get(), KS_STR_STATE, "COMPLETED");
    return r;
}

// `in` through the spool's encoding and its strict reader, as keystoned receives it.
std::unique_ptr<ks_record> round_trip(const ks_record &in)
{
    JsonPtr obj(ks_record_to_json(&in));
    ck_assert_ptr_nonnull(obj.get());
    std::unique_ptr<char, FreeDeleter> text(json_dumps(obj.get(), JSON_COMPACT));
    ck_assert_ptr_nonnull(text.get());
    // One record is one line: the encoder escapes newlines and control characters.
    ck_assert_ptr_null(std::strchr(text.get(), '\n'));
    json_error_t je;
    JsonPtr back(json_loads(text.get(), JSON_REJECT_DUPLICATES, &je));
    ck_assert_msg(back.get() != nullptr, "reparse: %s", je.text);
    auto out = std::make_unique<ks_record>();
    char err[256] = "";
    ck_assert_msg(ks_record_from_json(back.get(), out.get(), err, sizeof err) == KS_SUCCESS, "%s",
                  err);
    return out;
}

// What the spool's JSON string carries for a string field of `r`.
std::string json_text_of(const ks_record &r, const char *member)
{
    JsonPtr obj(ks_record_to_json(&r));
    const char *s = json_string_value(json_object_get(obj.get(), member));
    ck_assert_ptr_nonnull(s);
    return std::string(s, json_string_length(json_object_get(obj.get(), member)));
}

// The record's canonical JSON text (sorted members), to compare two records.
std::string canonical(const ks_record &r)
{
    JsonPtr obj(ks_record_to_json(&r));
    ck_assert_ptr_nonnull(obj.get());
    std::unique_ptr<char, FreeDeleter> text(json_dumps(obj.get(), JSON_COMPACT | JSON_SORT_KEYS));
    ck_assert_ptr_nonnull(text.get());
    return text.get();
}

// What the strict reader makes of one line: the canonical record, or nullopt when it rejects it.
std::optional<std::string> strict_decode(const std::string &line)
{
    json_error_t je;
    JsonPtr v(json_loadb(line.data(), line.size(), JSON_REJECT_DUPLICATES, &je));
    if (!v || !json_is_object(v.get()))
        return std::nullopt;
    auto out = std::make_unique<ks_record>();
    char err[256] = "";
    if (ks_record_from_json(v.get(), out.get(), err, sizeof err) != KS_SUCCESS)
        return std::nullopt;
    return canonical(*out);
}

// decode_record_line() against the strict reader on `line`: when the fast reader accepts a line,
// the strict reader accepts it too, with the same record. Returns whether the fast one accepted.
bool fast_agrees(const std::string &line)
{
    auto fast = std::make_unique<ks_record>();
    if (!decode_record_line(line.data(), line.size(), *fast))
        return false;
    const std::optional<std::string> strict = strict_decode(line);
    ck_assert_msg(strict.has_value(), "the fast reader accepted a line the strict one rejects: %s",
                  line.substr(0, 300).c_str());
    const std::string got = canonical(*fast);
    ck_assert_msg(got == *strict, "different records for %s:\nfast:   %s\nstrict: %s",
                  line.substr(0, 200).c_str(), got.substr(0, 300).c_str(),
                  strict->substr(0, 300).c_str());
    return true;
}

// A line as the plugin's writer emits it (compact JSON, one line).
std::string writer_line(const ks_record &r)
{
    JsonPtr obj(ks_record_to_json(&r));
    std::unique_ptr<char, FreeDeleter> text(json_dumps(obj.get(), JSON_COMPACT));
    ck_assert_ptr_nonnull(text.get());
    return text.get();
}

} // namespace

START_TEST(test_fast_reader_agrees)
{
    std::vector<std::unique_ptr<ks_record>> records;
    records.push_back(minimal_record());
    auto full = minimal_record();
    full->array_job_id = 120;
    full->array_task_id = 3;
    full->uid = 4294967294u;
    full->gid = 20001;
    full->exit_signal = 15;
    full->derived_exit_code = 2;
    full->eligible_time = 1790000001;
    full->start_time = 1790000010;
    full->end_time = 1790003610;
    full->elapsed_sec = 3600;
    full->time_limit_min = KS_INFINITE;
    full->node_count = 2;
    full->cpus = 8;
    full->priority = 4294967295u;
    full->billing = 12.25;
    ks_record_set_str(full.get(), KS_STR_USER, "alice");
    ks_record_set_str(full.get(), KS_STR_ACCOUNT, "smith-lab");
    ks_record_set_str(full.get(), KS_STR_NODE_LIST, "node[001-002]");
    ks_record_set_str(full.get(), KS_STR_TRES_ALLOC, "cpu=8,mem=2G,node=2,billing=12");
    ks_record_set_str(full.get(), KS_STR_RESERVATION, "maint");
    records.push_back(std::move(full));
    auto hostile = minimal_record();
    ks_record_set_str(hostile.get(), KS_STR_ACCOUNT, "it's a \"quoted\" name; DROP TABLE x; --");
    ks_record_set_str(hostile.get(), KS_STR_JOB_NAME, "line one\nline two\r\n\ttab \\N back\\slash\x01\x1f");
    ks_record_set_str(hostile.get(), KS_STR_WORK_DIR, "/home/j\xC3\xA9r\xC3\xB4me/\xF0\x9F\x9A\x80/\xE2\x82\xAC");
    records.push_back(std::move(hostile));
    auto long_name = minimal_record();
    std::string name(KS_JOB_NAME_MAX, 'n');
    ks_record_set_str(long_name.get(), KS_STR_JOB_NAME, name.c_str());
    records.push_back(std::move(long_name));
    auto invalid = minimal_record();
    ks_record_set_str(invalid.get(), KS_STR_WORK_DIR, "bad \xFF\xFE bytes \xC3\x28 end\xE2\x98");
    records.push_back(std::move(invalid));

    int accepted = 0;
    long mutated = 0;
    for (size_t i = 0; i < records.size(); ++i) {
        const std::string line = writer_line(*records[i]);
        // Every record the writer makes is one the strict reader takes back.
        ck_assert_msg(strict_decode(line).has_value(), "record %zu: strict reader rejects it", i);
        if (fast_agrees(line))
            ++accepted;
        // Every prefix, and every byte replaced by a few others: whatever the fast reader
        // accepts, the strict one accepts the same way.
        for (size_t n = 0; n < line.size(); ++n) {
            fast_agrees(line.substr(0, n));
            for (const char c : {'"', '\\', '0', '9', ',', '}', 'x', '\x7f'}) {
                std::string m = line;
                if (m[n] == c)
                    continue;
                m[n] = c;
                fast_agrees(m);
                ++mutated;
            }
        }
    }
    // The fast path is exercised: the clean records (all but the one with invalid bytes, which
    // the writer sends with a "raw" member) are decoded by it.
    ck_assert_int_ge(accepted, static_cast<int>(records.size()) - 1);
    ck_assert_int_gt(mutated, 1000);
}
END_TEST

START_TEST(test_sacct_jobid)
{
    JobRow plain;
    plain.job_id = 123;
    CK_STREQ(sacct_jobid(plain), "123");

    JobRow task = plain;
    task.job_id = 123;
    task.array_job_id = 120;
    task.array_task_id = 3;
    CK_STREQ(sacct_jobid(task), "120_3");

    JobRow het = plain;
    het.job_id = 131;
    het.het_job_id = 130;
    het.het_job_offset = 1;
    CK_STREQ(sacct_jobid(het), "130+1");
    het.het_job_offset = 0;
    CK_STREQ(sacct_jobid(het), "130+0");

    // Half an array or het identity is not enough: the job's own id.
    JobRow half = plain;
    half.array_job_id = 120;
    CK_STREQ(sacct_jobid(half), "123");
    half = plain;
    half.het_job_id = 130;
    CK_STREQ(sacct_jobid(half), "123");

    ck_assert_str_eq(job_source_name(JobSource::jobcomp), "jobcomp");
    ck_assert_str_eq(job_source_name(JobSource::slurmdbd), "slurmdbd");
}
END_TEST

START_TEST(test_exit_code_text)
{
    static const struct {
        std::int64_t code, signal;
        const char *want;
    } cases[] = {{0, 0, "0:0"}, {1, 0, "1:0"}, {0, 9, "0:9"}, {255, 0, "255:0"}, {2, 15, "2:15"}};
    for (const auto &c : cases)
        CK_STREQ(exit_code_text(c.code, c.signal), c.want);
}
END_TEST

START_TEST(test_utf8_text)
{
    static const struct {
        const char *in;
        std::string want;
    } cases[] = {
        {"", ""},
        {"plain ascii", "plain ascii"},
        {"J\xC3\xB6"
         "b \xE2\x98\x83 \xF0\x9F\x9A\x80",
         "J\xC3\xB6"
         "b \xE2\x98\x83 \xF0\x9F\x9A\x80"},
        {"a\xFF" "b", "a" + fffd + "b"},
        {"\xC0\x80", fffd + fffd},                     // overlong NUL
        {"\xED\xA0\x80", fffd + fffd + fffd},          // surrogate U+D800
        {"\xF4\x90\x80\x80", fffd + fffd + fffd + fffd}, // above U+10FFFF
        {"end\xE2\x98", "end" + fffd + fffd},          // cut sequence
        {"\xC3\x28", fffd + "("},                      // bad continuation byte
    };
    for (const auto &c : cases)
        CK_STREQ(utf8_text(c.in, std::strlen(c.in)), c.want);
}
END_TEST

START_TEST(test_sentinels)
{
    auto r = minimal_record();
    ck_assert_str_eq(record_problem(*r).c_str(), "");
    JobRow row = job_row_from_record(*r);
    CK_STREQ(row.cluster, "smp");
    ck_assert_int_eq(row.job_id, 123);
    ck_assert_int_eq(row.submit, 1790000000);
    CK_STREQ(row.jobid, "123");
    CK_STREQ(row.state, "COMPLETED");
    ck_assert(!row.array_job_id && !row.array_task_id && !row.het_job_id && !row.het_job_offset);
    ck_assert(!row.uid && !row.gid);
    ck_assert(!row.eligible && !row.start && !row.end);
    ck_assert(!row.timelimit_min && !row.allocnodes && !row.alloccpus);
    ck_assert(!row.billing && !row.priority);
    ck_assert_int_eq(row.elapsed_sec, 0);
    // Unset strings and exit codes are "" (stored as NULL), not "0:0" or a made-up name.
    for (const std::string *s :
         {&row.het_job_info, &row.jobname, &row.username, &row.group, &row.account, &row.partition,
          &row.qos, &row.exitcode, &row.derivedexitcode, &row.nodelist, &row.alloctres,
          &row.workdir, &row.reservation})
        ck_assert_msg(s->empty(), "expected empty, got \"%s\"", s->c_str());
}
END_TEST

START_TEST(test_values)
{
    auto r = minimal_record();
    r->array_job_id = 120;
    r->array_task_id = 3;
    r->uid = 10001;
    ks_record_set_str(r.get(), KS_STR_USER, "alice");
    ks_record_set_str(r.get(), KS_STR_GROUP, "physics");
    r->gid = 20001;
    ks_record_set_str(r.get(), KS_STR_ACCOUNT, "smith-lab");
    ks_record_set_str(r.get(), KS_STR_PARTITION, "gpu");
    ks_record_set_str(r.get(), KS_STR_QOS, "normal");
    ks_record_set_str(r.get(), KS_STR_STATE, "CANCELLED");
    r->exit_code = 0;
    r->exit_signal = 15;
    r->derived_exit_code = 2;
    r->derived_signal = 0;
    r->eligible_time = 1790000001;
    r->start_time = 1790000010;
    r->end_time = 1790003610;
    r->elapsed_sec = 3600;
    r->time_limit_min = 120;
    r->node_count = 2;
    ks_record_set_str(r.get(), KS_STR_NODE_LIST, "node[001-002]");
    r->cpus = 8;
    ks_record_set_str(r.get(), KS_STR_TRES_ALLOC, "cpu=8,mem=32G,node=2,billing=8");
    r->billing = 8.5;
    r->priority = 4294;
    ks_record_set_str(r.get(), KS_STR_WORK_DIR, "/home/alice");
    ks_record_set_str(r.get(), KS_STR_RESERVATION, "maint");
    JobRow row = job_row_from_record(*r);
    CK_STREQ(row.jobid, "120_3");
    ck_assert_int_eq(*row.array_job_id, 120);
    ck_assert_int_eq(*row.array_task_id, 3);
    CK_STREQ(row.username, "alice"); // the record's name wins over a lookup
    CK_STREQ(row.group, "physics");
    ck_assert_int_eq(*row.uid, 10001);
    ck_assert_int_eq(*row.gid, 20001);
    CK_STREQ(row.account, "smith-lab");
    CK_STREQ(row.state, "CANCELLED");
    CK_STREQ(row.exitcode, "0:15");
    CK_STREQ(row.derivedexitcode, "2:0");
    ck_assert_int_eq(*row.eligible, 1790000001);
    ck_assert_int_eq(*row.start, 1790000010);
    ck_assert_int_eq(*row.end, 1790003610);
    ck_assert_int_eq(row.elapsed_sec, 3600);
    ck_assert_int_eq(*row.timelimit_min, 120);
    ck_assert_int_eq(*row.allocnodes, 2);
    ck_assert_int_eq(*row.alloccpus, 8);
    CK_STREQ(row.nodelist, "node[001-002]");
    // sacct's order: the items sorted as text, not Slurm's TRES id order the plugin has.
    CK_STREQ(row.alloctres, "billing=8,cpu=8,mem=32G,node=2");
    ck_assert(*row.billing == 8.5);
    ck_assert_int_eq(*row.priority, 4294);
    CK_STREQ(row.workdir, "/home/alice");
    CK_STREQ(row.reservation, "maint");

    // A het job component.
    r = minimal_record();
    r->job_id = 131;
    r->het_job_id = 130;
    r->het_job_offset = 1;
    ks_record_set_str(r.get(), KS_STR_HET_JOB_INFO, "130-131");
    row = job_row_from_record(*r);
    CK_STREQ(row.jobid, "130+1");
    CK_STREQ(row.het_job_info, "130-131");

    // An exit code without a signal recorded still reads "code:0".
    r = minimal_record();
    r->exit_code = 3;
    CK_STREQ(job_row_from_record(*r).exitcode, "3:0");
    ks_record_set_str(r.get(), KS_STR_TRES_ALLOC, "cpu=1");
    CK_STREQ(job_row_from_record(*r).alloctres, "cpu=1");
    // billing 0 is a value, below 0 is "not known".
    r->billing = 0.0;
    ck_assert(job_row_from_record(*r).billing == 0.0);
    r->billing = -1.0;
    ck_assert(!job_row_from_record(*r).billing);
}
END_TEST

START_TEST(test_time_limit)
{
    auto r = minimal_record();
    r->time_limit_min = KS_INFINITE;
    ck_assert_int_eq(*job_row_from_record(*r).timelimit_min, -1);
    // Through the spool's JSON too (-1 there).
    auto back = round_trip(*r);
    ck_assert_uint_eq(back->time_limit_min, KS_INFINITE);
    ck_assert_int_eq(*job_row_from_record(*back).timelimit_min, -1);
    r->time_limit_min = 0;
    ck_assert_int_eq(*job_row_from_record(*r).timelimit_min, 0);
    r->time_limit_min = KS_NO_VAL;
    ck_assert(!job_row_from_record(*r).timelimit_min);
}
END_TEST

START_TEST(test_names_from_ids)
{
    // The plugin records the gid only: the group name comes from the group database.
    auto r = minimal_record();
    r->gid = 0;
    r->uid = 0;
    JobRow row = job_row_from_record(*r);
    CK_STREQ(row.group, "root");
    CK_STREQ(row.username, "root"); // no user name in the record: looked up too
    ck_assert_int_eq(*row.gid, 0);

    // An id without an entry gives no name, and the cache answers the same twice.
    IdNames names;
    r->gid = 4000000000u;
    r->uid = 4000000000u;
    row = job_row_from_record(*r, names);
    CK_STREQ(row.group, "");
    CK_STREQ(row.username, "");
    ck_assert_int_eq(*row.gid, 4000000000LL);
    CK_STREQ(names.group(0), "root");
    CK_STREQ(names.group(0), "root");
    CK_STREQ(names.user(4000000000u), "");
}
END_TEST

START_TEST(test_hostile_strings)
{
    auto r = minimal_record();
    const std::string quotes = "it's a \"quoted\" name; DROP TABLE x; --";
    const std::string newline = "line one\nline two\r\n\ttab \\N back\\slash";
    const std::string invalid = std::string("bad \xFF\xFE bytes \xC3\x28 end\xE2\x98");
    ks_record_set_str(r.get(), KS_STR_ACCOUNT, quotes.c_str());
    ks_record_set_str(r.get(), KS_STR_JOB_NAME, newline.c_str());
    ks_record_set_str(r.get(), KS_STR_WORK_DIR, invalid.c_str());
    ks_record_set_str(r.get(), KS_STR_USER, "o'brien");

    auto back = round_trip(*r);
    JobRow row = job_row_from_record(*back);
    CK_STREQ(row.account, quotes);
    CK_STREQ(row.jobname, newline);
    CK_STREQ(row.username, "o'brien");
    // Invalid bytes reach the row as U+FFFD, exactly the text the spool's JSON carries.
    const std::string want = "bad " + fffd + fffd + " bytes " + fffd + "( end" + fffd + fffd;
    CK_STREQ(row.workdir, want);
    CK_STREQ(json_text_of(*r, "work_dir"), want);
    // The reader keeps the exact bytes (from "raw"); only the row replaces them.
    ck_assert_uint_eq(ks_record_strlen(back.get(), KS_STR_WORK_DIR), invalid.size());

    // A job name at the plugin's maximum arrives whole, untruncated.
    std::string long_name(KS_JOB_NAME_MAX, 'n');
    long_name.front() = 'A';
    long_name.back() = 'Z';
    r = minimal_record();
    ck_assert_int_eq(ks_record_set_str(r.get(), KS_STR_JOB_NAME, long_name.c_str()), KS_SUCCESS);
    back = round_trip(*r);
    ck_assert_uint_eq(back->truncated, 0);
    row = job_row_from_record(*back);
    ck_assert_uint_eq(row.jobname.size(), 1024);
    CK_STREQ(row.jobname, long_name);
}
END_TEST

START_TEST(test_record_problem)
{
    auto r = minimal_record();
    ck_assert_str_eq(record_problem(*r).c_str(), "");

    static const struct {
        void (*spoil)(ks_record *);
        const char *want;
    } cases[] = {
        {[](ks_record *x) { ks_record_init(x); }, "member 'cluster': empty"},
        {[](ks_record *x) { x->job_id = KS_NO_VAL; }, "member 'job_id': null"},
        {[](ks_record *x) { x->submit_time = 0; }, "member 'submit_time': null"},
        {[](ks_record *x) { x->end_time = 253402300800; }, "member 'end_time': 253402300800"},
        {[](ks_record *x) { x->cpus = 3000000000u; },
         "member 'cpus': 3000000000 does not fit the job table's integer column"},
        {[](ks_record *x) { x->node_count = static_cast<std::uint32_t>(INT_MAX) + 1; },
         "member 'node_count': 2147483648"},
    };
    for (const auto &c : cases) {
        auto x = minimal_record();
        c.spoil(x.get());
        const std::string got = record_problem(*x);
        ck_assert_msg(got.rfind(c.want, 0) == 0, "got \"%s\", want \"%s...\"", got.c_str(),
                      c.want);
    }
    // No state: the table's state column is NOT NULL.
    auto x = std::make_unique<ks_record>();
    ks_record_init(x.get());
    ks_record_set_str(x.get(), KS_STR_CLUSTER, "smp");
    x->job_id = 1;
    x->submit_time = 1790000000;
    ck_assert_msg(record_problem(*x).rfind("member 'state'", 0) == 0, "%s",
                  record_problem(*x).c_str());
    // The largest values that fit are fine.
    x = minimal_record();
    x->cpus = static_cast<std::uint32_t>(INT_MAX);
    x->end_time = 253402300799;
    ck_assert_str_eq(record_problem(*x).c_str(), "");
}
END_TEST

int main()
{
    Suite *s = suite_create("jobs");
    TCase *tc = tcase_create("rows");
    tcase_add_test(tc, test_sacct_jobid);
    tcase_add_test(tc, test_exit_code_text);
    tcase_add_test(tc, test_utf8_text);
    tcase_add_test(tc, test_sentinels);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_time_limit);
    tcase_add_test(tc, test_names_from_ids);
    tcase_add_test(tc, test_hostile_strings);
    tcase_add_test(tc, test_record_problem);
    tcase_add_test(tc, test_fast_reader_agrees);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
