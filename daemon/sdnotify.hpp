// SPDX-License-Identifier: GPL-2.0-or-later
// systemd's readiness and watchdog protocol (sd_notify(3)) without libsystemd: datagrams to the
// AF_UNIX socket named by $NOTIFY_SOCKET. Every call is a no-op when that variable is unset.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace keystone {

// One per process, owned by main(). Not thread-safe: use it from one thread at a time.
// No method throws; a failure to send is logged once, at debug, and the rest are silent.
class SystemdNotify {
public:
    using Duration = std::chrono::steady_clock::duration;
    using TimePoint = std::chrono::steady_clock::time_point;

    // Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID from the environment (once).
    SystemdNotify() noexcept;
    ~SystemdNotify();
    SystemdNotify(const SystemdNotify &) = delete;
    SystemdNotify &operator=(const SystemdNotify &) = delete;

    // True when $NOTIFY_SOCKET names a socket to talk to.
    bool enabled() const noexcept { return !m_address.empty(); }

    // "READY=1" with "STATUS=status": start-up (or a reload) finished.
    void notify_ready(const std::string &status) noexcept;
    // "RELOADING=1" (with MONOTONIC_USEC): a reload begins; notify_ready() when it is over.
    void notify_reloading() noexcept;
    // "STOPPING=1": shutdown begins.
    void notify_stopping() noexcept;
    // "STATUS=text": free text systemctl status shows.
    void notify_status(const std::string &text) noexcept;

    // How often to send "WATCHDOG=1": half of $WATCHDOG_USEC, or nothing when the service
    // manager does not watch this process (no $WATCHDOG_USEC, or $WATCHDOG_PID is another pid,
    // or no $NOTIFY_SOCKET).
    std::optional<Duration> watchdog_interval() const noexcept { return m_watchdog; }
    // Sends "WATCHDOG=1" when the interval has passed since the last one (or none was sent)
    // and returns the time by which the next one is due; `now` plus a day without a watchdog.
    TimePoint watchdog_tick(TimePoint now) noexcept;

private:
    void send(const std::string &message) noexcept;

    std::string m_address; // "/path" or "@abstract"; empty: disabled
    int m_fd = -1;
    bool m_error_logged = false;
    std::optional<Duration> m_watchdog;
    std::optional<TimePoint> m_next_ping;
};

} // namespace keystone
