#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Fetches Debian's source package of the Slurm version installed on this machine (the version of
# the slurmctld package, or of libslurm-dev when slurmctld is absent) and unpacks it into DEST
# (default ./slurm-src), so the jobcomp plugin builds against exactly the headers of the
# slurmctld that will load it. Prints the unpacked folder on stdout. Run as root the first time:
# it adds a deb-src entry beside Debian's own sources. Nothing of Slurm's is copied into our tree.
set -euo pipefail
dest=${1:-slurm-src}

pkg=slurmctld
version=$(dpkg-query -W -f='${source:Version}' slurmctld 2>/dev/null || true)
if [ -z "$version" ]; then
    pkg=libslurm-dev
    version=$(dpkg-query -W -f='${source:Version}' libslurm-dev 2>/dev/null || true)
fi
[ -n "$version" ] || { echo "fetch-slurm-source: neither slurmctld nor libslurm-dev is installed" >&2; exit 1; }
source_pkg=$(dpkg-query -W -f='${source:Package}' "$pkg")
upstream=${version#*:}
upstream=${upstream%-*}
tree="$dest/$source_pkg-$upstream"
stamp="$tree/.keystone-slurm-version"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
    echo "fetch-slurm-source: $source_pkg $version already in $tree" >&2
    (cd "$tree" && pwd)
    exit 0
fi

# deb-src entries with the same archives, suites, components and keys as the binary ones.
srclist=/etc/apt/sources.list.d/keystone-slurm-deb-src.sources
have_src() { grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; }
if ! have_src; then
    [ "$(id -u)" = 0 ] || { echo "fetch-slurm-source: no deb-src entry; run once as root" >&2; exit 1; }
    if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        cat /etc/apt/sources.list.d/*.sources | sed 's/^Types:.*/Types: deb-src/' >"$srclist"
    else
        grep -h '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' >"${srclist%.sources}.list"
    fi
    echo "fetch-slurm-source: added deb-src entries ($srclist)" >&2
    apt-get update -q >&2
fi

mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "fetch-slurm-source: fetching $source_pkg=$version" >&2
if ! (cd "$work" && apt-get source -q --download-only "$source_pkg=$version" >&2); then
    # The index may predate the deb-src entry or a security update: refresh once and retry.
    [ "$(id -u)" = 0 ] && apt-get update -q >&2
    (cd "$work" && apt-get source -q --download-only "$source_pkg=$version" >&2)
fi
rm -rf "$tree"
dpkg-source -q -x "$work"/"${source_pkg}_${version#*:}.dsc" "$tree" >&2
echo "$version" >"$stamp"
(cd "$tree" && pwd)
