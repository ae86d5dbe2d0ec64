# shellcheck shell=bash
# The peers compare.sh measures ovdiff against besides the walking differs: BuildKit's overlay
# differ, and the compressed pipelines a pushed layer really goes through (ovdiff's gzip and
# zstd, containerd's WriteDiff through Go's compress/gzip, `tar | pigz`, `tar | zstd`), plus
# the sha256 floor of the data-heavy layer. Sourced by compare.sh, which provides run_once,
# median, method_cmd, scen_base, cached, log, die and the variables it sets ($work, $raw,
# $ovdiff, $ctrd, $bases, $scenarios, $runs, $quick, …). Kept in its own file so the main
# table's code stays as it was. See benches/README.md, "Peers", for the method.
#
# Every ratio here is a median of per-round ratios: each round runs the reference (an ovdiff
# method) and its peers back to back, alternating which goes first, and divides their wall
# times, so a burst of load on the shared machine cancels out of the ratio.

bkd=$work/bin/buildkit-differ
gzip_level=6 # pigz's, Go's and ovdiff's default
zstd_level=3 # zstd's and ovdiff's default

peers_build() {
    log "building the BuildKit overlay differ peer (GOPATH mode)"
    (cd "$here/buildkit-differ" &&
        GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/go-cache" GOFLAGS= \
            go build -o "$bkd" .)
    command -v pigz >/dev/null || die "pigz is missing (apt-get install pigz)"
    command -v zstd >/dev/null || die "zstd is missing (apt-get install zstd)"
    command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
}

# The compressed scenario: an eighth of the data-heavy size (128 MiB; 4 MiB with --quick) of
# new files over the smallest base, mixed text and binary content.
peers_scenarios() {
    cached "$work/cdata" "$gen" data "$(base_dir "${bases[0]}")" "$work/cdata" \
        --bytes $((data_bytes / 8)) --seed 6
}

peers_cmd() { # METHOD SCENARIO: the command line of a peer method (as method_cmd)
    local s=$work/$2 b
    b=$(scen_base "$2")
    case "$1" in
    buildkit) echo "'$bkd' '$b' '$s/upper' | cat >/dev/null" ;;
    overlay-gzip) echo "'$ovdiff' diff --differ overlay --compress gzip --level $gzip_level --upper '$s/upper' --base '$b' 2>/dev/null | cat >/dev/null" ;;
    overlay-zstd) echo "'$ovdiff' diff --differ overlay --compress zstd --level $zstd_level --upper '$s/upper' --base '$b' 2>/dev/null | cat >/dev/null" ;;
    containerd-gzip) echo "'$ctrd' -compress gzip '$b' '$s/merged' 2>/dev/null | cat >/dev/null" ;;
    tar-pigz) echo "tar -C '$s/upper' -cf - . 2>/dev/null | pigz -p 2 -$gzip_level | cat >/dev/null" ;;
    tar-zstd) echo "tar -C '$s/upper' -cf - . 2>/dev/null | zstd -q -T2 -$zstd_level | cat >/dev/null" ;;
    sha-floor) echo "openssl dgst -sha256 '$work/.peers-tar' >/dev/null" ;;
    *) die "unknown method $1" ;;
    esac
}

peers_name() {
    case "$1" in
    overlay) echo "ovdiff (diffID)" ;;
    overlay-gzip) echo "ovdiff --compress gzip" ;;
    overlay-zstd) echo "ovdiff --compress zstd" ;;
    buildkit) echo "BuildKit overlay differ" ;;
    containerd-gzip) echo "containerd WriteDiff + compress/gzip" ;;
    gnutar) echo "tar" ;;
    tar-pigz) echo "tar | pigz -p 2 -$gzip_level" ;;
    tar-zstd) echo "tar | zstd -T2 -$zstd_level" ;;
    sha-floor) echo "openssl dgst -sha256 of the finished tar" ;;
    *) echo "$1" ;;
    esac
}

# Measures a reference method and its peers in ROUNDS interleaved rounds (after one warm-up
# each). Appends "scenario ref method ref_ms method_ms ratio method_cpu_ms" per peer to
# $raw/paired.tsv, where ratio is the median of per-round method/ref wall-time ratios and the
# times are the medians of each.
peers_paired() { # ROUNDS SCENARIO REF METHOD…
    local rounds=$1 scen=$2 ref=$3 m r w c
    shift 3
    local -A walls cpus ratios
    for m in "$ref" "$@"; do run_once "$(method_cmd "$m" "$scen")" >/dev/null; done
    for ((r = 0; r < rounds; r++)); do
        local order=("$ref" "$@")
        ((r % 2)) && order=("$@" "$ref")
        local -A this=()
        for m in "${order[@]}"; do
            read -r w c < <(run_once "$(method_cmd "$m" "$scen")")
            [ -n "${w:-}" ] || die "$scen:$m: a timed run failed"
            walls[$m]+="$w "
            cpus[$m]+="$c "
            this[$m]=$w
        done
        for m in "$@"; do
            ratios[$m]+="$(awk -v a="${this[$m]}" -v b="${this[$ref]}" 'BEGIN { printf "%.4f", a / b }') "
        done
    done
    local rw
    rw=$(tr ' ' '\n' <<<"${walls[$ref]}" | grep . | median)
    for m in "$@"; do
        local mw mr mc
        mw=$(tr ' ' '\n' <<<"${walls[$m]}" | grep . | median)
        mr=$(tr ' ' '\n' <<<"${ratios[$m]}" | grep . | median)
        mc=$(tr ' ' '\n' <<<"${cpus[$m]}" | grep . | median)
        printf '%s\t%s\t%s\t%.3f\t%.3f\t%.4f\t%s\n' "$scen" "$ref" "$m" \
            "$(awk -v w="$rw" 'BEGIN { print w / 1000 }')" "$(awk -v w="$mw" 'BEGIN { print w / 1000 }')" \
            "$mr" "$mc" >>"$raw/paired.tsv"
        log "  $scen: $m/$ref = $(awk -v r="$mr" 'BEGIN { printf "%.3f", r }') (median of $rounds paired rounds; $(awk -v w="$mw" 'BEGIN { printf "%.1f", w / 1000 }') vs $(awk -v w="$rw" 'BEGIN { printf "%.1f", w / 1000 }') ms)"
    done
    # The reference's own CPU time, under the pseudo-peer "-".
    printf '%s\t%s\t-\t%.3f\t\t\t%s\n' "$scen" "$ref" "$(awk -v w="$rw" 'BEGIN { print w / 1000 }')" \
        "$(tr ' ' '\n' <<<"${cpus[$ref]}" | grep . | median)" >>"$raw/paired.tsv"
}

sha_of() { sha256sum | cut -d' ' -f1; }

# Byte checks and sizes of one scenario (of its compressed blobs too when COMPRESSED is 1);
# appends "scenario key value" lines to $raw/peers-facts.tsv.
peers_facts() { # SCENARIO COMPRESSED
    local scen=$1 s=$work/$1 b f=$raw/peers-facts.tsv
    b=$(scen_base "$1")
    fact_line() { printf '%s\t%s\t%s\n' "$scen" "$1" "$2" >>"$f"; }
    local tar_sum rc
    "$ovdiff" diff --differ overlay --upper "$s/upper" --base "$b" -o "$work/.peers-tar" \
        --descriptor "$work/.peers-desc" 2>/dev/null
    tar_sum=$(sha_of <"$work/.peers-tar")
    fact_line tar_bytes "$(stat -c %s "$work/.peers-tar")"
    fact_line diffid_ok "$(grep -q "\"sha256:$tar_sum\"" "$work/.peers-desc" && echo yes || echo NO)"
    local bk_out
    set +e
    bk_out=$("$bkd" -compare "$work/.peers-tar" "$b" "$s/upper" 2>&1)
    rc=$?
    set -e
    printf '== %s (BuildKit)\n%s\n' "$scen" "$bk_out" >>"$raw/compare.txt"
    case $rc in
    0) fact_line buildkit_same "identical (whiteout clock pinned)" ;;
    3) fact_line buildkit_same "identical but for $(sed -n 's/.*BuildKit adds \([0-9]*\) members.*/\1/p' <<<"$bk_out") unchanged copied-up files BuildKit records (it compares no file with the lower)" ;;
    1) fact_line buildkit_same "DIFFERENT (see raw/compare.txt)" ;;
    *) fact_line buildkit_same "error (see raw/compare.txt)" ;;
    esac
    rm -f "$work/.peers-desc"
    [ "$2" = 1 ] || return 0
    local algo
    for algo in gzip zstd; do
        local level=$gzip_level unz="gzip -dc"
        [ "$algo" = zstd ] && level=$zstd_level unz="zstd -dcq"
        "$ovdiff" diff --differ overlay --compress "$algo" --level "$level" --upper "$s/upper" --base "$b" \
            2>/dev/null >"$work/.peers-blob"
        fact_line "ovdiff_${algo}_bytes" "$(stat -c %s "$work/.peers-blob")"
        fact_line "ovdiff_${algo}_roundtrip" "$([ "$($unz <"$work/.peers-blob" | sha_of)" = "$tar_sum" ] && echo yes || echo NO)"
        local par_sum ser_sum
        par_sum=$(sha_of <"$work/.peers-blob")
        ser_sum=$("$ovdiff" diff --differ overlay --serial --compress "$algo" --level "$level" --upper "$s/upper" \
            --base "$b" 2>/dev/null | sha_of)
        fact_line "ovdiff_${algo}_threads" "$([ "$par_sum" = "$ser_sum" ] && echo "yes" || echo NO)"
    done
    fact_line pigz_bytes "$(tar -C "$s/upper" -cf - . 2>/dev/null | pigz -p 2 -$gzip_level | wc -c)"
    fact_line zstd_bytes "$(tar -C "$s/upper" -cf - . 2>/dev/null | zstd -q -T2 -$zstd_level | wc -c)"
    fact_line containerd_gzip_bytes "$("$ctrd" -compress gzip "$b" "$s/merged" 2>/dev/null | wc -c)"
    rm -f "$work/.peers-blob"
    # .peers-tar stays for the sha256 floor of this scenario; peers_measure removes it.
}

peers_measure() {
    local hs=$sp-$headline_base-$headline_pct scen rounds=$((runs * 2 + 1))
    : >"$raw/paired.tsv"
    : >"$raw/peers-facts.tsv"
    log "peers: BuildKit's overlay differ, compressed layers, the sha256 floor ($rounds paired rounds)"
    # The compressed pipelines run on the headline scenario and the compressible-data one (the
    # data-heavy one would take minutes per round through Go's single-threaded gzip).
    for scen in "$hs" data cdata; do
        log "$scen: peer byte checks and sizes"
        local compressed=1
        [ "$scen" = data ] && compressed=0
        peers_facts "$scen" "$compressed"
        case $scen in
        "$hs")
            peers_paired "$rounds" "$scen" overlay gnutar buildkit
            peers_paired "$rounds" "$scen" overlay sha-floor
            ;;
        data) peers_paired "$rounds" "$scen" overlay sha-floor buildkit ;;
        esac
        if [ "$compressed" = 1 ]; then
            peers_paired "$rounds" "$scen" overlay-gzip tar-pigz containerd-gzip
            peers_paired "$rounds" "$scen" overlay-zstd tar-zstd
        fi
        rm -f "$work/.peers-tar"
    done
    if [ "$peers_only" = 0 ]; then
        for scen in "${scenarios[@]}"; do
            [ "$scen" = "$hs" ] || [ "$scen" = data ] && continue
            peers_paired "$runs" "$scen" overlay buildkit
        done
    fi
}

# --- report ------------------------------------------------------------------------------
pget() { # SCENARIO REF METHOD FIELD(4 ref ms, 5 method ms, 6 ratio, 7 cpu)
    awk -F'\t' -v s="$1" -v r="$2" -v m="$3" -v f="$4" '$1 == s && $2 == r && $3 == m { print $f; exit }' "$raw/paired.tsv"
}
pfact() { # SCENARIO KEY
    awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { print $3; exit }' "$raw/peers-facts.tsv"
}
r2() { awk -v r="$1" 'BEGIN { if (r == "") print "n/a"; else printf "%.2f", r }'; }
inv() { awk -v r="$1" 'BEGIN { if (r > 0) printf "%.4f", 1 / r }'; }
met() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { if (r == "") { print ""; exit } ok = (op == "<=" ? r <= t : r >= t); print (ok ? "**met**" : "**not met**") }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

peers_report() {
    [ -s "$raw/paired.tsv" ] || return 0
    local hs=$sp-$headline_base-$headline_pct scen
    local t1 t2 t4 bk
    # Field 6 is peer/ovdiff; the targets 1-3 are stated as ovdiff/peer.
    t1=$(inv "$(pget "$hs" overlay gnutar 6)")
    t2=$(inv "$(pget data overlay sha-floor 6)")
    t4=$(pget "$hs" overlay buildkit 6)
    echo
    echo "## Peers: BuildKit, compressed layers, the sha256 floor"
    echo
    echo "Ratios here are the median of per-round ratios: each round runs ovdiff and its peers"
    echo "back to back (alternating which goes first), $((runs * 2 + 1)) rounds after one"
    echo "warm-up each. \"ovdiff/peer\" below 1 means ovdiff is faster. The BuildKit peer is"
    echo "\`benches/buildkit-differ\` (BuildKit's overlay differ algorithm on containerd's mount"
    echo "package and change writer, built from Debian's Go packages; see benches/README.md)."
    echo
    echo "| target | measured | |"
    echo "|---|---|---|"
    echo "| default path (diffID) ≤ 0.8× \`tar -C upper -cf -\`, $(human_n "$headline_base") base $headline_pct% | $(r2 "$t1")× ($(ms "$(pget "$hs" overlay gnutar 4)") ms vs $(ms "$(pget "$hs" overlay gnutar 5)") ms) | $(met "$t1" "<=" 0.8) |"
    echo "| data-heavy ($(mb "$(pfact data tar_bytes)") MiB tar) with the diffID ≤ 1.05× \`openssl dgst -sha256\` of the finished tar | $(r2 "$t2")× ($(ms "$(pget data overlay sha-floor 4)") ms vs $(ms "$(pget data overlay sha-floor 5)") ms) | $(met "$t2" "<=" 1.05) |"
    for scen in cdata "$hs"; do
        local z g gs
        z=$(inv "$(pget "$scen" overlay-zstd tar-zstd 6)")
        g=$(inv "$(pget "$scen" overlay-gzip tar-pigz 6)")
        gs=$(awk -v a="$(pfact "$scen" ovdiff_gzip_bytes)" -v b="$(pfact "$scen" pigz_bytes)" 'BEGIN { if (b > 0) printf "%.4f", a / b }')
        echo "| $(peers_label "$scen"): \`--compress zstd\` ≤ 1.0× \`tar \| zstd -T2 -$zstd_level\` | $(r2 "$z")× ($(ms "$(pget "$scen" overlay-zstd tar-zstd 4)") ms vs $(ms "$(pget "$scen" overlay-zstd tar-zstd 5)") ms) | $(met "$z" "<=" 1.0) |"
        echo "| $(peers_label "$scen"): \`--compress gzip\` ≤ 0.9× \`tar \| pigz -p 2 -$gzip_level\` | $(r2 "$g")× ($(ms "$(pget "$scen" overlay-gzip tar-pigz 4)") ms vs $(ms "$(pget "$scen" overlay-gzip tar-pigz 5)") ms) | $(met "$g" "<=" 0.9) |"
        echo "| $(peers_label "$scen"): gzip blob ≤ 1.01× pigz's | $(r2 "$gs")× ($(pfact "$scen" ovdiff_gzip_bytes) vs $(pfact "$scen" pigz_bytes) bytes) | $(met "$gs" "<=" 1.01) |"
    done
    echo "| ≥ 4× faster than BuildKit's overlay differ, $(human_n "$headline_base") base $headline_pct% | $(r2 "$t4")× ($(ms "$(pget "$hs" overlay buildkit 4)") ms vs $(ms "$(pget "$hs" overlay buildkit 5)") ms) | $(met "$t4" ">=" 4) |"
    echo
    echo "### BuildKit's overlay differ"
    echo
    echo "| scenario | ovdiff ms | BuildKit ms | BuildKit/ovdiff | BuildKit tar == ovdiff tar |"
    echo "|---|---:|---:|---:|---|"
    for scen in "${scenarios[@]}"; do
        local r
        r=$(pget "$scen" overlay buildkit 6)
        [ -n "$r" ] || continue
        printf '| %s | %s | %s | %s× | %s |\n' "$(peers_label "$scen")" "$(ms "$(pget "$scen" overlay buildkit 4)")" \
            "$(ms "$(pget "$scen" overlay buildkit 5)")" "$(r2 "$r")" "$(pfact "$scen" buildkit_same)"
    done
    echo
    echo "BuildKit's tar is made with the change writer's whiteout clock pinned to the epoch (as"
    echo "for containerd above) and byte-compared with \`ovdiff diff --differ overlay\`'s (checked on"
    echo "the scenarios with peer byte checks; blank where not checked)."
    echo
    echo "### Compressed layers (gzip -$gzip_level, zstd -$zstd_level; every method writes the blob into a pipe)"
    echo
    echo "| scenario | tar MiB | ovdiff gzip ms | tar \\| pigz ms | containerd+gzip ms | ovdiff/pigz | containerd/ovdiff | gzip MiB: ovdiff, pigz, containerd | ovdiff zstd ms | tar \\| zstd ms | ovdiff/zstd | zstd MiB: ovdiff, zstd |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"
    for scen in "$hs" cdata; do
        printf '| %s | %s | %s | %s | %s | %s× | %s× | %s, %s, %s | %s | %s | %s× | %s, %s |\n' "$(peers_label "$scen")" \
            "$(mb "$(pfact "$scen" tar_bytes)")" \
            "$(ms "$(pget "$scen" overlay-gzip tar-pigz 4)")" "$(ms "$(pget "$scen" overlay-gzip tar-pigz 5)")" \
            "$(ms "$(pget "$scen" overlay-gzip containerd-gzip 5)")" "$(r2 "$(inv "$(pget "$scen" overlay-gzip tar-pigz 6)")")" \
            "$(r2 "$(pget "$scen" overlay-gzip containerd-gzip 6)")" \
            "$(mb "$(pfact "$scen" ovdiff_gzip_bytes)")" "$(mb "$(pfact "$scen" pigz_bytes)")" \
            "$(mb "$(pfact "$scen" containerd_gzip_bytes)")" \
            "$(ms "$(pget "$scen" overlay-zstd tar-zstd 4)")" "$(ms "$(pget "$scen" overlay-zstd tar-zstd 5)")" \
            "$(r2 "$(inv "$(pget "$scen" overlay-zstd tar-zstd 6)")")" \
            "$(mb "$(pfact "$scen" ovdiff_zstd_bytes)")" "$(mb "$(pfact "$scen" zstd_bytes)")"
    done
    echo
    echo "| scenario | diffID in the descriptor == sha256 of the tar | gzip blob decompresses to the tar | gzip blob same with \`--serial\` | zstd blob decompresses to the tar | zstd blob same with \`--serial\` |"
    echo "|---|---|---|---|---|---|"
    for scen in "$hs" cdata data; do
        printf '| %s | %s | %s | %s | %s | %s |\n' "$(peers_label "$scen")" "$(pfact "$scen" diffid_ok)" \
            "$(pfact "$scen" ovdiff_gzip_roundtrip)" "$(pfact "$scen" ovdiff_gzip_threads)" \
            "$(pfact "$scen" ovdiff_zstd_roundtrip)" "$(pfact "$scen" ovdiff_zstd_threads)"
    done
    echo
    echo "- ovdiff computes the diffID and the blob digest in every compressed run; \`tar | pigz\`"
    echo "  and \`tar | zstd\` compute neither. containerd's branch computes both, as its walking"
    echo "  diff service does (\`archive.WriteDiff\` into \`io.MultiWriter(gzip, sha256)\`)."
    echo "- The sha256 floor: \`openssl dgst -sha256\` of the overlay differ's tar, a file in the"
    echo "  page cache: what hashing the finished layer costs with nothing else to do."
}

peers_label() {
    case "$1" in
    data) echo "data-heavy" ;;
    cdata) echo "compressible data ($(mb "$(pfact cdata tar_bytes)") MiB)" ;;
    "$sp"-*) echo "$(human_n "$(cut -d- -f2 <<<"$1")") base, $(cut -d- -f3 <<<"$1")%" ;;
    *) echo "$1" ;;
    esac
}
