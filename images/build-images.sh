#!/usr/bin/env bash
# Builds SecureBuild's own container images with SecureBuild: packages the `securebuild`,
# `securebuild-operator` and `securebuild-proxy` release binaries as signed APKs (securebuild
# package), then builds, pushes and signs one multi-arch image per binary from those packages
# and Wolfi's (securebuild build --sign-key --sbom --provenance).
#
#   images/build-images.sh REGISTRY_PREFIX        e.g. ghcr.io/securebuild
#
# Environment:
#   PACKAGE_KEY        RSA private key (PEM) that signs the packages; its file name must be
#                      securebuild-packages.rsa, the name the image configurations trust.
#   COSIGN_KEY         cosign private key that signs the images (password: COSIGN_PASSWORD or
#                      SECUREBUILD_KEY_PASSWORD).
#   ARCHS              apk architectures to build (default: "x86_64 aarch64").
#   BIN_DIR            where the binaries are (default: target); for each architecture the
#                      binaries are read from $BIN_DIR/<rust target>/release/, e.g.
#                      target/aarch64-unknown-linux-gnu/release/securebuild.
#   SECUREBUILD        the securebuild binary that runs the steps (default: the host's one in
#                      $BIN_DIR/<host rust target>/release/, else `securebuild` on PATH).
#   CONFIG_DIR         directory holding the *.package.yaml and *.apko.yaml files (default:
#                      the directory of this script); the package repository is written to
#                      $CONFIG_DIR/packages, where the image configurations read it.
#   VERSION            image tag (default: the package version in securebuild.package.yaml).
#   SOURCE_DATE_EPOCH  build date of packages and images (default: the last commit's time).
#   RESULT_DIR         where each image's build result JSON is written (default: .).
set -euo pipefail

usage() {
  sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}
[[ $# -eq 1 && $1 != -* ]] || usage
prefix=${1%/}

die() {
  echo "build-images: $*" >&2
  exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config_dir=${CONFIG_DIR:-$script_dir}
bin_dir=${BIN_DIR:-target}
archs=${ARCHS:-x86_64 aarch64}
result_dir=${RESULT_DIR:-.}
: "${PACKAGE_KEY:?set PACKAGE_KEY to the package signing key (securebuild-packages.rsa)}"
: "${COSIGN_KEY:?set COSIGN_KEY to the cosign key that signs the images}"
[[ $(basename "$PACKAGE_KEY") == securebuild-packages.rsa ]] ||
  die "PACKAGE_KEY must be named securebuild-packages.rsa: the image configurations trust ./packages/securebuild-packages.rsa.pub"
[[ -r $PACKAGE_KEY ]] || die "cannot read PACKAGE_KEY $PACKAGE_KEY"
[[ -r $COSIGN_KEY ]] || die "cannot read COSIGN_KEY $COSIGN_KEY"

rust_target() {
  case $1 in
    x86_64) echo x86_64-unknown-linux-gnu ;;
    aarch64) echo aarch64-unknown-linux-gnu ;;
    *) die "no Rust target for apk architecture $1" ;;
  esac
}

host_arch=$(uname -m)
[[ $host_arch == arm64 ]] && host_arch=aarch64
if [[ -z ${SECUREBUILD:-} ]]; then
  SECUREBUILD="$bin_dir/$(rust_target "$host_arch")/release/securebuild"
  [[ -x $SECUREBUILD ]] || SECUREBUILD=$(command -v securebuild) ||
    die "no securebuild binary: build it (cargo build --release) or set SECUREBUILD"
fi

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git -C "$script_dir" log -1 --format=%ct 2>/dev/null) ||
    die "set SOURCE_DATE_EPOCH (not in a git checkout)"
fi
export SOURCE_DATE_EPOCH
if [[ -z ${VERSION:-} ]]; then
  VERSION=$(sed -n 's/^  version: *//p' "$config_dir/securebuild.package.yaml" | head -n1)
fi

packages="$config_dir/packages"
# One package and one image per binary; each has images/<binary>.package.yaml and
# images/<binary>.apko.yaml.
binaries="securebuild securebuild-operator securebuild-proxy"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# 1. Package each binary for each architecture into $packages/<arch>/ (re-indexed each time).
for arch in $archs; do
  for binary in $binaries; do
    source="$bin_dir/$(rust_target "$arch")/release/$binary"
    [[ -f $source ]] || die "missing $source: build it with cargo build --release --locked --target $(rust_target "$arch")"
    root="$stage/$arch/$binary"
    install -D -m 0755 "$source" "$root/usr/bin/$binary"
    "$SECUREBUILD" package "$config_dir/$binary.package.yaml" --destdir "$root" \
      --arch "$arch" --signing-key "$PACKAGE_KEY" --output "$packages"
  done
done
# The public half, where the image configurations' keyring expects it.
openssl rsa -in "$PACKAGE_KEY" -pubout -out "$packages/securebuild-packages.rsa.pub" 2>/dev/null ||
  die "cannot derive the public key from $PACKAGE_KEY"

# 2. One image per binary: built from the packages, pushed, signed, with SBOM and provenance.
arch_flags=()
for arch in $archs; do
  arch_flags+=(--arch "$arch")
done
mkdir -p "$result_dir"
for image in $binaries; do
  "$SECUREBUILD" build "$config_dir/$image.apko.yaml" "${arch_flags[@]}" \
    --push "$prefix/$image" --tag "$VERSION" \
    --sign-key "$COSIGN_KEY" --sbom --provenance \
    --result "$result_dir/$image.result.json"
done
