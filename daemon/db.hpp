// SPDX-License-Identifier: GPL-2.0-or-later
// One PostgreSQL connection per thread, with reconnect and backoff and prepared statements.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

namespace keystone {

// Owns at most one libpqxx connection, used by one thread. Statements registered with prepare()
// are prepared again on every new connection. libpqxx 6's silent re-activation is switched off:
// a broken connection surfaces as DbUnavailable, so session state (advisory locks) is never
// lost behind the caller's back.
class Database {
public:
    // `conninfo` is a libpq connection string; `label` names the user in log lines.
    Database(std::string conninfo, std::string label);
    ~Database();
    Database(const Database &) = delete;
    Database &operator=(const Database &) = delete;

    // The live connection, connecting first if there is none. One attempt.
    // Throws DbUnavailable with libpq's message when the server cannot be reached.
    pqxx::connection &conn();

    // Like conn(), but retries with exponential backoff (1 s doubling to 30 s) until it connects,
    // `stop` becomes true, or `max_wait` has passed; then throws DbUnavailable.
    pqxx::connection &conn_retry(const std::atomic<bool> *stop, std::chrono::seconds max_wait);

    // Registers a statement; it is prepared on the current and every later connection.
    void prepare(const std::string &name, const std::string &sql);

    // Drops the connection (after an error that may have broken it). Never throws.
    void reset() noexcept;

    // Whether a connection is open (says nothing about the server still being there).
    bool connected() const noexcept;

    // Whether the open connection still reaches the server: one round trip ("SELECT 1"). A
    // connection the server dropped while it sat idle (PostgreSQL restarted) still looks open
    // until a statement fails on it. False when no connection is open. Never throws.
    bool alive() noexcept;

    // Switches to another connection string; takes effect at the next connect.
    void set_conninfo(std::string conninfo);

    // Asks the server to cancel the statement now running on this connection. Safe to call
    // from another thread; does nothing when no connection is open.
    void cancel() noexcept;

private:
    void open();

    std::string m_conninfo;
    std::string m_label;
    std::vector<std::pair<std::string, std::string>> m_prepared;
    mutable std::mutex m_mutex; // guards m_conn against cancel() from other threads
    std::unique_ptr<pqxx::connection> m_conn;
};

// A library message on one line: libpq ends lines with \n and splits hints over several.
std::string one_line(const std::string &text);
inline std::string one_line(const std::exception &e) { return one_line(std::string(e.what())); }

// True for libpqxx errors that mean the connection is gone (the caller should reset and retry).
bool is_connection_error(const std::exception &e) noexcept;

} // namespace keystone
