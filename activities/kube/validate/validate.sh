#!/usr/bin/env bash
# Validates every addon manifest hk8s renders with kubernetes-validate (PyPI), strict mode.
#
#   activities/kube/validate/validate.sh [kubernetes-version]
#
# Needs: cargo, and `kubernetes-validate` on PATH (pip install kubernetes-validate==1.37.0).
# The Kubernetes version defaults to 1.34.0, the newest bundled schema not newer than the
# clusters hk8s builds (Talos v1.11 -> Kubernetes 1.34.x; schemas exist for x.y.0 only).
set -euo pipefail
version="${1:-1.34.0}"
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cd "$root"
cargo run --quiet -p hk8s-kube --example dump-manifests -- "$out" "$version"
kubernetes-validate --kubernetes-version "$version" --strict --quiet "$out"/*.yaml
echo "kubernetes-validate $version --strict: $(ls "$out" | wc -l) manifests valid"
