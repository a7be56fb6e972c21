#!/usr/bin/env bash
# `make images`: build the two container images from the repo root.
#
#   ftscale/operator:<version>   operator/Dockerfile       (torch-free: kopf, kubernetes, scipy)
#   ftscale/trainer:<version>    trainer_image/Dockerfile  (CUDA runtime + torch; run and fit Jobs)
#
# <version> is pyproject's version (the chart's appVersion). Environment:
#   REGISTRY=ghcr.io/acme   prefix both names (then: REGISTRY=... PUSH=1 make images)
#   PUSH=1                  push after building
#   ENGINE=podman           use this engine instead of the first working one found
#   ONLY=operator|trainer   build one image
# Needs a container engine (docker, podman, nerdctl or buildah) that can build; where none
# exists it says so and exits 1.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)"
[ -n "$version" ] || { echo "images.sh: no version in pyproject.toml" >&2; exit 1; }
prefix="${REGISTRY:+${REGISTRY%/}/}"

engine_works() {  # a client binary alone is not enough: it must reach a daemon (or be daemonless)
  case "$1" in
    docker|nerdctl) command -v "$1" >/dev/null && "$1" info >/dev/null 2>&1 ;;
    podman)         command -v podman >/dev/null && podman info >/dev/null 2>&1 ;;
    buildah)        command -v buildah >/dev/null && buildah info >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

engine="${ENGINE:-}"
if [ -n "$engine" ]; then
  engine_works "$engine" || { echo "images.sh: ENGINE=$engine cannot build here ($engine info fails)" >&2; exit 1; }
else
  for candidate in docker podman nerdctl buildah; do
    if engine_works "$candidate"; then engine="$candidate"; break; fi
  done
fi
if [ -z "$engine" ]; then
  cat >&2 <<MSG
images.sh: no working container engine on this machine, so no image was built.
  Tried docker, podman, nerdctl and buildah (a client without a reachable daemon does not count:
  'docker info' must succeed). Install one (e.g. apt-get install podman) or run this on a machine
  that has one; the Dockerfiles are operator/Dockerfile and trainer_image/Dockerfile, the build
  context is the repo root:
    docker build -f trainer_image/Dockerfile -t ${prefix}ftscale/trainer:$version .
    docker build -f operator/Dockerfile      -t ${prefix}ftscale/operator:$version .
  Their structure is tested without an engine: tests/helm/test_helm_images.py.
MSG
  exit 1
fi

build() {  # name dockerfile
  local ref="${prefix}ftscale/$1:$version"
  [ -f "$2" ] || { echo "images.sh: $2 is missing" >&2; exit 1; }
  echo ">> $engine: building $ref from $2"
  if [ "$engine" = buildah ]; then
    buildah bud --layers -f "$2" -t "$ref" --build-arg "FTSCALE_VERSION=$version" .
  else
    "$engine" build -f "$2" -t "$ref" --build-arg "FTSCALE_VERSION=$version" .
  fi
  if [ "${PUSH:-0}" = 1 ]; then
    echo ">> pushing $ref"
    "$engine" push "$ref"
  fi
  built+=("$ref")
}

built=()
case "${ONLY:-all}" in
  operator) build operator operator/Dockerfile ;;
  trainer)  build trainer trainer_image/Dockerfile ;;
  all)      build operator operator/Dockerfile; build trainer trainer_image/Dockerfile ;;
  *) echo "images.sh: ONLY must be operator or trainer, got '$ONLY'" >&2; exit 1 ;;
esac
echo "built: ${built[*]}"
echo "install with: helm install ftscale helm/ftscale -n ftscale-system --create-namespace \\"
echo "  --set operator.image.repository=${prefix}ftscale/operator,trainer.image.repository=${prefix}ftscale/trainer"
