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
mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/etc/ssl/certs" "$ctx/root/tmp"
chmod 1777 "$ctx/root/tmp"   # as in distroless; cloudlb itself writes nothing
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

# Run it. First as a container (podman run: uid 65532, read-only root, no capabilities). Where
# the OCI runtime cannot start containers at all (crun refuses hybrid cgroup v1/v2 hosts, and
# may not raise rlimits without CAP_SYS_RESOURCE), fall back to running the image's own root
# filesystem, mounted read-only, under chroot as 65532: that still proves the image is complete
# (binary, loader, libraries, CA bundle) and needs neither a writable path nor root.
# in_image DIR ARGS...: cloudlb ARGS in the image, with host directory DIR read-only at /tmp,
# in the host's network namespace. Every call runs in a subshell ($(...) or &), which it
# replaces (exec), so the PID of a background call is the process in the image.
want="cloudlb $version"
mode=podman
in_image() {
  local dir=$1; shift
  if [ "$mode" = podman ]; then
    exec podman run --rm --read-only --cap-drop=ALL --security-opt=no-new-privileges --network=host \
      --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" -v "$dir:/tmp:ro" "$image" "$@"
  else
    exec unshare --mount --propagation private sh -c '
      root=$1 dir=$2; shift 2
      mount --bind "$root" "$root" && mount -o remount,bind,ro "$root" &&
      mount --bind "$dir" "$root/tmp" && mount -o remount,bind,ro "$root/tmp" &&
      exec chroot --userspec=65532:65532 "$root" /usr/local/bin/cloudlb "$@"' sh "$mnt" "$dir" "$@"
  fi
}
echo "== cloudlb --version in the image"
if ! out=$(in_image "$ctx" --version 2>"$ctx/run.err"); then
  echo "podman run failed here: $(tail -1 "$ctx/run.err")"
  echo "falling back to: the image's root filesystem, read-only, under chroot --userspec=65532:65532"
  command -v unshare >/dev/null && command -v chroot >/dev/null || { echo "unshare/chroot missing" >&2; exit 1; }
  mode=chroot
  mnt=$(podman image mount "$image")
  trap 'podman image unmount "$image" >/dev/null 2>&1 || true; rm -rf "$ctx"' EXIT
  out=$(in_image "$ctx" --version)
fi
echo "$out"
[ "$out" = "$want" ] || { echo "unexpected --version output: '$out' (want '$want')" >&2; exit 1; }
user=$(podman image inspect "$image" --format '{{.Config.User}}')
[ "$user" = "65532:65532" ] || { echo "image user is $user, want 65532:65532" >&2; exit 1; }

# The controller itself from the image: against a sandbox API that the same binary serves on
# this host (started with its own controller off the test's class), with the memory provider:
# /readyz answers 200 and a Service of the test's class gets an EXTERNAL-IP from the image's
# controller, all on the read-only root with the kubeconfig mounted read-only.
echo "== cloudlb run from the image against a sandbox API"
command -v curl >/dev/null || { echo "curl missing" >&2; exit 1; }
kdir="$ctx/kube"; mkdir -p "$kdir"
"$bin" sandbox --no-demo --kubeconfig-out "$kdir/kubeconfig" >"$ctx/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$kdir/kubeconfig" ] && break; sleep 0.1; done
[ -s "$kdir/kubeconfig" ] || { echo "the sandbox did not start: $(cat "$ctx/sandbox.log")" >&2; kill "$sandbox_pid"; exit 1; }
chmod -R a+rX "$kdir"
server=$(awk '/server:/{print $2; exit}' "$kdir/kubeconfig")
port=$(( 20000 + RANDOM % 20000 ))
class=cloudlb.io/image-test
in_image "$kdir" run --kubeconfig /tmp/kubeconfig --provider memory --leader-elect=false \
  --load-balancer-class "$class" --metrics-addr "127.0.0.1:$port" --log-format json >"$ctx/controller.log" 2>&1 &
ctl_pid=$!
stop() { kill "$ctl_pid" "$sandbox_pid" 2>/dev/null || true; wait "$ctl_pid" "$sandbox_pid" 2>/dev/null || true; }
ready=""
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && { ready=1; break; }
  sleep 0.1
done
[ -n "$ready" ] || { stop; echo "not ready; log:" >&2; cat "$ctx/controller.log" >&2; exit 1; }
curl -sf -H 'Content-Type: application/json' "$server/api/v1/nodes" -d \
  '{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"},"spec":{"providerID":"memory:///n1"},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}}' >/dev/null
curl -sf -H 'Content-Type: application/json' "$server/api/v1/namespaces/default/services" -d \
  "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\"},\"spec\":{\"type\":\"LoadBalancer\",\"loadBalancerClass\":\"$class\",\"ports\":[{\"port\":80,\"protocol\":\"TCP\"}]}}" >/dev/null
ip=""
for _ in $(seq 300); do
  ip=$(curl -s "$server/api/v1/namespaces/default/services/web" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(((s.get("status") or {}).get("loadBalancer") or {}).get("ingress",[{}])[0].get("ip",""))' 2>/dev/null || true)
  [ -n "$ip" ] && break
  sleep 0.1
done
stop
[ -n "$ip" ] || { echo "the Service got no address; log:" >&2; cat "$ctx/controller.log" >&2; exit 1; }
echo "readyz 200; Service default/web (class $class) got EXTERNAL-IP $ip from the controller in the image"
how=$([ "$mode" = podman ] && echo "podman run --read-only --cap-drop=ALL as 65532" || echo "chroot into the read-only image root as 65532; podman run is unavailable on this host")
echo "ok: $image runs '$out' and the controller ($how)"
