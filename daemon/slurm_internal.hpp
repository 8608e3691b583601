// SPDX-License-Identifier: GPL-2.0-or-later
// libslurm helpers shared by the two files that talk to libslurm, slurmdb.cpp (jobs, library
// setup) and slurm_assoc.cpp (associations, slurmctld state). No other file includes this.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <slurm/slurm.h>
#include <slurm/slurmdb.h>

extern "C" {
// libslurm's parsed slurm.conf (slurm.h declares the type, not the variable); read only: the
// local ClusterName and the addresses named in error messages.
extern slurm_conf_t slurm_conf;
}

namespace keystone::slurm_internal {

// libslurm keeps process-wide state (its configuration, the loaded accounting_storage plugin,
// the persistent connection's buffers, working_cluster_rec): every call into it holds this
// mutex.
std::mutex &slurm_mutex();

// slurm_library_init() for callers that hold slurm_mutex(). Throws SlurmError when the
// configuration file cannot be read.
void library_init_locked(const std::string &setting);

struct ListDeleter {
    void operator()(void *l) const noexcept { slurm_list_destroy(static_cast<List>(l)); }
};
using ListPtr = std::unique_ptr<std::remove_pointer_t<List>, ListDeleter>;

struct IteratorDeleter {
    void operator()(void *i) const noexcept {
        slurm_list_iterator_destroy(static_cast<ListIterator>(i));
    }
};
using IteratorPtr = std::unique_ptr<std::remove_pointer_t<ListIterator>, IteratorDeleter>;

// free() for the items of lists we build.
void free_item(void *p);

// A list of strings libslurm can pack (cluster_list, state_list): we own it and its items.
ListPtr string_list(const std::vector<std::string> &items);

// Calls `f` for every item of a list libslurm returned.
template <typename T, typename F> void for_each_item(List l, F f) {
    IteratorPtr it(slurm_list_iterator_create(l));
    while (void *p = slurm_list_next(it.get()))
        f(*static_cast<T *>(p));
}

// Slurm's text and number for its errno: "Access/permission denied (2010)".
std::string slurm_error_text();

// A C string from libslurm; NULL is "".
std::string text(const char *s);

// "id=count,id=count" -> (id, count) pairs in order; malformed parts are skipped, as Slurm does.
std::vector<std::pair<std::uint32_t, std::uint64_t>> parse_tres(const std::string &s);

// slurmdb_find_tres_count_in_string(): the count of `id`, INFINITE64 when it is not there.
std::uint64_t tres_count(const std::string &s, std::uint32_t id);

} // namespace keystone::slurm_internal
