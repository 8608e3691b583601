// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of task records (see task_log.hpp).
#include "task_log.hpp"

#include "log.hpp"
#include "migrate.hpp"

#include <fstream>
#include <sstream>
#include <unistd.h>

namespace keystone {

namespace {

// Python's repr() of a str: single quotes unless the text holds ' and no ".
std::string python_str_repr(const std::string &s)
{
    const bool has_single = s.find('\'') != std::string::npos;
    const bool has_double = s.find('"') != std::string::npos;
    const char quote = has_single && !has_double ? '"' : '\'';
    std::string out(1, quote);
    for (unsigned char ch : s) {
        if (ch == '\\')
            out += "\\\\";
        else if (ch == static_cast<unsigned char>(quote))
            out += std::string("\\") + static_cast<char>(quote);
        else if (ch == '\n')
            out += "\\n";
        else if (ch == '\r')
            out += "\\r";
        else if (ch == '\t')
            out += "\\t";
        else if (ch < 0x20 || ch == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", ch);
            out += buf;
        } else
            out += static_cast<char>(ch);
    }
    out += quote;
    return out;
}

} // namespace

std::string python_args_repr(const std::vector<std::string> &args)
{
    if (args.empty())
        return "()";
    std::string out = "(";
    for (size_t i = 0; i < args.size(); ++i) {
        if (i > 0)
            out += ", ";
        out += python_str_repr(args[i]);
    }
    if (args.size() == 1)
        out += ",";
    out += ")";
    return out;
}

std::string failure_text(const std::string &fatal, const std::vector<std::string> &errors)
{
    std::string out;
    if (!fatal.empty())
        out = fatal + "\n";
    if (!errors.empty()) {
        out += std::to_string(errors.size()) + (errors.size() == 1 ? " error" : " errors") +
               " during the run:\n";
        for (const auto &e : errors)
            out += "  " + e + "\n";
    }
    return out;
}

long long process_start_ticks(long pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!in || !std::getline(in, text))
        return -1;
    // Field 2 is "(comm)" and may hold spaces or parentheses: parse after the last ')'.
    auto close = text.rfind(')');
    if (close == std::string::npos)
        return -1;
    std::istringstream rest(text.substr(close + 1));
    std::string field;
    std::string state;
    rest >> state; // field 3
    if (state == "Z" || state == "X")
        return -1;
    for (int i = 4; i <= 22; ++i) {
        if (!(rest >> field))
            return -1;
    }
    try {
        return std::stoll(field);
    } catch (const std::exception &) {
        return -1;
    }
}

void record_start(pqxx::connection &c, const TaskStart &s, TimePoint now)
{
    const std::string ts = pg_timestamp(now);
    pqxx::work tx(c);
    tx.exec_params0(
        "INSERT INTO django_celery_results_taskresult "
        "(task_id, periodic_task_name, task_name, task_args, task_kwargs, status, worker, "
        "content_type, content_encoding, result, date_created, date_started, date_done, "
        "traceback, meta) "
        "VALUES ($1, $2, $3, $4, '{}', 'STARTED', $5, 'application/json', 'utf-8', NULL, "
        "$6::timestamptz, $6::timestamptz, $6::timestamptz, NULL, '{\"children\": []}')",
        s.task_id, s.periodic_task_name, s.task_name, python_args_repr(s.args), s.worker, ts);
    tx.exec_params0(std::string("INSERT INTO ") + own_schema +
                        ".running_task (task_id, task_name, host, pid, pid_start, started_at) "
                        "VALUES ($1, $2, $3, $4, $5, $6::timestamptz)",
                    s.task_id, s.task_name, s.worker, static_cast<long>(getpid()),
                    process_start_ticks(getpid()), ts);
    tx.commit();
}

void record_finish(pqxx::connection &c, const std::string &task_id, const std::string &status,
                   const std::string &result_json, const std::optional<std::string> &traceback,
                   TimePoint now)
{
    pqxx::work tx(c);
    tx.exec_params0("UPDATE django_celery_results_taskresult "
                    "SET status = $2, result = $3, traceback = $4, date_done = $5::timestamptz "
                    "WHERE task_id = $1",
                    task_id, status, result_json, traceback, pg_timestamp(now));
    tx.exec_params0(std::string("DELETE FROM ") + own_schema + ".running_task WHERE task_id = $1",
                    task_id);
    tx.commit();
}

int recover_abandoned(pqxx::connection &c, const std::string &worker)
{
    pqxx::work tx(c);
    auto rows = tx.exec_params(std::string("SELECT task_id, task_name, pid, pid_start FROM ") +
                                   own_schema + ".running_task WHERE host = $1 FOR UPDATE",
                               worker);
    int closed = 0;
    for (const auto &row : rows) {
        const long pid = row[2].as<long>();
        const long long start = row[3].as<long long>();
        if (process_start_ticks(pid) == start)
            continue; // still running
        const std::string task_id = row[0].as<std::string>();
        const std::string text = "abandoned: the process running this task (host " + worker +
                                 ", pid " + std::to_string(pid) +
                                 ") ended before the run finished; a later run picks up the work\n";
        tx.exec_params0("UPDATE django_celery_results_taskresult "
                        "SET status = 'FAILURE', traceback = $2, date_done = now() "
                        "WHERE task_id = $1 AND status = 'STARTED'",
                        task_id, text);
        tx.exec_params0(std::string("DELETE FROM ") + own_schema +
                            ".running_task WHERE task_id = $1",
                        task_id);
        log_warning("tasks: closed abandoned run TaskId=%s Task=%s (pid %ld is gone)",
                    task_id.c_str(), row[1].c_str(), pid);
        ++closed;
    }
    tx.commit();
    return closed;
}

std::vector<TaskRow> list_task_rows(pqxx::connection &c, std::optional<std::time_t> since,
                                    const std::optional<std::string> &name, int limit)
{
    std::optional<std::string> since_text;
    if (since)
        since_text = pg_timestamp(Clock::from_time_t(*since));
    std::optional<std::string> pattern;
    if (name)
        pattern = *name;
    pqxx::read_transaction tx(c);
    auto res = tx.exec_params(
        "SELECT task_id, COALESCE(task_name, ''), status, COALESCE(worker, ''), task_args, "
        "result, traceback, periodic_task_name, "
        "to_char(date_created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "to_char(date_done AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "EXTRACT(EPOCH FROM (date_done - date_created))::float8 "
        "FROM django_celery_results_taskresult "
        "WHERE ($1::timestamptz IS NULL OR date_created >= $1::timestamptz) "
        "AND ($2::text IS NULL OR task_name = $2 OR right(task_name, length($2) + 1) = '.' || $2) "
        "ORDER BY date_created DESC, id DESC LIMIT $3",
        since_text, pattern, limit);
    std::vector<TaskRow> out;
    for (const auto &r : res) {
        TaskRow t;
        t.task_id = r[0].as<std::string>();
        t.task_name = r[1].as<std::string>();
        t.status = r[2].as<std::string>();
        t.worker = r[3].as<std::string>();
        if (!r[4].is_null())
            t.args = r[4].as<std::string>();
        if (!r[5].is_null())
            t.result = r[5].as<std::string>();
        if (!r[6].is_null())
            t.traceback = r[6].as<std::string>();
        if (!r[7].is_null())
            t.periodic_task_name = r[7].as<std::string>();
        t.date_created = r[8].as<std::string>();
        t.date_done = r[9].as<std::string>();
        t.seconds = r[10].is_null() ? 0 : r[10].as<double>();
        out.push_back(std::move(t));
    }
    return out;
}

} // namespace keystone
