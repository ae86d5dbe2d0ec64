#!/bin/sh
# Fetches containerd >= 2.0 (its `containerd` and `ctr` binaries) from Debian's `sid` suite
# into a cache directory, without installing anything, and prints that directory.
#
# Debian bookworm packages containerd 1.6, which has no proxy differs; `sid` has 2.x. The
# mirror is the one this machine's apt is already configured with, read from its sources at
# run time (no mirror address lives in this repository). A scratch apt configuration (its own
# sources list and lists directory) keeps the machine's apt state untouched.
#
# Usage: fetch-containerd.sh            prints DIR; DIR/usr/bin/containerd and DIR/usr/bin/ctr exist
# Cache:  $OVDIFF_CONTAINERD_CACHE, else $XDG_CACHE_HOME/ovdiff/containerd, else
#         ~/.cache/ovdiff/containerd. Delete it to fetch again.
set -eu

cache=${OVDIFF_CONTAINERD_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/ovdiff/containerd}
if [ -x "$cache/usr/bin/containerd" ] && [ -x "$cache/usr/bin/ctr" ]; then
    echo "$cache"
    exit 0
fi
# Tests run in parallel: one fetch at a time, and the others use its result.
mkdir -p "$(dirname "$cache")"
exec 9>"$cache.lock"
flock 9
if [ -x "$cache/usr/bin/containerd" ] && [ -x "$cache/usr/bin/ctr" ]; then
    echo "$cache"
    exit 0
fi

# The first Debian archive URI of the machine's apt sources (deb822 or one-line form),
# skipping the security archive, whose layout has no `sid`.
mirror=$(
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] && sed -n 's/^URIs:[[:space:]]*//p' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] && sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' "$f"
        done
    } | tr ' ' '\n' | grep -v -e '^$' -e security | head -n 1
)
if [ -z "$mirror" ]; then
    echo "fetch-containerd: no Debian mirror found in /etc/apt/sources.list{,.d}" >&2
    exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM
mkdir -p "$scratch/lists/partial" "$scratch/archives/partial" "$scratch/debs"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror sid main" > "$scratch/sources.list"
apt_opts="-o Dir::Etc::sourcelist=$scratch/sources.list -o Dir::Etc::sourceparts=- \
 -o Dir::State::Lists=$scratch/lists -o Dir::Cache::Archives=$scratch/archives \
 -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Get::List-Cleanup=0 \
 -o Debug::NoLocking=1"
if ! apt-get -q $apt_opts update >"$scratch/update.log" 2>&1; then
    cat "$scratch/update.log" >&2
    echo "fetch-containerd: apt-get update of sid failed" >&2
    exit 1
fi
if ! (cd "$scratch/debs" && apt-get -q $apt_opts download containerd) >"$scratch/download.log" 2>&1; then
    cat "$scratch/update.log" "$scratch/download.log" >&2
    echo "fetch-containerd: apt-get download containerd failed" >&2
    exit 1
fi
mkdir -p "$cache.tmp.$$"
for deb in "$scratch"/debs/*.deb; do
    dpkg-deb -x "$deb" "$cache.tmp.$$"
done
if [ ! -x "$cache.tmp.$$/usr/bin/containerd" ] || [ ! -x "$cache.tmp.$$/usr/bin/ctr" ]; then
    rm -rf "$cache.tmp.$$"
    echo "fetch-containerd: the containerd package has no usr/bin/containerd and usr/bin/ctr" >&2
    exit 1
fi
rm -rf "$cache"
mkdir -p "$(dirname "$cache")"
mv "$cache.tmp.$$" "$cache"
echo "$cache"
