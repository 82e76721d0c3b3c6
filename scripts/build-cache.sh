# Sourced by the build-* scripts that cache a binary outside the repository (~/.cache/kubedr-testenv).
cache=${KUBEDR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubedr-testenv}

# reuse_or_lock OUT LOCKNAME: prints OUT and ends the script if it is built; otherwise takes the build lock (held until
# the script exits) and checks again, so concurrent runs build once and the others reuse the result.
reuse_or_lock() {
  if [ -x "$1" ]; then echo "$1"; exit 0; fi
  mkdir -p "$cache"
  exec 9>"$cache/$2"
  flock 9
  if [ -x "$1" ]; then echo "$1"; exit 0; fi
}
