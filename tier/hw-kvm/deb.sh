#!/usr/bin/env bash
# Fetches a Debian package into CACHE_DIR once and prints the directory it unpacked to. Never
# committed: fetched at test time with apt-get download, so it needs Debian's package lists
# (apt-get update).
#
# usage: tier/hw-kvm/deb.sh CACHE_DIR PACKAGE
set -euo pipefail
cache=${1:?usage: tier/hw-kvm/deb.sh CACHE_DIR PACKAGE}
pkg=${2:?usage: tier/hw-kvm/deb.sh CACHE_DIR PACKAGE}
mkdir -p "$cache"
die() { echo "hw-kvm tier: $*" >&2; exit 2; }
for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool is missing: this needs a Debian system with apt"
done
dir=$cache/$pkg
# Several tests may ask at once: one fetches, the others wait for it.
exec 9> "$cache/.lock"
command -v flock >/dev/null && flock 9
if [ ! -e "$dir/.unpacked" ]; then
  fetched=""
  for attempt in 1 2 3; do
    if (cd "$cache" && apt-get download "$pkg" > "$cache/.download.log" 2>&1); then fetched=yes; break; fi
    sleep $((attempt * 2))
  done
  [ -n "$fetched" ] || die "cannot download $pkg ($(tail -1 "$cache/.download.log")): run apt-get update, and check that Debian's archive is reachable"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  dpkg-deb -x "$cache/${pkg}"_*.deb "$dir.tmp"
  touch "$dir.tmp/.unpacked"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "$dir"
