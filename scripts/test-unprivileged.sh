#!/usr/bin/env bash
# Runs scripts/test.sh as an unprivileged user, for CI and for anyone checking that the suite
# passes without root. Run it as root; extra arguments go to cargo test.
#
# - The user is $OVDIFF_TEST_USER (default `ovdiff-ci`), created with a home if missing.
# - It gets its own CARGO_HOME (a copy of the caller's registry, so no network is needed) and
#   its own target directory ($OVDIFF_TEST_TARGET, default ~user/target).
# - The toolchain is the caller's (`rustc --print sysroot`). When the user cannot reach it
#   (rustup under /root, mode 0700), it is bind-mounted read-only at /run/ovdiff-toolchain in a
#   private mount namespace that lives only as long as this run: nothing on the machine changes.
# - A source tree the user cannot read (a clone under /root) is copied to ~user/src first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
user=${OVDIFF_TEST_USER:-ovdiff-ci}

[ "$(id -u)" -eq 0 ] || { echo "test-unprivileged.sh: run as root" >&2; exit 2; }
id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
uid=$(id -u "$user")
gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)
target=${OVDIFF_TEST_TARGET:-$home/target}

# The source tree must be readable with every directory above it searchable; a clone under
# /root (mode 0700) is not, so the user then gets a copy of it (without target/).
if ! setpriv --reuid="$uid" --regid="$gid" --init-groups test -r "$repo/Cargo.toml"; then
  copy=$home/src
  echo "test-unprivileged.sh: $user cannot read $repo; testing a copy in $copy"
  rm -rf "$copy"
  mkdir -p "$copy"
  tar -C "$repo" --exclude=./target -cf - . | tar -C "$copy" -xf -
  chown -R "$uid:$gid" "$copy"
  repo=$copy
fi

# A CARGO_HOME of its own, seeded with the caller's downloaded crates.
caller_cargo_home=${CARGO_HOME:-$HOME/.cargo}
mkdir -p "$home/.cargo" "$target"
if [ -d "$caller_cargo_home/registry" ]; then
  cp -a "$caller_cargo_home/registry" "$home/.cargo/"
fi
chown -R "$uid:$gid" "$home/.cargo" "$target"

sysroot=$(rustc --print sysroot)
toolchain=$sysroot
if ! setpriv --reuid="$uid" --regid="$gid" --init-groups test -x "$sysroot/bin/cargo"; then
  toolchain=/run/ovdiff-toolchain
fi

# Inside a private mount namespace (only for the bind mount): drop to the user, clean env.
exec unshare --mount --propagation private -- /bin/sh -c '
  set -e
  sysroot=$1 toolchain=$2 uid=$3 gid=$4 home=$5 target=$6 repo=$7 user=$8
  shift 8
  if [ "$toolchain" != "$sysroot" ]; then
    mkdir -p "$toolchain"
    mount --bind "$sysroot" "$toolchain"
    mount -o remount,bind,ro "$toolchain"
  fi
  exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
    env -i HOME="$home" USER="$user" LOGNAME="$user" \
      PATH="$toolchain/bin:/usr/local/bin:/usr/bin:/bin" \
      CARGO_HOME="$home/.cargo" CARGO_TARGET_DIR="$target" CARGO_NET_OFFLINE=true \
      RUSTC="$toolchain/bin/rustc" RUSTDOC="$toolchain/bin/rustdoc" \
      TMPDIR=/tmp LANG=C.UTF-8 \
      "$repo/scripts/test.sh" "$@"
' sh "$sysroot" "$toolchain" "$uid" "$gid" "$home" "$target" "$repo" "$user" "$@"
