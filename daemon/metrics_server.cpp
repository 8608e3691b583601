// SPDX-License-Identifier: GPL-2.0-or-later
// keystoned's metrics endpoint (see metrics.hpp): libmicrohttpd on KEYSTONED_METRICS_ADDRESS,
// GET /metrics answered with metrics_render().
#include "config.h"

#include "metrics.hpp"

#include "log.hpp"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <netdb.h>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace keystone {

namespace {

#if MHD_VERSION >= 0x00097002
using MhdResult = enum MHD_Result;
#else
using MhdResult = int;
#endif

constexpr const char *content_type = "text/plain; version=0.0.4; charset=utf-8";
constexpr unsigned max_connections = 8;
constexpr unsigned max_per_client = 4;
constexpr unsigned idle_timeout_sec = 5;


void mhd_log(void *, const char *fmt, va_list ap)
{
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    std::size_t n = std::strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    log_verbose("metrics: %s", buf);
}

MhdResult reply(MHD_Connection *c, unsigned status, const std::string &type,
                const std::string &body, const char *allow = nullptr)
{
    MHD_Response *r = MHD_create_response_from_buffer(
        body.size(), const_cast<char *>(body.data()), MHD_RESPMEM_MUST_COPY);
    if (r == nullptr)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type.c_str());
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    const MhdResult rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

MhdResult handle(void *cls, MHD_Connection *c, const char *url, const char *method,
                 const char * /*version*/, const char * /*upload_data*/,
                 size_t * /*upload_data_size*/, void ** /*state*/)
{
    auto *server = static_cast<MetricsServer *>(cls);
    // Answered at the first call, before any request body is read: MHD then discards the body
    // and closes the connection.
    if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        std::strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                     "method not allowed: GET /metrics\n", "GET, HEAD");
    if (std::strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                     "not found: the metrics are at /metrics\n");
    try {
        const auto config = server->config();
        return reply(c, MHD_HTTP_OK, content_type, metrics_render(*config));
    } catch (const std::exception &e) {
        log_error_limited("metrics-render", 60, "metrics: cannot render the metrics: %s",
                          e.what());
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                     "cannot render the metrics\n");
    }
}

} // namespace

MetricsServer::MetricsServer()
{
    metrics_mark_start(); // the process start time is keystoned's, not the first scrape's
}

MetricsServer::~MetricsServer()
{
    stop();
}

std::shared_ptr<const Config> MetricsServer::config() const
{
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_config;
}

bool MetricsServer::start(std::shared_ptr<const Config> config)
{
    const std::string address = config->metrics_address;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_config = std::move(config);
    }
    if (address.empty() || address == "off") {
        log_info("metrics: KEYSTONED_METRICS_ADDRESS=%s: no metrics endpoint",
                 address.empty() ? "(empty)" : address.c_str());
        return false;
    }
    return listen(address);
}

void MetricsServer::reload(std::shared_ptr<const Config> config)
{
    const std::string address = config->metrics_address;
    std::string old;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_config = std::move(config);
        old = m_address;
    }
    const bool want = !(address.empty() || address == "off");
    if (want && address == old)
        return;
    if (!want && old.empty())
        return;
    stop();
    if (want)
        (void)listen(address);
    else
        log_info("metrics: KEYSTONED_METRICS_ADDRESS=%s: metrics endpoint closed",
                 address.empty() ? "(empty)" : address.c_str());
}

void MetricsServer::stop() noexcept
{
    MHD_Daemon *d;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        d = m_daemon;
        m_daemon = nullptr;
        m_address.clear();
    }
    // Outside the lock: the handler of a scrape in progress takes it (config()).
    if (d)
        MHD_stop_daemon(d);
}

bool MetricsServer::listen(const std::string &address)
{
    auto fail = [&](const std::string &why) {
        log_error("metrics: cannot serve KEYSTONED_METRICS_ADDRESS=%s: %s; keystoned runs on "
                  "without a metrics endpoint",
                  address.c_str(), why.c_str());
        return false;
    };
    // Validated by the configuration: HOST:PORT or [IPV6]:PORT.
    const std::size_t colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);

    struct addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *found = nullptr;
    // Resolved once, here: a name's later changes take a reload with a changed address or a
    // restart.
    const int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (gai != 0)
        return fail("cannot resolve " + host + ": " + ::gai_strerror(gai));
    std::unique_ptr<struct addrinfo, void (*)(struct addrinfo *)> hold(found, ::freeaddrinfo);

    std::string why;
    for (const struct addrinfo *ai = found; ai != nullptr; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN + 8] = "";
        ::getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST);
        const std::string where = ai->ai_family == AF_INET6 ? "[" + std::string(text) + "]:" + port
                                                            : std::string(text) + ":" + port;
        const int fd =
            ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            why += (why.empty() ? "" : "; ") + where + ": socket: " + std::strerror(errno);
            continue;
        }
        const int one = 1;
        // A restart must not wait for the previous process's connections in TIME_WAIT; without
        // SO_REUSEPORT two live listeners on one port are still refused (EADDRINUSE).
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
            why += (why.empty() ? "" : "; ") + where + ": " + std::strerror(errno);
            ::close(fd);
            continue;
        }
        const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                               (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
        MHD_Daemon *d = MHD_start_daemon(
            flags, 0, nullptr, nullptr, &handle, this, MHD_OPTION_LISTEN_SOCKET, fd,
            MHD_OPTION_CONNECTION_LIMIT, max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            max_per_client, MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout_sec,
            MHD_OPTION_EXTERNAL_LOGGER, &mhd_log, nullptr, MHD_OPTION_END);
        if (d == nullptr) {
            why += (why.empty() ? "" : "; ") + where + ": libmicrohttpd did not start";
            ::close(fd);
            continue;
        }
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_daemon = d;
            m_address = address;
        }
        log_info("metrics: serving http://%s/metrics (KEYSTONED_METRICS_ADDRESS=%s)",
                 where.c_str(), address.c_str());
        return true;
    }
    return fail(why.empty() ? "no address" : why);
}

} // namespace keystone
