#!/usr/bin/env bash
# Write a tiny single-layer image (one text file) as an OCI image layout, without network:
#   scripts/tiny-image.sh DIR [TAG]      (TAG defaults to v1)
# then push it with e.g. `skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG`.
set -euo pipefail
dir=${1:?usage: scripts/tiny-image.sh DIR [TAG]}
tag=${2:-v1}
mkdir -p "$dir/blobs/sha256"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Store a file as a blob; print its sha256 hex digest.
put() {
  local d
  d=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$dir/blobs/sha256/$d"
  echo "$d"
}
size() { stat -c %s "$1"; }

echo "hello from berth, $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$work/hello.txt"
tar -C "$work" --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" hello.txt
gzip -n -c "$work/layer.tar" > "$work/layer.tar.gz"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
layer=$(put "$work/layer.tar.gz")

printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$diff_id" > "$work/config.json"
config=$(put "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$config" "$(size "$work/config.json")" "$layer" "$(size "$work/layer.tar.gz")" > "$work/manifest.json"
manifest=$(put "$work/manifest.json")

printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$(size "$work/manifest.json")" "$tag" > "$dir/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"
echo "sha256:$manifest"
