// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the spool ingest (see ingest.hpp): record -> JobRow, the pass over the spool
// folder with its reader thread, quarantine, and keystoned's ingest thread.
#include "ingest.hpp"

#include "error.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "spool_parse.hpp"
#include "util.hpp"

extern "C" {
#include "keystone_record.h"
#include "spool.h"
}

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <optional>
#include <poll.h>
#include <pwd.h>
#include <string_view>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace keystone {

namespace {

// Latest time the table takes from a record (9999-12-31T23:59:59Z): PostgreSQL holds more,
// but nothing past this is a real job time, and to_timestamp() fails far beyond it.
constexpr std::int64_t max_record_time = 253402300799;

constexpr const char *quarantine_sql =
    "INSERT INTO keystone_slurm.spool_quarantine (file, reason, worker, quarantined_at) "
    "VALUES ($1, $2, $3, now())";

// Counters add up; the times and the last error only move forward.
constexpr const char *state_sql =
    "INSERT INTO keystone_slurm.ingest_state AS s (worker, files_ingested, records_ingested, "
    "files_quarantined, last_ingest_at, last_error, last_error_at) "
    "VALUES ($1, $2, $3, $4, CASE WHEN $2::bigint > 0 THEN now() END, $5::text, "
    "CASE WHEN $5::text IS NOT NULL THEN now() END) "
    "ON CONFLICT (worker) DO UPDATE SET "
    "files_ingested = s.files_ingested + EXCLUDED.files_ingested, "
    "records_ingested = s.records_ingested + EXCLUDED.records_ingested, "
    "files_quarantined = s.files_quarantined + EXCLUDED.files_quarantined, "
    "last_ingest_at = COALESCE(EXCLUDED.last_ingest_at, s.last_ingest_at), "
    "last_error = COALESCE(EXCLUDED.last_error, s.last_error), "
    "last_error_at = COALESCE(EXCLUDED.last_error_at, s.last_error_at)";

struct FreeDeleter {
    void operator()(void *p) const noexcept { std::free(p); }
};

struct DirCloser {
    void operator()(DIR *d) const noexcept { ::closedir(d); }
};

// A file descriptor closed on scope exit.
class Fd {
public:
    explicit Fd(int fd = -1) noexcept : m_fd(fd) {}
    ~Fd()
    {
        if (m_fd >= 0)
            ::close(m_fd);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const noexcept { return m_fd; }

private:
    int m_fd;
};

std::string errno_text(int e)
{
    return std::strerror(e);
}

// getpwuid_r / getgrgid_r with a buffer that grows on ERANGE; "" when there is no entry.
template <typename Entry, typename Lookup, typename Name>
std::string lookup_name(std::uint32_t id, int size_hint, Lookup lookup, Name name)
{
    long size = sysconf(size_hint);
    std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
    Entry entry;
    Entry *found = nullptr;
    int rc;
    while ((rc = lookup(id, &entry, buf.data(), buf.size(), &found)) == ERANGE &&
           buf.size() < (1u << 20))
        buf.resize(buf.size() * 2);
    if (rc != 0 || found == nullptr)
        return std::string();
    const char *n = name(*found);
    return utf8_text(n, std::strlen(n));
}

std::optional<std::int64_t> u32_value(std::uint32_t v)
{
    if (v == KS_NO_VAL || v == KS_INFINITE)
        return std::nullopt;
    return static_cast<std::int64_t>(v);
}

std::optional<std::int64_t> time_value(std::time_t t)
{
    if (t == 0)
        return std::nullopt;
    return static_cast<std::int64_t>(t);
}

// AllocTRES as sacct prints it: the plugin has Slurm's "name=count" list in TRES id order
// (cpu=2,mem=500M,node=1,billing=2); sacct sorts the items as plain strings.
std::string sacct_tres(const std::string &tres)
{
    if (tres.find(',') == std::string::npos)
        return tres;
    // Views into `tres`, compared as std::string compares (char_traits<char>).
    std::vector<std::string_view> items;
    items.reserve(8);
    const std::string_view all(tres);
    std::size_t from = 0;
    for (;;) {
        const std::size_t comma = all.find(',', from);
        items.push_back(all.substr(from, comma == std::string::npos ? comma : comma - from));
        if (comma == std::string::npos)
            break;
        from = comma + 1;
    }
    std::sort(items.begin(), items.end());
    std::string out;
    out.reserve(tres.size());
    for (const auto &item : items) {
        if (!out.empty())
            out += ',';
        out += item;
    }
    return out;
}

std::string exit_text(std::uint32_t code, std::uint32_t sig)
{
    if (code == KS_NO_VAL)
        return std::string();
    return exit_code_text(code, sig == KS_NO_VAL ? 0 : sig);
}

// The connection of a pass that loads a job's records: all of one job's go through one, in
// spool order, so a later record of a job is never overwritten by an earlier one. By blocks of
// 1024 job ids, not by single ids: the connections then insert into different pages of the
// primary key, and the range look-ups of stored keys (jobs.cpp) of one connection never cover
// rows that another one inserted and has not committed, whose visibility PostgreSQL checks in
// pg_subtrans (the direct COPY runs in a savepoint), row by row: with ids dealt out one by one,
// those look-ups grew to over a second per transaction and quadrupled PostgreSQL's CPU time.
std::size_t share_of(std::uint32_t job_id, std::size_t shares)
{
    return static_cast<std::size_t>((job_id >> 10) % shares);
}

// One batch file as read by the reader thread: its rows divided among the pass's connections.
struct ParsedFile {
    enum class Status { ok, invalid, transient, gone };
    Status status = Status::ok;
    std::vector<std::vector<JobRow>> shares; // [connection]: its rows, in file order
    std::string error; // invalid / transient: why (names the file, record and line)
};

ParsedFile parse_file(const std::string &dir, const std::string &name, IdNames &ids,
                      SpoolReader &reader, std::size_t nshares)
{
    ParsedFile pf;
    pf.shares.resize(nshares);
    const std::string path = dir + "/" + name;
    auto add = [&](const ks_record &r) {
        pf.shares[share_of(r.job_id, nshares)].push_back(
            job_row_from_record(r, ids));
    };
    // The fast reader for files as the plugin writes them; any doubt (a record the table cannot
    // hold included) and the strict reader below reads the file again and has the last word.
    const bool fast = reader.read(path, [&](const ks_record &r, std::size_t i, std::size_t n) {
        if (i == 0)
            for (auto &share : pf.shares)
                share.reserve(n / nshares + 1);
        if (!record_problem(r).empty())
            return false;
        add(r);
        return true;
    });
    if (fast)
        return pf;
    for (auto &share : pf.shares)
        share.clear();
    ks_record *raw = nullptr;
    std::size_t n = 0;
    char err[1024] = "";
    errno = 0;
    const int rc = ks_spool_read_file(path.c_str(), &raw, &n, err, sizeof err);
    const int e = errno;
    std::unique_ptr<ks_record, FreeDeleter> recs(raw);
    if (rc != KS_SUCCESS) {
        pf.error = err;
        if (e == ENOENT)
            pf.status = ParsedFile::Status::gone;
        else if (e == ENOMEM || e == EMFILE || e == ENFILE || e == EINTR || e == EAGAIN)
            pf.status = ParsedFile::Status::transient; // the file is not to blame
        else
            pf.status = ParsedFile::Status::invalid;
        return pf;
    }
    // The whole file or nothing of it: one record that the table cannot hold makes the file
    // invalid before any of it is loaded.
    for (std::size_t i = 0; i < n; ++i) {
        std::string problem = record_problem(recs.get()[i]);
        if (!problem.empty()) {
            pf.status = ParsedFile::Status::invalid;
            pf.error = path + ": record " + std::to_string(i) + " (line " + std::to_string(i + 2) +
                       "): " + problem;
            return pf;
        }
    }
    for (std::size_t i = 0; i < n; ++i)
        add(recs.get()[i]);
    return pf;
}

// Batch file names in the folder (regular files only), in name order = write order.
std::vector<std::string> list_batch_files(int dirfd, const std::string &dir)
{
    int fd = ::dup(dirfd);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "ingest: dup " + dir);
    DIR *d = ::fdopendir(fd);
    if (d == nullptr) {
        int e = errno;
        ::close(fd);
        throw std::system_error(e, std::generic_category(), "ingest: cannot list " + dir);
    }
    std::unique_ptr<DIR, DirCloser> hold(d);
    ::rewinddir(d); // the dup shares the offset of an fd that may have been read before
    std::vector<std::string> names;
    while (struct dirent *de = ::readdir(d)) {
        if (!ks_spool_is_batch_name(de->d_name))
            continue;
        bool regular = de->d_type == DT_REG;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            regular = ::fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                      S_ISREG(st.st_mode);
        }
        if (regular)
            names.emplace_back(de->d_name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Records

const std::string &IdNames::user(std::uint32_t uid)
{
    auto it = m_users.find(uid);
    if (it != m_users.end())
        return it->second;
    std::string name = lookup_name<struct passwd>(uid, _SC_GETPW_R_SIZE_MAX, ::getpwuid_r,
                                                  [](const struct passwd &p) { return p.pw_name; });
    return m_users.emplace(uid, std::move(name)).first->second;
}

const std::string &IdNames::group(std::uint32_t gid)
{
    auto it = m_groups.find(gid);
    if (it != m_groups.end())
        return it->second;
    std::string name = lookup_name<struct group>(gid, _SC_GETGR_R_SIZE_MAX, ::getgrgid_r,
                                                 [](const struct group &g) { return g.gr_name; });
    return m_groups.emplace(gid, std::move(name)).first->second;
}

std::string utf8_text(const char *s, std::size_t n)
{
    const auto *p = reinterpret_cast<const unsigned char *>(s);
    std::size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        std::size_t k = utf8_seq(p + i, n - i);
        if (k == 0)
            break;
        i += k;
    }
    if (i == n)
        return std::string(s, n);
    std::string out(s, i);
    out.reserve(n + 16);
    while (i < n) {
        std::size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
        } else {
            out.append(s + i, k);
            i += k;
        }
    }
    return out;
}

std::string record_problem(const ks_record &r)
{
    if (ks_record_strlen(&r, KS_STR_CLUSTER) == 0)
        return "member 'cluster': empty: the record has no key";
    if (r.job_id == KS_NO_VAL)
        return "member 'job_id': null: the record has no key";
    if (r.submit_time == 0)
        return "member 'submit_time': null: the record has no key";
    if (ks_record_strlen(&r, KS_STR_STATE) == 0)
        return "member 'state': empty: the job table needs a state";
    const struct {
        const char *name;
        std::time_t t;
    } times[] = {{"submit_time", r.submit_time},
                 {"eligible_time", r.eligible_time},
                 {"start_time", r.start_time},
                 {"end_time", r.end_time}};
    for (const auto &t : times)
        if (t.t < 0 || static_cast<std::int64_t>(t.t) > max_record_time)
            return std::string("member '") + t.name + "': " + std::to_string(t.t) +
                   " is outside the times the job table takes (1970 to 9999)";
    const struct {
        const char *name;
        std::uint32_t v;
    } ints[] = {{"node_count", r.node_count}, {"cpus", r.cpus}};
    for (const auto &i : ints)
        if (i.v != KS_NO_VAL && i.v != KS_INFINITE && i.v > static_cast<std::uint32_t>(INT_MAX))
            return std::string("member '") + i.name + "': " + std::to_string(i.v) +
                   " does not fit the job table's integer column";
    return std::string();
}

JobRow job_row_from_record(const ks_record &r, IdNames &names)
{
    auto text = [&r](int field) {
        return utf8_text(ks_record_str(&r, field), ks_record_strlen(&r, field));
    };
    JobRow row;
    row.cluster = text(KS_STR_CLUSTER);
    row.job_id = r.job_id == KS_NO_VAL ? 0 : static_cast<std::int64_t>(r.job_id);
    row.submit = static_cast<std::int64_t>(r.submit_time);
    row.array_job_id = u32_value(r.array_job_id);
    row.array_task_id = u32_value(r.array_task_id);
    row.het_job_id = u32_value(r.het_job_id);
    row.het_job_offset = u32_value(r.het_job_offset);
    row.het_job_info = text(KS_STR_HET_JOB_INFO);
    row.jobname = text(KS_STR_JOB_NAME);
    row.username = text(KS_STR_USER);
    row.uid = u32_value(r.uid);
    if (row.username.empty() && row.uid)
        row.username = names.user(r.uid);
    row.group = text(KS_STR_GROUP);
    row.gid = u32_value(r.gid);
    if (row.group.empty() && row.gid)
        row.group = names.group(r.gid);
    row.account = text(KS_STR_ACCOUNT);
    row.partition = text(KS_STR_PARTITION);
    row.qos = text(KS_STR_QOS);
    row.state = text(KS_STR_STATE);
    row.exitcode = exit_text(r.exit_code, r.exit_signal);
    row.derivedexitcode = exit_text(r.derived_exit_code, r.derived_signal);
    row.eligible = time_value(r.eligible_time);
    row.start = time_value(r.start_time);
    row.end = time_value(r.end_time);
    row.elapsed_sec = u32_value(r.elapsed_sec).value_or(0);
    if (r.time_limit_min == KS_INFINITE)
        row.timelimit_min = -1;
    else
        row.timelimit_min = u32_value(r.time_limit_min);
    row.allocnodes = u32_value(r.node_count);
    row.nodelist = text(KS_STR_NODE_LIST);
    row.alloccpus = u32_value(r.cpus);
    row.alloctres = sacct_tres(text(KS_STR_TRES_ALLOC));
    if (std::isfinite(r.billing) && r.billing >= 0)
        row.billing = r.billing;
    row.priority = u32_value(r.priority);
    row.workdir = text(KS_STR_WORK_DIR);
    row.reservation = text(KS_STR_RESERVATION);
    row.jobid = sacct_jobid(row);
    return row;
}

JobRow job_row_from_record(const ks_record &r)
{
    IdNames names;
    return job_row_from_record(r, names);
}

// ---------------------------------------------------------------------------------------------
// One pass

// A file of the pass, shared by its parts. `parts_left` counts the parts not yet committed (for
// a file that is not loaded: not yet handled); the file goes once it and every file before it
// are done (Ingester::release).
struct FileTicket {
    explicit FileTicket(std::string n) : name(std::move(n)) {}
    const std::string name;
    std::atomic<int> parts_left{1};
    std::atomic<bool> remove{true}; // false: quarantined, gone or unreadable: not ours to delete
    std::size_t counted_by = 0;     // the connection whose commit counts it in ingest_state
};

// What one connection of the pass is handed of one file: its share of the rows; for connection
// 0 also every file that could not be read (status not ok) and every file without records.
struct Ingester::Part {
    std::shared_ptr<FileTicket> file;
    ParsedFile::Status status = ParsedFile::Status::ok;
    std::string error;
    std::vector<JobRow> rows;
};

// Parts from the reader thread to one connection's thread. Holds at most `limit` records
// (always at least one part), so the reader runs about one transaction ahead of each.
struct Ingester::PartQueue {
    explicit PartQueue(std::size_t limit) : m_limit(std::max<std::size_t>(limit, 1)) {}

    // False when aborted (the part is dropped).
    bool push(Part &&p)
    {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_space.wait(lock, [&] {
            return m_aborted || m_items.empty() || m_queued + p.rows.size() <= m_limit;
        });
        if (m_aborted)
            return false;
        m_queued += p.rows.size();
        m_items.push_back(std::move(p));
        m_ready.notify_one();
        return true;
    }

    // The next part; nullopt once closed and drained, or aborted.
    std::optional<Part> pop()
    {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_ready.wait(lock, [&] { return m_aborted || m_closed || !m_items.empty(); });
        if (m_aborted || m_items.empty())
            return std::nullopt;
        Part p = std::move(m_items.front());
        m_items.pop_front();
        m_queued -= p.rows.size();
        m_space.notify_one();
        return p;
    }

    void close()
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_closed = true;
        m_ready.notify_all();
    }

    void abort()
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_aborted = true;
        m_ready.notify_all();
        m_space.notify_all();
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_ready, m_space;
    std::deque<Part> m_items;
    std::size_t m_limit;
    std::size_t m_queued = 0;
    bool m_closed = false, m_aborted = false;
};

// The parts of one transaction and their rows (which stay in the parts' vectors: moving rows
// of a large batch cost more than parsing them).
struct Ingester::Batch {
    std::vector<Part> parts;
    std::vector<const JobRow *> rows; // into parts
    std::size_t records = 0;
    // Where this batch's time went, for the verbose log: waiting for the reader thread to parse
    // its files, then (in commit) the upsert, the commit and deleting the files.
    std::chrono::steady_clock::duration waited{};
};

// A quarantined file whose spool_quarantine row is not committed yet.
struct Ingester::Pending {
    std::string file, reason;
};

// One database connection of the ingest, with its state across passes. Used by one thread at
// a time (connection 0: the IngestService thread; the others: a thread of each pass).
struct Ingester::Connection {
    Connection(Database &d, std::size_t i) : db(d), index(i) {}
    Database &db;
    const std::size_t index;
    std::string last_db_error; // recorded in ingest_state by the next commit
    int failures = 0;          // failed attempts since the last commit
};

// One pass: the files in name order until they are released, and what was deleted.
struct Ingester::Pass {
    Pass(const Config &c, int fd, std::size_t n)
        : config(c), spool_fd(fd), files(n),
          max_records(static_cast<std::size_t>(std::max(c.ingest_max_records, 1)))
    {
    }
    const Config &config;
    const int spool_fd;
    const std::size_t files;       // listed for the pass
    const std::size_t max_records; // per transaction (KEYSTONED_INGEST_MAX_RECORDS)
    std::mutex mutex;                              // guards `order` and `deleted`
    std::deque<std::shared_ptr<FileTicket>> order; // not yet released, in name order
    std::int64_t deleted = 0;
};

Ingester::Ingester(std::vector<Database *> dbs, const std::atomic<bool> &quit) : m_quit(quit)
{
    if (dbs.empty() || dbs.size() > max_connections)
        throw std::invalid_argument("Ingester: 1 to " + std::to_string(max_connections) +
                                    " connections");
    for (std::size_t i = 0; i < dbs.size(); ++i) {
        if (i == 0)
            dbs[i]->prepare("ingest_quarantine", quarantine_sql);
        dbs[i]->prepare("ingest_state", state_sql);
        m_connections.push_back(std::make_unique<Connection>(*dbs[i], i));
    }
}

Ingester::~Ingester() = default;

bool Ingester::pause(int seconds) const
{
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < until) {
        if (m_quit.load())
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return !m_quit.load();
}

void Ingester::leave_alone(const std::string &name)
{
    std::lock_guard<std::mutex> lock(m_mutex);
    m_leave_alone.insert(name);
}

IngestTotals Ingester::run_pass(const Config &config)
{
    IngestTotals totals;
    const std::string &dir = config.spool_dir;
    Fd spool(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (spool.get() < 0)
        throw std::system_error(errno, std::generic_category(),
                                "ingest: cannot open the spool folder " + dir +
                                    " (KEYSTONED_SPOOL_DIR)");
    std::vector<std::string> names = list_batch_files(spool.get(), dir);
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        auto skipped = [&](const std::string &n) { return m_leave_alone.count(n) > 0; };
        names.erase(std::remove_if(names.begin(), names.end(), skipped), names.end());
    }
    // Connections this pass loads through: no more than there are files.
    const std::size_t nconn = std::max<std::size_t>(
        1, std::min({static_cast<std::size_t>(std::max(config.ingest_connections, 1)),
                     m_connections.size(), names.size()}));
    // A connection no longer configured is closed (it is reopened if the setting grows again).
    for (std::size_t i = nconn; i < m_connections.size(); ++i)
        if (static_cast<int>(i) >= config.ingest_connections)
            m_connections[i]->db.reset();
    if (names.empty() && m_pending.empty())
        return totals;

    Pass pass(config, spool.get(), names.size());
    std::vector<std::unique_ptr<PartQueue>> queues;
    for (std::size_t i = 0; i < nconn; ++i)
        queues.push_back(std::make_unique<PartQueue>(pass.max_records));
    auto abort_all = [&queues] {
        for (auto &q : queues)
            q->abort();
    };
    std::vector<IngestTotals> sub(nconn);
    std::thread reader;
    std::vector<std::thread> loaders;
    struct Join {
        std::function<void()> abort;
        std::thread &reader;
        std::vector<std::thread> &loaders;
        ~Join()
        {
            abort();
            if (reader.joinable())
                reader.join();
            for (auto &t : loaders)
                t.join();
        }
    } join{abort_all, reader, loaders};
    auto start_thread = [](auto &&fn) {
        try {
            return std::thread(std::forward<decltype(fn)>(fn));
        } catch (const std::system_error &e) {
            // Not the spool folder's error (run_pass's caller reads system_error that way).
            throw std::runtime_error(std::string("ingest: cannot start a thread: ") + e.what());
        }
    };
    // Parsing (JSON, UTF-8 checks, name lookups) overlaps the database's work. The reader only
    // reads: moving and deleting files is the loading threads' work.
    reader = start_thread([&queues, &names, &dir, &pass, nconn, this] {
        IdNames ids;
        SpoolReader files;
        for (const auto &name : names) {
            if (m_quit.load())
                break;
            ParsedFile f = parse_file(dir, name, ids, files, nconn);
            auto ticket = std::make_shared<FileTicket>(name);
            // Each connection with rows of the file takes a part; connection 0 also takes
            // the files that are not loaded and the files without records.
            int parts = 0;
            if (f.status == ParsedFile::Status::ok)
                for (std::size_t i = nconn; i-- > 0;)
                    if (!f.shares[i].empty()) {
                        ++parts;
                        ticket->counted_by = i; // the first connection with rows of it
                    }
            ticket->parts_left.store(std::max(parts, 1));
            {
                std::lock_guard<std::mutex> lock(pass.mutex);
                pass.order.push_back(ticket);
            }
            bool pushed = true;
            if (parts == 0)
                pushed = queues[0]->push(Part{ticket, f.status, std::move(f.error), {}});
            for (std::size_t i = 0; i < nconn && pushed && parts > 0; ++i)
                if (!f.shares[i].empty())
                    pushed = queues[i]->push(Part{ticket, f.status, {}, std::move(f.shares[i])});
            if (!pushed)
                break;
        }
        for (auto &q : queues)
            q->close();
    });
    for (std::size_t i = 1; i < nconn; ++i) {
        loaders.push_back(start_thread([&, i] {
            try {
                if (!load(pass, *m_connections[i], *queues[i], sub[i]))
                    abort_all();
            } catch (const std::exception &e) {
                log_error("ingest: connection %zu: %s; its files stay in the spool", i + 1,
                          e.what());
                abort_all(); // the reader must not wait for this thread's queue
            }
        }));
    }
    if (!load(pass, *m_connections[0], *queues[0], sub[0]))
        abort_all();
    for (auto &t : loaders)
        t.join();
    loaders.clear();
    for (const IngestTotals &t : sub) {
        totals.records += t.records;
        totals.transactions += t.transactions;
        totals.quarantined += t.quarantined;
        totals.rows.inserted += t.rows.inserted;
        totals.rows.updated += t.rows.updated;
        totals.rows.unchanged += t.rows.unchanged;
    }
    std::lock_guard<std::mutex> lock(pass.mutex);
    totals.files = pass.deleted;
    return totals;
}

bool Ingester::load(Pass &pass, Connection &c, PartQueue &queue, IngestTotals &totals)
{
    const Config &config = pass.config;
    const std::size_t max_records = pass.max_records;
    // A file that is not loaded (or holds no record) is done once it is handled.
    auto done_without_commit = [&](const Part &p, bool remove) {
        p.file->remove.store(remove);
        p.file->parts_left.fetch_sub(1);
        release(pass);
    };
    Batch batch;
    for (;;) {
        const auto wait_start = std::chrono::steady_clock::now();
        std::optional<Part> p = queue.pop();
        batch.waited += std::chrono::steady_clock::now() - wait_start;
        if (!p)
            break;
        const std::string &name = p->file->name;
        switch (p->status) {
        case ParsedFile::Status::gone:
            done_without_commit(*p, false); // removed by someone else since the listing
            continue;
        case ParsedFile::Status::transient:
            log_error_limited("ingest-read", 60,
                              "ingest: cannot read %s now, trying again later: %s", name.c_str(),
                              p->error.c_str());
            done_without_commit(*p, false);
            continue;
        case ParsedFile::Status::invalid:
            quarantine(config, pass.spool_fd, name, p->error);
            done_without_commit(*p, false);
            continue;
        case ParsedFile::Status::ok:
            break;
        }
        if (p->rows.empty()) {
            done_without_commit(*p, true); // a file without records
            continue;
        }
        if (!batch.parts.empty() && batch.records + p->rows.size() > max_records) {
            if (!commit(pass, c, batch, totals))
                return false;
            batch = Batch();
        }
        if (batch.parts.empty()) {
            // One allocation per transaction, sized as if the files left were like this one.
            const std::size_t guess = std::min<std::size_t>(
                {max_records, p->rows.size() * pass.files, std::size_t(1000000)});
            batch.rows.reserve(std::max(p->rows.size(), guess));
        }
        batch.records += p->rows.size();
        for (const JobRow &r : p->rows)
            batch.rows.push_back(&r);
        batch.parts.push_back(std::move(*p)); // the rows stay where they are
    }
    if (m_quit.load())
        return false;
    if (!batch.parts.empty() || (c.index == 0 && !m_pending.empty()))
        return commit(pass, c, batch, totals);
    return true;
}

bool Ingester::commit(Pass &pass, Connection &c, Batch &batch, IngestTotals &totals)
{
    const Config &config = pass.config;
    const std::string worker = config.worker.empty() ? host_name() : config.worker;
    // Quarantine rows go through connection 0. A file is counted in ingest_state by the first
    // connection that has rows of it (so once per load; a file loaded again after a failure
    // or a crash is counted again, as its records are).
    const bool first = c.index == 0;
    std::int64_t files = 0;
    for (const Part &p : batch.parts)
        files += p.file->counted_by == c.index ? 1 : 0;
    const std::vector<Pending> no_pending;
    const std::vector<Pending> &pending = first ? m_pending : no_pending;
    for (int delay = 1;; delay = std::min(delay * 2, 30)) {
        if (m_quit.load())
            return false;
        const auto t0 = std::chrono::steady_clock::now();
        auto t_upserted = t0;
        UpsertCounts counts;
        try {
            pqxx::connection &conn = c.db.conn_retry(&m_quit, std::chrono::hours(24 * 366));
            pqxx::work tx(conn, "ingest");
            counts = upsert_jobs(tx, batch.rows, JobSource::jobcomp);
            t_upserted = std::chrono::steady_clock::now();
            for (const auto &p : pending)
                tx.exec_prepared0("ingest_quarantine", p.file, p.reason, worker);
            std::optional<std::string> last_error;
            if (!pending.empty())
                last_error = "quarantined " + pending.back().file + ": " + pending.back().reason;
            else if (!c.last_db_error.empty())
                last_error = c.last_db_error;
            tx.exec_prepared0("ingest_state", worker, static_cast<long long>(files),
                              static_cast<long long>(batch.records),
                              static_cast<long long>(pending.size()), last_error);
            tx.commit();
        } catch (const std::exception &e) {
            // Nothing is deleted: the files stay for the next attempt (in doubt whether the
            // commit happened, a replay changes nothing).
            if (m_quit.load()) {
                log_info("ingest: stopping: the open transaction of %zu file(s) is rolled back; "
                         "they stay in the spool",
                         batch.parts.size());
                return false;
            }
            ++c.failures;
            // A statement PostgreSQL refused still reached it.
            const bool lost = is_connection_error(e);
            metrics_record_database(!lost);
            const std::string why = (lost ? "database connection lost: " : "") + one_line(e);
            c.last_db_error = "ingest transaction failed: " + why;
            log_error_limited("ingest-db", 60,
                              "ingest: transaction of %zu file(s) failed, they stay in the spool; "
                              "retrying in %d s: %s",
                              batch.parts.size(), delay, why.c_str());
            c.db.reset();
            if (!pause(delay))
                return false;
            continue;
        }
        const auto t_committed = std::chrono::steady_clock::now();
        auto ms_of = [](std::chrono::steady_clock::duration d) {
            return static_cast<long long>(
                std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
        };
        if (c.failures > 0)
            log_info("ingest: database reachable again after %d failed attempt(s): ingesting",
                     c.failures);
        c.failures = 0;
        c.last_db_error.clear();
        if (first) {
            totals.quarantined += static_cast<std::int64_t>(m_pending.size());
            m_pending.clear();
        }
        metrics_record_ingest_commit(static_cast<std::int64_t>(batch.records));
        totals.records += static_cast<std::int64_t>(batch.records);
        totals.transactions += 1;
        totals.rows.inserted += counts.inserted;
        totals.rows.updated += counts.updated;
        totals.rows.unchanged += counts.unchanged;

        // Committed: these shares are done. A file goes once it and the files before it are;
        // a crash before that loads it again, with the files after it, in order.
        for (const Part &p : batch.parts)
            p.file->parts_left.fetch_sub(1);
        release(pass);
        const auto t_deleted = std::chrono::steady_clock::now();
        log_verbose("ingest: committed Files=%zu Records=%zu Inserted=%lld Updated=%lld "
                    "Unchanged=%lld Connection=%zu in %lld ms (reader wait %lld ms, upsert "
                    "%lld ms, commit %lld ms, file deletion %lld ms)",
                    batch.parts.size(), batch.records, static_cast<long long>(counts.inserted),
                    static_cast<long long>(counts.updated),
                    static_cast<long long>(counts.unchanged), c.index + 1, ms_of(t_committed - t0),
                    ms_of(batch.waited), ms_of(t_upserted - t0), ms_of(t_committed - t_upserted),
                    ms_of(t_deleted - t_committed));
        return true;
    }
}

void Ingester::release(Pass &pass)
{
    std::int64_t deleted = 0;
    std::lock_guard<std::mutex> lock(pass.mutex);
    while (!pass.order.empty() && pass.order.front()->parts_left.load() == 0) {
        const std::shared_ptr<FileTicket> t = std::move(pass.order.front());
        pass.order.pop_front();
        if (!t->remove.load())
            continue;
        if (::unlinkat(pass.spool_fd, t->name.c_str(), 0) != 0 && errno != ENOENT) {
            log_error("ingest: cannot delete %s/%s after ingesting it: %s; it is left alone "
                      "until keystoned restarts",
                      pass.config.spool_dir.c_str(), t->name.c_str(), errno_text(errno).c_str());
            leave_alone(t->name);
            continue;
        }
        ++deleted;
    }
    if (deleted == 0)
        return;
    if (::fsync(pass.spool_fd) != 0)
        log_error_limited("ingest-fsync", 60, "ingest: fsync of %s failed: %s",
                          pass.config.spool_dir.c_str(), errno_text(errno).c_str());
    pass.deleted += deleted;
    metrics_record_ingest_files(deleted);
}

void Ingester::quarantine(const Config &config, int spool_fd, const std::string &name,
                          const std::string &reason)
{
    const std::string qdir = config.quarantine_path();
    auto fail = [&](const std::string &what, int e) {
        log_error("ingest: cannot quarantine %s/%s: %s: %s; it stays in the spool, left alone "
                  "until keystoned restarts; it is invalid: %s",
                  config.spool_dir.c_str(), name.c_str(), what.c_str(), errno_text(e).c_str(),
                  reason.c_str());
        leave_alone(name);
    };
    if (qdir == config.spool_dir)
        return fail("the quarantine folder is the spool folder", EINVAL);
    if (::mkdir(qdir.c_str(), 0750) != 0 && errno != EEXIST)
        return fail("cannot create " + qdir, errno);
    Fd q(::open(qdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (q.get() < 0)
        return fail("cannot open " + qdir, errno);
    // The same name may be there already (a file quarantined, put back, and still invalid):
    // never overwrite it. A .reason alone is from a move that did not happen; it is replaced.
    std::string target = name;
    struct stat st;
    for (int i = 1; ::fstatat(q.get(), target.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0; ++i)
        target = name + "." + std::to_string(i);
    // The reason first: a crash after it leaves the file in the spool, quarantined again later.
    const std::string why = target + ".reason";
    {
        Fd r(::openat(q.get(), why.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                      0640));
        if (r.get() < 0)
            return fail("cannot create " + qdir + "/" + why, errno);
        const std::string text = reason + "\n";
        if (::write(r.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
            ::fsync(r.get()) != 0) {
            int e = errno;
            ::unlinkat(q.get(), why.c_str(), 0);
            return fail("cannot write " + qdir + "/" + why, e);
        }
    }
    if (::renameat(spool_fd, name.c_str(), q.get(), target.c_str()) != 0) {
        int e = errno;
        ::unlinkat(q.get(), why.c_str(), 0);
        return fail("cannot move it to " + qdir, e);
    }
    ::fsync(q.get());
    ::fsync(spool_fd);
    const std::string qpath = qdir + "/" + target;
    log_error("ingest: quarantined %s: %s", qpath.c_str(), reason.c_str());
    m_pending.push_back({qpath, reason});
    metrics_record_quarantine();
}

// ---------------------------------------------------------------------------------------------
// The thread

IngestService::IngestService(std::shared_ptr<const Config> config, const std::atomic<bool> &stop)
    : m_config(std::move(config)), m_stop(stop)
{
    m_wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m_wake_fd < 0)
        log_error("ingest: eventfd: %s: reloads and stops wait for the next scan",
                  errno_text(errno).c_str());
    for (std::size_t i = 0; i < Ingester::max_connections; ++i)
        m_dbs.push_back(std::make_unique<Database>(
            db_conninfo(*m_config), i == 0 ? "ingest" : "ingest " + std::to_string(i + 1)));
}

IngestService::~IngestService()
{
    if (m_thread.joinable()) {
        m_quit.store(true);
        wake();
        m_thread.join();
    }
    if (m_wake_fd >= 0)
        ::close(m_wake_fd);
}

std::shared_ptr<const Config> IngestService::snapshot() const
{
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_config;
}

void IngestService::wake() const
{
    const std::uint64_t one = 1;
    if (m_wake_fd >= 0 && ::write(m_wake_fd, &one, sizeof one) < 0) {
        // EAGAIN: the counter is saturated, so the thread is woken anyway.
    }
}

void IngestService::start()
{
    auto config = snapshot();
    if (config->spool_dir.empty()) {
        log_info("ingest: KEYSTONED_SPOOL_DIR is empty: no spool ingest");
        return;
    }
    log_info("ingest: spool %s, quarantine %s, every %d s or on change, at most %d records per "
             "transaction, %d connection(s)",
             config->spool_dir.c_str(), config->quarantine_path().c_str(),
             config->ingest_interval, config->ingest_max_records, config->ingest_connections);
    m_done.store(false);
    m_thread = std::thread([this] { thread_main(); });
}

void IngestService::reload(std::shared_ptr<const Config> config)
{
    std::shared_ptr<const Config> old;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        old = m_config;
        m_config = config;
    }
    if (old->spool_dir != config->spool_dir || old->quarantine_path() != config->quarantine_path())
        log_info("ingest: spool now %s, quarantine %s",
                 config->spool_dir.empty() ? "(none: ingest off)" : config->spool_dir.c_str(),
                 config->quarantine_path().c_str());
    if (!m_thread.joinable() && !config->spool_dir.empty() && !m_quit.load() && !m_stop.load())
        start();
    else
        wake();
}

bool IngestService::shutdown()
{
    if (!m_thread.joinable())
        return true;
    m_quit.store(true);
    wake();
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(snapshot()->stop_timeout);
    // Cancel the statement in flight; again now and then, in case the first cancel fell between
    // two statements.
    auto next_cancel = std::chrono::steady_clock::now();
    while (!m_done.load()) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            log_error("ingest: did not stop within KEYSTONED_STOP_TIMEOUT=%d s",
                      snapshot()->stop_timeout);
            return false;
        }
        if (now >= next_cancel) {
            for (auto &db : m_dbs)
                db->cancel();
            next_cancel = now + std::chrono::milliseconds(250);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    m_thread.join();
    return true;
}

void IngestService::thread_main()
{
    try {
        std::vector<Database *> dbs;
        for (auto &db : m_dbs)
            dbs.push_back(db.get());
        Ingester ingester(dbs, m_quit);
        Fd ino(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (ino.get() < 0)
            log_error("ingest: inotify_init1: %s: scanning every KEYSTONED_INGEST_INTERVAL "
                      "seconds only",
                      errno_text(errno).c_str());
        int wd = -1;
        std::string watched;
        bool missing = false; // the "folder missing" error was logged
        while (!m_quit.load() && !m_stop.load()) {
            auto config = snapshot();
            int timeout_ms = -1;
            const std::string &dir = config->spool_dir;
            if (!dir.empty()) {
                timeout_ms = config->ingest_interval * 1000;
                if (ino.get() >= 0 && (wd < 0 || watched != dir)) {
                    if (wd >= 0)
                        ::inotify_rm_watch(ino.get(), wd);
                    // New names arrive by rename (the plugin) or by a writer closing the file.
                    wd = ::inotify_add_watch(ino.get(), dir.c_str(),
                                             IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR |
                                                 IN_DELETE_SELF | IN_MOVE_SELF);
                    watched = wd >= 0 ? dir : std::string();
                }
                for (auto &db : m_dbs)
                    db->set_conninfo(db_conninfo(*config));
                try {
                    IngestTotals t = ingester.run_pass(*config);
                    if (missing)
                        log_info("ingest: spool folder %s is there now: ingesting", dir.c_str());
                    missing = false;
                    if (t.files > 0 || t.quarantined > 0)
                        log_debug("ingest: pass done: Files=%lld Records=%lld Quarantined=%lld",
                                  static_cast<long long>(t.files),
                                  static_cast<long long>(t.records),
                                  static_cast<long long>(t.quarantined));
                } catch (const std::system_error &e) {
                    if (!missing)
                        log_error("%s; checking again every %d s", e.what(),
                                  config->ingest_interval);
                    missing = true;
                } catch (const std::exception &e) {
                    log_error_limited("ingest-pass", 60, "ingest: pass failed: %s", e.what());
                }
            }
            if (m_quit.load() || m_stop.load())
                break;
            struct pollfd fds[2] = {{m_wake_fd, POLLIN, 0}, {ino.get(), POLLIN, 0}};
            if (m_wake_fd < 0 && (timeout_ms < 0 || timeout_ms > 1000))
                timeout_ms = 1000; // nothing would wake a stop or a reload
            ::poll(fds, ino.get() >= 0 ? 2 : 1, timeout_ms);
            std::uint64_t count;
            while (m_wake_fd >= 0 && ::read(m_wake_fd, &count, sizeof count) > 0) {
            }
            if (ino.get() >= 0) {
                alignas(struct inotify_event) char buf[4096];
                ssize_t n;
                while ((n = ::read(ino.get(), buf, sizeof buf)) > 0) {
                    for (char *p = buf; p < buf + n;) {
                        const auto *ev = reinterpret_cast<const struct inotify_event *>(p);
                        // The folder went away: watch the path again once it is back.
                        if (ev->wd == wd && (ev->mask & (IN_IGNORED | IN_UNMOUNT))) {
                            wd = -1;
                        } else if (ev->wd == wd && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))) {
                            ::inotify_rm_watch(ino.get(), wd);
                            wd = -1;
                        }
                        p += sizeof(struct inotify_event) + ev->len;
                    }
                }
            }
        }
    } catch (const std::exception &e) {
        log_error("ingest: thread ended: %s", e.what());
    }
    m_done.store(true);
}

} // namespace keystone
