// SPDX-License-Identifier: GPL-2.0-or-later
// sd_notify(3) protocol by hand: one datagram per message to $NOTIFY_SOCKET (a path, or an
// abstract socket name when it starts with '@'). systemd reads the sender's credentials from the
// socket, so nothing but the text is needed.
#include "sdnotify.hpp"

#include "log.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace keystone {

namespace {

// A positive decimal number, or nothing.
std::optional<unsigned long long> parse_positive(const char *text)
{
    if (text == nullptr || *text == '\0')
        return std::nullopt;
    errno = 0;
    char *end = nullptr;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || text[0] == '-')
        return std::nullopt;
    return v;
}

} // namespace

SystemdNotify::SystemdNotify() noexcept
{
    const char *address = std::getenv("NOTIFY_SOCKET");
    if (address == nullptr || (address[0] != '/' && address[0] != '@') || address[1] == '\0') {
        if (address != nullptr && *address != '\0')
            log_debug("sd_notify: NOTIFY_SOCKET=%s is not an AF_UNIX socket: not notifying",
                      address);
        return;
    }
    if (std::strlen(address) >= sizeof(sockaddr_un::sun_path)) {
        log_debug("sd_notify: NOTIFY_SOCKET=%s is too long: not notifying", address);
        return;
    }
    m_address = address;

    auto usec = parse_positive(std::getenv("WATCHDOG_USEC"));
    if (!usec)
        return;
    auto pid = parse_positive(std::getenv("WATCHDOG_PID"));
    if (std::getenv("WATCHDOG_PID") != nullptr &&
        (!pid || *pid != static_cast<unsigned long long>(getpid()))) {
        log_debug("sd_notify: WATCHDOG_PID is not this process: no watchdog pings");
        return;
    }
    m_watchdog = std::chrono::duration_cast<Duration>(std::chrono::microseconds(*usec / 2));
    if (*m_watchdog <= Duration::zero())
        m_watchdog = std::chrono::duration_cast<Duration>(std::chrono::microseconds(1));
    log_debug("sd_notify: watchdog ping every %lld ms",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(*m_watchdog).count()));
}

SystemdNotify::~SystemdNotify()
{
    if (m_fd >= 0)
        close(m_fd);
}

void SystemdNotify::send(const std::string &message) noexcept
{
    if (m_address.empty())
        return;
    if (m_fd < 0) {
        m_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (m_fd < 0) {
            if (!m_error_logged)
                log_debug("sd_notify: socket: %s", std::strerror(errno));
            m_error_logged = true;
            return;
        }
    }
    sockaddr_un sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, m_address.data(), m_address.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + m_address.size());
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; // abstract namespace: no terminating NUL, the length says it all
    else
        ++len;
    ssize_t n;
    do
        n = sendto(m_fd, message.data(), message.size(), MSG_NOSIGNAL,
                   reinterpret_cast<const sockaddr *>(&sa), len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && !m_error_logged) {
        log_debug("sd_notify: send to NOTIFY_SOCKET=%s failed: %s", m_address.c_str(),
                  std::strerror(errno));
        m_error_logged = true;
    }
}

void SystemdNotify::notify_ready(const std::string &status) noexcept
{
    try {
        send("READY=1\nSTATUS=" + status);
    } catch (...) { // std::bad_alloc building the message: nothing sent
    }
}

void SystemdNotify::notify_reloading() noexcept
{
    try {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                                  static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
        send("RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=" +
             std::to_string(usec));
    } catch (...) {
    }
}

void SystemdNotify::notify_stopping() noexcept
{
    try {
        send("STOPPING=1\nSTATUS=stopping");
    } catch (...) {
    }
}

void SystemdNotify::notify_status(const std::string &text) noexcept
{
    try {
        send("STATUS=" + text);
    } catch (...) {
    }
}

SystemdNotify::TimePoint SystemdNotify::watchdog_tick(TimePoint now) noexcept
{
    if (!m_watchdog)
        return now + std::chrono::hours(24);
    if (!m_next_ping || now >= *m_next_ping) {
        send("WATCHDOG=1");
        m_next_ping = now + *m_watchdog;
    }
    return *m_next_ping;
}

} // namespace keystone
