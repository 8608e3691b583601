#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# RPM packaging: the release tarball carries the configured spec, "rpmbuild -ta" on it builds
# keystone-slurm and, given a Slurm source, keystone-slurm-plugin; the packages hold exactly the
# files an admin expects where RPM systems keep them (nothing more: no libtool archives, static
# libraries, tests or benchmarks), with the right flags, modes and scriptlets, and the plugin
# requires exactly the Slurm it was built against.
#
# Everything happens in the scratch folder (its own configure, make dist and rpmbuild %_topdir):
# "make check" runs the other tests in parallel in the build folder. On Debian the rpm database
# knows nothing apt installed, so rpmbuild runs with --nodeps. The compiler flags are -O1 -g0
# instead of the distribution's (compile time only; the packages' contents are the same).
. "${KS_SRCDIR:-.}/tests/lib/common.sh"
ks_scratch

command -v rpmbuild >/dev/null 2>&1 || ks_missing_service "rpmbuild (apt-get install rpm)"
command -v rpmspec >/dev/null 2>&1 || ks_missing_service "rpmspec (apt-get install rpm)"

# The Slurm source this build folder was configured with, else the one scripts/test.sh fetches.
slurm_src=$(sed -n 's/^SLURM_SRC = //p' "$KS_BUILDDIR/Makefile" 2>/dev/null)
if [ -z "$slurm_src" ] || [ ! -f "$slurm_src/META" ]; then
    slurm_src=
    for d in "$KS_BUILDDIR"/slurm-src/*/; do [ -f "$d/META" ] && slurm_src=${d%/}; done
fi
[ -n "$slurm_src" ] || ks_missing_service "a Slurm source (scripts/fetch-slurm-source.sh DIR, then configure --with-slurm-source=DIR)"
# The installed Slurm's upstream version (no epoch, no Debian revision): what the plugin needs.
slurm_deb=$(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || dpkg-query -W -f='${Version}' libslurm-dev 2>/dev/null || true)
[ -n "$slurm_deb" ] || ks_missing_service "Slurm (slurmctld or libslurm-dev)"
slurm_version=${slurm_deb#*:}
slurm_version=${slurm_version%-*}

isa=$(rpm --eval '%{_isa}')
libdir=$(rpm --eval '%{_libdir}')
arch=$(rpm --eval '%{_target_cpu}')

# --- the release tarball --------------------------------------------------------------------
mkdir -p "$KS_TMP/build" "$KS_TMP/top"
make_dist() (
    cd "$KS_TMP/build" && "$KS_SRCDIR/configure" -q --without-plugin && make dist-gzip
)
check "configure and make dist in a scratch build folder" make_dist
tarball=$(ls "$KS_TMP"/build/keystone-slurm-*.tar.gz 2>/dev/null | head -n 1)
version=$(sed -n 's/^PACKAGE_VERSION = //p' "$KS_TMP/build/Makefile")
check_eq "the tarball is keystone-slurm-VERSION.tar.gz" "keystone-slurm-$version.tar.gz" "$(basename "${tarball:-none}")"
tar -xzf "$tarball" -C "$KS_TMP" "keystone-slurm-$version/keystone-slurm.spec" 2>/dev/null
spec=$KS_TMP/keystone-slurm-$version/keystone-slurm.spec
check "the tarball holds the configured keystone-slurm.spec" test -f "$spec"
check_eq "its Version is the package's, nothing left unsubstituted" "Version: $version|" \
    "$(sed -n 's/^Version: *\(.*\)/Version: \1/p' "$spec")|$(grep -o '@[A-Za-z_]*@' "$spec" | head -n 3 | tr '\n' ' ')"
check_eq "the spec without a Slurm source: only keystone-slurm" "keystone-slurm" \
    "$(rpmspec -q --qf '%{NAME}\n' "$spec" 2>/dev/null | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "the spec with a Slurm source: keystone-slurm and keystone-slurm-plugin" \
    "keystone-slurm keystone-slurm-plugin" \
    "$(rpmspec -q --define "slurm_source $slurm_src" --qf '%{NAME}\n' "$spec" 2>/dev/null | sort | tr '\n' ' ' | sed 's/ $//')"
check_fails "a folder that is no Slurm source is refused when the spec is read" \
    rpmspec -q --define "slurm_source $KS_TMP" "$spec"

# --- rpmbuild -ta -----------------------------------------------------------------------------
started=$SECONDS
if rpmbuild -ta --nodeps --define "_topdir $KS_TMP/top" --define "slurm_source $slurm_src" \
    --define "optflags -O1 -g0" --define "_smp_mflags -j2" "$tarball" >"$KS_TMP/rpmbuild.log" 2>&1; then
    ks_pass "rpmbuild -ta --nodeps builds the packages ($((SECONDS - started)) s)"
else
    ks_fail "rpmbuild -ta --nodeps builds the packages"
    tail -n 40 "$KS_TMP/rpmbuild.log" | sed 's/^/#   /'
    ks_done
    exit
fi
main_rpm=$(ls "$KS_TMP"/top/RPMS/*/keystone-slurm-"$version"-1.*.rpm 2>/dev/null | head -n 1)
plugin_rpm=$(ls "$KS_TMP"/top/RPMS/*/keystone-slurm-plugin-"$version"-1.*.rpm 2>/dev/null | head -n 1)
check_eq "three packages: keystone-slurm, keystone-slurm-plugin and the source package" \
    "keystone-slurm-$version-1.src.rpm keystone-slurm-$version-1.$arch.rpm keystone-slurm-plugin-$version-1.$arch.rpm" \
    "$(find "$KS_TMP/top/RPMS" "$KS_TMP/top/SRPMS" -name '*.rpm' -printf '%f\n' | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "the source package holds the tarball and the spec" \
    "$(basename "$tarball") keystone-slurm.spec" \
    "$(rpm -qpl "$KS_TMP"/top/SRPMS/*.src.rpm 2>/dev/null | sort | tr '\n' ' ' | sed 's/ $//')"

# File lists: build-id links are rpm's own business; man pages compressed or not; doc and
# license folders named NAME (Fedora, RHEL, SUSE) or NAME-VERSION (Debian's rpm).
files_of() {
    rpm -qpl "$1" | grep -v '^/usr/lib/\.build-id' | norm | sort
}
norm() {
    sed -E -e 's#(/usr/share/man/[^|]*)\.(gz|bz2|xz|zst)$#\1#' \
        -e "s#(/usr/share/(doc|licenses)/[^/|]+)-$version(/|\$)#\\1\\3#"
}
# Every SQL migration and mail template in the release is installed.
shipped() {
    tar -tzf "$tarball" | sed -n "s#^keystone-slurm-$version/\\($1\\)\$#\\1#p" | sort
}
sql=$(shipped 'sql/[0-9][^/]*\.sql')
keystone_sql=$(shipped 'sql/keystone/[^/]*\.sql')
templates=$(shipped 'templates/[^/]*\.mustache')
check "the release has SQL migrations and templates to package" test -n "$sql" -a -n "$keystone_sql" -a -n "$templates"
{
    printf '%s\n' /etc/keystone /etc/keystone/keystoned.conf.example \
        /usr/bin/keystonectl /usr/sbin/keystoned \
        /usr/lib/systemd/system/keystoned.service \
        /usr/lib/sysusers.d/keystone-slurm.conf /usr/lib/tmpfiles.d/keystone-slurm.conf \
        /usr/share/doc/keystone-slurm /usr/share/doc/keystone-slurm/NEWS.md \
        /usr/share/doc/keystone-slurm/README.md /usr/share/doc/keystone-slurm/design.md \
        /usr/share/keystone-slurm /usr/share/keystone-slurm/sql /usr/share/keystone-slurm/sql/keystone \
        /usr/share/keystone-slurm/templates \
        /usr/share/licenses/keystone-slurm /usr/share/licenses/keystone-slurm/COPYING \
        /usr/share/man/man1/keystonectl.1 /usr/share/man/man5/keystoned.conf.5 \
        /usr/share/man/man8/keystoned.8 /var/spool/keystone
    for f in $sql $keystone_sql $templates; do echo "/usr/share/keystone-slurm/$f"; done
} | sort >"$KS_TMP/main.expected"
files_of "$main_rpm" >"$KS_TMP/main.actual"
check "keystone-slurm holds exactly the expected files" diff "$KS_TMP/main.expected" "$KS_TMP/main.actual"
printf '%s\n' "$libdir/slurm/jobcomp_keystone.so" \
    /usr/share/doc/keystone-slurm-plugin /usr/share/doc/keystone-slurm-plugin/slurm.conf.example \
    /usr/share/licenses/keystone-slurm-plugin /usr/share/licenses/keystone-slurm-plugin/COPYING \
    /usr/share/man/man8/jobcomp_keystone.8 | sort >"$KS_TMP/plugin.expected"
files_of "$plugin_rpm" >"$KS_TMP/plugin.actual"
check "keystone-slurm-plugin holds exactly the expected files" diff "$KS_TMP/plugin.expected" "$KS_TMP/plugin.actual"
check "no libtool archive, static library, test or benchmark in either" bash -c \
    "! rpm -qpl '$main_rpm' '$plugin_rpm' | grep -E '\\.(la|a|o)\$|/tests?/|_test\$|/bench|callback_cost|spoolgen'"

# Flags, modes and owners: the example is %config(noreplace), docs and license are marked, the
# real keystoned.conf (a password) is the admin's and not in the package.
attrs() { rpm -qp --qf '[%{FILEMODES:perms}|%{FILEUSERNAME}:%{FILEGROUPNAME}|%{FILEFLAGS:fflags}|%{FILENAMES}\n]' "$1" | norm; }
attrs "$main_rpm" >"$KS_TMP/main.attrs"
attr_of() { awk -F'|' -v f="$1" '$4 == f { print $1 " " $2 " " $3 }' "$KS_TMP/main.attrs"; }
check_eq "keystoned.conf.example: %config(noreplace), 0644 root" "-rw-r--r-- root:root cn" \
    "$(attr_of /etc/keystone/keystoned.conf.example)"
check "no keystoned.conf in the package" bash -c "! grep -q '|/etc/keystone/keystoned.conf\$' '$KS_TMP/main.attrs'"
check_eq "the only %config file is the example" "/etc/keystone/keystoned.conf.example" \
    "$(awk -F'|' '$3 ~ /c/ { print $4 }' "$KS_TMP/main.attrs")"
check_eq "keystoned: 0755 root" "-rwxr-xr-x root:root" "$(attr_of /usr/sbin/keystoned | cut -d' ' -f1-2)"
check_eq "keystonectl: 0755 root" "-rwxr-xr-x root:root" "$(attr_of /usr/bin/keystonectl | cut -d' ' -f1-2)"
check_eq "the unit file: 0644 root" "-rw-r--r-- root:root" "$(attr_of /usr/lib/systemd/system/keystoned.service | cut -d' ' -f1-2)"
check_eq "COPYING is %license" "l" "$(attr_of /usr/share/licenses/keystone-slurm/COPYING | cut -d' ' -f3)"
check_eq "README.md is %doc" "d" "$(attr_of /usr/share/doc/keystone-slurm/README.md | cut -d' ' -f3)"
check "no file in either package belongs to anyone but root" bash -c \
    "! rpm -qp --qf '[%{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' '$main_rpm' '$plugin_rpm' | grep -v '^root:root '"

# What is inside: the unit starts the packaged keystoned; the plugin is Slurm's kind of plugin.
mkdir -p "$KS_TMP/root"
check "the packages unpack" bash -c "set -o pipefail
    rpm2archive - <'$main_rpm' | tar -xzf - -C '$KS_TMP/root' &&
    rpm2archive - <'$plugin_rpm' | tar -xzf - -C '$KS_TMP/root'"
check_eq "the packaged unit runs /usr/sbin/keystoned" "ExecStart=/usr/sbin/keystoned" \
    "$(grep '^ExecStart=' "$KS_TMP/root/usr/lib/systemd/system/keystoned.service" 2>/dev/null)"
check_match "the plugin exports jobcomp_p_log_record and plugin_version" \
    '(^| )jobcomp_p_log_record( |$).*(^| )plugin_version( |$)' \
    "$(nm -D --defined-only "$KS_TMP/root$libdir/slurm/jobcomp_keystone.so" 2>/dev/null | awk '{ print $3 }' | sort | tr '\n' ' ')"

# --- dependencies ---------------------------------------------------------------------------
plugin_requires=$(rpm -qp --requires "$plugin_rpm")
check_match "the plugin requires exactly the Slurm it was built for ($slurm_version)" \
    "^slurm\\$isa = ${slurm_version//./\\.}\$" "$(grep '^slurm' <<<"$plugin_requires")"
check_match "the plugin and keystoned, when both installed, are of one release" \
    "^\\(keystone-slurm\\$isa = $version-1 if keystone-slurm\\)\$" "$(grep '^(' <<<"$plugin_requires")"
check_match "keystoned's libslurm is an automatic dependency" '^libslurm\.so' \
    "$(rpm -qp --requires "$main_rpm" | grep '^libslurm')"
check_match "the plugin's Summary names its Slurm version" "Slurm $slurm_version" \
    "$(rpm -qp --qf '%{SUMMARY}' "$plugin_rpm")"

# --- scriptlets -----------------------------------------------------------------------------
scripts=$(rpm -qp --scripts "$main_rpm")
check_match "preinstall creates the keystone user and group" \
    'groupadd -r keystone.*useradd -r -g keystone' "$(tr '\n' ' ' <<<"$scripts")"
check_match "postinstall presets the unit and creates the spool folder" \
    'preset keystoned\.service.*systemd-tmpfiles --create keystone-slurm\.conf' "$(tr '\n' ' ' <<<"$scripts")"
check_match "preuninstall stops and disables the unit on erase" \
    'preuninstall scriptlet.*(disable --now|--no-reload disable).*keystoned\.service' "$(tr '\n' ' ' <<<"$scripts")"
check_eq "no scriptlet restarts keystoned (an upgrade may need keystonectl db migrate first)" "" \
    "$(grep -v '^ *#' <<<"$scripts" | grep -E 'restart')"
check "every scriptlet is valid sh" bash -c \
    "rpm -qp --qf '%{PREIN}\n' '$main_rpm' | sh -n && rpm -qp --qf '%{POSTIN}\n' '$main_rpm' | sh -n &&
     rpm -qp --qf '%{PREUN}\n' '$main_rpm' | sh -n && rpm -qp --qf '%{POSTUN}\n' '$main_rpm' | sh -n"
check_eq "the plugin package has no scriptlets" "" "$(rpm -qp --scripts "$plugin_rpm")"

ks_done
