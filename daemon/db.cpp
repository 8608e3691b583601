// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the per-thread PostgreSQL connection (see db.hpp).
#include "db.hpp"

#include "config.hpp"
#include "error.hpp"
#include "log.hpp"

#include <algorithm>
#include <thread>

namespace keystone {

std::string one_line(const std::string &text)
{
    std::string out;
    for (char ch : text) {
        if (ch == '\n' || ch == '\r') {
            if (!out.empty() && out.back() != ' ')
                out += "; ";
        } else if (ch == '\t') {
            out += ' ';
        } else {
            out += ch;
        }
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == ';'))
        out.pop_back();
    return out;
}

Database::Database(std::string conninfo, std::string label)
    : m_conninfo(std::move(conninfo)), m_label(std::move(label))
{
}

Database::~Database()
{
    reset();
}

void Database::open()
{
    std::unique_ptr<pqxx::connection> c;
    try {
        // Named in pg_stat_activity: "keystoned ingest 2", "keystoned update_limits",
        // "keystonectl".
        const std::string name =
            m_label.rfind("keystone", 0) == 0 ? m_label : "keystoned " + m_label;
        c = std::make_unique<pqxx::connection>(m_conninfo +
                                               " application_name=" + conninfo_value(name));
    } catch (const std::exception &e) {
        throw DbUnavailable("database: cannot connect (" + m_label + "): " + one_line(e.what()));
    }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // Deprecated in 6.x but still the only switch; 7.x never re-activates on its own.
    c->inhibit_reactivation(true);
#pragma GCC diagnostic pop
    try {
        pqxx::nontransaction tx(*c);
        tx.exec0("SET TIME ZONE 'UTC'");
        for (const auto &p : m_prepared)
            c->prepare(p.first, p.second);
    } catch (const pqxx::broken_connection &e) {
        throw DbUnavailable("database: connection lost while setting up (" + m_label +
                            "): " + e.what());
    }
    std::lock_guard<std::mutex> lock(m_mutex);
    m_conn = std::move(c);
}

pqxx::connection &Database::conn()
{
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (m_conn && m_conn->is_open())
            return *m_conn;
    }
    reset();
    open();
    return *m_conn;
}

bool Database::alive() noexcept
{
    // m_conn changes only on this (the owning) thread; the mutex is not held over the round
    // trip, so that cancel() from another thread never waits for it.
    try {
        if (!m_conn || !m_conn->is_open())
            return false;
        pqxx::nontransaction tx(*m_conn, "alive");
        tx.exec0("SELECT 1");
        return true;
    } catch (...) {
        return false;
    }
}

pqxx::connection &Database::conn_retry(const std::atomic<bool> *stop, std::chrono::seconds max_wait)
{
    auto deadline = std::chrono::steady_clock::now() + max_wait;
    std::chrono::milliseconds delay(1000);
    for (unsigned attempt = 1;; ++attempt) {
        try {
            return conn();
        } catch (const DbUnavailable &e) {
            auto now = std::chrono::steady_clock::now();
            if ((stop && stop->load()) || now + delay > deadline)
                throw;
            log_error_limited("db-connect-" + m_label, 60, "%s (attempt %u, retrying in %lld ms)",
                              e.what(), attempt, static_cast<long long>(delay.count()));
            // Sleep in short steps so a stop request is seen promptly.
            auto wake = now + delay;
            while (std::chrono::steady_clock::now() < wake && !(stop && stop->load()))
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            delay = std::min(delay * 2, std::chrono::milliseconds(30000));
        }
    }
}

void Database::prepare(const std::string &name, const std::string &sql)
{
    auto it = std::find_if(m_prepared.begin(), m_prepared.end(),
                           [&](const auto &p) { return p.first == name; });
    if (it != m_prepared.end()) {
        if (it->second == sql)
            return;
        it->second = sql;
    } else {
        m_prepared.emplace_back(name, sql);
    }
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_conn && m_conn->is_open()) {
        try {
            m_conn->unprepare(name);
        } catch (const std::exception &) {
            // Not prepared yet on this connection: fine.
        }
        m_conn->prepare(name, sql);
    }
}

void Database::reset() noexcept
{
    std::unique_ptr<pqxx::connection> old;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        old = std::move(m_conn);
    }
    if (old) {
        try {
            old->disconnect();
        } catch (...) {
            // Closing a broken connection: nothing left to report.
        }
    }
}

bool Database::connected() const noexcept
{
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_conn && m_conn->is_open();
}

void Database::set_conninfo(std::string conninfo)
{
    if (conninfo == m_conninfo)
        return;
    m_conninfo = std::move(conninfo);
    reset();
}

void Database::cancel() noexcept
{
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_conn)
        return;
    try {
        m_conn->cancel_query();
    } catch (...) {
        // The statement may have finished meanwhile, or the server may be gone.
    }
}

bool is_connection_error(const std::exception &e) noexcept
{
    return dynamic_cast<const pqxx::broken_connection *>(&e) != nullptr ||
           dynamic_cast<const pqxx::in_doubt_error *>(&e) != nullptr ||
           dynamic_cast<const DbUnavailable *>(&e) != nullptr;
}

} // namespace keystone
