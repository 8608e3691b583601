// SPDX-License-Identifier: GPL-2.0-or-later
// An LDAP directory client for the user sync: fail-over across URIs, StartTLS before any bind,
// verified certificates, timeouts, and paged subtree searches (simple paged results control).
#pragma once

#include "error.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

struct ldap; // libldap's LDAP handle

namespace keystone {

// A directory operation failed. `code` is libldap's result code (LDAP_SERVER_DOWN, ...), or 0.
class DirectoryError : public Error {
public:
    DirectoryError(const std::string &message, int code) : Error(message), m_code(code) {}
    int code() const noexcept { return m_code; }
    // The server could not be reached or went away: another URI or a later attempt may work.
    bool transient() const noexcept;

private:
    int m_code;
};

struct DirectoryOptions {
    std::vector<std::string> uris; // tried in order until one connects
    std::string bind_dn;           // empty: anonymous
    std::string bind_password;
    bool start_tls = true;     // for ldap:// URIs: StartTLS before the bind, and fail if it fails
    bool require_cert = true;  // the server certificate must verify (else: not checked)
    std::string ca_file;       // empty: libldap's default trust store
    int timeout_sec = 10;      // connect and per-operation timeout
    int page_size = 500;
};

struct Config;
// The options the AUTH_LDAP_* and KEYSTONED_LDAP_* settings give, for all of
// AUTH_LDAP_SERVER_URI's URIs.
DirectoryOptions directory_options(const Config &config);

// One entry: its DN and the values of the attributes asked for, keyed by the attribute name in
// lower case (LDAP names are case-insensitive). Values are raw bytes, not checked for UTF-8.
struct DirectoryEntry {
    std::string dn;
    std::map<std::string, std::vector<std::string>> attrs;
};

// What Directory::probe() learned about a server (for keystonectl doctor).
struct DirectoryProbe {
    bool paged_results = false; // the root DSE lists 1.2.840.113556.1.4.319 in supportedControl
    bool base_found = false;    // the search base exists and the bound identity can see it
    std::string base_error;     // when !base_found: the server's answer ("No such object")
};

class Directory {
public:
    // Connects and binds. Tries each URI in turn; a server that cannot be reached moves on to the
    // next, any other failure (TLS verification, bad credentials) stops with that error. A simple
    // bind with a password over ldap:// without StartTLS is refused before anything is sent.
    // Throws DirectoryError naming the URI(s) and libldap's text.
    explicit Directory(const DirectoryOptions &options);
    ~Directory();
    Directory(const Directory &) = delete;
    Directory &operator=(const Directory &) = delete;

    // The URI of the server in use.
    const std::string &uri() const { return m_uri; }

    // Subtree search of `base` with `filter`, asking for `attributes`, page by page; calls
    // `on_entry` for every entry (referrals are skipped). The entry passed is reused for the next
    // one: the callback may move values out of it but must not keep a reference. An attribute
    // the entry lacks may be present with no values. Throws DirectoryError on any failure,
    // including a size or time limit: a partial result is never passed off as complete.
    // Returns the number of entries seen.
    size_t search(const std::string &base, const std::string &filter,
                  const std::vector<std::string> &attributes,
                  const std::function<void(DirectoryEntry &)> &on_entry);

    // For keystonectl doctor, separate from the sync: reads the root DSE's supportedControl and
    // looks `base` up (base scope, no attributes), over this connection. Changes nothing.
    // Throws DirectoryError when the root DSE cannot be read (server gone, timeout).
    DirectoryProbe probe(const std::string &base);

private:
    void connect_one(const std::string &uri);

    DirectoryOptions m_options;
    std::string m_uri;
    ldap *m_ld = nullptr;
};

} // namespace keystone
