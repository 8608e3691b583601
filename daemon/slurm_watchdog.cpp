// SPDX-License-Identifier: GPL-2.0-or-later
// The deadline for libslurm calls that wait on slurmdbd (see slurm_watchdog.hpp).
#include "slurm_watchdog.hpp"

#include "log.hpp"
#include "slurm_internal.hpp"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace keystone::slurm_internal {

namespace {

// Seconds between two rounds of shutting connections down once the deadline has passed:
// libslurm reconnects after a failed read (and retries a failed send up to four times), and a
// new connection to a hung slurmdbd waits again.
constexpr auto repeat_interval = std::chrono::seconds(1);

// A peer address as raw bytes (4 for IPv4, 16 for IPv6; an IPv4-mapped IPv6 address as its IPv4
// part) and port; false for other families.
bool endpoint_of(const sockaddr *sa, std::string &addr, std::uint16_t &port) {
    if (sa->sa_family == AF_INET) {
        const auto *in = reinterpret_cast<const sockaddr_in *>(sa);
        addr.assign(reinterpret_cast<const char *>(&in->sin_addr), 4);
        port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
        const auto *bytes = reinterpret_cast<const char *>(&in6->sin6_addr);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            addr.assign(bytes + 12, 4);
        else
            addr.assign(bytes, 16);
        port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

struct AddrinfoDeleter {
    void operator()(addrinfo *a) const noexcept { freeaddrinfo(a); }
};

// The addresses `host` resolves to (as endpoint_of() gives them); none when it does not resolve.
void resolve(const std::string &host, std::vector<std::string> &out) {
    if (host.empty())
        return;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo *raw = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &raw) != 0)
        return;
    std::unique_ptr<addrinfo, AddrinfoDeleter> list(raw);
    for (const addrinfo *a = list.get(); a; a = a->ai_next) {
        std::string addr;
        std::uint16_t port = 0;
        if (a->ai_addr && endpoint_of(a->ai_addr, addr, port))
            out.push_back(std::move(addr));
    }
}

struct DirDeleter {
    void operator()(DIR *d) const noexcept { closedir(d); }
};

// Our own duplicate of a descriptor, closed on scope exit.
class DupFd {
public:
    explicit DupFd(int fd) : m_fd(fcntl(fd, F_DUPFD_CLOEXEC, 0)) {}
    ~DupFd() {
        if (m_fd >= 0)
            close(m_fd);
    }
    DupFd(const DupFd &) = delete;
    DupFd &operator=(const DupFd &) = delete;
    int get() const { return m_fd; }

private:
    int m_fd;
};

// Calls `f` with (a duplicate of) every TCP socket of the process connected to `port` at one
// of `addrs` (any address when `addrs` is empty). Returns how many sockets `f` returned true
// for, or -1 when /proc/self/fd cannot be read.
template <typename F>
int for_each_peer(const std::vector<std::string> &addrs, std::uint16_t port, F f) {
    std::unique_ptr<DIR, DirDeleter> dir(opendir("/proc/self/fd"));
    if (!dir)
        return -1;
    const int own = dirfd(dir.get());
    int count = 0;
    while (const dirent *e = readdir(dir.get())) {
        char *end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || fd < 0 || fd == own)
            continue;
        // Everything is done on a duplicate: libslurm may close its descriptor meanwhile and the
        // number be reused for another file, but the duplicate still refers to the socket that
        // was checked, so only that socket is ever touched.
        const DupFd dup(static_cast<int>(fd));
        if (dup.get() < 0)
            continue;
        int type = 0;
        socklen_t type_len = sizeof type;
        if (getsockopt(dup.get(), SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 ||
            type != SOCK_STREAM)
            continue;
        sockaddr_storage peer{};
        socklen_t peer_len = sizeof peer;
        std::string addr;
        std::uint16_t peer_port = 0;
        if (getpeername(dup.get(), reinterpret_cast<sockaddr *>(&peer), &peer_len) != 0 ||
            !endpoint_of(reinterpret_cast<const sockaddr *>(&peer), addr, peer_port) ||
            peer_port != port)
            continue;
        bool match = addrs.empty();
        for (const auto &a : addrs)
            match = match || a == addr;
        if (match && f(dup.get()))
            ++count;
    }
    return count;
}

// Shuts down for reading every TCP socket of the process connected to slurmdbd.
int shut_down_peers(const std::vector<std::string> &addrs, std::uint16_t port) {
    return for_each_peer(addrs, port, [](int fd) { return shutdown(fd, SHUT_RD) == 0; });
}

} // namespace

void tune_slurmdbd_sockets(std::uint16_t port) noexcept {
    // Slurm writes a message's length and its body with two send() calls; with Nagle's algorithm
    // on one side and delayed ACKs on the other, every request and every answer waits ~40 ms for
    // an ACK (measured: ~87 ms of each ~90 ms slurmdbd request). TCP_NODELAY stops our side
    // holding back the body of a request; TCP_QUICKACK makes us acknowledge the answer's length at
    // once, so slurmdbd sends its body without waiting. Any socket to slurmdbd's port is tuned:
    // harmless for one that is not slurmdbd's.
    (void)for_each_peer({}, port, [](int fd) {
        const int on = 1;
        const bool a = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0;
        const bool b = setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on) == 0;
        return a && b;
    });
}

SlurmdbdDeadline::SlurmdbdDeadline(int timeout_seconds, std::string what, std::string cluster)
    : m_timeout(timeout_seconds), m_what(std::move(what)), m_cluster(std::move(cluster)) {
    m_host = text(slurm_conf.accounting_storage_host);
    m_backup_host = text(slurm_conf.accounting_storage_backup_host);
    m_port = slurm_conf.accounting_storage_port;
    tune_slurmdbd_sockets(m_port);
    if (m_timeout > 0)
        m_thread = std::thread(&SlurmdbdDeadline::run, this);
}

SlurmdbdDeadline::~SlurmdbdDeadline() {
    finish();
}

bool SlurmdbdDeadline::finish() noexcept {
    if (m_thread.joinable()) {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_done = true;
        }
        m_cv.notify_all();
        m_thread.join();
    }
    return m_expired; // written by the thread only, before it ended
}

void SlurmdbdDeadline::done(bool failed) {
    if (finish() && failed)
        throw SlurmdbdTimeout(message());
}

std::string SlurmdbdDeadline::message() const {
    return "slurmdbd (AccountingStorageHost=" + m_host + " Port=" + std::to_string(m_port) +
           ") did not answer within KEYSTONED_SLURMDB_TIMEOUT=" + std::to_string(m_timeout) +
           " s while " + m_what + (m_cluster.empty() ? "" : " for Cluster=" + m_cluster);
}

void SlurmdbdDeadline::run() noexcept {
    try {
        std::unique_lock<std::mutex> lock(m_mutex);
        if (m_cv.wait_for(lock, std::chrono::seconds(m_timeout), [this] { return m_done; }))
            return;
        m_expired = true;
        lock.unlock();

        // Resolved only now (most calls never get here), without the lock: a slow resolver
        // must not hold up finish().
        std::vector<std::string> addrs;
        resolve(m_host, addrs);
        resolve(m_backup_host, addrs);
        if (addrs.empty())
            log_warning("slurmdb: cannot resolve AccountingStorageHost=%s: shutting down every "
                        "connection to port %u instead",
                        m_host.c_str(), static_cast<unsigned>(m_port));

        lock.lock();
        for (int round = 0; !m_done; ++round) {
            // With the lock held: finish() waits for this round, so once the call has returned
            // and finish() is done, no descriptor is touched (the caller still holds
            // slurm_mutex(), so no other libslurm call has started).
            const int n = shut_down_peers(addrs, m_port);
            if (n < 0 && round == 0)
                log_error("slurmdb: %s: cannot list the process's descriptors (/proc/self/fd): "
                          "%s",
                          message().c_str(), std::strerror(errno));
            else if (round == 0)
                log_warning("slurmdb: %s: shut down %d connection(s) to it", message().c_str(), n);
            else if (n != 0)
                log_debug("slurmdb: still waiting for libslurm while %s: shut down %d "
                          "connection(s) to slurmdbd again",
                          m_what.c_str(), n);
            m_cv.wait_for(lock, repeat_interval, [this] { return m_done; });
        }
    } catch (const std::exception &e) {
        log_error("slurmdb: the slurmdbd watchdog failed: %s", e.what());
    }
}

} // namespace keystone::slurm_internal
