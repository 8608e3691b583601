// SPDX-License-Identifier: GPL-2.0-or-later
// slurmdbd through libslurm's slurmdb API: the only file that talks to libslurm. Reads job
// records the way `sacct -a -X -P` shows them and converts them to JobRow (jobs.hpp).
//
// libslurm is process-global state: slurm_init() runs once per process and every libslurm call
// made from here holds one process-wide mutex, so tasks on different threads never use it at the
// same time.
#pragma once

#include "error.hpp"
#include "jobs.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keystone {

// slurmdbd could not be reached or refused a request, or libslurm could not be set up (no
// slurm.conf). what() names what was being done, on which cluster, and Slurm's own error text.
class SlurmError : public Error {
public:
    using Error::Error;
};

// The slurm.conf libslurm will read: `setting` (KEYSTONED_SLURM_CONF) when not empty, else
// $SLURM_CONF when set and not empty, else Slurm's built-in default (/etc/slurm/slurm.conf, the
// path Debian's and the upstream RPM packages are built with).
std::string slurm_conf_path(const std::string &setting);

// Calls slurm_init() on first use in the process, with the file slurm_conf_path(setting) names.
// slurm_init() exits the whole process (fatal()) when it finds no configuration, so the file is
// checked first: throws SlurmError naming the file and the setting when it does not exist or
// cannot be read. Configless sites (no local slurm.conf) must set KEYSTONED_SLURM_CONF. Later
// calls do nothing (libslurm cannot be initialised twice; a changed setting takes effect at the
// next start, which is logged).
void slurm_library_init(const std::string &setting);

// What to read (one cluster). The default query is sacct's window: with since/until set and
// nothing else, the jobs `sacct -a -X --clusters CLUSTER -S since -E until` lists: jobs that were
// eligible before `until` and had not ended before `since` (pending, running or ended in the
// window), job allocations only (no steps), start and end not truncated to the window, one
// record per job id (the newest submission).
struct JobQuery {
    std::string cluster;
    std::int64_t since = 0; // seconds since the epoch; > 0
    std::int64_t until = 0; // exclusive; > since
    // sacct -s CANCELLED: only cancelled jobs whose end is in [since, until], eligible or not. A
    // job cancelled before it was ever eligible (held, waiting on a dependency) is not in the
    // default window; this query finds it.
    bool cancelled_only = false;
    // sacct -j ID,...: only these job ids (an id also matches the tasks of the array job with
    // that id), submitted before `until` and not ended before `since`, eligible or not.
    std::vector<std::int64_t> job_ids;
    // sacct --duplicates: every record of a job id (requeued instances, ids reused after
    // slurmctld lost its state), not just the newest.
    bool duplicates = false;
};

// One connection to slurmdbd (slurmdb_connection_get/close), for one thread at a time. QOS and
// TRES names are read once per connection, when first needed.
class SlurmdbConnection {
public:
    // Initialises libslurm (slurm_library_init(slurm_conf_setting)) and opens the connection.
    // Throws SlurmError when libslurm has no configuration. An unreachable slurmdbd does not
    // throw here (libslurm still returns a handle): the first request does.
    explicit SlurmdbConnection(const std::string &slurm_conf_setting);
    ~SlurmdbConnection();
    SlurmdbConnection(const SlurmdbConnection &) = delete;
    SlurmdbConnection &operator=(const SlurmdbConnection &) = delete;

    // Whether slurmdbd has a cluster of that name (sacctmgr show cluster). Throws SlurmError when
    // slurmdbd cannot be asked.
    [[nodiscard]] bool cluster_exists(const std::string &cluster);

    // The jobs `sacct -a -X -P --clusters C -S since -E until` lists, each converted to a JobRow
    // whose every field is what sacct -P prints for it, typed (see slurmdb.cpp for each field).
    // Records without a submit time (which cannot be keyed) are left out with a warning. Throws
    // SlurmError naming the cluster when slurmdbd cannot be reached or refuses the request.
    std::vector<JobRow> read_jobs(const std::string &cluster, std::int64_t since,
                                  std::int64_t until);
    std::vector<JobRow> read_jobs(const JobQuery &query);

    // "AccountingStorageHost=... AccountingStoragePort=... (slurm.conf PATH)", for messages.
    std::string where() const;

private:
    void load_names(); // QOS and TRES names; needs the libslurm mutex held

    void *m_db = nullptr;
    std::string m_conf;
    bool m_names_loaded = false;
    std::map<std::uint32_t, std::string> m_qos;
    // TRES id -> (label as sacct prints it: "cpu", "gres/gpu"; counted in MB with a unit)
    std::map<std::uint32_t, std::pair<std::string, bool>> m_tres;
    std::uint32_t m_tres_cpu = 1, m_tres_node = 4, m_tres_billing = 5;
};

// Pure helpers of the conversion, exposed for tests.

// sacct's AllocTRES text of a "id=count,..." string: names instead of ids, sorted as text,
// memory and burst buffers in MB with a unit suffix (500M, 2G, 1.50G), unknown ids and unset
// counts left out, an unlimited count as NONE. `names` maps id -> (label, is memory).
std::string format_tres(const std::string &tres_ids,
                        const std::map<std::uint32_t, std::pair<std::string, bool>> &names);

// sacct's rendering of a size in MB: "0", "500M", "2G", "1.50G" (converted while it stays exact
// or a half).
std::string format_megabytes(std::uint64_t mb);

// A pending array record's task list as sacct shows it after "<array_job_id>_[": the hex task
// mask slurmdbd stores ("0x1E") as ranges "1-4", a step range "1-99:2", cut at 60 characters
// with "..." as Slurm's 64-byte buffer does (sacct run without SLURM_BITSTR_LEN), then "%MAX"
// when the array has a task limit.
std::string format_array_tasks(const std::string &hex_mask, std::uint32_t max_tasks);

// ExitCode of a job record (a wait status): "code:signal", the code minus 128 when above it,
// "" when unset. DerivedExitCode: the same without the 128 rule, "0:0" when unset.
std::string exit_code_of(std::uint32_t wait_status);
std::string derived_exit_code_of(std::uint32_t wait_status);

} // namespace keystone
