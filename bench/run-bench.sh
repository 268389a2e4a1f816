#!/bin/sh
# SPDX-License-Identifier: MIT
# run-bench.sh - uzram-run against kernel zram swap, issue 9's targets, both sides in the same run:
#   c        bench/run_heap.c: MIB (1024) of a C heap in mixed sizes, real process memory
#            (the corpus image), every byte verified, under LIMIT (256 MiB)
#   py       bench/run_dict.py: a Python dict of MIB (1434 = 1.4 GiB) cut from the image,
#            verified, under LIMIT (768 MiB)
#   startup  `uzram-run -- /bin/true` against `/bin/true`
# Kernel side: the same program in a fresh memory cgroup (v1 memory.limit_in_bytes = LIMIT, or
# v2 memory.max) with /dev/zram0 (lz4, 4 GiB) as the only swap, set up before and reset after
# each run. uzram side: `uzram-run --limit LIMIT --stats` in a fresh cgroup without a limit, with
# no swap on (zram0 is off between kernel runs), so the kernel never swaps it. The sides
# alternate run by run (kernel, uzram, kernel, uzram, ...).
#
# Memory: total_bytes is the cgroup's peak usage (v1 memory.max_usage_in_bytes, v2 memory.peak:
# the program's RSS, page tables, and the page cache charged to it) plus, for the kernel, zram's
# mem_used_max (compressed swap lives outside the cgroup). uzram's pool is the program's own
# anonymous memory, so its RSS and the cgroup's peak already include it (adding mem_used again
# would count it twice); pool_peak_bytes (the live statistics of `uzramctl run`, sampled every
# 0.5 s) shows how much of it was pool. Wall time is fork to wait4 of run-exec, start-up
# included. Each ratio is uzram / kernel, the median of the pairs' ratios.
#
#   bench/run-bench.sh [-b BUILD] [-r RUNS] [-w "c py startup"] [-i IMAGE] [-c MIB] [-C LIMIT_MIB]
#                      [-p MIB] [-P LIMIT_MIB] [-n STARTUP_REPS]
#
# Run as root (zram, swapon, cgroups; uzram-run in full mode). A quick run:
#   bench/run-bench.sh -r 1 -c 256 -C 64 -p 256 -P 128 -n 100
# zram0, swap and the cgroups are put back on any exit (trap); a zram0 already initialised (in
# use by someone else) is left alone and the kernel side reported unavailable.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build
runs=3
which="c py startup"
image=$here/../shared/corpus/py-64m.img.zst
c_mib=1024
c_limit=256
py_mib=1434
py_limit=768
startup_reps=500
use() {
    echo "usage: $0 [-b BUILD] [-r RUNS] [-w \"c py startup\"] [-i IMAGE] [-c MIB] [-C LIMIT_MIB]" >&2
    echo "                      [-p MIB] [-P LIMIT_MIB] [-n STARTUP_REPS]" >&2
    exit 2
}
while getopts b:r:w:i:c:C:p:P:n: o; do
    case $o in
    b) build=$(cd "$OPTARG" && pwd) ;;
    r) runs=$OPTARG ;;
    w) which=$OPTARG ;;
    i) image=$OPTARG ;;
    c) c_mib=$OPTARG ;;
    C) c_limit=$OPTARG ;;
    p) py_mib=$OPTARG ;;
    P) py_limit=$OPTARG ;;
    n) startup_reps=$OPTARG ;;
    *) use ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || use

exe=$build/bench/run-exec
heap=$build/bench/run-heap
run=$build/tools/uzram-run
ctl=$build/tools/uzramctl
export UZRAM_PRELOAD=$build/src/preload/libuzram-preload.so
for f in "$exe" "$heap" "$run" "$ctl" "$UZRAM_PRELOAD"; do
    [ -e "$f" ] || { echo "run-bench: $f not built (make build)" >&2; exit 1; }
done
if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=$(command -v python3 || true); fi
[ "$(id -u)" = 0 ] || { echo "run-bench: needs root (zram swap, cgroups, uzram-run full mode)" >&2; exit 1; }

# ---- machine state, restored on any exit ----
tmp=$(mktemp -d /tmp/uzram-run-bench.XXXXXX)
zdev=/sys/block/zram0
made_node=0 swap_on=0 zram_set=0 old_algo="" cgs="" sampler=""
kill_cg() { # kill what is left in a cgroup we made (only our own children run there), remove it
    [ -d "$1" ] || return 0
    for p in $(cat "$1/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$1" 2>/dev/null && return 0; sleep 0.2; done
    echo "run-bench: could not remove cgroup $1" >&2
}
zram_off() {
    if [ $swap_on = 1 ]; then swapoff /dev/zram0 || echo "run-bench: swapoff /dev/zram0 failed" >&2; swap_on=0; fi
    if [ $zram_set = 1 ]; then echo 1 >$zdev/reset; zram_set=0; fi
}
restore() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    for cg in $cgs; do kill_cg "$cg"; done
    zram_off
    [ -n "$old_algo" ] && echo "$old_algo" >$zdev/comp_algorithm 2>/dev/null
    [ $made_node = 1 ] && rm -f /dev/zram0
    rm -rf "$tmp"
}
trap restore EXIT
trap 'exit 130' INT TERM HUP

# The memory controller: v1 (memory.limit_in_bytes) or v2 (memory.max).
if [ -e /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    cgroot=/sys/fs/cgroup/memory cgv=1
elif grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cgroot=/sys/fs/cgroup cgv=2
    echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
else
    echo "run-bench: no memory cgroup controller" >&2; exit 1
fi
cg_make() { # NAME LIMIT_MIB|0: a fresh cgroup in $cg (0: no limit, no swap)
    cg=$cgroot/uzram-run-bench-$$-$1
    mkdir "$cg" || return 1
    cgs="$cgs $cg"
    if [ $cgv = 1 ]; then
        if [ "$2" = 0 ]; then echo 0 >"$cg/memory.swappiness"; else
            echo "$2M" >"$cg/memory.limit_in_bytes" && echo 60 >"$cg/memory.swappiness"; fi
    else
        if [ "$2" = 0 ]; then echo 0 >"$cg/memory.swap.max"; else
            echo "$2M" >"$cg/memory.max" && echo max >"$cg/memory.swap.max"; fi
    fi
}
cg_peak() {
    if [ $cgv = 1 ]; then cat "$1/memory.max_usage_in_bytes"; else cat "$1/memory.peak"; fi
}
cg_drop() {
    kill_cg "$1"
    cgs=$(echo "$cgs" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

# Kernel zram swap: free zram0 only (someone else's is left alone).
kernel_ok=1 kernel_why=""
if [ ! -e $zdev ]; then
    echo 1 >/sys/class/zram-control/hot_add 2>/dev/null || modprobe zram 2>/dev/null || true
fi
if [ ! -e $zdev ]; then
    kernel_ok=0 kernel_why="no zram0"
elif [ "$(cat $zdev/initstate)" != 0 ]; then
    kernel_ok=0 kernel_why="zram0 is in use (initstate 1): not touching it"
else
    if [ ! -b /dev/zram0 ]; then
        mknod /dev/zram0 b "$(cut -d: -f1 $zdev/dev)" "$(cut -d: -f2 $zdev/dev)"
        made_node=1
    fi
    old_algo=$(sed -n 's/.*\[\([^]]*\)\].*/\1/p' $zdev/comp_algorithm)
fi
if [ -n "$(swapon --noheadings --show=NAME 2>/dev/null)" ]; then
    echo "# note: other swap is active ($(swapon --noheadings --show=NAME | tr '\n' ' ')): the kernel side may use it too"
fi
zram_on() {
    [ "$(cat $zdev/initstate)" = 0 ] || { kernel_why="zram0 was taken by someone else"; return 1; }
    zram_set=1
    echo 1 >$zdev/reset && echo lz4 >$zdev/comp_algorithm && echo 4G >$zdev/disksize ||
        { kernel_why="cannot configure zram0"; return 1; }
    mkswap /dev/zram0 >/dev/null || { kernel_why="mkswap /dev/zram0 failed"; return 1; }
    swapon -p 100 /dev/zram0 || { kernel_why="swapon /dev/zram0 failed"; return 1; }
    swap_on=1
}

# ---- helpers ----
kv() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p" | head -1; } # FILE KEY: the first KEY=value
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else printf "%.6g\n", (v[NR/2]+v[NR/2+1])/2}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 == 0) print "nan"; else printf "%.3f\n", a/b}'; }

# Samples the uzram-run process in cgroup $1: the largest mem_used and resident_bytes of its
# live statistics, into $2 (two numbers).
sample() {
    max_pool=0 max_res=0
    while :; do
        for p in $(cat "$1/cgroup.procs" 2>/dev/null); do
            j=$("$ctl" run -J "$p" 2>/dev/null) || continue
            m=$(echo "$j" | sed -n 's/.*"mem_used": \([0-9]*\).*/\1/p')
            r=$(echo "$j" | sed -n 's/.*"resident_bytes": \([0-9]*\).*/\1/p')
            [ -n "$m" ] && [ "$m" -gt $max_pool ] && max_pool=$m
            [ -n "$r" ] && [ "$r" -gt $max_res ] && max_res=$r
            echo "$max_pool $max_res" >"$2.new" && mv "$2.new" "$2"
        done
        sleep 0.5
    done
}

# one_kernel NAME RUN LIMIT CMD... : prints the line, appends wall and total to $tmp/NAME.k
one_kernel() {
    name=$1 i=$2 lim=$3
    shift 3
    zram_on || return 1
    cg_make "k$name$i" "$lim" || { kernel_why="cannot make the cgroup"; return 1; }
    out0=$(awk '$1=="pswpout"{print $2}' /proc/vmstat)
    in0=$(awk '$1=="pswpin"{print $2}' /proc/vmstat)
    "$exe" -g "$cg" -- "$@" >$tmp/out 2>$tmp/err || true
    peak=$(cg_peak "$cg")
    zused=$(awk '{print $5}' $zdev/mm_stat)
    swapped=$(($(awk '$1=="pswpout"{print $2}' /proc/vmstat) - out0))
    swapins=$(($(awk '$1=="pswpin"{print $2}' /proc/vmstat) - in0))
    cg_drop "$cg"
    zram_off
    wall=$(kv $tmp/out median_s) st=$(kv $tmp/out status)
    total=$((peak + zused))
    echo "workload=$name run=$i side=kernel limit_mib=$lim wall_s=$wall total_bytes=$total cg_peak_bytes=$peak zram_mem_used_max=$zused rss_peak_bytes=$(kv $tmp/out maxrss_bytes) pswpout=$swapped pswpin=$swapins status=$st"
    [ "$st" = 0 ] || { sed 's/^/#   /' $tmp/out $tmp/err; return 0; }
    sed -n 's/^run[-_][a-z]*: /#   /p' $tmp/out
    echo "$wall $total" >>$tmp/$name.k
}

# one_uzram NAME RUN LIMIT CMD...
one_uzram() {
    name=$1 i=$2 lim=$3
    shift 3
    cg_make "u$name$i" 0
    echo "0 0" >$tmp/sample
    sample "$cg" $tmp/sample &
    sampler=$!
    "$exe" -g "$cg" -- "$run" --limit "${lim}M" --stats -- "$@" >$tmp/out 2>$tmp/err || true
    kill $sampler 2>/dev/null; wait $sampler 2>/dev/null || true
    sampler=""
    peak=$(cg_peak "$cg")
    cg_drop "$cg"
    wall=$(kv $tmp/out median_s) st=$(kv $tmp/out status)
    grep '^resident_bytes=' $tmp/err >$tmp/stats || true
    echo "workload=$name run=$i side=uzram limit_mib=$lim wall_s=$wall total_bytes=$peak cg_peak_bytes=$peak rss_peak_bytes=$(kv $tmp/out maxrss_bytes) pool_peak_bytes=$(cut -d' ' -f1 $tmp/sample) resident_peak_bytes=$(cut -d' ' -f2 $tmp/sample) major_faults=$(kv $tmp/stats major_faults) minor_faults=$(kv $tmp/stats minor_faults) throttled=$(kv $tmp/stats throttled) mode=$(kv $tmp/stats mode) status=$st"
    [ "$st" = 0 ] || { sed 's/^/#   /' $tmp/out $tmp/err; return 0; }
    sed -n 's/^run[-_][a-z]*: /#   /p' $tmp/out
    echo "$wall $peak" >>$tmp/$name.u
}

workload() { # NAME MIB LIMIT CMD...
    name=$1 mib=$2 lim=$3
    shift 3
    : >$tmp/$name.k
    : >$tmp/$name.u
    : >$tmp/$name.r
    i=1
    while [ $i -le "$runs" ]; do
        if [ $kernel_ok = 1 ]; then
            one_kernel "$name" $i "$lim" "$@" || { kernel_ok=0; echo "# kernel side: $kernel_why"; }
        fi
        one_uzram "$name" $i "$lim" "$@"
        k=$(sed -n "${i}p" $tmp/$name.k) u=$(sed -n "${i}p" $tmp/$name.u)
        if [ -n "$k" ] && [ -n "$u" ] && [ "$(wc -l <$tmp/$name.k)" = $i ] && [ "$(wc -l <$tmp/$name.u)" = $i ]; then
            echo "$(div "${u% *}" "${k% *}") $(div "${u#* }" "${k#* }")" >>$tmp/$name.r
        fi
        i=$((i + 1))
    done
    for side in k u; do
        n=$(wc -l <$tmp/$name.$side)
        [ "$n" -gt 0 ] || continue
        echo "workload=$name side=$([ $side = k ] && echo kernel || echo uzram) mib=$mib limit_mib=$lim runs=$n wall_s=$(cut -d' ' -f1 $tmp/$name.$side | median) total_bytes=$(cut -d' ' -f2 $tmp/$name.$side | median)"
    done
    n=$(wc -l <$tmp/$name.r)
    if [ "$n" -gt 0 ]; then
        w=$(cut -d' ' -f1 $tmp/$name.r | median) m=$(cut -d' ' -f2 $tmp/$name.r | median)
        echo "workload=$name side=ratio pairs=$n wall=$w mem=$m target=1.10 wall_met=$(awk -v x="$w" 'BEGIN{print x<=1.10?"yes":"no"}') mem_met=$(awk -v x="$m" 'BEGIN{print x<=1.10?"yes":"no"}')"
    else
        echo "workload=$name side=ratio pairs=0 kernel=unavailable why=\"$kernel_why\""
    fi
}

# Start-up: in each of 10 rounds, REPS/10 runs of each command in turn; per command the median
# of the rounds' medians and the smallest time seen; the overhead is the median over the rounds
# of (uzram-run median - plain median). Two more commands show where the time goes: jemalloc
# alone preloaded (the allocator and the libstdc++ it links), and the preload without uzram-run;
# cpu_*_ms are the median CPU time (user + system, all threads) of each, less sensitive to load.
startup() {
    rounds=10 per=$((startup_reps / 10))
    [ $per -ge 1 ] || per=1
    je=$(ldd "$UZRAM_PRELOAD" | awk '/libjemalloc/ {print $3}')
    : >$tmp/st
    r=1
    while [ $r -le $rounds ]; do
        "$exe" -q -n $per -- /bin/true >$tmp/p
        "$exe" -q -n $per -- "$run" -- /bin/true >$tmp/u
        "$exe" -q -n $per -e "LD_PRELOAD=$je" -- /bin/true >$tmp/j
        "$exe" -q -n $per -e "LD_PRELOAD=$UZRAM_PRELOAD" -- /bin/true >$tmp/l
        for f in p u j l; do printf '%s %s ' "$(kv $tmp/$f median_s)" "$(kv $tmp/$f min_s)"; done >>$tmp/st
        for f in p u j l; do printf '%s ' "$(kv $tmp/$f cpu_median_s)"; done >>$tmp/st
        echo >>$tmp/st
        r=$((r + 1))
    done
    awk '{print ($3-$1)*1000}' $tmp/st | median >$tmp/ov
    col() { cut -d' ' -f"$1" $tmp/st | median; }
    low() { cut -d' ' -f"$1" $tmp/st | sort -g | head -1; }
    awk -v pm="$(col 1)" -v pmin="$(low 2)" -v um="$(col 3)" -v umin="$(low 4)" -v jm="$(col 5)" \
        -v lm="$(col 7)" -v pc="$(col 9)" -v uc="$(col 10)" -v jc="$(col 11)" -v lc="$(col 12)" \
        -v ov="$(cat $tmp/ov)" -v n=$((rounds * per)) 'BEGIN {
        printf "workload=startup reps=%d plain_median_ms=%.3f plain_min_ms=%.3f uzram_median_ms=%.3f uzram_min_ms=%.3f overhead_median_ms=%.3f overhead_min_ms=%.3f target_ms=2 met=%s\n",
            n, pm*1000, pmin*1000, um*1000, umin*1000, ov, (umin-pmin)*1000, ov <= 2 ? "yes" : "no"
        printf "workload=startup side=breakdown jemalloc_preloaded_median_ms=%.3f preload_only_median_ms=%.3f cpu_plain_ms=%.3f cpu_uzram_ms=%.3f cpu_jemalloc_preloaded_ms=%.3f cpu_preload_only_ms=%.3f\n",
            jm*1000, lm*1000, pc*1000, uc*1000, jc*1000, lc*1000 }'
}

# ---- the run ----
echo "# run-bench: $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -r) $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), cgroup v$cgv, kernel side: $([ $kernel_ok = 1 ] && echo "zram0 lz4" || echo "unavailable ($kernel_why)")"
img=$tmp/image
case $image in
*.zst) zstd -qdc "$image" >"$img" ;;
*) cp "$image" "$img" ;;
esac
# Warm the page cache outside any cgroup, so neither side is charged for the binaries and image.
"$heap" "$img" 16 >/dev/null
[ -z "$python" ] || "$python" "$here/bench/run_dict.py" "$img" 16 >/dev/null
"$run" --limit 64M -- "$heap" "$img" 16 >/dev/null

for w in $which; do
    case $w in
    c) workload c "$c_mib" "$c_limit" "$heap" "$img" "$c_mib" ;;
    py)
        if [ -z "$python" ]; then echo "workload=py skipped=\"no python3\""; continue; fi
        workload py "$py_mib" "$py_limit" "$python" "$here/bench/run_dict.py" "$img" "$py_mib"
        ;;
    startup) startup ;;
    *) echo "run-bench: unknown workload $w" >&2; exit 2 ;;
    esac
done
echo "# run-bench: done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
