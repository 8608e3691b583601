// SPDX-License-Identifier: GPL-2.0-or-later
// slurmdbd and slurmctld through libslurm: the only interface to libslurm (implemented in
// slurmdb.cpp and slurm_assoc.cpp, which share slurm_internal.hpp). Reads job records the way
// `sacct -a -X -P` shows them and converts them to JobRow (jobs.hpp); reads and sets the
// associations' GrpTRESMins and reads usage and settings from slurmctld for the limits task.
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

// An account association as read for the limits task.
struct AccountLimit {
    std::string account;
    std::uint32_t assoc_id = 0;
    // The billing part of GrpTRESMins, in minutes; nullopt when the limit has no billing part.
    std::optional<std::uint64_t> billing_minutes;
    std::string grp_tres_mins; // the whole limit as sacctmgr shows it ("billing=600,cpu=10")
};

// Billing usage of the account associations of a cluster, from its slurmctld (what `sshare -A
// A -M C -o GrpTRESRaw` shows): account -> usage in billing minutes (usage_tres_raw / 60,
// floored). Accounts slurmctld does not know are absent. Talks to the cluster's slurmctld
// (slurm_load_assoc_mgr_info): the local one (slurm.conf's ClusterName) directly, another
// cluster at the ControlHost/ControlPort slurmdbd has for it (one slurmdbd request more; a
// cluster whose slurmctld is stopped has none). Throws SlurmError naming the cluster when
// slurmctld cannot be reached, refuses, or has no billing TRES, or when slurmdbd has no address
// for another cluster; std::invalid_argument for an empty name. An unreachable slurmctld fails
// after MessageTimeout seconds (libslurm retries the connection once a second), during which
// every other libslurm call in the process waits. The slurmdbd request for another cluster's
// address is abandoned after `slurmdb_timeout` seconds (KEYSTONED_SLURMDB_TIMEOUT; <= 0: no
// bound), as SlurmdbConnection's requests are.
std::map<std::string, std::uint64_t> read_account_usage(const std::string &slurm_conf_setting,
                                                        const std::string &cluster,
                                                        int slurmdb_timeout = 300);

// One Slurm setting the limits computation relies on (spec §4.2), read from the cluster's
// slurmctld (slurm_load_ctl_conf).
struct SlurmPrerequisite {
    std::string setting; // "PriorityDecayHalfLife"
    std::string value;   // what slurmctld has: "7-00:00:00"
    std::string needed;  // "0 (00:00:00)"
    bool ok = false;
    std::string advice; // when !ok: one line naming the setting, the value it needs and why
};

// The checks: PriorityType=priority/multifactor, PriorityDecayHalfLife=0,
// PriorityUsageResetPeriod=NONE, AccountingStorageEnforce includes limits, the billing TRES is
// tracked (AccountingStorageTRES; Slurm 22.05 always adds billing, so that one passes). Reaches
// the cluster as read_account_usage() does, and throws as it does.
std::vector<SlurmPrerequisite> check_limit_prerequisites(const std::string &slurm_conf_setting,
                                                         const std::string &cluster,
                                                         int slurmdb_timeout = 300);

// What slurm.conf's own cluster's slurmctld says of itself (slurm_load_ctl_conf), for
// keystonectl doctor's check of the plugin.
struct SlurmctldConfig {
    std::string cluster;      // slurm.conf's ClusterName
    std::string version;      // slurmctld's version, "22.05.8"
    std::string jobcomp_type; // JobCompType
    std::string jobcomp_loc;  // JobCompLoc
    std::string host;         // the first SlurmctldHost
    std::string slurm_user;   // SlurmUser
    unsigned slurm_uid = 0;
};

// Asks slurm.conf's cluster's slurmctld (`slurm_conf_setting`: KEYSTONED_SLURM_CONF) for its
// configuration. Throws SlurmError naming the cluster, host and port when it cannot be reached.
SlurmctldConfig read_slurmctld_config(const std::string &slurm_conf_setting);

// One connection to slurmdbd (slurmdb_connection_get/close), for one thread at a time. QOS and
// TRES names are read once per connection, when first needed.
//
// Every slurmdbd request (the constructor's included) is abandoned after `timeout_seconds`
// (KEYSTONED_SLURMDB_TIMEOUT): libslurm alone would wait on a slurmdbd that accepts connections
// but does not answer (stopped, stuck) up to 900 s per attempt on an open connection and retry,
// holding the process-wide libslurm mutex all the while. At the deadline the process's
// connections to slurmdbd are shut down (slurm_watchdog.hpp) and the request throws SlurmError
// "slurmdbd (AccountingStorageHost=H Port=P) did not answer within KEYSTONED_SLURMDB_TIMEOUT=N s
// while WHAT for Cluster=C", a few seconds after the deadline at most. The next request
// reconnects. A slurmdbd that is down (connection refused) fails at once, as before.
class SlurmdbConnection {
public:
    // Initialises libslurm (slurm_library_init(slurm_conf_setting)) and opens the connection.
    // Throws SlurmError when libslurm has no configuration, or when slurmdbd accepts the
    // connection but does not answer within timeout_seconds (<= 0: libslurm's own timeouts).
    // An unreachable slurmdbd does not throw here (libslurm still returns a handle): the first
    // request does.
    explicit SlurmdbConnection(const std::string &slurm_conf_setting, int timeout_seconds = 300);
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

    // --- associations (the limits task) ---

    // The account associations (no user, no partition, not deleted) on `cluster` whose parent
    // is root, root itself left out: the accounts `sacctmgr show account withassoc where
    // parents=root cluster=C` lists, with each one's GrpTRESMins. One slurmdbd request (plus
    // the QOS and TRES names on a connection's first use). A cluster slurmdbd does not know has
    // no accounts (empty result; cluster_exists() tells the difference).
    // Throws SlurmError naming the cluster when slurmdbd cannot be read, or when it has no
    // billing TRES.
    std::vector<AccountLimit> read_root_accounts(const std::string &cluster);

    // Sets the billing part of the GrpTRESMins of account `account`'s account association on
    // `cluster` to `minutes`, as `sacctmgr modify account where name=A cluster=C set
    // GrpTRESMins=billing=M` does (other TRES in the limit stay; the users' associations under
    // the account are not touched). Not visible until commit(). Setting the value it already
    // has is not an error. Throws std::invalid_argument for an empty cluster or account or
    // minutes >= NO_VAL64 (Slurm's "unset" values); SlurmError with Slurm's error text
    // (permission denied, no association for the account on the cluster, ...).
    void set_billing_minutes(const std::string &cluster, const std::string &account,
                             std::uint64_t minutes);

    // Commits (true) or rolls back (false) the changes made since the last commit: one
    // slurmdb_connection_commit. Throws SlurmError when a commit fails. A commit abandoned at
    // the deadline leaves the outcome unknown: slurmdbd may still apply it when it resumes
    // (set_billing_minutes() is idempotent, so the next run repeats it harmlessly).
    void commit(bool apply);

    // "AccountingStorageHost=... AccountingStoragePort=... (slurm.conf PATH)", for messages.
    std::string where() const;

private:
    // QOS and TRES names; needs the libslurm mutex held. `cluster`: the request they are read
    // for, named in the timeout's message.
    void load_names(const std::string &cluster);
    // The billing TRES id (load_names() first if needed); throws SlurmError starting with
    // `what` when slurmdbd cannot be read or has no billing TRES. Needs the mutex held.
    std::uint32_t billing_tres_locked(const std::string &what, const std::string &cluster);

    void *m_db = nullptr;
    std::string m_conf;
    int m_timeout; // seconds per slurmdbd request; <= 0: none
    // The clusters changed since the last commit (set_billing_minutes), for commit()'s messages.
    std::vector<std::string> m_uncommitted;
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
