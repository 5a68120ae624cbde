# Sourced by the bench scripts: a private containerd whose state lives in
# $work (set by the script), with $bin (the build's binaries) first on its
# PATH so that it finds the Stockade shim. Needs root.
#   containerd_start   writes its configuration, starts it, waits for it
#   ctr_ ARGS...       ctr against it, namespace "bench"
#   containerd_stop    kills every task, deletes every container, stops it
ctrd_pid=""
ctr_() { ctr --address "$work/c.sock" --namespace bench "$@"; }

containerd_start() {
  cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.sock.ttrpc"
TOML
  PATH="$bin:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
  ctrd_pid=$!
  for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && return; sleep 0.1; done
  echo "containerd did not start:" >&2
  cat "$work/containerd.log" >&2
  return 1
}

containerd_stop() {
  local t c
  for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 0.5
  for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task delete "$t" >/dev/null 2>&1 || true; done
  for c in $(ctr_ container ls -q 2>/dev/null); do ctr_ container delete "$c" >/dev/null 2>&1 || true; done
  [ -n "$ctrd_pid" ] && kill "$ctrd_pid" 2>/dev/null && wait "$ctrd_pid" 2>/dev/null || true
  ctrd_pid=""
  umount -R "$work/root" 2>/dev/null || true
}
