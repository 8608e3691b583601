#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Installs, from Debian 12's archive, everything keystone-slurm needs to build and to run its
# tests and demo. Does nothing when all of it is already installed. Run as root.
set -euo pipefail

packages=(
    # build
    g++ make autoconf automake libtool pkg-config
    libpqxx-dev libjansson-dev libldap-dev libcurl4-openssl-dev libmunge-dev libslurm-dev check
    libkainjow-mustache-dev libmicrohttpd-dev
    # the RPM packages (rpmbuild)
    rpm
    # tests and demo: a private PostgreSQL, psql, Python for reading JSON in tests
    postgresql postgresql-client python3 procps
    # LDAP tests: a private slapd with its own CA
    slapd ldap-utils openssl
    # e-mail tests: a private SMTP sink
    python3-aiosmtpd
    # the plugin: Debian's Slurm source (dpkg-dev unpacks it) and a single-node test cluster
    dpkg-dev munge mariadb-server slurmctld slurmd slurmdbd slurm-client
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# slapd: no default database and no admin password prompt; the tests configure their own.
echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
# Keep package scripts from starting services (PostgreSQL's default cluster) on this host;
# only add such a policy if the machine has none, and remove only our own.
policy_added=no
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_added=yes
fi
trap '[ "$policy_added" = yes ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
