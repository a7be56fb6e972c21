#!/usr/bin/env bash
# Build the test control plane from Go modules into a cache folder reused across runs.
#
#   tests/cluster/build.sh                 build what is missing (a no-op when cached)
#   tests/cluster/build.sh --print-bin-dir print the folder holding the binaries and exit
#
# Binaries: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3), kwok, helm, promtool.  All versions live in versions.env;
# the wrapper modules in modules/ pin every dependency by hash (go.sum).  The output folder is
# $FTSCALE_CACHE/cluster/bin-<hash of versions.env, modules and this script>, so a version bump
# builds into a fresh folder and an unchanged tree never rebuilds.
# Env: FTSCALE_CACHE (default ~/.cache/ftscale), FTSCALE_GO_PROCS (parallel compiles, default 2).
# Fails with the failing `go build` command and its output; each finished binary is kept, so a
# rerun resumes where it stopped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${FTSCALE_CACHE:-$HOME/.cache/ftscale}/cluster"
hash="$(cd "$here" && cat versions.env build.sh modules/*/go.mod modules/*/go.sum | sha256sum | cut -c1-12)"
bin="$cache/bin-$hash"

if [ "${1:-}" = "--print-bin-dir" ]; then echo "$bin"; exit 0; fi

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm promtool)
missing=()
for b in "${all[@]}"; do [ -x "$bin/$b" ] || missing+=("$b"); done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "control plane binaries cached in $bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is not installed; install Go >= $GO_MIN_VERSION (apt-get install golang-go, or from the Go distribution) and rerun" >&2; exit 1; }
mkdir -p "$bin" "$cache/logs"
# One build at a time per cache (make test and make cluster-up may race on a fresh machine).
exec 9>"$cache/build.lock"
flock 9

export CGO_ENABLED=0
export GOFLAGS="-p=${FTSCALE_GO_PROCS:-2} -trimpath -buildvcs=false -mod=readonly"

build() {  # module-dir binary-name package [ldflags]
  local mod="$1" name="$2" pkg="$3" ldflags="${4:-}"
  [ -x "$bin/$name" ] && return 0
  local log="$cache/logs/build-$name.log" start=$SECONDS
  echo ">> building $name from $pkg (log: $log)"
  if ! (cd "$here/modules/$mod" && go build -ldflags "-s -w $ldflags" -o "$bin/.$name.tmp" "$pkg") >"$log" 2>&1; then
    echo "build.sh: FAILED: (cd tests/cluster/modules/$mod && go build -o $name $pkg)" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  mv "$bin/.$name.tmp" "$bin/$name"
  echo "   $name built in $((SECONDS - start)) s"
}

t0=$SECONDS
build etcd etcd go.etcd.io/etcd/server/v3

# Version ldflags as Kubernetes' hack/lib/version.sh sets them, so /version reports the release.
kdate="$(cd "$here/modules/kubernetes" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes 2>/dev/null || echo 1970-01-01T00:00:00Z)"
kmajor="${KUBERNETES_VERSION#v}"; kminor="${kmajor#*.}"; kmajor="${kmajor%%.*}"; kminor="${kminor%%.*}"
kver=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kver+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$kmajor -X $p.gitMinor=$kminor"
  # The module zip carries no commit: report none rather than the "$Format:%H$" placeholder.
  kver+=" -X $p.gitCommit= -X $p.gitTreeState=archive -X $p.buildDate=$kdate"
done
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kubernetes "$b" "k8s.io/kubernetes/cmd/$b" "$kver"
done

build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
build helm helm helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
# Prometheus 3.x is published as Go module v0.3XX.Y: v0.316.0 is Prometheus 3.16.0.
prom="${PROMETHEUS_VERSION#v0.}"
build promtool promtool github.com/prometheus/prometheus/cmd/promtool \
  "-X github.com/prometheus/common/version.Version=${prom:0:1}.${prom:1}"
echo "control plane binaries built in $((SECONDS - t0)) s into $bin ($(du -sh "$bin" | cut -f1))"
