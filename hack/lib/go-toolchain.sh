# Choosing the Go that builds the pinned tools (hack/kube-tools, hack/helm).
# Sourced; the caller defines die(). choose_go GO_MOD sets go_bin,
# go_toolchain and go_reason for the `go` line of GO_MOD.

# 0 when version $1 >= version $2 (both without the "go" prefix).
version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

go_version_of() {
  local v
  v="$(GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null)" || return 1
  v="${v#go}"
  printf '%s\n' "${v%%[!0-9.]*}"  # go1.26rc1 -> 1.26
}

# Sets go_bin, go_toolchain and go_reason, or fails saying what is missing.
choose_go() {
  local gomod="$1"
  local need cand v seen="" fallback=""
  need="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
  for cand in "${STOCKADE_GO:-}" "$(command -v go || true)" /usr/local/go/bin/go; do
    if [ -z "$cand" ] || [ ! -x "$cand" ]; then continue; fi
    v="$(go_version_of "$cand")" || continue
    seen+=" $cand (go$v)"
    if version_ge "$v" "$need"; then
      go_bin="$cand"
      go_toolchain=local
      go_reason="go$v >= go$need (the go line of ${gomod#"$repo"/})"
      return 0
    fi
    if [ -z "$fallback" ] && version_ge "$v" 1.21; then fallback="$cand"; fi
  done
  if [ -n "$fallback" ]; then
    go_bin="$fallback"
    go_toolchain="${STOCKADE_GOTOOLCHAIN:-go1.27.3}"
    go_reason="no Go >= go$need found (saw:$seen); the go command fetches $go_toolchain from the Go module proxy"
    return 0
  fi
  die "no usable Go: need go$need or any Go >= 1.21 to fetch a toolchain" \
    "(saw:${seen:- none}). /usr/local/go/bin/go on this machine kind is new" \
    "enough; Debian's golang-go is not."
}

