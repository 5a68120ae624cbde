#!/usr/bin/env bash
# The denial collector (stockade-node --denials-only) on a real containerd
# and shim: how long from a denied call in a container to its line in the
# node's denial log, what the collector costs per denial (CPU, memory), and
# what a denied call costs the agent with and without the collector
# listening. Prints a table. Needs root and a build (build/bin).
#   bench/denials_bench.sh [N]     (default N=20000 denials in the flood)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20000}"
bin="$PWD/build/bin"
work=$(mktemp -d /tmp/stockade-denials-bench.XXXXXX)
node_pid=""
. bench/lib/private_containerd.sh
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
  containerd_stop
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs"/{bin,tmp,proc,sys,dev,etc}
cp /bin/busybox "$work/rootfs/bin/busybox"
cp "$bin/stockade-probe" "$work/rootfs/bin/probe"
cat > "$work/policy.yaml" <<'YAML'
apiVersion: stockade.dev/v1alpha1
kind: AgentPolicy
metadata: {name: bench, namespace: bench}
spec:
  exec:
    allow: [/bin/busybox, /bin/probe]
YAML
"$bin/stockade" install --store "$work/store" "$work/policy.yaml" >/dev/null
printf 'store: %s\n' "$work/store" > "$work/shim.yaml"
containerd_start

run() {  # id args... -> the probe's output
  local id=$1
  shift
  ctr_ run --rm --runtime io.containerd.stockade.v1 \
    --runtime-config-path "$work/shim.yaml" \
    --annotation stockade.dev/policy=bench --env PATH=/bin \
    --rootfs "$work/rootfs" "$id" /bin/probe "$@"
}

start_collector() {  # burst rate
  "$bin/stockade-node" --denials-only --store "$work/store" --node-name bench \
    --enable-audit --denial-burst "$1" --denial-rate "$2" \
    >"$work/node.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 100); do
    grep -q "collecting denials" "$work/node.log" && return
    sleep 0.05
  done
  echo "the collector did not start:" >&2
  cat "$work/node.log" >&2
  exit 1
}
stop_collector() {
  kill "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
}
cpu_ms() {  # pid -> user+system CPU in ms
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
logged() {  # container id -> lines of it in the log (summaries excluded)
  grep -h "\"containerID\":\"$1\"" "$work/store/denials/"denials.jsonl* 2>/dev/null |
    grep -vc '"suppressed"' || true
}

# 1. Latency: 100 denied calls, 20 ms apart, each stamped just before.
start_collector 1000000 1000000
rss_idle=$(rss_kb "$node_pid")
args=()
for _ in $(seq 100); do args+=(now keyctl wait:20); done
run lat "${args[@]}" > "$work/lat.out"
for _ in $(seq 50); do [ "$(logged lat)" -ge 100 ] && break; sleep 0.1; done
latency=$(python3 - "$work/lat.out" "$work/store/denials" <<'PY'
import glob, json, sys, datetime
stamps = [int(l.split()[1]) / 1e6 for l in open(sys.argv[1]) if l.startswith("now:")]
times = []
for f in sorted(glob.glob(sys.argv[2] + "/denials.jsonl*"), reverse=True):
    for line in open(f):
        d = json.loads(line)
        if d.get("containerID") == "lat" and not d.get("suppressed"):
            t = datetime.datetime.strptime(d["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
            t = t.replace(tzinfo=datetime.timezone.utc)
            times.append(t.timestamp() * 1000)
lat = sorted(t - s for s, t in zip(stamps, times))
if not lat:
    print("none none none 0")
else:
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"{p(0.5):.1f} {p(0.99):.1f} {lat[-1]:.1f} {len(lat)}")
PY
)
read -r lat_p50 lat_p99 lat_max lat_n <<<"$latency"

# 2. A flood of N denied calls, every one logged (no rate limit).
cpu0=$(cpu_ms "$node_pid")
t0=$(date +%s%N)
flood_in=$(run flood "repeat:$n:keyctl" | awk '{print $2}')
# Until all are logged, or none more came for a second.
last=-1
t1=$(date +%s%N)
for _ in $(seq 300); do
  now=$(logged flood)
  [ "$now" -ge "$n" ] && { t1=$(date +%s%N); break; }
  if [ "$now" != "$last" ]; then last=$now; t1=$(date +%s%N); quiet=0; fi
  quiet=$((${quiet:-0} + 1))
  [ "$quiet" -ge 10 ] && break
  sleep 0.1
done
flood_logged=$(logged flood)
cpu1=$(cpu_ms "$node_pid")
rss_flood=$(rss_kb "$node_pid")
stop_collector
# The collector's stop line counts the audit socket's overflows (ENOBUFS).
overflows=$(grep -o '"overflows":"[0-9]*"' "$work/node.log" | tail -1 | tr -dc 0-9)
grep "stopping" "$work/node.log" >&2

# 3. The same flood under the default rate limit (burst 20, 5/s).
start_collector 20 5
cpu2=$(cpu_ms "$node_pid")
limited_in=$(run limited "repeat:$n:keyctl" | awk '{print $2}')
sleep 1.5
cpu3=$(cpu_ms "$node_pid")
limited_logged=$(logged limited)
stop_collector

# 4. The same flood with no collector listening.
alone_in=$(run alone "repeat:$n:keyctl" | awk '{print $2}')

awk -v n="$n" \
  -v p50="$lat_p50" -v p99="$lat_p99" -v max="$lat_max" -v ln="$lat_n" \
  -v idle="$rss_idle" -v rss="$rss_flood" \
  -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v logged="$flood_logged" \
  -v overflows="${overflows:-?}" \
  -v c2="$cpu2" -v c3="$cpu3" -v llogged="$limited_logged" \
  -v fin="$flood_in" -v lin="$limited_in" -v ain="$alone_in" 'BEGIN {
  printf "%-58s %s\n", "measure", "value"
  printf "%-58s %s / %s / %s ms (%d samples)\n", "denied call -> its log line: p50 / p99 / max", p50, p99, max, ln
  printf "%-58s %.1f MB / %.1f MB\n", "collector RSS idle / after the flood", idle / 1024, rss / 1024
  printf "%-58s %d of %d in %.2f s (socket overflows: %s)\n", "flood, no rate limit: logged", logged, n, (t1 - t0) / 1e9, overflows
  printf "%-58s %.1f us\n", "collector CPU per logged denial", (c1 - c0) * 1000 / (logged ? logged : 1)
  printf "%-58s %d of %d, CPU %.1f us per denial\n", "flood, default rate limit (20, 5/s): logged", llogged, n, (c3 - c2) * 1000 / n
  printf "%-58s %d / %d / %d ns\n", "denied call in the container: logged / limited / no collector", fin, lin, ain
  printf "%-58s %.2f\n", "ratio logged / no collector", fin / (ain ? ain : 1)
}'
