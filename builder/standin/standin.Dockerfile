# Stand-in for dunglas/frankenphp:static-builder-gnu: same contract (WORKDIR
# /go/src/app, EMBED=dist/app/ ./build-static.sh -> dist/frankenphp-linux-<arch>),
# but the "static binary" bundles Debian's PHP CLI, PHP-FPM and Caddy, and its
# php-server runs Caddy in front of PHP-FPM from the app's Caddyfile.
# For tests and air-gapped demos only; see README.md.
#
# ROOTFS_IMAGE: a Debian bookworm rootfs imported by cloudbuilder.standin with
# php8.2-cli, php8.2-fpm, caddy, the OrangeScrum extensions, composer,
# ca-certificates and tar.
ARG ROOTFS_IMAGE
# ROOTFS_IMAGE always carries an explicit tag (the rootfs hash), hadolint cannot see it.
# hadolint ignore=DL3006
FROM ${ROOTFS_IMAGE}

LABEL org.opencontainers.image.title="FrankenPHP static-builder stand-in" \
      org.opencontainers.image.description="NOT a real FrankenPHP builder: build-static.sh bundles Debian's PHP CLI, PHP-FPM and Caddy (no embedded PHP, no worker mode, no HTTPS)" \
      org.orangescrum.cloudbuilder.standin="true"

ENV FRANKENPHP_VERSION=1.12.7 \
    COMPOSER_ALLOW_SUPERUSER=1 \
    COMPOSER_NO_INTERACTION=1

WORKDIR /go/src/app
# No COPY --chmod: the daemon here has no BuildKit.
COPY build-static.sh frankenphp-stub.sh /go/src/app/
RUN chmod 0755 /go/src/app/build-static.sh /go/src/app/frankenphp-stub.sh

CMD ["./build-static.sh"]
