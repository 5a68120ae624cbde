#!/usr/bin/env bash
# containerd-shim-stockade-v1 against containerd-shim-runc-v2, same containerd,
# same run: container lifecycle latency (ctr run --rm: create, start, wait,
# delete; median of N, and the first container of a run, which for stockade
# builds the policy's seccomp program), memory per pod with 10 pods running
# (RSS and PSS of the shim processes) and the ttrpc round trip of
# Task/State. Prints a table and the ratios. Needs root and a build.
#   bench/shim_bench.sh [N]     (default N=20)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
bin="$PWD/build/bin"
work=$(mktemp -d /tmp/stockade-bench.XXXXXX)
. bench/lib/private_containerd.sh
cleanup() {
  containerd_stop
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs"/{bin,tmp,proc,sys,dev,etc}
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true sleep; do ln -sf busybox "$work/rootfs/bin/$a"; done
cat > "$work/policy.yaml" <<'YAML'
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: bench, namespace: bench}
spec:
  filesystem:
    writable: [{path: /tmp/agent, sizeLimit: 1Mi}]
  exec:
    allow: [/bin/busybox]
YAML
"$bin/stockade" install --store "$work/store" "$work/policy.yaml" >/dev/null
printf 'store: %s\nseccompCache: %s\n' "$work/store" "$work/seccomp-cache" > "$work/shim.yaml"
containerd_start

run_args() {
  case "$1" in
    runc) echo "--runtime io.containerd.runc.v2";;
    stockade) echo "--runtime io.containerd.stockade.v1 --runtime-config-path $work/shim.yaml --annotation stockade.dev/policy=bench";;
  esac
}

latency() {  # runtime -> median ms over n runs of ctr run --rm
  local rt=$1 i start end
  : > "$work/lat.$rt"
  start=$(date +%s%N)
  ctr_ run --rm $(run_args "$rt") --env PATH=/bin --rootfs "$work/rootfs" warm-$rt /bin/true
  end=$(date +%s%N)
  echo "$(( (end - start) / 1000 ))" > "$work/first.$rt"
  for i in $(seq "$n"); do
    start=$(date +%s%N)
    ctr_ run --rm $(run_args "$rt") --env PATH=/bin --rootfs "$work/rootfs" "l-$rt-$i" /bin/true
    end=$(date +%s%N)
    echo $(( (end - start) / 1000 )) >> "$work/lat.$rt"
  done
  sort -n "$work/lat.$rt" | awk '{a[NR]=$1} END {printf "%.1f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)/1000}'
}

memory() {  # runtime -> "rss_mb pss_mb" averaged per shim with 10 pods
  local rt=$1 i pattern rss=0 pss=0 count=0
  for i in $(seq 10); do
    ctr_ run -d $(run_args "$rt") --env PATH=/bin --rootfs "$work/rootfs" "m-$rt-$i" /bin/sleep 600
  done
  sleep 1
  case "$rt" in
    runc) pattern="containerd-shim-runc-v2 -namespace bench";;
    stockade) pattern="containerd-shim-stockade-v1 -namespace bench";;
  esac
  local address
  address=$(cat "$work/state/io.containerd.runtime.v2.task/bench/m-$rt-1/address")
  "$bin/ttrpc-state" "${address#unix://}" bench "m-$rt-1" 2000 > "$work/state-rtt.$rt"
  for pid in $(pgrep -f "$pattern"); do
    r=$(awk '/^VmRSS/{print $2}' /proc/$pid/status)
    p=$(awk '/^Pss:/{print $2}' /proc/$pid/smaps_rollup)
    rss=$((rss + r)); pss=$((pss + p)); count=$((count + 1))
  done
  for i in $(seq 10); do ctr_ task kill -s SIGKILL "m-$rt-$i" >/dev/null 2>&1 || true; done
  sleep 1
  for i in $(seq 10); do
    ctr_ task delete "m-$rt-$i" >/dev/null 2>&1 || true
    ctr_ container delete "m-$rt-$i" >/dev/null 2>&1 || true
  done
  awk -v r="$rss" -v p="$pss" -v c="$count" 'BEGIN {printf "%.2f %.2f %d", r/c/1024, p/c/1024, c}'
}

runc_lat=$(latency runc)
stk_lat=$(latency stockade)
read -r runc_rss runc_pss runc_n <<<"$(memory runc)"
read -r stk_rss stk_pss stk_n <<<"$(memory stockade)"

printf '\n%-36s %14s %14s %8s\n' "measure (one run, n=$n)" "runc-v2" "stockade" "ratio"
printf '%-36s %14s %14s %8s\n' "ctr run --rm median (ms)" "$runc_lat" "$stk_lat" \
  "$(awk -v a="$stk_lat" -v b="$runc_lat" 'BEGIN{printf "%.2f", a/b}')"
first() { awk '{printf "%.1f", $1/1000}' "$work/first.$1"; }
printf '%-36s %14s %14s %8s\n' "first container of the run (ms)" "$(first runc)" \
  "$(first stockade)" "$(awk -v a="$(first stockade)" -v b="$(first runc)" 'BEGIN{printf "%.2f", a/b}')"
printf '%-36s %14s %14s %8s\n' "shim RSS per pod, 10 pods (MB)" "$runc_rss" "$stk_rss" \
  "$(awk -v a="$stk_rss" -v b="$runc_rss" 'BEGIN{printf "%.2f", a/b}')"
printf '%-36s %14s %14s %8s\n' "shim PSS per pod, 10 pods (MB)" "$runc_pss" "$stk_pss" \
  "$(awk -v a="$stk_pss" -v b="$runc_pss" 'BEGIN{printf "%.2f", a/b}')"
rtt_runc=$(cat "$work/state-rtt.runc"); rtt_stk=$(cat "$work/state-rtt.stockade")
printf '%-36s %14s %14s %8s\n' "ttrpc State round trip (us)" "$rtt_runc" "$rtt_stk" \
  "$(awk -v a="$rtt_stk" -v b="$rtt_runc" 'BEGIN{printf "%.2f", a/b}')"
echo "(stockade's time includes resolving, verifying and applying the policy: seccomp, Landlock via stockade-init, nftables in the netns)"
