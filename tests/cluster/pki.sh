#!/usr/bin/env bash
# Generate the test cluster's certificates and keys into DIR (kept when already there):
#   ca.{crt,key}          the cluster CA (signs everything below; apiserver's --client-ca-file)
#   apiserver.{crt,key}   serving cert for 127.0.0.1 / localhost / kubernetes.default.svc
#   admin.{crt,key}       CN=ftscale-admin, O=system:masters   (the kubeconfig up.sh prints)
#   kube-controller-manager.{crt,key}, kube-scheduler.{crt,key}  the RBAC-bootstrapped users
#   kwok.{crt,key}        CN=kwok, O=system:masters (it plays every kubelet)
#   sa.{key,pub}          service-account token signing key pair
set -euo pipefail
out="${1:?usage: pki.sh DIR}"
mkdir -p "$out"
cd "$out"
[ -f sa.pub ] && [ -f kwok.crt ] && exit 0
umask 077
days=3650
openssl genrsa -out ca.key 2048 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=ftscale-test-ca" -days "$days" -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"

sign() {  # name subject extensions
  openssl genrsa -out "$1.key" 2048 2>/dev/null
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%b\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -out "$1.crt" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
client="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth"
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=ftscale-admin" "$client"
sign kube-controller-manager "/CN=system:kube-controller-manager" "$client"
sign kube-scheduler "/CN=system:kube-scheduler" "$client"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
sign kwok "/O=system:masters/CN=kwok" "$client"
echo "certificates and keys written to $out" >&2
