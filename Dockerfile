# cloudlb container image.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg VCS_REF=$(git rev-parse HEAD) -t cloudlb:0.1.0 .
#
# Stage 1 builds the release binary from the workspace with the locked dependency set. Stage 2
# is distroless/cc-debian12 (nonroot): glibc 2.36, libgcc_s and CA certificates, no shell, no
# package manager, user 65532. Why this base and not debian:bookworm-slim:
#   - the binary links glibc (>= 2.36: its relocations are packed, see build.rs), libm and
#     libgcc_s, exactly what the `cc` distroless variant carries, and nothing else;
#   - it trusts the system CA store (rustls-native-certs) for the AWS, Google and Kubernetes
#     APIs: /etc/ssl/certs/ca-certificates.crt is in the image;
#   - no shell or package manager to exploit, and a smaller image than bookworm-slim.
# The builder is Debian 12 too, so the binary's glibc symbol versions match the runtime's. On
# x86_64 its rustc links with LLD, which lays out the functions that run first
# (link/cloudlb.order, see build.rs): about 10 MiB less resident text.
#
# Read-only root filesystem: cloudlb writes no file at run time (logs go to stderr; the memory
# provider's --memory-state-file is for tests), so the pod can run with
# readOnlyRootFilesystem: true and no writable volume.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# The commit for `cloudlb --version` and the build_info metric (the context has no .git).
ARG VCS_REF=unknown
ENV CLOUDLB_COMMIT=${VCS_REF}
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds (BuildKit, buildah, podman).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_INCREMENTAL=0 cargo build --release --locked --bin cloudlb \
    && install -D -m 0755 target/release/cloudlb /out/cloudlb

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="cloudlb" \
      org.opencontainers.image.description="Kubernetes controller: real load balancers for Services of type LoadBalancer and Ingresses" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}"
COPY --from=build /out/cloudlb /usr/local/bin/cloudlb
# The distroless nonroot user, by number so runAsNonRoot can check it without /etc/passwd.
USER 65532:65532
# 8080: /metrics, /healthz, /readyz (--metrics-addr).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cloudlb"]
CMD ["run"]
