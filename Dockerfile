# Berth in a container: `docker build -t berth .` then
#   docker run -d --name berth -p 5000:5000 -v berth-data:/var/lib/berth berth
#   docker exec berth cat /var/lib/berth/root-credentials.json
# Untested: this repository's test suite cannot pull base images, so this file is never
# built by it (tests/e2e/test_package.py only checks that what it names exists and
# agrees with the Debian package). Kept deliberately simple.

# Build stage: the release binary (the toolchain must be 1.85 or newer).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin berth

# Runtime stage: glibc, CA certificates (for an https S3 endpoint or replication peer),
# the binary, the packaged default configuration, and a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/berth --no-create-home \
        --shell /usr/sbin/nologin berth \
    && install -d -o berth -g berth -m 0700 /var/lib/berth
COPY --from=build /src/target/release/berth /usr/bin/berth
COPY packaging/berth.toml /etc/berth/berth.toml
USER berth
# Everything Berth keeps (database, blobs, secrets key, root credentials): mount a volume.
VOLUME /var/lib/berth
EXPOSE 5000
# The packaged configuration listens on loopback; in a container the port must be
# reachable from outside it. Arguments after the image name are appended (e.g. --region).
ENTRYPOINT ["/usr/bin/berth", "serve", "--config", "/etc/berth/berth.toml", "--listen", "0.0.0.0:5000"]
