// SPDX-License-Identifier: GPL-2.0-or-later
// Sends composed messages: SMTP through libcurl with Keystone's EMAIL_* settings (one connection
// kept open for all the messages of a run), or, with EMAIL_DEBUG_DIR, one file per message.
#pragma once

#include "config.hpp"
#include "error.hpp"

#include <functional>
#include <memory>
#include <string>

namespace keystone {

struct MailSettings {
    std::string host = "localhost"; // EMAIL_HOST
    int port = 25;                  // EMAIL_PORT
    std::string user;               // EMAIL_HOST_USER; empty: no AUTH
    std::string password;           // EMAIL_HOST_PASSWORD
    bool use_tls = false;           // EMAIL_USE_TLS: STARTTLS, required
    std::string ca_file;            // KEYSTONED_EMAIL_CA_FILE; empty: the system's trust store
    std::string debug_dir;          // EMAIL_DEBUG_DIR; not empty: files instead of SMTP
    std::string helo;               // the name we greet the server with (EHLO)
    int connect_timeout = 30;       // seconds
};

// The settings of `config` (helo: KEYSTONED_WORKER or the host name).
MailSettings mail_settings(const Config &config);

// A message that was not accepted. kind() says what a caller can expect from trying again.
class SendError : public Error {
public:
    enum class Kind {
        connection, // the server could not be reached or the connection broke: the next message
                    // fails the same way; try again later
        temporary,  // the server refused this message for now (4xx): try it again later
        permanent,  // the server refused this message (5xx): trying again soon will not help
        setup,      // the settings cannot work (authentication, TLS, certificate, a password
                    // that would go unencrypted, an unusable EMAIL_DEBUG_DIR)
    };
    SendError(Kind kind, long smtp_code, const std::string &message)
        : Error(message), m_kind(kind), m_code(smtp_code) {}
    Kind kind() const { return m_kind; }
    long smtp_code() const { return m_code; } // the server's last reply code, 0 if none
    // Sending further messages now is pointless: every one would fail the same way.
    bool stops_sending() const { return m_kind == Kind::connection || m_kind == Kind::setup; }
    // Worth another try within minutes (the server may come back or stop deferring).
    bool transient() const { return m_kind == Kind::connection || m_kind == Kind::temporary; }

private:
    Kind m_kind;
    long m_code;
};

const char *send_error_kind_name(SendError::Kind kind);

// One SMTP session (or debug folder) for a run. Not thread-safe: one Mailer per run. The
// connection is opened at the first send() and kept for the following ones; libcurl reconnects
// when the server dropped it. The destructor ends the session (QUIT).
class Mailer {
public:
    explicit Mailer(MailSettings settings);
    ~Mailer();
    Mailer(const Mailer &) = delete;
    Mailer &operator=(const Mailer &) = delete;

    // Sends `data` (a complete message with CRLF line ends, from build_message()) from `from`
    // to the single recipient `to` and returns when the server has accepted it (250 after the
    // data) or the file is on disk (written, synced, renamed into place). `name_hint` goes into
    // the debug file's name. Throws SendError, or Interrupted (see set_abort_check).
    void send(const std::string &from, const std::string &to, const std::string &data,
              const std::string &name_hint);

    // A check libcurl calls while it waits for the server (about once a second); when it returns
    // true the exchange is abandoned and send() throws Interrupted (keystoned is stopping).
    void set_abort_check(std::function<bool()> check) { m_abort = std::move(check); }

    // "smtp://HOST:PORT" (with " STARTTLS" when required) or "files in DIR".
    std::string transport() const;
    // Connections opened so far (0 for the debug folder).
    long connections() const { return m_connections; }

private:
    void send_smtp(const std::string &from, const std::string &to, const std::string &data);
    void write_file(const std::string &data, const std::string &name_hint);

    struct CurlHandle;
    MailSettings m_settings;
    std::function<bool()> m_abort;
    std::unique_ptr<CurlHandle> m_curl;
    long m_connections = 0;
    long m_files = 0;
};

// For keystonectl doctor: checks that mail could go out with `settings`, sending none. SMTP:
// connects, greets (EHLO), STARTTLS when use_tls, AUTH when a user is set, sends NOOP, then QUIT,
// through libcurl with the options send() uses, so TLS, certificate and AUTH are checked the
// same way. With debug_dir: the folder exists (or its parent allows creating it) and this process
// may create files in it. Returns what was checked ("smtp://HOST:PORT STARTTLS AUTH: NOOP
// answered 250"). Throws SendError classified as send() does (connection, setup, temporary,
// permanent).
std::string probe_mail(const MailSettings &settings);

} // namespace keystone
