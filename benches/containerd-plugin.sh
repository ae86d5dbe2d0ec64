#!/usr/bin/env bash
# `ctr snapshots diff` through the ovdiff-containerd plugin against containerd's own walking
# differ, end to end, on a real containerd >= 2.0 (fetched from Debian sid by
# crates/ovdiff-containerd/scripts/fetch-containerd.sh). Needs root (overlay mounts).
#
#   benches/containerd-plugin.sh [--base DIR --upper DIR] [--files N] [--percent P] [--runs N]
#                                [--work DIR] [--out FILE] [--no-build]
#
#   --base DIR    the base tree (committed as the parent layer); --upper DIR a kernel overlay
#                 upperdir made over it (copied into the active snapshot's upperdir). Both
#                 from benches/compare.sh's cache, e.g. base-100000 and s-100000-1/upper.
#                 Without them, a base of --files N entries (default 100000) and a change of
#                 --percent P (default 1) are generated with the compare-scenario example.
#   --runs N      timed runs per differ and media type (default 3; the median is kept)
#   --work DIR    scratch dir (default /tmp/ovdiff-containerd-bench); removed at the end
#   --out FILE    also write the markdown table there
#   --no-build    use target/release/ovdiff-containerd (and compare-scenario) as they are
#
# Every run deletes the blob it made, so no run finds its blob already stored. The tar of
# the plugin and of the walking differ are compared byte for byte.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
base="" upper="" files=100000 percent=1 runs=3 work=/tmp/ovdiff-containerd-bench out="" build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --base) base=$2; shift ;;
    --upper) upper=$2; shift ;;
    --files) files=$2; shift ;;
    --percent) percent=$2; shift ;;
    --runs) runs=$2; shift ;;
    --work) work=$2; shift ;;
    --out) out=$2; shift ;;
    --no-build) build=0 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "containerd-plugin.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { echo "containerd-plugin.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (containerd's overlay snapshotter mounts overlays)"
{ [ -n "$base" ] && [ -n "$upper" ]; } || { [ -z "$base" ] && [ -z "$upper" ]; } ||
    die "--base and --upper go together"

bin=$(sh "$repo/crates/ovdiff-containerd/scripts/fetch-containerd.sh")/usr/bin
target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
if [ "$build" = 1 ]; then
    log "building ovdiff-containerd (release)"
    (cd "$repo" && cargo build --release --quiet -p ovdiff-containerd)
    if [ -z "$base" ]; then
        (cd "$repo" && cargo build --release --quiet --example compare-scenario)
    fi
fi
plugin_bin=$target/release/ovdiff-containerd
[ -x "$plugin_bin" ] || die "missing $plugin_bin (run without --no-build)"

rm -rf "$work"
mkdir -p "$work"
cd "$work"
cd_pid="" plugin_pid=""
cleanup() {
    [ -n "$plugin_pid" ] && kill "$plugin_pid" 2>/dev/null && wait "$plugin_pid" 2>/dev/null
    [ -n "$cd_pid" ] && kill "$cd_pid" 2>/dev/null && wait "$cd_pid" 2>/dev/null
    { grep -F " $work/" /proc/mounts || true; } | awk '{ print $2 }' | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ -z "$base" ]; then
    gen=$target/release/examples/compare-scenario
    [ -x "$gen" ] || die "missing $gen (run without --no-build)"
    log "generating a base of $files entries and a $percent% change"
    "$gen" base "$work/gen-base" --files "$files" --seed 1 >&2
    "$gen" mutate "$work/gen-base" "$work/gen-scen" --percent "$percent" --seed 100 >&2
    base=$work/gen-base upper=$work/gen-scen/upper
fi

sock=$work/containerd.sock psock=$work/ovdiff.sock
start_containerd() { # ORDER: "ovdiff walking" or "walking"
    local order=$1
    {
        echo 'version = 3'
        echo "root = \"$work/root\""
        echo "state = \"$work/state\""
        echo 'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]'
        echo "[grpc]"
        echo "  address = \"$sock\""
        echo "[ttrpc]"
        echo "  address = \"$sock.ttrpc\""
        echo "[plugins.'io.containerd.internal.v1.opt']"
        echo "  path = \"$work/opt\""
        echo "[proxy_plugins.ovdiff]"
        echo '  type = "diff"'
        echo "  address = \"$psock\""
        echo "[plugins.'io.containerd.service.v1.diff-service']"
        printf '  default = [%s]\n' "$(printf '"%s", ' $order | sed 's/, $//')"
    } >"$work/config.toml"
    "$bin/containerd" --config "$work/config.toml" >>"$work/containerd.log" 2>&1 &
    cd_pid=$!
    for _ in $(seq 200); do
        "$bin/ctr" -a "$sock" version >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "containerd did not start; see $work/containerd.log"
}
stop_containerd() {
    kill "$cd_pid" && wait "$cd_pid" 2>/dev/null || true
    cd_pid=""
}
ctr() { "$bin/ctr" -a "$sock" -n bench "$@"; }

"$plugin_bin" --address "$psock" --containerd-address "$sock" 2>"$work/plugin.log" &
plugin_pid=$!
start_containerd "ovdiff walking"

log "committing the base ($base) as a layer"
# A snapshot without parents is a bind mount of a plain directory: fill it in place.
fsdir=$(ctr snapshots prepare --mounts base-active | jq -r '.[0].Source')
[ -d "$fsdir" ] || die "no directory behind the base snapshot's mount"
cp -a "$base/." "$fsdir/"
ctr snapshots commit base base-active
log "preparing the active snapshot with the change ($upper)"
opts=$(ctr snapshots prepare --mounts change base | jq -r '.[0].Options[]')
upperdir=$(printf '%s\n' "$opts" | sed -n 's/^upperdir=//p')
[ -d "$upperdir" ] || die "no upperdir in the snapshot's mounts"
cp -a "$upper/." "$upperdir/"
entries_base=$(find "$base" | wc -l)
entries_upper=$(find "$upper" -mindepth 1 | wc -l)

now() { echo "${EPOCHREALTIME/./}"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
measure() { # DIFFER KIND MEDIA: prints the median µs; leaves the last blob in $work/DIFFER-KIND.blob
    local differ=$1 kind=$2 media=$3 i t0 t1 digest
    local blob=$work/$differ-$kind.blob
    for i in $(seq "$runs"); do
        t0=$(now)
        ctr snapshots diff --media-type "$media" change >"$blob"
        t1=$(now)
        echo $((t1 - t0))
        digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
        ctr content rm "$digest" >/dev/null 2>&1 || true
    done | median
}

tar_mt=application/vnd.oci.image.layer.v1.tar
gz_mt=application/vnd.oci.image.layer.v1.tar+gzip
declare -A us
log "through the plugin ($runs runs per media type)"
served_before=$(grep -c 'differ=overlay' "$work/plugin.log" || true)
us[ovdiff-tar]=$(measure ovdiff tar "$tar_mt")
us[ovdiff-gzip]=$(measure ovdiff gzip "$gz_mt")
served=$(($(grep -c 'differ=overlay' "$work/plugin.log" || true) - served_before))
[ "$served" = $((2 * runs)) ] || die "the plugin served $served of $((2 * runs)) diffs; see $work/plugin.log"
stop_containerd
log "containerd's walking differ"
start_containerd "walking"
us[walking-tar]=$(measure walking tar "$tar_mt")
us[walking-gzip]=$(measure walking gzip "$gz_mt")
stop_containerd

identical=no
[ -s "$work/walking-tar.blob" ] && cmp -s "$work/ovdiff-tar.blob" "$work/walking-tar.blob" && identical=yes
gzip -dc <"$work/ovdiff-gzip.blob" >"$work/ovdiff-gzip.tar" || die "the plugin's gzip blob does not decompress"
gzip -dc <"$work/walking-gzip.blob" >"$work/walking-gzip.tar" || die "walking's gzip blob does not decompress"
gz_identical=no
[ -s "$work/walking-gzip.tar" ] && cmp -s "$work/ovdiff-gzip.tar" "$work/walking-gzip.tar" && gz_identical=yes
ms() { awk -v u="$1" 'BEGIN { printf "%.0f", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
table=$(
    echo "\`ctr snapshots diff\` of an active overlay snapshot ($entries_upper upperdir entries over a $entries_base-entry base), median of $runs runs, containerd $("$bin/containerd" --version | awk '{ print $3 }'):"
    echo
    echo "| media type | walking differ | ovdiff-containerd | speed-up | uncompressed tar identical |"
    echo "|---|---|---|---|---|"
    echo "| tar | $(ms "${us[walking-tar]}") ms | $(ms "${us[ovdiff-tar]}") ms | $(ratio "${us[walking-tar]}" "${us[ovdiff-tar]}")× | $identical |"
    echo "| tar+gzip | $(ms "${us[walking-gzip]}") ms | $(ms "${us[ovdiff-gzip]}") ms | $(ratio "${us[walking-gzip]}" "${us[ovdiff-gzip]}")× | $gz_identical |"
)
printf '%s\n' "$table"
[ -n "$out" ] && printf '%s\n' "$table" >"$out"
[ "$identical" = yes ] && [ "$gz_identical" = yes ] || die "the layers differ"
