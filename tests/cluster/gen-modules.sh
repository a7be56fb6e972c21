#!/usr/bin/env bash
# Regenerate the wrapper Go modules under tests/cluster/modules/ from versions.env.
# Run it after changing a version; commit the resulting go.mod/go.sum files.
#
# Each wrapper is a tiny module that only `require`s the upstream module and lists the
# commands we build as `tool` directives, so `go build <cmd>` resolves the exact, hashed
# dependency graph recorded in go.sum.  k8s.io/kubernetes replaces its staging modules
# with ./staging/... paths, which do not exist in the published module: we read that list
# from the module's own go.mod and replace each with its published v0.x.y tag.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
mods="$here/modules"

new_module() {  # name module-path
  local dir="$mods/$1"
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module ftscale.test/cluster/%s\n\ngo 1.26.0\n' "$1" > "$dir/go.mod"
}

add_tools() {  # name module@version tool-package...
  local dir="$mods/$1" req="$2"; shift 2
  (
    cd "$dir"
    go mod edit -require="$req"
    for t in "$@"; do go mod edit -tool="$t"; done
    go mod tidy
  )
}

echo ">> kubernetes $KUBERNETES_VERSION (staging modules at $KUBERNETES_STAGING_VERSION)"
new_module kubernetes
kmod="$(cd "$mods/kubernetes" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
staging="$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$kmod")"
[ -n "$staging" ] || { echo "no staging replaces found in $kmod" >&2; exit 1; }
{
  echo
  echo "// Staging modules of k8s.io/kubernetes, read from its go.mod by gen-modules.sh."
  echo "replace ("
  for m in $staging; do echo "	$m => $m $KUBERNETES_STAGING_VERSION"; done
  echo ")"
} >> "$mods/kubernetes/go.mod"
add_tools kubernetes "k8s.io/kubernetes@$KUBERNETES_VERSION" k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl

echo ">> etcd $ETCD_VERSION"
new_module etcd
add_tools etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" go.etcd.io/etcd/server/v3

echo ">> kwok $KWOK_VERSION"
new_module kwok
add_tools kwok "sigs.k8s.io/kwok@$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok

echo ">> helm $HELM_VERSION"
new_module helm
add_tools helm "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm

echo ">> promtool (prometheus $PROMETHEUS_VERSION)"
new_module promtool
add_tools promtool "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool
echo "wrapper modules regenerated under $mods"
