#!/usr/bin/env bash
# The cold build of xtask against its dependency floor (docs/dev/benchmarks.md).
#
# The floor is a crate with the workspace's external dependencies, its profiles and Cargo.lock,
# and an empty `main`: what any xtask with these dependencies pays. The script builds the
# workspace and the floor from an empty target dir, alternating them so that a change in the machine's load hits
# both, and prints each sample and the ratio of the medians by CPU (user + sys) and by wall.
#
# Separate builds on a shared machine differ by up to a third (the floor alone measured 19-26 s
# CPU within minutes), so the script also prints the median of each sample's own ratio by wall
# (an xtask build and the floor build right after it see about the same machine), and the ratio
# by CPU inside each xtask build: every compiler run's CPU time (a rustc wrapper logs it) over
# that of the dependencies' runs (the workspace's own crates are ours, everything else a
# dependency). Both halves of that one share the build's minutes, so the machine's drift hits
# them alike; it is the number to compare revisions by.
#
#   xtask/bench/cold-build.sh [SAMPLES]        # 3 by default
#   CARGO_INCREMENTAL=0 xtask/bench/cold-build.sh   # as CI builds it
#
# Needs GNU time (/usr/bin/time), python3 (to list the workspace's crates) and the dependencies
# in cargo's cache (it builds --offline).
set -euo pipefail
samples=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# the workspace's own crates
ours=$(cd "$root" && cargo metadata -q --offline --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(" ".join(p["name"].replace("-", "_") for p in json.load(sys.stdin)["packages"]))')

floor=$scratch/floor
mkdir -p "$floor/src"
echo 'fn main() {}' >"$floor/src/main.rs"
{
    printf '[package]\nname = "floor"\nversion = "0.1.0"\nedition = "2021"\n\n'
    # the workspace's external dependencies (its [workspace.dependencies] without the path ones)
    echo '[dependencies]'
    awk '/^\[/{on = ($0 == "[workspace.dependencies]")} on && /^[a-z]/ && !/path *=/' "$root/Cargo.toml"
    echo
    # the workspace's profiles, from the first [profile...] table on (our crates' own tables
    # match no package of the floor; cargo ignores them)
    awk '/^\[profile/{on = 1} /^\[/ && !/^\[profile/{on = 0} on' "$root/Cargo.toml"
} >"$floor/Cargo.toml"
cp "$root/Cargo.lock" "$floor/Cargo.lock"

# a rustc wrapper that logs each compiler run's crate and CPU time (user + sys)
cat >"$scratch/rustc-cpu" <<'SH'
#!/usr/bin/env bash
name=-; prev=
for a in "$@"; do [ "$prev" = --crate-name ] && name=$a; prev=$a; done
exec /usr/bin/time -a -o "$RUSTC_CPU_LOG" -f "$name %U %S" "$@"
SH
chmod +x "$scratch/rustc-cpu"

# one cold build: prints "wall cpu"
cold() {
    rm -rf "$scratch/target"
    : >"$scratch/rustc.log"
    (cd "$1" && env CARGO_TARGET_DIR="$scratch/target" RUSTC_WRAPPER="$scratch/rustc-cpu" \
        RUSTC_CPU_LOG="$scratch/rustc.log" /usr/bin/time -f '%e %U %S' -o "$scratch/t" \
        cargo build -q --offline) >&2
    awk '{printf "%.1f %.1f\n", $1, $2 + $3}' "$scratch/t"
}

# the last build's compiler runs: prints "all ours" (CPU seconds)
runs() {
    awk -v ours=" $ours " '{c = $2 + $3; all += c; if (index(ours, " " $1 " ")) own += c}
        END {printf "%.2f %.2f\n", all, own}' "$scratch/rustc.log"
}

echo "sample  xtask wall/cpu  floor wall/cpu  compiler CPU in the xtask build: all / ours / ratio  (CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-unset}, load $(cut -d' ' -f1-3 /proc/loadavg))"
: >"$scratch/samples"
: >"$scratch/inside"
: >"$scratch/pairs"
for i in $(seq "$samples"); do
    x=$(cold "$root")
    read -r all own <<<"$(runs)"
    inside=$(awk -v a="$all" -v o="$own" 'BEGIN {printf "%.2f", a / (a - o)}')
    echo "$inside" >>"$scratch/inside"
    f=$(cold "$floor")
    echo "$x $f" >>"$scratch/samples"
    echo "$x $f" | awk '{printf "%.3f\n", $1 / $3}' >>"$scratch/pairs"
    printf '%6s  %14s  %14s  %s s / %s s / %s\n' "$i" "${x/ //}" "${f/ //}" "$all" "$own" "$inside"
done

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
xw=$(cut -d' ' -f1 "$scratch/samples" | median)
xc=$(cut -d' ' -f2 "$scratch/samples" | median)
fw=$(cut -d' ' -f3 "$scratch/samples" | median)
fc=$(cut -d' ' -f4 "$scratch/samples" | median)
awk -v xw="$xw" -v xc="$xc" -v fw="$fw" -v fc="$fc" 'BEGIN {
    printf "median  xtask %.1f s wall, %.1f s cpu; floor %.1f s wall, %.1f s cpu\n", xw, xc, fw, fc
    printf "ratio   %.2f by cpu, %.2f by wall\n", xc / fc, xw / fw
}'
echo "pairs   $(median <"$scratch/pairs") by wall (median of each sample's xtask / floor)"
echo "inside  $(median <"$scratch/inside") by cpu (median of the ratios inside each xtask build)"
