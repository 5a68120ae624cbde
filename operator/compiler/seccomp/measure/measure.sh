#!/bin/sh
# Measures the system calls a Python and a Node.js agent make, to choose the
# Strict seccomp baseline (operator/compiler/seccomp/baseline.cc). Runs each
# workload under `strace -f -qq -c` and prints the union of the call names,
# one per line. Usage: measure.sh [OUTDIR]   (needs strace, python3, node)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d)}
mkdir -p "$out"
cd /tmp
run() {
  name=$1
  shift
  strace -f -qq -c -o "$out/$name.txt" "$@" >/dev/null
}
for py in /usr/bin/python3 "$(command -v python3)"; do
  run "python-$(echo "$py" | tr / _)" "$py" "$here/agent_workload.py"
  run "python-c-$(echo "$py" | tr / _)" "$py" -c 'import json; print(json.dumps([1]))'
done
run node node "$here/agent_workload.js"
run node-e node -e 'console.log(JSON.stringify([1]))'
# strace -c: a table whose last column is the call name; skip the header,
# the separator lines and the total.
for f in "$out"/*.txt; do
  awk '$NF ~ /^[a-z_0-9]+$/ && $NF != "syscall" && $NF != "total" {print $NF}' "$f"
done | sort -u
