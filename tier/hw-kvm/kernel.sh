#!/usr/bin/env bash
# Fetches Debian's kernel package (linux-image-amd64's current version) into CACHE_DIR once and
# prints the directory it unpacked to (boot/vmlinuz-*, lib/modules/*). Never committed: fetched
# at test time with apt-get download, so it needs Debian's package lists (apt-get update).
#
# usage: tier/hw-kvm/kernel.sh CACHE_DIR
set -euo pipefail
cache=${1:?usage: tier/hw-kvm/kernel.sh CACHE_DIR}
mkdir -p "$cache"
die() { echo "hw-kvm tier: $*" >&2; exit 2; }
for tool in apt-cache apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool is missing: this needs a Debian system with apt"
done
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64: run apt-get update (Debian's kernel is fetched at test time)"
kdir=$cache/$kpkg
# Several tests may ask at once: one fetches, the others wait for it.
exec 9> "$cache/.lock"
command -v flock >/dev/null && flock 9
if [ ! -d "$kdir/lib/modules" ]; then
  fetched=""
  for attempt in 1 2 3; do
    if (cd "$cache" && apt-get download "$kpkg" > "$cache/.download.log" 2>&1); then fetched=yes; break; fi
    sleep $((attempt * 2))
  done
  [ -n "$fetched" ] || die "cannot download $kpkg ($(tail -1 "$cache/.download.log")): run apt-get update, and check that Debian's archive is reachable"
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  dpkg-deb -x "$cache/${kpkg}"_*.deb "$kdir.tmp"
  rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
fi
echo "$kdir"
