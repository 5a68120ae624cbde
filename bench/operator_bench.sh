#!/usr/bin/env bash
# stockade-operator + one stockade-node against a real etcd + kube-apiserver
# (hack/apiserver): the time from `kubectl apply` of a policy to its index
# entry in the node store (p50/p99 over N policies applied one by one), then
# the operator's memory and reconcile time with M policies in the cluster.
#   bench/operator_bench.sh [N] [M]     (default N=100, M=1000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100}"
m="${2:-1000}"
bin="${STOCKADE_BIN:-$PWD/build/bin}"
kube_bin=$(hack/kube-tools --print-bindir)
work=$(mktemp -d /tmp/stockade-opbench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  hack/apiserver down --dir "$work/api" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

hack/apiserver up --dir "$work/api" >/dev/null
export KUBECONFIG="$work/api/kubeconfig"
k() { "$kube_bin/kubectl" "$@"; }
k create namespace bench >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port); http=$(free_port)
"$bin/stockade-operator" --kubeconfig "$KUBECONFIG" --insecure \
  --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" \
  --leader-elect=false 2>"$work/operator.log" &
pids+=($!); op=$!
"$bin/stockade-node" --server "127.0.0.1:$grpc" --insecure --node-name bench \
  --store "$work/store" --apparmor off 2>"$work/node.log" &
pids+=($!); node=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

policy() {  # name -> YAML
  cat <<YAML
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: $1, namespace: bench}
spec:
  filesystem:
    writable: [{path: /tmp/agent, sizeLimit: 64Mi}]
  exec:
    allow: [/usr/bin/python3]
  network:
    egress: [{cidrs: [169.254.10.0/24], ports: [{port: 443}]}]
YAML
}

: > "$work/latency"
for i in $(seq "$n"); do
  start=$(date +%s%N)
  policy "lat-$i" | k apply -f - >/dev/null
  while [ ! -e "$work/store/v1/index/bench/lat-$i.json" ]; do sleep 0.002; done
  end=$(date +%s%N)
  echo $(( (end - start) / 1000 )) >> "$work/latency"
done
read -r p50 p99 max <<<"$(sort -n "$work/latency" | awk '{a[NR]=$1} END {
  printf "%.1f %.1f %.1f", a[int(NR*0.5+0.5)]/1000, a[int(NR*0.99+0.5)]/1000, a[NR]/1000}')"

# M policies at once (a List, created in one kubectl call).
{
  echo "apiVersion: v1"; echo "kind: List"; echo "items:"
  for i in $(seq "$m"); do
    policy "p-$i" | sed 's/^/    /; 1s/^    /  - /'
  done
} > "$work/many.yaml"
start=$(date +%s%N)
k create -f "$work/many.yaml" >/dev/null
want=$((m + n))
while [ "$(ls "$work/store/v1/index/bench" | wc -l)" -lt "$want" ]; do sleep 0.2; done
end=$(date +%s%N)
sleep 2
rss() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
reconcile=$(curl -s "http://127.0.0.1:$http/metrics" | awk '
  /^stockade_reconcile_duration_seconds_sum/ {s=$2}
  /^stockade_reconcile_duration_seconds_count/ {c=$2}
  END {printf "%.1f", c ? 1000*s/c : 0}')

printf '\n%-52s %s\n' "measure (one run)" "value"
printf '%-52s %s ms\n' "kubectl apply -> node store, p50 (n=$n)" "$p50"
printf '%-52s %s ms\n' "kubectl apply -> node store, p99 (n=$n)" "$p99"
printf '%-52s %s ms\n' "kubectl apply -> node store, max" "$max"
printf '%-52s %.1f s\n' "$m policies created -> all in the node store" \
  "$(awk -v a="$start" -v b="$end" 'BEGIN{print (b-a)/1e9}')"
printf '%-52s %s MB\n' "operator RSS with $want policies" "$(rss "$op")"
printf '%-52s %s MB\n' "operator heap in use after its last reconcile" \
  "$(curl -s "http://127.0.0.1:$http/metrics" | awk '/^stockade_heap_bytes/ {printf "%.1f", $2/1048576}')"
metric() { curl -s "http://127.0.0.1:$http/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# Settled: no status write for 5 s (the operator has written every status).
last=""; quiet=0
while [ "$quiet" -lt 5 ]; do
  now=$(metric stockade_status_writes_total)
  if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$now; fi
  sleep 1
done
settled=$(date +%s%N)
printf '%-52s %.1f s\n' "$m policies created -> every status written" \
  "$(awk -v a="$start" -v b="$settled" 'BEGIN{print (b-a - 5e9)/1e9}')"
printf '%-52s %s MB\n' "operator RSS, settled (every status written)" "$(rss "$op")"
printf '%-52s %s MB\n' "operator heap in use, settled" \
  "$(metric stockade_heap_bytes | awk '{printf "%.1f", $1/1048576}')"
printf '%-52s %s MB\n' "node agent RSS with $want policies" "$(rss "$node")"
printf '%-52s %s ms\n' "mean reconcile (every policy, all runs)" "$reconcile"
