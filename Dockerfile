# agentproxy: a static binary on a distroless base, run as non-root.
#   docker build -t agentproxy --build-arg VERSION=$(git describe --always --dirty) .
#   docker run --rm -p 9121:9121 agentproxy            # embedded store, metrics on :9121
# Clients outside the container need --listen 0.0.0.0:6380 and [[users]]
# (the proxy refuses unauthenticated clients beyond loopback). As a
# Kubernetes sidecar it keeps the default loopback listener: the agent
# container shares the pod's network namespace (see k8s/).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version agentproxy --version prints (the build context has no VCS data).
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/agentproxy ./cmd/agentproxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agentproxy /usr/local/bin/agentproxy
COPY config.example.toml /etc/agentproxy/agentproxy.toml
USER 65532:65532
# 6380: Redis protocol; 9121: /metrics, /healthz, /readyz.
EXPOSE 6380 9121
ENTRYPOINT ["/usr/local/bin/agentproxy"]
CMD ["serve", "--metrics", "0.0.0.0:9121"]
