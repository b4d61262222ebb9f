# syntax=docker/dockerfile:1
# The ecs-gateway image: a stripped static-enough binary (glibc only; rustls
# and ring need no OpenSSL) on distroless, running as a non-root user.
#   docker build -t ecs-gateway:0.1.0 .
# The build step is docker/build-binary.sh, which CI runs outside Docker.
# Without Docker or a registry, docker/build-image.sh builds the same final
# stage FROM scratch with buildah, reading it from this file; CI checks and
# starts that image (docker/check-image.sh; docs/operations.md, "The image").

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# binutils: readelf, with which the build script checks the binary is stripped.
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils=2.40-2 \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN docker/build-binary.sh /out/ecs-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
# VERSION is Cargo.toml's (docker/check-image.sh fails when they differ);
# REVISION the commit: docker build --build-arg REVISION="$(git rev-parse HEAD)" .
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ecs-gateway" \
      org.opencontainers.image.description="gRPC gateway for Alibaba Cloud ECS ModifyInstanceNetworkSpec: authenticates, validates, authorizes with Cedar, signs and forwards" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ecs-gateway/ecs-gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/ecs-gateway /usr/local/bin/ecs-gateway
# The sample policies, for `… demo` (it reads ECS_GATEWAY_POLICY_DIR, below)
# (docs/operations.md, "The image"); the Helm chart mounts its own.
COPY policies /etc/ecs-gateway/policies
# distroless's nonroot user.
USER 65532:65532
# gRPC and the admin port (/metrics, /healthz, /readyz), as the chart uses them.
EXPOSE 50051 9090
ENV ECS_GATEWAY_POLICY_DIR=/etc/ecs-gateway/policies
ENTRYPOINT ["/usr/local/bin/ecs-gateway"]
CMD ["serve"]
