"""The ftscale test control plane: a real kube-apiserver, etcd, controller-manager, scheduler
and KWOK fake GPU nodes, built from Go modules and run on 127.0.0.1 (see docs/control-plane.md).

Python entry points:
  cluster.paths          where the built binaries are (kubectl, helm, promtool, ...)
  cluster.control_plane  start/stop a control plane from Python (wraps up.sh / down.sh)
  cluster.kubelet        act as the kubelet of a pod: finish it with a termination message
  cluster.fixtures       the pytest plugin (registered in tests/conftest.py)
"""
