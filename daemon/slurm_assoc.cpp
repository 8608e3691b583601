// SPDX-License-Identifier: GPL-2.0-or-later
// The limits task's side of libslurm (see slurmdb.hpp): account associations read from and
// written to slurmdbd, and account usage and configuration read from a cluster's slurmctld.
#include "slurmdb.hpp"

#include "log.hpp"
#include "slurm_internal.hpp"
#include "slurm_watchdog.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <strings.h>
#include <vector>

#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
#include <slurm/slurmdb.h>

namespace keystone {

using namespace slurm_internal;

namespace {

struct AssocMgrInfoDeleter {
    void operator()(assoc_mgr_info_msg_t *m) const noexcept { slurm_free_assoc_mgr_info_msg(m); }
};
using AssocMgrInfoPtr = std::unique_ptr<assoc_mgr_info_msg_t, AssocMgrInfoDeleter>;

struct CtlConfDeleter {
    void operator()(slurm_conf_t *c) const noexcept { slurm_free_ctl_conf(c); }
};
using CtlConfPtr = std::unique_ptr<slurm_conf_t, CtlConfDeleter>;

// AccountingStorageEnforce bits: src/common/read_config.h (ACCOUNTING_ENFORCE_*), not in the
// public headers. The names and their order are scontrol's (accounting_enforce_string()).
constexpr std::pair<std::uint16_t, const char *> enforce_flags[] = {
    {0x01, "associations"}, {0x02, "limits"}, {0x20, "nojobs"}, {0x40, "nosteps"},
    {0x08, "qos"},          {0x10, "safe"},   {0x04, "wckeys"},
};
constexpr std::uint16_t enforce_limits = 0x02;

std::string enforce_text(std::uint16_t enforce) {
    std::string out;
    for (const auto &[bit, name] : enforce_flags)
        if (enforce & bit)
            out += (out.empty() ? "" : ",") + std::string(name);
    return out.empty() ? "none" : out;
}

// A duration in seconds as scontrol shows it: "7-00:00:00", "01:30:00", "UNLIMITED".
std::string duration_text(std::uint32_t secs) {
    if (secs == INFINITE)
        return "UNLIMITED";
    char buf[48];
    const unsigned long days = secs / 86400, h = secs / 3600 % 24, m = secs / 60 % 60,
                        s = secs % 60;
    if (days)
        std::snprintf(buf, sizeof buf, "%lu-%02lu:%02lu:%02lu", days, h, m, s);
    else
        std::snprintf(buf, sizeof buf, "%02lu:%02lu:%02lu", h, m, s);
    return buf;
}

// PriorityUsageResetPeriod as scontrol shows it.
std::string reset_period_text(std::uint16_t period) {
    switch (period) {
    case PRIORITY_RESET_NONE:
        return "NONE";
    case PRIORITY_RESET_NOW:
        return "NOW";
    case PRIORITY_RESET_DAILY:
        return "DAILY";
    case PRIORITY_RESET_WEEKLY:
        return "WEEKLY";
    case PRIORITY_RESET_MONTHLY:
        return "MONTHLY";
    case PRIORITY_RESET_QUARTERLY:
        return "QUARTERLY";
    case PRIORITY_RESET_YEARLY:
        return "YEARLY";
    default:
        return "UNKNOWN";
    }
}

// Directs libslurm's controller RPCs (slurm_load_*) at `cluster`'s slurmctld while it lives,
// under slurm_mutex() and after library_init_locked(). The local cluster (slurm.conf's
// ClusterName) needs nothing. For another one, slurmdbd's record of the cluster (its
// ControlHost, ControlPort and RPC version, which slurmctld registers) goes into libslurm's global
// working_cluster_rec, which slurm_send_recv_controller_msg() and the message headers honour,
// exactly as `sshare -M`/`scontrol -M` do. The previous value is put back on destruction, before
// the record is freed. The slurmdbd request is abandoned after `slurmdb_timeout` seconds.
class WorkingCluster {
public:
    WorkingCluster(const std::string &cluster, int slurmdb_timeout) : m_saved(working_cluster_rec) {
        if (cluster.empty())
            throw std::invalid_argument("empty cluster name");
        if (cluster == text(slurm_conf.cluster_name)) {
            m_where = "slurmctld at SlurmctldHost=" +
                      text(slurm_conf.control_cnt ? slurm_conf.control_machine[0] : nullptr) +
                      " SlurmctldPort=" + std::to_string(slurm_conf.slurmctld_port);
            return;
        }
        std::string name = cluster; // the API takes a non-const comma-separated list
        slurm_seterrno(0);
        // Opens its own connection to slurmdbd; returns NULL (not an empty list) when slurmdbd
        // cannot be asked, knows no such cluster, or has no address for it: a cluster whose
        // slurmctld has not registered (ControlPort 0) is dropped from the list.
        SlurmdbdDeadline deadline(slurmdb_timeout, "reading the cluster's slurmctld address",
                                  cluster);
        m_list.reset(slurmdb_get_info_cluster(name.data()));
        const bool expired = deadline.finish();
        slurmdb_cluster_rec_t *rec = nullptr;
        if (m_list)
            for_each_item<slurmdb_cluster_rec_t>(m_list.get(), [&](slurmdb_cluster_rec_t &c) {
                if (!rec && c.name && cluster == c.name)
                    rec = &c;
            });
        if (!rec || !rec->control_host || !rec->control_host[0] || !rec->control_port) {
            if (expired)
                throw SlurmdbdTimeout(deadline.message());
            // libslurm sets an error code only when slurmdbd could not be asked.
            const bool unreachable = slurm_get_errno() != 0;
            throw SlurmError(
                "slurmctld of Cluster=" + cluster + " has not registered with slurmdbd at " +
                "AccountingStorageHost=" + text(slurm_conf.accounting_storage_host) +
                " AccountingStoragePort=" + std::to_string(slurm_conf.accounting_storage_port) +
                (unreachable ? ": slurmdbd cannot be asked: " + slurm_error_text()
                             : " (no such cluster, or its slurmctld is not running)"));
        }
        m_where = "slurmctld at ControlHost=" + text(rec->control_host) +
                  " ControlPort=" + std::to_string(rec->control_port) + " (from slurmdbd)";
        working_cluster_rec = rec;
    }
    ~WorkingCluster() {
        // Restored before m_list (which owns the record) is destroyed.
        working_cluster_rec = m_saved;
    }
    WorkingCluster(const WorkingCluster &) = delete;
    WorkingCluster &operator=(const WorkingCluster &) = delete;

    // "slurmctld at ...", for messages.
    const std::string &where() const { return m_where; }

private:
    slurmdb_cluster_rec_t *m_saved;
    ListPtr m_list;
    std::string m_where;
};

} // namespace

std::map<std::string, std::uint64_t> read_account_usage(const std::string &slurm_conf_setting,
                                                        const std::string &cluster,
                                                        int slurmdb_timeout) {
    const std::string what = "slurmctld: reading the account usage of Cluster=" + cluster + ": ";
    std::lock_guard<std::mutex> lock(slurm_mutex());
    library_init_locked(slurm_conf_setting);
    WorkingCluster target(cluster, slurmdb_timeout);

    assoc_mgr_info_request_msg_t req;
    std::memset(&req, 0, sizeof req); // no account, user or QOS lists: every association
    req.flags = ASSOC_MGR_INFO_FLAG_ASSOC;
    assoc_mgr_info_msg_t *raw = nullptr;
    slurm_seterrno(0);
    const int rc = slurm_load_assoc_mgr_info(&req, &raw);
    AssocMgrInfoPtr info(raw);
    if (rc != SLURM_SUCCESS || !info)
        throw SlurmError(what + slurm_error_text() + " (" + target.where() + ")");

    std::optional<std::uint32_t> billing;
    for (std::uint32_t i = 0; i < info->tres_cnt && info->tres_names; ++i)
        if (info->tres_names[i] && std::strcmp(info->tres_names[i], "billing") == 0)
            billing = i;
    if (!billing)
        throw SlurmError(what + "slurmctld has no billing TRES (" + target.where() + ")");

    std::map<std::string, std::uint64_t> usage;
    if (!info->assoc_list)
        return usage;
    for_each_item<slurmdb_assoc_rec_t>(info->assoc_list, [&](const slurmdb_assoc_rec_t &a) {
        if ((a.user && a.user[0]) || !a.acct || !a.acct[0])
            return; // user associations; account associations have no user
        if (a.partition && a.partition[0])
            return;
        const slurmdb_assoc_usage_t *u = a.usage;
        long double secs = 0;
        if (u && u->usage_tres_raw && *billing < u->tres_cnt)
            secs = u->usage_tres_raw[*billing];
        // TRES-seconds; sshare's GrpTRESRaw prints (uint64_t)(raw / 60).
        const long double mins = secs > 0 ? std::floor(secs / 60) : 0;
        const long double cap = static_cast<long double>(NO_VAL64 - 1);
        usage[a.acct] = mins < cap ? static_cast<std::uint64_t>(mins) : NO_VAL64 - 1;
    });
    return usage;
}

std::vector<SlurmPrerequisite> check_limit_prerequisites(const std::string &slurm_conf_setting,
                                                         const std::string &cluster,
                                                         int slurmdb_timeout) {
    std::lock_guard<std::mutex> lock(slurm_mutex()); // until conf is freed
    library_init_locked(slurm_conf_setting);
    CtlConfPtr conf;
    {
        WorkingCluster target(cluster, slurmdb_timeout);
        slurm_conf_t *raw = nullptr;
        slurm_seterrno(0);
        const int rc = slurm_load_ctl_conf(0, &raw); // 0: always the whole configuration
        conf.reset(raw);
        if (rc != SLURM_SUCCESS || !conf)
            throw SlurmError("slurmctld: reading the configuration of Cluster=" + cluster + ": " +
                             slurm_error_text() + " (" + target.where() + ")");
    }
    std::vector<SlurmPrerequisite> out;
    auto add = [&](const char *setting, std::string value, const char *needed, bool ok,
                   const char *fix, const char *why) {
        SlurmPrerequisite p;
        p.setting = setting;
        p.value = std::move(value);
        p.needed = needed;
        p.ok = ok;
        if (!ok)
            p.advice = p.setting + "=" + p.value + ": " + fix + " in slurm.conf: " + why;
        out.push_back(std::move(p));
    };

    const std::string prio = text(conf->priority_type);
    add("PriorityType", prio, "priority/multifactor", prio == "priority/multifactor",
        "set PriorityType=priority/multifactor",
        "other priority plugins keep no usage (GrpTRESRaw), so GrpTRESMins limits are never "
        "reached");
    add("PriorityDecayHalfLife", duration_text(conf->priority_decay_hl), "0 (00:00:00)",
        conf->priority_decay_hl == 0, "set PriorityDecayHalfLife=0",
        "with decay, GrpTRESRaw shrinks over time and Keystone's limits charge the wrong usage");
    add("PriorityUsageResetPeriod", reset_period_text(conf->priority_reset_period), "NONE",
        conf->priority_reset_period == PRIORITY_RESET_NONE, "set PriorityUsageResetPeriod=NONE",
        "a reset sets GrpTRESRaw back to 0 and accounts get their spent minutes again");
    add("AccountingStorageEnforce", enforce_text(conf->accounting_storage_enforce),
        "limits (with associations)", (conf->accounting_storage_enforce & enforce_limits) != 0,
        "add limits to AccountingStorageEnforce",
        "without it slurmctld does not enforce GrpTRESMins and accounts run past their "
        "allocation");
    // Slurm 22.05 appends its default TRES list, which has billing, to any
    // AccountingStorageTRES (read_config.c), so this holds unless a later release changes it.
    const std::string tres = text(conf->accounting_storage_tres);
    bool has_billing = false;
    for (size_t pos = 0; pos <= tres.size();) {
        const size_t comma = std::min(tres.find(',', pos), tres.size());
        if (strcasecmp(tres.substr(pos, comma - pos).c_str(), "billing") == 0)
            has_billing = true;
        pos = comma + 1;
    }
    add("AccountingStorageTRES", tres, "billing (always tracked by Slurm 22.05)", has_billing,
        "add billing to AccountingStorageTRES",
        "the limits are GrpTRESMins=billing=N, counted in billing TRES-minutes");
    return out;
}

std::vector<AccountLimit> SlurmdbConnection::read_root_accounts(const std::string &cluster) {
    const std::string what =
        "slurmdbd: reading the account associations of Cluster=" + cluster + " failed: ";
    std::lock_guard<std::mutex> lock(slurm_mutex());
    const std::uint32_t billing = billing_tres_locked(what, cluster);

    slurmdb_assoc_cond_t cond;
    std::memset(&cond, 0, sizeof cond); // not deleted; parent names wanted (without_parent_info 0)
    ListPtr clusters = string_list({cluster});
    cond.cluster_list = clusters.get();
    // Only associations whose parent is root: user associations have no parent account, so
    // this leaves out the (many) user associations on the server side. No user_list: with one,
    // slurmdbd would return user associations only.
    ListPtr parents = string_list({"root"});
    cond.parent_acct_list = parents.get();
    cond.without_parent_limits = 1; // GrpTRESMins is never inherited anyway
    slurm_seterrno(0);
    // Never slurmdb_destroy_assoc_cond(&cond): it frees the struct itself (ours, on the stack).
    SlurmdbdDeadline deadline(m_timeout, "reading the account associations", cluster);
    ListPtr assocs(slurmdb_associations_get(m_db, &cond));
    deadline.done(!assocs);
    if (!assocs)
        throw SlurmError(what + slurm_error_text() + " (" + where() + ")");

    std::vector<AccountLimit> out;
    for_each_item<slurmdb_assoc_rec_t>(assocs.get(), [&](const slurmdb_assoc_rec_t &a) {
        if ((a.user && a.user[0]) || (a.partition && a.partition[0]) || !a.acct || !a.parent_acct ||
            std::strcmp(a.parent_acct, "root") != 0 || std::strcmp(a.acct, "root") == 0 ||
            (a.cluster && cluster != a.cluster))
            return;
        AccountLimit l;
        l.account = a.acct;
        l.assoc_id = a.id;
        const std::string mins = text(a.grp_tres_mins); // "1=10,5=600": TRES ids
        const std::uint64_t b = tres_count(mins, billing);
        if (b != INFINITE64 && b != NO_VAL64)
            l.billing_minutes = b;
        l.grp_tres_mins = format_tres(mins, m_tres);
        out.push_back(std::move(l));
    });
    log_debug("slurmdb: Cluster=%s: %zu accounts under root", cluster.c_str(), out.size());
    return out;
}

void SlurmdbConnection::set_billing_minutes(const std::string &cluster, const std::string &account,
                                            std::uint64_t minutes) {
    const std::string what = "slurmdbd: setting GrpTRESMins=billing=" + std::to_string(minutes) +
                             " for Account=" + account + " Cluster=" + cluster + " failed: ";
    if (cluster.empty() || account.empty() || minutes >= NO_VAL64)
        throw std::invalid_argument("set_billing_minutes: empty cluster or account, or minutes "
                                    "out of range: " +
                                    what);
    std::lock_guard<std::mutex> lock(slurm_mutex());
    const std::uint32_t billing = billing_tres_locked(what, cluster);

    slurmdb_assoc_cond_t cond;
    std::memset(&cond, 0, sizeof cond);
    ListPtr accounts = string_list({account});
    ListPtr clusters = string_list({cluster});
    cond.acct_list = accounts.get();
    cond.cluster_list = clusters.get();
    // user_list stays NULL: slurmdbd then changes only the account association (user = ''),
    // not the users' associations under the account.

    slurmdb_assoc_rec_t rec;
    slurmdb_init_assoc_rec(&rec, false); // every limit "not given" (NO_VAL), so none changes
    // slurmdbd merges this into the stored limit (other TRES stay); ids, not names.
    std::string limit = std::to_string(billing) + "=" + std::to_string(minutes);
    rec.grp_tres_mins = limit.data();
    slurm_seterrno(0);
    // Never slurmdb_destroy_assoc_rec/cond on rec/cond: they are ours (stack), and so is the
    // string in rec.grp_tres_mins.
    if (std::find(m_uncommitted.begin(), m_uncommitted.end(), cluster) == m_uncommitted.end())
        m_uncommitted.push_back(cluster); // before the request: a timed-out one may still apply
    SlurmdbdDeadline deadline(m_timeout,
                              "setting GrpTRESMins=billing=" + std::to_string(minutes) +
                                  " for Account=" + account,
                              cluster);
    ListPtr changed(slurmdb_associations_modify(m_db, &cond, &rec));
    deadline.done(!changed);
    if (!changed)
        throw SlurmError(what + slurm_error_text() + " (" + where() + ")");
    if (slurm_list_count(changed.get()) == 0)
        throw SlurmError(what + "no association for Account=" + account + " Cluster=" + cluster +
                         " (" + where() + ")");
    log_debug("slurmdb: Account=%s Cluster=%s: GrpTRESMins=billing=%llu (not committed)",
              account.c_str(), cluster.c_str(), static_cast<unsigned long long>(minutes));
}

void SlurmdbConnection::commit(bool apply) {
    std::lock_guard<std::mutex> lock(slurm_mutex());
    std::string clusters;
    for (const auto &c : m_uncommitted)
        clusters += (clusters.empty() ? "" : ",") + c;
    // Successful or not, the changes after this one are a new list.
    m_uncommitted.clear();
    slurm_seterrno(0);
    SlurmdbdDeadline deadline(
        m_timeout, apply ? "committing the changes" : "rolling back the changes", clusters);
    const int rc = slurmdb_connection_commit(m_db, apply);
    deadline.done(rc != SLURM_SUCCESS);
    if (rc != SLURM_SUCCESS)
        throw SlurmError(std::string("slurmdbd: ") + (apply ? "commit" : "rollback") +
                         " failed: " + slurm_error_text() + " (" + where() + ")");
}

std::uint32_t SlurmdbConnection::billing_tres_locked(const std::string &what,
                                                     const std::string &cluster) {
    if (!m_names_loaded) {
        try {
            load_names(cluster);
        } catch (const SlurmdbdTimeout &) {
            throw; // names the request, the cluster and the address already
        } catch (const SlurmError &e) {
            throw SlurmError(what + e.what() + " (" + where() + ")");
        }
    }
    auto it = m_tres.find(m_tres_billing);
    if (it == m_tres.end() || it->second.first != "billing")
        throw SlurmError(what + "slurmdbd has no billing TRES (" + where() + ")");
    return m_tres_billing;
}

SlurmctldConfig read_slurmctld_config(const std::string &slurm_conf_setting)
{
    std::lock_guard<std::mutex> lock(slurm_mutex());
    library_init_locked(slurm_conf_setting);
    SlurmctldConfig out;
    out.cluster = text(slurm_conf.cluster_name);
    slurm_conf_t *raw = nullptr;
    slurm_seterrno(0);
    const int rc = slurm_load_ctl_conf(0, &raw);
    CtlConfPtr conf(raw);
    if (rc != SLURM_SUCCESS || !conf)
        throw SlurmError(
            "slurmctld of Cluster=" + out.cluster + " (SlurmctldHost=" +
            (slurm_conf.control_cnt > 0 ? text(slurm_conf.control_machine[0]) : std::string("?")) +
            " Port=" + std::to_string(slurm_conf.slurmctld_port) + "): " + slurm_error_text());
    out.version = text(conf->version);
    out.jobcomp_type = text(conf->job_comp_type);
    out.jobcomp_loc = text(conf->job_comp_loc);
    out.host = conf->control_cnt > 0 ? text(conf->control_machine[0]) : "";
    out.slurm_user = text(conf->slurm_user_name);
    out.slurm_uid = conf->slurm_user_id;
    return out;
}

} // namespace keystone
