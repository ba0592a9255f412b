#!/usr/bin/env bash
# Builds a cloudlb image without any registry: FROM scratch around an already built binary and
# the shared libraries `ldd` lists for it (plus the loader and the CA bundle), the same layout
# and user as the Dockerfile's runtime stage, then runs `cloudlb --version` in it as uid 65532
# with a read-only root filesystem.
#
#   deploy/image/build-local.sh [path/to/cloudlb] [image-name]
#
# Needs podman (Debian: apt-get install podman). The Dockerfile itself needs a registry (its
# base images) and is not what this script builds: this checks that the binary runs in a
# minimal non-root, read-only image, not that the Dockerfile builds.
set -euo pipefail

bin=${1:-target/release/cloudlb}
image=${2:-localhost/cloudlb:local}
[ -x "$bin" ] || { echo "no executable at $bin (cargo build --release --bin cloudlb)" >&2; exit 1; }
command -v podman >/dev/null || { echo "podman not found (apt-get install podman)" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/../.." && pwd)
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
version=$("$bin" --version | awk '{print $2}')

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/etc/ssl/certs"
cp "$bin" "$ctx/root/usr/local/bin/cloudlb"
# Every library the dynamic loader resolves, and the loader itself, at the same paths.
ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
# Kubernetes, AWS and Google APIs are reached over TLS checked against the system store.
cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/root/etc/ssl/certs/"
printf 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/root/etc/passwd"
printf 'nonroot:x:65532:\n' >"$ctx/root/etc/group"

cat >"$ctx/Containerfile" <<CF
FROM scratch
COPY root/ /
LABEL org.opencontainers.image.title="cloudlb" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.revision="$commit"
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cloudlb"]
CMD ["run"]
CF

echo "== building $image from scratch (binary: $bin, libraries from ldd)"
podman build --quiet -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null
podman image inspect "$image" --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} labels={{.Config.Labels}}'

# Run it. First as a container (podman run: uid 65532, read-only root, no capabilities, no
# network). Where the OCI runtime cannot start containers at all (crun refuses hybrid cgroup
# v1/v2 hosts, or may not raise rlimits without CAP_SYS_RESOURCE), fall back to running the
# image's own root filesystem, mounted read-only, under chroot as 65532: that still proves the
# image is complete (binary, loader, libraries) and needs no writable path or root.
want="cloudlb $version"
echo "== cloudlb --version in the image"
if out=$(podman run --rm --read-only --cap-drop=ALL --network=none --security-opt=no-new-privileges \
           --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" "$image" --version 2>"$ctx/run.err"); then
  how="podman run --read-only --cap-drop=ALL --user from the image (65532)"
else
  echo "podman run failed here: $(tail -1 "$ctx/run.err")"
  echo "falling back to: the image's root filesystem, read-only, under chroot --userspec=65532:65532"
  command -v unshare >/dev/null && command -v chroot >/dev/null || { echo "unshare/chroot missing" >&2; exit 1; }
  mnt=$(podman image mount "$image")
  trap 'podman image unmount "$image" >/dev/null 2>&1 || true; rm -rf "$ctx"' EXIT
  out=$(unshare --mount --propagation private sh -c '
          mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" &&
          exec chroot --userspec=65532:65532 "$1" /usr/local/bin/cloudlb --version' sh "$mnt")
  how="chroot into the read-only image root as 65532 (podman run unavailable on this host)"
fi
echo "$out"
[ "$out" = "$want" ] || { echo "unexpected --version output: '$out' (want '$want')" >&2; exit 1; }
user=$(podman image inspect "$image" --format '{{.Config.User}}')
[ "$user" = "65532:65532" ] || { echo "image user is $user, want 65532:65532" >&2; exit 1; }
echo "ok: $image runs '$out' ($how)"
