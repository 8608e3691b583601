// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the cluster lists (see clusters.hpp).
#include "clusters.hpp"

#include <algorithm>

namespace keystone {

std::vector<std::string> enabled_clusters(pqxx::transaction_base &tx) {
    std::vector<std::string> out;
    for (const auto &row :
         tx.exec("SELECT name FROM allocations_cluster WHERE enabled ORDER BY name"))
        out.push_back(row[0].as<std::string>());
    return out;
}

std::vector<std::string> served_clusters(pqxx::transaction_base &tx, const Config &config) {
    std::vector<std::string> out;
    for (auto &name : enabled_clusters(tx))
        if (config.serves_cluster(name))
            out.push_back(std::move(name));
    return out;
}

std::vector<std::string> unserved_config_clusters(const std::vector<std::string> &enabled,
                                                  const Config &config) {
    std::vector<std::string> out;
    for (const auto &name : config.clusters)
        if (std::find(enabled.begin(), enabled.end(), name) == enabled.end())
            out.push_back(name);
    return out;
}

} // namespace keystone
