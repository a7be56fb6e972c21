#!/usr/bin/env bash
# Print the fake nodes as a YAML stream (used by up.sh).  KWOK manages every node carrying the
# annotation kwok.x-k8s.io/node=fake; it marks them Ready and keeps their leases fresh.
#   FTSCALE_CLUSTER_GPU_NODES  (default 4)  nodes with nvidia.com/gpu: 8, labelled ftscale.test/pool=gpu
#   FTSCALE_CLUSTER_CPU_NODES  (default 2)  nodes without GPUs, labelled ftscale.test/pool=cpu
# GPU nodes are not tainted, so a test needs no toleration; a pod lands on one only when it
# requests nvidia.com/gpu (or selects the pool label).
set -euo pipefail
gpu="${FTSCALE_CLUSTER_GPU_NODES:-4}"
cpu="${FTSCALE_CLUSTER_CPU_NODES:-2}"
kubelet_version="${1:-v0.0.0}"

node() {  # name pool cpu memory gpus
  cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
    ftscale.test/pool: $2
YAML
  if [ "$5" -gt 0 ]; then
    printf '    nvidia.com/gpu.present: "true"\n    nvidia.com/gpu.count: "%s"\n    nvidia.com/gpu.product: KWOK-Fake-GPU\n' "$5"
  fi
  cat <<YAML
status:
  capacity: &res_$1
    cpu: "$3"
    memory: $4
    pods: "110"
    ephemeral-storage: 1Ti
YAML
  if [ "$5" -gt 0 ]; then printf '    nvidia.com/gpu: "%s"\n' "$5"; fi
  cat <<YAML
  allocatable: *res_$1
  nodeInfo:
    kubeletVersion: $kubelet_version
    operatingSystem: linux
    architecture: amd64
YAML
}

for i in $(seq 0 $((gpu - 1))); do node "kwok-gpu-$i" gpu 96 1Ti 8; done
for i in $(seq 0 $((cpu - 1))); do node "kwok-cpu-$i" cpu 32 128Gi 0; done
