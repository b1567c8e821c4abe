#!/usr/bin/env bash
# Builds a Debian bookworm base image without any image registry: debootstrap a
# minimal rootfs from deb.debian.org and `docker import` it.  Usage:
#   docker/build-base.sh [IMAGE_TAG]      (default skyshard-base:bookworm)
# Does nothing when the image already exists (set FORCE=1 to rebuild).
# The rootfs tarball is cached in ${SKYSHARD_CACHE:-$HOME/.cache/skyshard}.
set -euo pipefail
tag=${1:-skyshard-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already present"
    exit 0
fi
cache=${SKYSHARD_CACHE:-$HOME/.cache/skyshard}
tarball=$cache/bookworm-minbase.tar
mkdir -p "$cache"
if [ "${FORCE:-0}" = 1 ] || [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
    rootfs=$(mktemp -d /tmp/skyshard-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    echo "debootstrap bookworm (minbase) from $mirror into $rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    # Smaller image: no apt caches or package lists (the Dockerfile runs apt-get update).
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    echo "deb $mirror bookworm main" > "$rootfs/etc/apt/sources.list"
    echo "deb $mirror bookworm-updates main" >> "$rootfs/etc/apt/sources.list"
    echo "deb http://deb.debian.org/debian-security bookworm-security main" >> "$rootfs/etc/apt/sources.list"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
fi
docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$tarball" "$tag" >/dev/null
echo "base image $tag imported from $tarball"
