# Builds the dsv plugin rootfs as an image, for those who can pull from an
# image registry. Without one (as on the project's own machines, where
# `docker pull` fails), use ./build-plugin.sh: it builds the same rootfs from
# the host's Go toolchain and CA bundle and pulls nothing. This file is not
# built by CI for that reason.
#
# The final image holds exactly what build-plugin.sh puts in plugin/rootfs:
#   /dsv                                 the static binary (CGO_ENABLED=0)
#   /etc/ssl/certs/ca-certificates.crt   CA bundle for the AWS backend
#   empty folders: /mnt/dsv /var/lib/dsv /run/docker/plugins /run/dsv/files /run/dsv/templates
#                  /run/dsv/credentials /tmp (1777) /proc /sys /dev /etc
#
# Turning it into a managed plugin:
#   docker build --build-arg VERSION="$(git describe --always --dirty)" -t dsv-rootfs .
#   rm -rf plugin && mkdir -p plugin/rootfs && cp config.json plugin/
#   id=$(docker create dsv-rootfs)
#   docker export "$id" | tar -x -C plugin/rootfs
#   docker rm "$id"
#   docker plugin create dsv plugin/
#   docker plugin enable dsv
# (`docker export` also writes /.dockerenv and empty /etc/hosts,
# /etc/hostname, /etc/resolv.conf and /dev entries of the container; they are
# harmless mount points, and build-plugin.sh does not create them.)

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /rootfs/dsv ./cmd/dsv
# scratch has no shell and no mkdir: lay the folders out here and copy them.
# Keep this list in step with rootfs_dirs in build-plugin.sh.
RUN set -eu; \
    for d in mnt/dsv var/lib/dsv run/docker/plugins run/dsv/files run/dsv/templates run/dsv/credentials tmp proc sys dev etc; do \
        install -d -m 0755 "/rootfs/$d"; \
    done; \
    chmod 1777 /rootfs/tmp; \
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt

FROM scratch
COPY --from=build /rootfs/ /
ENTRYPOINT ["/dsv"]
