// SPDX-License-Identifier: GPL-2.0-or-later
// Exception types of keystone-slurm: each says what was being done, on what, and the library's text.
#pragma once

#include <stdexcept>
#include <string>

namespace keystone {

// Base of every error the daemon raises on purpose. what() reads as a complete sentence fragment:
// "clear_log_records: delete from logging_requestlog failed: <PostgreSQL's message>".
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The database could not be reached or the connection broke; callers retry with backoff.
class DbUnavailable : public Error {
public:
    using Error::Error;
};

// The database schema is missing, older or newer than this build knows.
class SchemaError : public Error {
public:
    using Error::Error;
};

// A run was asked to stop (SIGTERM) before it finished.
class Interrupted : public Error {
public:
    using Error::Error;
};

// Another run of the same task holds its lock (in this or another process).
class AlreadyRunning : public Error {
public:
    using Error::Error;
};

} // namespace keystone
