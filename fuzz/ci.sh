#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time from the committed seeds.
#
#   fuzz/ci.sh                      # all targets, 60 s each
#   FUZZ_SECONDS=300 fuzz/ci.sh     # longer
#   fuzz/ci.sh apply_hostile        # some targets only
#   FUZZ_BUILD_ONLY=1 fuzz/ci.sh    # build (the normal-CI check), no runs
#
# A crash, leak, timeout or OOM fails the script: it prints the artifact as a hexdump and the
# command that reproduces it, and exits non-zero. Coverage found during the run goes to
# fuzz/corpus/<target>/ (gitignored); the seeds in fuzz/seeds/<target>/ are read, never written.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

seconds="${FUZZ_SECONDS:-60}"
build_only="${FUZZ_BUILD_ONLY:-0}"
# libFuzzer flags shared by every run; per-target ones (dictionary, max_len) are added below.
common_flags=(-timeout=20 -rss_limit_mb=3072 -print_final_stats=1)

say() { printf '\n==> %s\n' "$*" >&2; }
run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

# cargo-fuzz needs nightly (-Z sanitizer flags). Prefer a rustup nightly; otherwise let a stable
# toolchain accept the nightly flags.
if [[ ! -x "$(command -v cargo-fuzz || true)" ]] && ! cargo fuzz --version >/dev/null 2>&1; then
    say "cargo-fuzz is missing: installing it"
    run cargo install cargo-fuzz --locked
fi
if cargo +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    say "no nightly toolchain: using RUSTC_BOOTSTRAP=1 with the default one"
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no fuzz targets found" >&2
    exit 1
fi

say "building ${targets[*]}"
for t in "${targets[@]}"; do
    run "${fuzz[@]}" build "$t"
done
if [[ "$build_only" == 1 ]]; then
    say "build only: done"
    exit 0
fi

# Per-target libFuzzer flags.
target_flags() {
    local t="$1" flags=()
    if [[ -f "dicts/$t.dict" ]]; then
        flags+=("-dict=dicts/$t.dict")
    fi
    case "$t" in
        apply_hostile) flags+=(-max_len=65536) ;;
        # Its seeds are GNU tar archives of every format, sparse ones up to 23 KB.
        tar_reader_parity) flags+=(-max_len=32768) ;;
        mount_options) flags+=(-max_len=4096) ;;
        # These start worker threads (read-ahead, the parallel walker) whose thread-local
        # destructor records LeakSanitizer reports as leaked when a run ends while a worker is
        # still exiting: noise, not a leak of ours.
        writer_roundtrip | overlay_vs_naive) flags+=(-max_len=8192 -detect_leaks=0) ;;
        *) flags+=(-max_len=8192) ;;
    esac
    printf '%s\n' "${flags[@]}"
}

failed=()
for t in "${targets[@]}"; do
    corpus="corpus/$t"
    artifacts="artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    if [[ -d "seeds/$t" ]]; then
        seeds=("seeds/$t")
    fi
    mapfile -t extra < <(target_flags "$t")
    log="$artifacts/run.log"
    say "fuzzing $t for ${seconds}s (log: fuzz/$log)"
    # Artifacts the previous run left would be mistaken for this run's.
    find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) -delete
    set +e
    run "${fuzz[@]}" run "$t" "$corpus" "${seeds[@]}" -- \
        "-max_total_time=$seconds" "${common_flags[@]}" "${extra[@]}" 2>&1 | tee "$log" | grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|==[0-9]+==|thread .* panicked|SUMMARY)' >&2
    status=${PIPESTATUS[0]}
    set -e
    mapfile -t found < <(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
    if [[ $status -ne 0 || ${#found[@]} -gt 0 ]]; then
        failed+=("$t")
        say "$t FAILED (exit $status)"
        grep -A40 -E 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" | head -80 >&2 || true
        for a in "${found[@]}"; do
            say "artifact fuzz/$a ($(wc -c <"$a") bytes)"
            hexdump -C "$a" | head -64 >&2
            echo "reproduce: (cd fuzz && ${fuzz[*]} run $t $a)" >&2
        done
    else
        say "$t ok"
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    say "fuzz targets failed: ${failed[*]}"
    exit 1
fi
say "all fuzz targets ran ${seconds}s without a finding: ${targets[*]}"
