// SPDX-License-Identifier: GPL-2.0-or-later
// Which Slurm clusters the per-cluster tasks cover: Keystone's enabled clusters, and the ones
// this keystoned serves (KEYSTONED_CLUSTERS).
#pragma once

#include "config.hpp"

#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

// The names of the enabled clusters of allocations_cluster, sorted. Reads through `tx`; throws
// what libpqxx throws.
std::vector<std::string> enabled_clusters(pqxx::transaction_base &tx);

// The enabled clusters whose per-cluster tasks this keystoned runs (Config::serves_cluster: all
// of them when KEYSTONED_CLUSTERS is empty), sorted. Throws what libpqxx throws.
std::vector<std::string> served_clusters(pqxx::transaction_base &tx, const Config &config);

// The names of KEYSTONED_CLUSTERS that are not in `enabled` (a typo, or a cluster disabled in
// Keystone): this keystoned runs nothing for them. Empty when KEYSTONED_CLUSTERS is empty.
std::vector<std::string> unserved_config_clusters(const std::vector<std::string> &enabled,
                                                  const Config &config);

} // namespace keystone
