// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl doctor's checks of the network services: the LDAP server and the mail transport
// (see doctor_checks.hpp).
#include "doctor_checks.hpp"

#include "db.hpp"
#include "directory.hpp"
#include "mailer.hpp"
#include "util.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <ldap.h>
#include <memory>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace keystone::doctor_detail {

namespace {

// Whether a TCP connection to host:port opens within `timeout_sec` (any address). Separates
// "nothing listens there" from a TLS or protocol failure.
bool tcp_reachable(const std::string &host, int port, int timeout_sec) {
    struct addrinfo hints {};
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0)
        return false;
    std::unique_ptr<struct addrinfo, void (*)(struct addrinfo *)> owner(res, ::freeaddrinfo);
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        const int fd =
            ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        bool ok = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        if (!ok && errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int err = 0;
            socklen_t len = sizeof err;
            ok = ::poll(&p, 1, timeout_sec * 1000) == 1 &&
                 ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
        }
        ::close(fd);
        if (ok)
            return true;
    }
    return false;
}

struct UriParts {
    std::string scheme, host;
    int port = 0;
};

UriParts split_uri(const std::string &uri) {
    UriParts u;
    const size_t sep = uri.find("://");
    u.scheme = sep == std::string::npos ? "ldap" : uri.substr(0, sep);
    std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(), ::tolower);
    std::string rest = sep == std::string::npos ? uri : uri.substr(sep + 3);
    rest = rest.substr(0, rest.find('/'));
    u.port = u.scheme == "ldaps" ? 636 : 389;
    if (!rest.empty() && rest[0] == '[') {
        const size_t close = rest.find(']');
        u.host = rest.substr(1, close - 1);
        if (close != std::string::npos && close + 1 < rest.size() && rest[close + 1] == ':')
            u.port = std::atoi(rest.c_str() + close + 2);
    } else {
        const size_t colon = rest.rfind(':');
        u.host = rest.substr(0, colon);
        if (colon != std::string::npos)
            u.port = std::atoi(rest.c_str() + colon + 1);
    }
    if (u.host.empty())
        u.host = "localhost";
    return u;
}

} // namespace

// --- LDAP -------------------------------------------------------------------------------------

void check_ldap(const Config &config, std::vector<Finding> &out) {
    if (!config.ldap_enabled()) {
        add(out, "ldap", "LDAP", Status::info,
            "AUTH_LDAP_SERVER_URI is empty: no LDAP sync, nothing to check");
        return;
    }
    if (config.schedules.at("ldap_update_users").empty())
        add(out, "ldap", "ldap_update_users", Status::info,
            "not scheduled (KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS is empty); the server is "
            "checked anyway");
    const std::string ca =
        config.ldap_ca_file.empty() ? "libldap's default trust store" : config.ldap_ca_file;
    const std::string who =
        config.ldap_bind_dn.empty() ? std::string("anonymous") : config.ldap_bind_dn;
    std::vector<Finding> failures;
    std::optional<Finding> first_ok;
    std::unique_ptr<Directory> working;
    for (const auto &uri : config.ldap_server_uris) {
        const UriParts u = split_uri(uri);
        const std::string subject = "LDAP server " + uri;
        if (u.scheme != "ldapi" && !tcp_reachable(u.host, u.port, config.ldap_timeout)) {
            failures.push_back(
                Finding{"ldap", subject, Status::error,
                        "nothing answers at " + u.host + ":" + std::to_string(u.port),
                        "start the LDAP server or fix AUTH_LDAP_SERVER_URI (" +
                            config.origin_text("AUTH_LDAP_SERVER_URI") + ")"});
            continue;
        }
        DirectoryOptions o = directory_options(config);
        o.uris = {uri};
        try {
            auto d = std::make_unique<Directory>(o);
            const bool tls = u.scheme == "ldaps" || (u.scheme == "ldap" && config.ldap_start_tls);
            Finding f{
                "ldap", subject, Status::ok,
                "bound as " + who +
                    (u.scheme == "ldaps"   ? " over TLS (ldaps)"
                     : u.scheme == "ldapi" ? " over the local socket"
                     : tls                 ? " after StartTLS"
                                           : " without TLS") +
                    (tls ? (config.ldap_require_cert ? ", server certificate verified against " + ca
                                                     : ", server certificate NOT verified")
                         : ""),
                ""};
            if (!working) {
                working = std::move(d);
                first_ok = f;
            } else {
                out.push_back(f);
            }
        } catch (const DirectoryError &e) {
            std::string remedy;
            const std::string text = e.what();
            if (e.code() == LDAP_INVALID_CREDENTIALS)
                remedy = "check AUTH_LDAP_BIND_DN and AUTH_LDAP_BIND_PASSWORD (" +
                         config.origin_text("AUTH_LDAP_BIND_PASSWORD") + ")";
            else if (e.code() == LDAP_CONFIDENTIALITY_REQUIRED)
                remedy = "use ldaps:// or AUTH_LDAP_START_TLS=true";
            else if (text.find("StartTLS") != std::string::npos || u.scheme == "ldaps" ||
                     e.transient())
                // The port answers (checked above), so a connect error is the TLS handshake.
                remedy = "the TLS handshake failed: KEYSTONED_LDAP_CA_FILE (" + ca +
                         ") must hold the CA that signed the server's certificate, and the "
                         "certificate must name the host of the URI";
            else
                remedy = "see the server's log for why it refused";
            failures.push_back(Finding{"ldap", subject, Status::error, text, remedy});
        }
    }
    if (first_ok)
        out.insert(out.end(), *first_ok);
    for (auto &f : failures) {
        if (working) {
            // Another server works: the sync fails over, but has one server less.
            f.status = Status::warning;
            f.detail += " (the sync uses the other server)";
        }
        out.push_back(f);
    }
    if (!working)
        return;
    try {
        const DirectoryProbe p = working->probe(config.ldap_user_search);
        add(out, "ldap", "paged results (" + working->uri() + ")",
            p.paged_results ? Status::ok : Status::warning,
            p.paged_results
                ? "the server supports the paged-results control (1.2.840.113556.1.4.319)"
                : "the root DSE does not list the paged-results control "
                  "(1.2.840.113556.1.4.319): the sync reads every user in one answer, which "
                  "a size limit cuts short (the run then fails)",
            p.paged_results ? ""
                            : "enable paged results on the server, or raise its size limit for "
                              "the bind DN above the number of users");
        if (config.ldap_user_search.empty())
            add(out, "ldap", "AUTH_LDAP_USER_SEARCH", Status::warning,
                "empty: the sync searches from the root",
                "set AUTH_LDAP_USER_SEARCH to the base "
                "DN of the user entries");
        else
            add(out, "ldap", "AUTH_LDAP_USER_SEARCH " + config.ldap_user_search,
                p.base_found ? Status::ok : Status::error,
                p.base_found ? "exists" : "cannot be read: " + p.base_error,
                p.base_found
                    ? ""
                    : "set AUTH_LDAP_USER_SEARCH (" + config.origin_text("AUTH_LDAP_USER_SEARCH") +
                          ") to an existing base DN the bind DN may search");
    } catch (const std::exception &e) {
        add(out, "ldap", "root DSE (" + working->uri() + ")", Status::error, one_line(e));
    }
}

// --- mail ---------------------------------------------------------------------------------------

void check_mail(const Config &config, std::vector<Finding> &out) {
    if (config.schedules.at("notify_upcoming_expirations").empty() &&
        config.schedules.at("notify_past_expirations").empty()) {
        add(out, "smtp", "mail", Status::info,
            "the notification tasks are not scheduled: no mail is sent");
        return;
    }
    MailSettings s = mail_settings(config);
    s.connect_timeout = std::min(s.connect_timeout, 10);
    const std::string subject = s.debug_dir.empty()
                                    ? "SMTP server " + s.host + ":" + std::to_string(s.port)
                                    : "EMAIL_DEBUG_DIR " + s.debug_dir;
    try {
        add(out, "smtp", subject, Status::ok, probe_mail(s));
    } catch (const SendError &e) {
        const std::string text = e.what();
        std::string remedy;
        Status status = Status::error;
        const bool configured = config.origins.count("EMAIL_HOST") != 0;
        if (!s.debug_dir.empty())
            remedy = "create EMAIL_DEBUG_DIR writable by keystoned's user, or remove the setting";
        else if (e.kind() == SendError::Kind::connection) {
            remedy = "start the mail server or fix EMAIL_HOST and EMAIL_PORT (" +
                     config.origin_text("EMAIL_HOST") + ")";
            if (!configured) {
                // Keystone's default, never set: the site may not have chosen a server yet.
                status = Status::warning;
                remedy = "EMAIL_HOST is not set and nothing answers at its default: set "
                         "EMAIL_HOST, or switch the notification tasks off";
            }
        } else if (text.find("unencrypted") != std::string::npos)
            remedy = "set EMAIL_USE_TLS=true";
        else if (text.find("Login") != std::string::npos ||
                 text.find("uthenticat") != std::string::npos)
            remedy = "check EMAIL_HOST_USER and EMAIL_HOST_PASSWORD (" +
                     config.origin_text("EMAIL_HOST_PASSWORD") + ")";
        else if (e.kind() == SendError::Kind::setup)
            remedy = "STARTTLS or the certificate failed: KEYSTONED_EMAIL_CA_FILE must hold the "
                     "CA that signed the server's certificate, which must name EMAIL_HOST";
        else
            remedy = "the server refused the session: see its log";
        add(out, "smtp", subject, status, text, remedy);
    }
}

} // namespace keystone::doctor_detail
