#!/usr/bin/env bash
# Fetches Debian's kernel package (linux-image-amd64's current version) into CACHE_DIR once and
# prints the directory it unpacked to (boot/vmlinuz-*, lib/modules/*), through deb.sh.
#
# usage: tier/hw-kvm/kernel.sh CACHE_DIR
set -euo pipefail
cache=${1:?usage: tier/hw-kvm/kernel.sh CACHE_DIR}
die() { echo "hw-kvm tier: $*" >&2; exit 2; }
command -v apt-cache >/dev/null || die "apt-cache is missing: this needs a Debian system with apt"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64: run apt-get update (Debian's kernel is fetched at test time)"
exec "$(dirname "$0")/deb.sh" "$cache" "$kpkg"
