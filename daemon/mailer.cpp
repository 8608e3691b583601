// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the mail transport (see mailer.hpp).
#include "mailer.hpp"

#include "error.hpp"
#include "log.hpp"
#include "util.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <curl/curl.h>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace keystone {

namespace {

// curl_global_init is not thread-safe in every libcurl build; both notification tasks may start
// their first send at the same moment on their own lanes.
void curl_global_once() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct EasyDeleter {
    void operator()(CURL *c) const noexcept { curl_easy_cleanup(c); }
};
struct SlistDeleter {
    void operator()(curl_slist *l) const noexcept { curl_slist_free_all(l); }
};

struct Upload {
    const std::string *data;
    std::size_t pos;
};

size_t read_upload(char *buffer, size_t size, size_t nitems, void *userdata) {
    auto *u = static_cast<Upload *>(userdata);
    const std::size_t room = size * nitems;
    const std::size_t n = std::min(room, u->data->size() - u->pos);
    std::memcpy(buffer, u->data->data() + u->pos, n);
    u->pos += n;
    return n;
}

int progress(void *clientp, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    const auto *abort = static_cast<const std::function<bool()> *>(clientp);
    return *abort && (*abort)() ? 1 : 0;
}

std::string url_host(const std::string &host) {
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// A file name part made of letters, digits, '-' and '.', from anything.
std::string file_part(const std::string &s) {
    std::string out;
    for (unsigned char c : s)
        out += std::isalnum(c) || c == '-' || c == '.' ? static_cast<char>(c) : '-';
    return out.empty() ? std::string("message") : out;
}

void write_all(int fd, const std::string &data, const std::string &path) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw SendError(SendError::Kind::setup, 0,
                            "EMAIL_DEBUG_DIR: cannot write " + path + ": " + std::strerror(errno));
        }
        done += static_cast<std::size_t>(n);
    }
}

// A failed libcurl SMTP exchange as a SendError: "SMTP <where>: <curl's text>[: <detail>]
// [(server reply N)]", and its kind (settings that cannot work, the server's 5xx or 4xx, or the
// connection).
SendError smtp_error(CURLcode rc, long code, const std::string &where, const char *errbuf)
{
    std::string text = "SMTP " + where + ": " + curl_easy_strerror(rc);
    if (errbuf[0] && std::strcmp(errbuf, curl_easy_strerror(rc)) != 0)
        text += std::string(": ") + errbuf;
    if (code > 0)
        text += " (server reply " + std::to_string(code) + ")";
    SendError::Kind kind;
    switch (rc) {
    case CURLE_LOGIN_DENIED:
    case CURLE_AUTH_ERROR:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        kind = SendError::Kind::setup;
        break;
    default:
        kind = code >= 500   ? SendError::Kind::permanent
               : code >= 400 ? SendError::Kind::temporary
                             : SendError::Kind::connection;
    }
    return SendError(kind, code, text);
}

} // namespace

struct Mailer::CurlHandle {
    std::unique_ptr<CURL, EasyDeleter> easy;
    char errbuf[CURL_ERROR_SIZE] = {};
};

const char *send_error_kind_name(SendError::Kind kind) {
    switch (kind) {
    case SendError::Kind::connection:
        return "connection";
    case SendError::Kind::temporary:
        return "temporary";
    case SendError::Kind::permanent:
        return "permanent";
    case SendError::Kind::setup:
        return "setup";
    }
    return "unknown";
}

MailSettings mail_settings(const Config &config) {
    MailSettings s;
    s.host = config.email_host;
    s.port = config.email_port;
    s.user = config.email_host_user;
    s.password = config.email_host_password;
    s.use_tls = config.email_use_tls;
    s.ca_file = config.email_ca_file;
    s.debug_dir = config.email_debug_dir;
    s.helo = config.worker.empty() ? host_name() : config.worker;
    return s;
}

Mailer::Mailer(MailSettings settings) : m_settings(std::move(settings)) {}

Mailer::~Mailer() {
    // curl_easy_cleanup sends QUIT on the open connection.
    m_curl.reset();
    wipe(m_settings.password);
}

std::string Mailer::transport() const {
    if (!m_settings.debug_dir.empty())
        return "files in " + m_settings.debug_dir;
    return "smtp://" + url_host(m_settings.host) + ":" + std::to_string(m_settings.port) +
           (m_settings.use_tls ? " STARTTLS" : "");
}

void Mailer::send(const std::string &from, const std::string &to, const std::string &data,
                  const std::string &name_hint) {
    if (!m_settings.debug_dir.empty())
        write_file(data, name_hint);
    else
        send_smtp(from, to, data);
}

void Mailer::send_smtp(const std::string &from, const std::string &to, const std::string &data) {
    using Kind = SendError::Kind;
    if (!m_settings.user.empty() && !m_settings.use_tls)
        throw SendError(Kind::setup, 0,
                        "refusing to send EMAIL_HOST_PASSWORD unencrypted: EMAIL_HOST_USER is "
                        "set but EMAIL_USE_TLS is false");
    if (!m_curl) {
        curl_global_once();
        auto h = std::make_unique<CurlHandle>();
        h->easy.reset(curl_easy_init());
        if (!h->easy)
            throw SendError(Kind::setup, 0, "libcurl: curl_easy_init failed");
        CURL *c = h->easy.get();
        // The URL's path is the name libcurl greets the server with (EHLO).
        const std::string url = "smtp://" + url_host(m_settings.host) + ":" +
                                std::to_string(m_settings.port) + "/" + m_settings.helo;
        curl_easy_setopt(c, CURLOPT_URL, url.c_str());
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_upload);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(m_settings.connect_timeout));
        // A server that stops answering in the middle of a message: give up after a minute of
        // silence rather than after a fixed total time (a large message on a slow link is fine).
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &m_abort);
        if (m_settings.use_tls)
            curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
        if (!m_settings.ca_file.empty())
            curl_easy_setopt(c, CURLOPT_CAINFO, m_settings.ca_file.c_str());
        if (!m_settings.user.empty()) {
            curl_easy_setopt(c, CURLOPT_USERNAME, m_settings.user.c_str());
            curl_easy_setopt(c, CURLOPT_PASSWORD, m_settings.password.c_str());
        }
        m_curl = std::move(h);
    }
    CURL *c = m_curl->easy.get();
    const std::string mail_from = "<" + from + ">";
    std::unique_ptr<curl_slist, SlistDeleter> rcpt(
        curl_slist_append(nullptr, ("<" + to + ">").c_str()));
    if (!rcpt)
        throw SendError(Kind::setup, 0, "libcurl: out of memory");
    Upload upload{&data, 0};
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt.get());
    curl_easy_setopt(c, CURLOPT_READDATA, &upload);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(data.size()));
    m_curl->errbuf[0] = '\0';
    const CURLcode rc = curl_easy_perform(c);
    long opened = 0, code = 0;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &opened);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    m_connections += opened;
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, nullptr);
    if (rc == CURLE_OK)
        return;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        m_curl.reset(); // the session is in an unknown state
        throw Interrupted("interrupted: keystoned is stopping (in the middle of an SMTP exchange)");
    }

    SendError error = smtp_error(rc, code, transport(), m_curl->errbuf);
    if (error.kind() == SendError::Kind::connection) {
        // Whatever state the session is in, start the next message on a fresh connection.
        m_curl.reset();
    }
    throw error;
}

void Mailer::write_file(const std::string &data, const std::string &name_hint) {
    using Kind = SendError::Kind;
    const std::string &dir = m_settings.debug_dir;
    if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
        throw SendError(Kind::setup, 0,
                        "EMAIL_DEBUG_DIR: cannot create " + dir + ": " + std::strerror(errno));
    const std::time_t now = std::time(nullptr);
    struct tm tm {};
    localtime_r(&now, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    ++m_files;
    const std::string name = std::string(stamp) + "-" + std::to_string(::getpid()) + "-" +
                             std::to_string(m_files) + "-" + file_part(name_hint) + ".eml";
    const std::string path = dir + "/" + name;
    const std::string tmp = dir + "/.tmp-" + name;
    // Written whole under a temporary name, synced, then renamed: a reader never sees half a
    // message, and a message that is there survives a crash.
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        throw SendError(Kind::setup, 0,
                        "EMAIL_DEBUG_DIR: cannot create " + tmp + ": " + std::strerror(errno));
    try {
        write_all(fd, data, tmp);
        if (::fsync(fd) != 0)
            throw SendError(Kind::setup, 0,
                            "EMAIL_DEBUG_DIR: cannot sync " + tmp + ": " + std::strerror(errno));
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw SendError(Kind::setup, 0,
                        "EMAIL_DEBUG_DIR: cannot rename to " + path + ": " + std::strerror(e));
    }
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    log_debug("mailer: wrote %s", path.c_str());
}

// --- keystonectl doctor's probe (not used to send) ----------------------------------------

namespace {

size_t discard(char *, size_t size, size_t nmemb, void *) { return size * nmemb; }

std::string probe_debug_dir(const std::string &dir) {
    using Kind = SendError::Kind;
    struct stat st;
    std::string target = dir;
    if (::stat(dir.c_str(), &st) != 0) {
        if (errno != ENOENT)
            throw SendError(Kind::setup, 0,
                            "EMAIL_DEBUG_DIR: " + dir + ": " + std::strerror(errno));
        // write_file() creates the folder (not its parents) at the first message.
        const std::size_t slash = dir.find_last_of('/');
        target = slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash);
        if (::stat(target.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            throw SendError(Kind::setup, 0,
                            "EMAIL_DEBUG_DIR: " + dir + " does not exist, nor does its parent " +
                                target);
    } else if (!S_ISDIR(st.st_mode)) {
        throw SendError(Kind::setup, 0, "EMAIL_DEBUG_DIR: " + dir + " is not a folder");
    }
    if (::access(target.c_str(), W_OK | X_OK) != 0)
        throw SendError(Kind::setup, 0,
                        "EMAIL_DEBUG_DIR: cannot create files in " + target + ": " +
                            std::strerror(errno));
    return target == dir ? "files in " + dir + " (writable)"
                         : "files in " + dir + " (created at the first message; " + target +
                               " is writable)";
}

} // namespace

std::string probe_mail(const MailSettings &settings) {
    using Kind = SendError::Kind;
    if (!settings.debug_dir.empty())
        return probe_debug_dir(settings.debug_dir);
    const std::string where = "smtp://" + url_host(settings.host) + ":" +
                              std::to_string(settings.port) + (settings.use_tls ? " STARTTLS" : "") +
                              (settings.user.empty() ? "" : " AUTH");
    if (!settings.user.empty() && !settings.use_tls)
        throw SendError(Kind::setup, 0,
                        "refusing to send EMAIL_HOST_PASSWORD unencrypted: EMAIL_HOST_USER is "
                        "set but EMAIL_USE_TLS is false");
    curl_global_once();
    std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
    if (!easy)
        throw SendError(Kind::setup, 0, "libcurl: curl_easy_init failed");
    CURL *c = easy.get();
    char errbuf[CURL_ERROR_SIZE] = {};
    const std::string url = "smtp://" + url_host(settings.host) + ":" +
                            std::to_string(settings.port) + "/" + settings.helo;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(settings.connect_timeout));
    curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(2 * settings.connect_timeout));
    // No recipient and a custom command: libcurl runs the whole session set-up (greeting, EHLO,
    // STARTTLS, AUTH) and then just this command; no MAIL FROM, nothing is sent. QUIT follows
    // at curl_easy_cleanup.
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "NOOP");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (settings.use_tls)
        curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
    if (!settings.ca_file.empty())
        curl_easy_setopt(c, CURLOPT_CAINFO, settings.ca_file.c_str());
    if (!settings.user.empty()) {
        curl_easy_setopt(c, CURLOPT_USERNAME, settings.user.c_str());
        curl_easy_setopt(c, CURLOPT_PASSWORD, settings.password.c_str());
    }
    const CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK)
        return where + ": NOOP answered " + std::to_string(code);
    throw smtp_error(rc, code, where, errbuf);
}

} // namespace keystone
