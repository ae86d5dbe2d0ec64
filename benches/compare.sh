#!/usr/bin/env bash
# Side-by-side comparison of ovdiff with the tools people already use, on generated
# scenarios whose upperdirs are made by a real kernel overlay mount. Writes a markdown table
# (benches/results.md) and a scaling plot (benches/compare-scaling.png). Needs root (overlay
# mounts); see benches/README.md for the method behind every column.
#
#   benches/compare.sh [--quick] [--runs N] [--work DIR] [--out DIR] [--no-strace] [--trees-only]
#
#   --quick      tiny sizes, a smoke test (≤ 2 min); results go to the work dir, not benches/
#   --trees-only generate (or check) the cached trees, print their sizes, measure nothing
#   --change-by steps  size the N% changes as N% × base entries mutation steps (the old
#                definition) instead of an upperdir holding N% of the base's entry count
#   --runs N     timed runs per measurement, after one warm-up (default 5; the median is kept)
#   --work DIR   where generated trees are cached (default $OVDIFF_COMPARE_DIR or
#                /tmp/ovdiff-compare); reruns reuse them
#   --out DIR    where results.md, the plot and the raw data go
#   --no-strace  skip the syscall counts
#   --no-build   use the ovdiff and generator binaries already in target/release
#   --report-only  rewrite results.md and the plot from the last run's raw data
#   --containerd also time `ctr snapshots diff` through ovdiff-containerd against containerd's
#                walking differ on the headline scenario (benches/containerd-plugin.sh)
#   --peers-only   measure only the peers (BuildKit, compressed layers, the sha256 floor) on
#                the headline, data-heavy and compressible-data scenarios (compare-peers.sh)
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

quick=0
runs=5
work=${OVDIFF_COMPARE_DIR:-/tmp/ovdiff-compare}
out=""
do_strace=1
report_only=0
build=1
trees_only=0
peers_only=0
change_by=upper
containerd_plugin=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --runs) runs=$2; shift ;;
    --work) work=$2; shift ;;
    --out) out=$2; shift ;;
    --no-strace) do_strace=0 ;;
    --report-only) report_only=1 ;;
    --no-build) build=0 ;;
    --trees-only) trees_only=1 ;;
    --peers-only) peers_only=1 ;;
    --change-by) change_by=$2; shift ;;
    --containerd) containerd_plugin=1 ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$change_by" in
upper | steps) ;;
*) echo "compare.sh: --change-by is upper or steps, not $change_by" >&2; exit 2 ;;
esac
if [ "$runs" -lt 1 ]; then
    echo "compare.sh: --runs must be at least 1" >&2
    exit 2
fi

if [ "$quick" = 1 ]; then
    bases=(2000 5000 10000)      # nested: each larger base contains the smaller one
    fixed_steps=100              # the fixed upperdir of the base-size curve
    data_bytes=$((32 << 20))
    work=$work/quick
    : "${out:=$work/results}"
else
    bases=(10000 100000 300000)
    fixed_steps=1000
    data_bytes=$((1 << 30))
    : "${out:=$here}"
fi
pcts=(0.1 1 10)
headline_base=${bases[1]}       # the issue's targets are stated for 100k base, 1% change
headline_pct=1
mkdir -p "$work" "$out"
raw=$work/raw
mkdir -p "$raw"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: the scenarios are made through kernel overlay mounts"

# --- tools -------------------------------------------------------------------------------
need_pkgs=()
command -v go >/dev/null || need_pkgs+=(golang-go)
[ -d /usr/share/gocode/src/github.com/containerd/containerd/archive ] ||
    need_pkgs+=(golang-github-containerd-containerd-dev)
[ -x /usr/bin/time ] || need_pkgs+=(time)
command -v strace >/dev/null || need_pkgs+=(strace)
command -v gnuplot >/dev/null || need_pkgs+=(gnuplot-nox)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    # A fresh machine may have no package lists yet; wait for a dpkg lock someone else holds.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        "${need_pkgs[@]}" >&2
fi

target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
ovdiff=$work/bin/ovdiff # a private copy: others may rebuild target/ while this runs
gen=$target/release/examples/compare-scenario
ctrd=$work/bin/containerd-writediff
# shellcheck source=benches/compare-peers.sh
. "$here/compare-peers.sh"
if [ "$report_only" = 0 ]; then
    if [ "$build" = 1 ]; then
        log "building ovdiff and the scenario generator (release)"
        (cd "$repo" && cargo build --release --quiet -p ovdiff-cli --bin ovdiff &&
            cargo build --release --quiet --example compare-scenario)
    fi
    [ -x "$target/release/ovdiff" ] && [ -x "$gen" ] ||
        die "missing $target/release/ovdiff or $gen (run without --no-build)"
    mkdir -p "$work/bin"
    cp "$target/release/ovdiff" "$ovdiff.new" && mv "$ovdiff.new" "$ovdiff"
fi
if [ "$report_only" = 0 ] && [ "$trees_only" = 0 ]; then
    log "building the containerd WriteDiff program (GOPATH mode)"
    mkdir -p "$work/bin" "$work/gopath"
    (cd "$here/containerd-writediff" &&
        GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/go-cache" GOFLAGS= \
            go build -o "$ctrd" .)
    peers_build
fi

# --- scenarios ---------------------------------------------------------------------------
# Each generated tree is cached; "$dir.done" marks a complete one and holds the generator's
# arguments, so a tree made with other arguments (another change definition) is remade.
gen_secs=0
cached() { # DIR COMMAND ARGS…: runs COMMAND ARGS unless DIR is complete with the same ARGS
    local dir=$1 t0 secs
    shift
    local spec="${*:2}"
    if [ -e "$dir.done" ]; then
        [ "$(cat "$dir.done")" = "$spec" ] && return 0
        [ "$report_only" = 0 ] || die "--report-only: $dir was made with other arguments"
        log "$dir was made with other arguments ($(cat "$dir.done")): remaking it"
        rm -f "$dir.done"
    fi
    [ "$report_only" = 0 ] || die "--report-only: $dir was never generated"
    if [ -e "$dir" ]; then
        # A half-made scenario may still hold a stale overlay mount below it.
        { grep -F " $dir/" /proc/mounts || true; } | awk '{ print $2 }' | while read -r m; do umount -l "$m"; done
        rm -rf "$dir"
    fi
    log "generating $dir"
    t0=${EPOCHREALTIME/./}
    "$@" >&2
    secs=$(((${EPOCHREALTIME/./} - t0) / 1000000))
    gen_secs=$((gen_secs + secs))
    log "generated $dir in $((secs / 60)) min $((secs % 60)) s"
    printf '%s\n' "$spec" >"$dir.done"
}

base_dir() { echo "$work/base-$1"; }
prev=""
for i in "${!bases[@]}"; do
    n=${bases[$i]}
    if [ "$peers_only" = 1 ] && [ "$n" -gt "$headline_base" ]; then break; fi
    if [ -z "$prev" ]; then
        cached "$(base_dir "$n")" "$gen" base "$(base_dir "$n")" --files "$n" --seed 1
    else
        cached "$(base_dir "$n")" "$gen" base "$(base_dir "$n")" --files $((n - prev)) \
            --seed $((i + 1)) --grow-from "$(base_dir "$prev")"
    fi
    prev=$n
done

# Scenario list. A change of N% is, by default, an upperdir holding N% of the base's entry
# count (±10%, calibrated by compare-scenario); with --change-by steps, N% × base files
# mutation steps, whatever upperdir they make (named steps-*).
sp=s
[ "$change_by" = steps ] && sp=steps
scenarios=()
seed=100
for n in "${bases[@]}"; do
    for p in "${pcts[@]}"; do
        s=$work/$sp-$n-$p
        if [ "$peers_only" = 1 ] && [ "$sp-$n-$p" != "$sp-$headline_base-$headline_pct" ]; then
            seed=$((seed + 1)) # the same seeds as a full run, so the trees are shared
            continue
        fi
        if [ "$change_by" = upper ]; then
            cached "$s" "$gen" mutate "$(base_dir "$n")" "$s" --percent "$p" --seed $((seed++))
        else
            steps=$(awk -v n="$n" -v p="$p" 'BEGIN { s = int(n * p / 100 + 0.5); print (s < 1 ? 1 : s) }')
            cached "$s" "$gen" mutate "$(base_dir "$n")" "$s" --count "$steps" --seed $((seed++))
        fi
        scenarios+=("$sp-$n-$p")
    done
done
# The base-size curve: one change, planned on the smallest base, laid over every base.
for n in "${bases[@]}"; do
    if [ "$peers_only" = 1 ]; then break; fi
    s=$work/fixed-$n
    cached "$s" "$gen" mutate "$(base_dir "$n")" "$s" --count "$fixed_steps" --seed 7 \
        --plan-from "$(base_dir "${bases[0]}")"
done
# Data-heavy: about data_bytes of new files written through the overlay.
cached "$work/data" "$gen" data "$(base_dir "${bases[0]}")" "$work/data" --bytes "$data_bytes" --seed 5
scenarios+=(data)
peers_scenarios
[ "$gen_secs" -gt 0 ] && log "tree generation took $((gen_secs / 60)) min $((gen_secs % 60)) s"

scen_base() { # NAME -> base dir
    case "$1" in
    data | cdata) base_dir "${bases[0]}" ;;
    fixed-*) base_dir "${1#fixed-}" ;;
    s-* | steps-*) local x=${1#*-}; base_dir "${x%-*}" ;;
    esac
}

if [ "$trees_only" = 1 ]; then
    for scen in "${scenarios[@]}" fixed-"${bases[0]}"; do
        b=$(find "$(scen_base "$scen")" -mindepth 1 | wc -l)
        u=$(find "$work/$scen/upper" -mindepth 1 | wc -l)
        log "$scen: base $b entries, upperdir $u entries ($(awk -v u="$u" -v b="$b" 'BEGIN { printf "%.2f", u * 100 / b }')% of the base), $(du -sb "$work/$scen/upper" | cut -f1) bytes"
    done
    log "trees ready in $work ($(du -sh "$work" | cut -f1))"
    exit 0
fi

# --- measuring ---------------------------------------------------------------------------
# One command line per method; every method writes its tar (or bytes) into a pipe read by cat,
# as `tar -cf - | cat` does, so all pay the same pipe.
method_cmd() { # METHOD SCENARIO
    local s=$work/$2 b
    b=$(scen_base "$2")
    case "$1" in
    overlay) echo "'$ovdiff' diff --differ overlay --upper '$s/upper' --base '$b' 2>/dev/null | cat >/dev/null" ;;
    overlay-nodigest) echo "'$ovdiff' diff --differ overlay --no-digest --upper '$s/upper' --base '$b' 2>/dev/null | cat >/dev/null" ;;
    naive) echo "'$ovdiff' diff --differ naive --base '$b' --tree '$s/merged' 2>/dev/null | cat >/dev/null" ;;
    containerd) echo "'$ctrd' '$b' '$s/merged' | cat >/dev/null" ;;
    gnutar) echo "tar -C '$s/upper' -cf - . 2>/dev/null | cat >/dev/null" ;;
    floor) echo "find '$s/upper' -type f -print0 | xargs -0 -r cat >/dev/null" ;;
    *) peers_cmd "$1" "$2" ;;
    esac
}
all_methods=(overlay naive containerd gnutar floor)
# --no-digest (no sha256 diffID, zero-copy splice of file data) is newer than this script.
nodigest=0
nodigest_why=""
if [ "$report_only" = 0 ]; then
    if "$ovdiff" diff --help 2>&1 | grep -q -e '--no-digest'; then
        nodigest=1
    else
        nodigest_why="this ovdiff's \`diff --help\` has no --no-digest"
        log "skipping the overlay --no-digest column: $nodigest_why"
    fi
fi
[ "$nodigest" = 1 ] && all_methods=(overlay overlay-nodigest naive containerd gnutar floor)

TIMEFORMAT='%3U %3S'
# Runs a command line once; prints "wall_us cpu_ms".
run_once() {
    local t0 t1 tf=$work/.time
    t0=${EPOCHREALTIME/./}
    if ! { time eval "set -o pipefail; $1" 2>/dev/null; } 2>"$tf"; then
        echo "compare.sh: command failed: $1" >&2
        eval "$1" >/dev/null || true
        return 1
    fi
    t1=${EPOCHREALTIME/./}
    awk -v w=$((t1 - t0)) '{ printf "%d %.0f\n", w, ($1 + $2) * 1000 }' "$tf"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Peak RSS (KiB) of the largest process of a command line, from GNU time -v.
peak_rss() {
    local f=$work/.rss
    /usr/bin/time -v -o "$f" bash -c "set -o pipefail; $1" >/dev/null 2>&1 || return 1
    awk -F': ' '/Maximum resident set size/ { print $2 }' "$f"
}

# Syscalls made by one ovdiff run (all threads), from strace -c -f.
syscalls() { # SCENARIO METHOD
    local s=$work/$1 b f=$work/.strace
    b=$(scen_base "$1")
    case "$2" in
    overlay) strace -c -f -o "$f" "$ovdiff" diff --differ overlay --upper "$s/upper" --base "$b" >/dev/null 2>&1 ;;
    naive) strace -c -f -o "$f" "$ovdiff" diff --differ naive --base "$b" --tree "$s/merged" >/dev/null 2>&1 ;;
    esac
    awk '$NF == "total" { print $4 }' "$f"
}

# Measures SCENARIO:METHOD pairs: one warm-up round, then ROUNDS rounds with the pairs
# interleaved (so a burst of load on the shared machine hits all of them alike).
# Appends "scenario method wall_ms cpu_ms rss_kib" to $raw/times.tsv.
measure_pairs() { # ROUNDS SCENARIO:METHOD…
    local rounds=$1 p r w c
    shift
    local -A walls cpus
    for p in "$@"; do run_once "$(method_cmd "${p#*:}" "${p%%:*}")" >/dev/null; done
    for ((r = 0; r < rounds; r++)); do
        for p in "$@"; do
            read -r w c < <(run_once "$(method_cmd "${p#*:}" "${p%%:*}")")
            [ -n "${w:-}" ] || die "$p: a timed run failed"
            walls[$p]+="$w "
            cpus[$p]+="$c "
        done
    done
    for p in "$@"; do
        local wm cm rss
        wm=$(tr ' ' '\n' <<<"${walls[$p]}" | grep . | median)
        cm=$(tr ' ' '\n' <<<"${cpus[$p]}" | grep . | median)
        rss=$(peak_rss "$(method_cmd "${p#*:}" "${p%%:*}")")
        printf '%s\t%s\t%.3f\t%s\t%s\n' "${p%%:*}" "${p#*:}" "$(awk -v w="$wm" 'BEGIN { print w / 1000 }')" \
            "$cm" "$rss" >>"$raw/times.tsv"
        log "  ${p%%:*} ${p#*:}: $(awk -v w="$wm" 'BEGIN { printf "%.1f", w / 1000 }') ms wall, $cm ms cpu, $rss KiB"
    done
}

measure() { # SCENARIO METHOD…: all methods of one scenario, `runs` rounds
    local scen=$1 m pairs=()
    shift
    for m in "$@"; do pairs+=("$scen:$m"); done
    measure_pairs "$runs" "${pairs[@]}"
}

if [ "$report_only" = 1 ]; then
    [ -e "$raw/run.env" ] || die "--report-only: no complete run in $work"
    # shellcheck disable=SC1091
    . "$raw/run.env"
    [ "$nodigest" = 1 ] && all_methods=(overlay overlay-nodigest naive containerd gnutar floor)
else
    start_load=$(cut -d' ' -f1-3 /proc/loadavg)
    started=$(date +%s)
    stamp=$(date -u '+%Y-%m-%d %H:%M UTC')
    rm -f "$raw/run.env"
    : >"$raw/times.tsv"
    : >"$raw/facts.tsv"
    : >"$raw/compare.txt"

    for scen in "${scenarios[@]}"; do
        if [ "$peers_only" = 1 ]; then break; fi
        s=$work/$scen
        entries=$(find "$s/upper" -mindepth 1 | wc -l)
        upper_bytes=$(du -sb "$s/upper" | cut -f1)
        base_entries=$(find "$(scen_base "$scen")" -mindepth 1 | wc -l)
        log "$scen: base $base_entries entries, upperdir $entries entries, $upper_bytes bytes"

        # Bytes: containerd's WriteDiff against ovdiff's naive differ on the same (base, merged).
        "$ovdiff" diff --differ naive --base "$(scen_base "$scen")" --tree "$s/merged" -o "$work/.naive.tar" 2>/dev/null
        layer_bytes=$(stat -c %s "$work/.naive.tar")
        naive_sum=$(sha256sum <"$work/.naive.tar" | cut -d' ' -f1)
        overlay_sum=$("$ovdiff" diff --differ overlay --upper "$s/upper" --base "$(scen_base "$scen")" 2>/dev/null | sha256sum | cut -d' ' -f1)
        same_overlay=$([ "$naive_sum" = "$overlay_sum" ] && echo yes || echo no)
        same_nodigest=""
        if [ "$nodigest" = 1 ]; then
            nd_sum=$("$ovdiff" diff --differ overlay --no-digest --upper "$s/upper" --base "$(scen_base "$scen")" 2>/dev/null | sha256sum | cut -d' ' -f1)
            same_nodigest=$([ "$naive_sum" = "$nd_sum" ] && echo yes || echo no)
        fi
        {
            echo "== $scen"
            set +e
            "$ctrd" -compare "$work/.naive.tar" "$(scen_base "$scen")" "$s/merged"
            rc=$?
            set -e
        } >>"$raw/compare.txt" 2>&1
        case $rc in
        0) bytes_vs_ctrd="identical (whiteout clock pinned)" ;;
        1) bytes_vs_ctrd="DIFFERENT" ;;
        *) bytes_vs_ctrd="error (see raw/compare.txt)" ;;
        esac
        rm -f "$work/.naive.tar"
        log "  containerd vs ovdiff naive: $bytes_vs_ctrd; overlay tar == naive tar: $same_overlay${same_nodigest:+; --no-digest tar == naive tar: $same_nodigest}"

        sc_overlay="" sc_naive=""
        if [ "$do_strace" = 1 ] && { [ "$quick" = 1 ] || [[ $scen == *-$headline_pct ]] || [ "$scen" = data ]; }; then
            sc_overlay=$(syscalls "$scen" overlay)
            sc_naive=$(syscalls "$scen" naive)
            log "  syscalls: overlay $sc_overlay, naive $sc_naive"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$base_entries" "$entries" "$upper_bytes" \
            "$layer_bytes" "$bytes_vs_ctrd" "$same_overlay" "$sc_overlay" "$sc_naive" "$same_nodigest" >>"$raw/facts.tsv"

        measure "$scen" "${all_methods[@]}"
    done

    for n in "${bases[@]}"; do
        if [ "$peers_only" = 1 ]; then break; fi
        scen=fixed-$n
        entries=$(find "$work/$scen/upper" -mindepth 1 | wc -l)
        base_entries=$(find "$(base_dir "$n")" -mindepth 1 | wc -l)
        log "$scen: base $base_entries entries, upperdir $entries entries"
        printf '%s\t%s\t%s\t\t\t\t\t\t\t\n' "$scen" "$base_entries" "$entries" >>"$raw/facts.tsv"
        measure "$scen" naive containerd
    done
    # The flatness target compares these three: interleave them with each other, not with the
    # multi-second walks, and take three times the runs (they are cheap).
    fixed_pairs=()
    for n in "${bases[@]}"; do fixed_pairs+=("fixed-$n:overlay"); done
    if [ "$peers_only" = 0 ]; then
        log "same change over growing bases: overlay differ, $((runs * 3)) interleaved rounds"
        measure_pairs $((runs * 3)) "${fixed_pairs[@]}"
    fi
    peers_measure
    end_load=$(cut -d' ' -f1-3 /proc/loadavg)
    elapsed=$(($(date +%s) - started))
    printf 'start_load=%q\nend_load=%q\nelapsed=%q\nstamp=%q\nruns=%q\nnodigest=%q\nnodigest_why=%q\n' \
        "$start_load" "$end_load" "$elapsed" "$stamp" "$runs" "$nodigest" "$nodigest_why" >"$raw/run.env"
fi

# --- report ------------------------------------------------------------------------------
get() { # SCENARIO METHOD FIELD(3 wall, 4 cpu, 5 rss)
    awk -F'\t' -v s="$1" -v m="$2" -v f="$3" '$1 == s && $2 == m { print $f }' "$raw/times.tsv"
}
fact() { # SCENARIO FIELD
    awk -F'\t' -v s="$1" -v f="$2" '$1 == s { print $f }' "$raw/facts.tsv"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }
ms() { awk -v v="$1" 'BEGIN { if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else printf "%.2f", v }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
human_n() { awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%.1fM", n / 1e6; else if (n >= 1e3) printf "%.0fk", n / 1e3; else print n }'; }
method_name() {
    case "$1" in
    overlay-nodigest) echo "overlay --no-digest" ;;
    gnutar) echo "GNU tar" ;;
    floor) echo "floor" ;;
    *) echo "$1" ;;
    esac
}
verdict() { awk -v c="$1" 'BEGIN { print (c ? "**met**" : "**not met**") }'; }

cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
fs_type=$(df -PT "$work" | awk 'NR == 2 { print $2 }')
fs_dev=$(df -PT "$work" | awk 'NR == 2 { print $1 }')
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$repo" && git status --porcelain 2>/dev/null | grep -q . && echo " (+ uncommitted changes)" || true)
ctrd_ver=$(dpkg-query -W -f '${Version}' golang-github-containerd-containerd-dev 2>/dev/null || echo unknown)
cont_ver=$(dpkg-query -W -f '${Version}' golang-github-containerd-continuity-dev 2>/dev/null || echo unknown)
go_ver=$(go version | awk '{ print $3 }')

hs=$sp-$headline_base-$headline_pct
o=$(get "$hs" overlay 3) n=$(get "$hs" naive 3) c=$(get "$hs" containerd 3)
r_naive=$(ratio "$n" "$o")
r_ctrd=$(ratio "$c" "$o")
f_lo=$(get "fixed-${bases[0]}" overlay 3) f_hi=$(get "fixed-${bases[2]}" overlay 3)
r_flat=$(awk -v a="$f_hi" -v b="$f_lo" 'BEGIN { printf "%.2f", a / b }')
d_o=$(get data overlay 3) d_f=$(get data floor 3)
r_data=$(awk -v f="$d_f" -v o="$d_o" 'BEGIN { printf "%.2f", f / o }')
d_nd=$(get data overlay-nodigest 3)
r_data_nd=$(awk -v f="$d_f" -v o="${d_nd:-0}" 'BEGIN { if (o > 0) printf "%.2f", f / o; else print "n/a" }')
rss_big=0
for p in "${pcts[@]}"; do
    v=$(get "$sp-${bases[2]}-$p" overlay 5)
    [ "${v:-0}" -gt "$rss_big" ] && rss_big=$v
done

if [ "$containerd_plugin" = 1 ] && [ "$report_only" = 0 ] && [ "$trees_only" = 0 ]; then
    log "ctr snapshots diff through ovdiff-containerd vs containerd's walking differ ($hs)"
    "$here/containerd-plugin.sh" --base "$(base_dir "$headline_base")" --upper "$work/$hs/upper" \
        --runs "$runs" --work "$work/containerd-plugin" --out "$raw/containerd-plugin.md" >&2
fi

report=$out/results.md
plot=$out/compare-scaling.png
if [ "$peers_only" = 1 ]; then
    {
        echo "# ovdiff and its peers"
        echo
        echo "Produced by \`benches/compare.sh$([ "$quick" = 1 ] && echo " --quick") --peers-only\` on $stamp, $(nproc) × $cpu_model,"
        echo "load $start_load at start, $end_load at end; ovdiff commit $commit$dirty."
        peers_report
    } >"$report"
    log "wrote $report in $((elapsed / 60)) min $((elapsed % 60)) s"
    cat "$report"
    exit 0
fi
{
    echo "# ovdiff side by side"
    echo
    echo "Produced by \`benches/compare.sh$([ "$quick" = 1 ] && echo " --quick")\` on $stamp."
    [ "$quick" = 1 ] && echo "**Quick smoke-test sizes: these numbers are not the ones the targets are stated for.**"
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPU | $(nproc) × $cpu_model |"
    echo "| memory | $mem |"
    echo "| kernel | $(uname -r) |"
    echo "| filesystem (trees) | $fs_type on $fs_dev |"
    echo "| load average (1/5/15 min) | $start_load at start, $end_load at end |"
    echo "| ovdiff | $($ovdiff --version | awk '{ print $2 }'), commit $commit$dirty |"
    echo "| containerd | Debian golang-github-containerd-containerd-dev $ctrd_ver (continuity $cont_ver), $go_ver |"
    echo "| GNU tar | $(tar --version | awk 'NR == 1 { print $4 }') |"
    echo "| method | warm cache, median of $runs runs after one warm-up (overlay over growing bases: $((runs * 3))), methods interleaved; run took $((elapsed / 60)) min |"
    echo
    echo "## Targets (base $(human_n "$headline_base") files, $headline_pct% change unless stated)"
    echo
    echo "| target | measured | |"
    echo "|---|---|---|"
    echo "| overlay ≥ 50× naive, end to end | $r_naive× ($(ms "$o") ms vs $(ms "$n") ms) | $(verdict "$(awk -v r="$r_naive" 'BEGIN { print (r >= 50) }')") |"
    echo "| overlay ≥ 100× containerd WriteDiff, end to end | $r_ctrd× ($(ms "$o") ms vs $(ms "$c") ms) | $(verdict "$(awk -v r="$r_ctrd" 'BEGIN { print (r >= 100) }')") |"
    echo "| overlay flat (≤ 1.3×) from $(human_n "${bases[0]}") to $(human_n "${bases[2]}") base files, same change | ${r_flat}× ($(ms "$f_lo") → $(ms "$f_hi") ms) | $(verdict "$(awk -v r="$r_flat" 'BEGIN { print (r <= 1.3) }')") |"
    echo "| data-heavy ($(mib $(($(fact data 4) / 1024))) MiB upperdir): overlay (default: with sha256 diffID) ≥ 0.9× the read floor | ${r_data}× ($(ms "$d_o") ms vs floor $(ms "$d_f") ms) | $(verdict "$(awk -v r="$r_data" 'BEGIN { print (r >= 0.9) }')") |"
    if [ "$nodigest" = 1 ]; then
        echo "| data-heavy: overlay \`--no-digest\` (no diffID, splice) ≥ 0.9× the read floor | ${r_data_nd}× ($(ms "$d_nd") ms vs floor $(ms "$d_f") ms) | $(verdict "$(awk -v r="$r_data_nd" 'BEGIN { print (r >= 0.9) }')") |"
    else
        echo "| data-heavy: overlay \`--no-digest\` (no diffID, splice) ≥ 0.9× the read floor | not measured: $nodigest_why | |"
    fi
    echo "| peak RSS ≤ 64 MiB, $(human_n "${bases[2]}") base (max over its scenarios) | $(mib "$rss_big") MiB | $(verdict "$(awk -v k="$rss_big" 'BEGIN { print (k <= 65536) }')") |"
    echo
    echo "- End to end: each tool as its own process writing its tar into a pipe. ovdiff also"
    echo "  computes the layer's sha256 diffID inline (one sequential hash of every tar byte);"
    echo "  containerd's WriteDiff, GNU tar and the read floor hash nothing. The ratio targets"
    echo "  are measured on that default path (with the diffID)."
    [ "$nodigest" = 1 ] && echo "- \`overlay --no-digest\`: the same differ without the diffID, copying file data into the pipe with splice (zero-copy)."
    if [ "$sp" = s ]; then
        echo "- A change of N% is an upperdir holding N% of the base's entry count (±10%; entries"
        echo "  below the upperdir's root, whiteouts and copied-up parents included), made by seeded"
        echo "  batches of mutation steps through a kernel overlay until the count is reached."
    else
        echo "- A change of N% is N% of the base's entry count as mutation steps through the overlay;"
        echo "  copied-up parents and compound steps make the upperdir larger than that (entries below)."
    fi
    echo
    echo "## Wall time, median (ms)"
    echo
    echo "Ratios: how many times longer the other tool takes than \`ovdiff diff --differ overlay\`."
    echo
    nd_head="" nd_rule=""
    [ "$nodigest" = 1 ] && nd_head=" overlay --no-digest |" nd_rule="---:|"
    echo "| scenario | base entries | upperdir entries | upperdir % of base | overlay |$nd_head naive | containerd | GNU tar | read floor | naive/overlay | containerd/overlay | tar/overlay | floor/overlay |"
    echo "|---|---:|---:|---:|---:|$nd_rule---:|---:|---:|---:|---:|---:|---:|---:|"
    for scen in "${scenarios[@]}"; do
        o=$(get "$scen" overlay 3)
        label=$scen
        [ "$scen" = data ] && label="data-heavy"
        [[ $scen == "$sp"-* ]] && label="$(human_n "$(cut -d- -f2 <<<"$scen")") base, $(cut -d- -f3 <<<"$scen")%"
        nd_cell=""
        [ "$nodigest" = 1 ] && nd_cell=" $(ms "$(get "$scen" overlay-nodigest 3)") |"
        printf '| %s | %s | %s | %s | %s |%s %s | %s | %s | %s | %s× | %s× | %s× | %s× |\n' "$label" \
            "$(fact "$scen" 2)" "$(fact "$scen" 3)" \
            "$(awk -v u="$(fact "$scen" 3)" -v b="$(fact "$scen" 2)" 'BEGIN { printf "%.2f%%", u * 100 / b }')" \
            "$(ms "$o")" "$nd_cell" "$(ms "$(get "$scen" naive 3)")" \
            "$(ms "$(get "$scen" containerd 3)")" "$(ms "$(get "$scen" gnutar 3)")" "$(ms "$(get "$scen" floor 3)")" \
            "$(ratio "$(get "$scen" naive 3)" "$o")" "$(ratio "$(get "$scen" containerd 3)" "$o")" \
            "$(ratio "$(get "$scen" gnutar 3)" "$o")" "$(ratio "$(get "$scen" floor 3)" "$o")"
    done
    echo
    echo "## CPU time (user + sys, ms, median) and peak RSS (MiB, largest process)"
    echo
    rss_methods=(overlay naive containerd gnutar)
    [ "$nodigest" = 1 ] && rss_methods=(overlay overlay-nodigest naive containerd gnutar)
    printf '| scenario |'
    for m in "${all_methods[@]}"; do printf ' %s CPU |' "$(method_name "$m")"; done
    for m in "${rss_methods[@]}"; do printf ' %s RSS |' "$(method_name "$m")"; done
    printf '\n|---|'
    for m in "${all_methods[@]}" "${rss_methods[@]}"; do printf -- '---:|'; done
    echo
    for scen in "${scenarios[@]}"; do
        printf '| %s |' "$scen"
        for m in "${all_methods[@]}"; do printf ' %s |' "$(get "$scen" "$m" 4)"; done
        for m in "${rss_methods[@]}"; do printf ' %s |' "$(mib "$(get "$scen" "$m" 5)")"; done
        echo
    done
    echo
    echo "## Syscalls per upperdir entry (\`strace -c -f\`, one run, all threads)"
    echo
    echo "| scenario | upperdir entries | overlay syscalls | per entry | naive syscalls | per entry | naive/overlay |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for scen in "${scenarios[@]}"; do
        so=$(fact "$scen" 8) sn=$(fact "$scen" 9) e=$(fact "$scen" 3)
        [ -n "$so" ] || continue
        printf '| %s | %s | %s | %s | %s | %s | %s× |\n' "$scen" "$e" "$so" "$(ratio "$so" "$e")" "$sn" \
            "$(ratio "$sn" "$e")" "$(ratio "$sn" "$so")"
    done
    echo
    echo "## Same change, growing base (time vs base size)"
    echo
    echo "| base entries | upperdir entries | overlay ms | naive ms | containerd ms |"
    echo "|---:|---:|---:|---:|---:|"
    for n in "${bases[@]}"; do
        printf '| %s | %s | %s | %s | %s |\n' "$(fact "fixed-$n" 2)" "$(fact "fixed-$n" 3)" \
            "$(ms "$(get "fixed-$n" overlay 3)")" "$(ms "$(get "fixed-$n" naive 3)")" "$(ms "$(get "fixed-$n" containerd 3)")"
    done
    echo
    echo "![scaling curves]($(basename "$plot"))"
    echo
    echo "## Layer bytes: containerd's WriteDiff vs \`ovdiff diff --differ naive\`"
    echo
    echo "Same (base, merged) pair. containerd stamps every whiteout with \`time.Now()\` (taken when"
    echo "its change writer is created); ovdiff writes whiteouts with mtime 0 so layers are"
    echo "reproducible. So the program compares twice: as written (differs only in whiteout mtimes"
    echo "when there are whiteouts) and with containerd's whiteout clock pinned to the epoch (must be"
    echo "byte-identical). Details per scenario: \`raw/compare.txt\` in the work dir."
    echo
    nd_head="" nd_rule=""
    [ "$nodigest" = 1 ] && nd_head=" overlay --no-digest tar == naive tar |" nd_rule="---|"
    echo "| scenario | layer bytes | containerd vs ovdiff naive | as written | ovdiff overlay tar == naive tar |$nd_head"
    echo "|---|---:|---|---|---|$nd_rule"
    for scen in "${scenarios[@]}"; do
        aswritten=$(awk -v s="== $scen" '$0 == s { on = 1; next } /^== / { on = 0 } on && /members differ/ { print $1 " members differ, " $4 " of them only in a whiteout mtime"; exit }' "$raw/compare.txt")
        grep -A3 -x "== $scen" "$raw/compare.txt" | grep -q "as written.*byte-identical" && aswritten="identical"
        nd_cell=""
        [ "$nodigest" = 1 ] && nd_cell=" $(fact "$scen" 10) |"
        printf '| %s | %s | %s | %s | %s |%s\n' "$scen" "$(fact "$scen" 5)" "$(fact "$scen" 6)" "${aswritten:-?}" "$(fact "$scen" 7)" "$nd_cell"
    done
    if [ -s "$raw/containerd-plugin.md" ]; then
        echo
        echo "## Through containerd: ovdiff-containerd (\`--containerd\`)"
        echo
        cat "$raw/containerd-plugin.md"
    fi
    peers_report
} >"$report"

# --- plot --------------------------------------------------------------------------------
for n in "${bases[@]}"; do
    printf '%s %s %s %s\n' "$(fact "fixed-$n" 2)" "$(get "fixed-$n" overlay 3)" "$(get "fixed-$n" naive 3)" \
        "$(get "fixed-$n" containerd 3)"
done >"$raw/base-curve.dat"
for n in "${bases[@]}"; do
    for p in "${pcts[@]}"; do
        printf '%s %s %s %s %s\n' "$(fact "$sp-$n-$p" 3)" "$(get "$sp-$n-$p" overlay 3)" "$(get "$sp-$n-$p" gnutar 3)" \
            "$(get "$sp-$n-$p" naive 3)" "$(get "$sp-$n-$p" containerd 3)"
    done >"$raw/upper-curve-$n.dat"
done
{
    echo "set terminal pngcairo size 1200,500 font 'sans,10'"
    echo "set output '$plot'"
    echo "set multiplot layout 1,2 title 'ovdiff vs naive walk, containerd WriteDiff, GNU tar ($(nproc) cores, warm cache, median of $runs)'"
    echo "set logscale xy; set grid; set key top left; set ylabel 'wall time (ms)'"
    echo "set title 'Same upperdir ($(fact "fixed-${bases[0]}" 3) entries), growing base'"
    echo "set xlabel 'base entries'"
    echo "plot '$raw/base-curve.dat' u 1:2 w lp lw 2 t 'ovdiff overlay', '' u 1:3 w lp t 'ovdiff naive', '' u 1:4 w lp t 'containerd WriteDiff'"
    echo "set title 'Growing upperdir (0.1%, 1%, 10% change)'"
    echo "set xlabel 'upperdir entries'"
    echo -n "plot "
    sep=""
    for i in "${!bases[@]}"; do
        n=${bases[$i]}
        echo -n "$sep'$raw/upper-curve-$n.dat' u 1:2 w lp lw 2 lc $((i + 1)) t 'ovdiff overlay, base $(human_n "$n")', '' u 1:3 w lp dt 2 lc $((i + 1)) t 'GNU tar, base $(human_n "$n")'"
        sep=", "
    done
    echo
    echo "unset multiplot"
} >"$raw/plot.gp"
gnuplot "$raw/plot.gp"

log "wrote $report and $plot in $((elapsed / 60)) min $((elapsed % 60)) s"
cat "$report"
