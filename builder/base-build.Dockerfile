# The FrankenPHP base image: the static builder with PHP and its extensions
# compiled once. Downloaded sources and build artefacts stay in the image so
# the app-embed stage only has to link the app in (minutes, not the 20-60 of a
# cold build). Its inputs are hashed into the label
# org.orangescrum.cloudbuilder.base-hash; it is rebuilt only when they change.
#
# BUILDER_IMAGE is the builder.image setting: the pinned upstream image, your
# registry mirror behind an air gap, or the local stand-in (builder/standin/).
# Pick musl with builder.libc=musl (static-builder-musl-<version>).
ARG BUILDER_IMAGE=dunglas/frankenphp:static-builder-gnu-1.12.7
# hadolint ignore=DL3006
FROM ${BUILDER_IMAGE}

ARG PHP_VERSION=8.3
ARG PHP_EXTENSIONS=ctype,curl,dom,fileinfo,gd,intl,json,mbstring,opcache,openssl,pdo,pdo_pgsql,redis,session,simplexml,tokenizer,xml,zip
ARG PHP_EXTENSION_LIBS=
ARG FRANKENPHP_VERSION=1.12.7
ARG XCADDY_MODULES=
ARG COMPRESS=
ARG NO_COMPRESS=1
# The knobs stay in the image's environment so that the embed stage's
# build-static.sh builds against exactly what was compiled here.
ENV PHP_VERSION=${PHP_VERSION} \
    PHP_EXTENSIONS=${PHP_EXTENSIONS} \
    PHP_EXTENSION_LIBS=${PHP_EXTENSION_LIBS} \
    FRANKENPHP_VERSION=${FRANKENPHP_VERSION} \
    SPC_CMD_VAR_FRANKENPHP_XCADDY_MODULES=${XCADDY_MODULES} \
    COMPRESS=${COMPRESS} \
    NO_COMPRESS=${NO_COMPRESS}

WORKDIR /go/src/app
SHELL ["/bin/sh", "-eu", "-c"]

# GITHUB_TOKEN (against GitHub's rate limits) is a build secret: the build
# serves it once on a loopback URL that dies with the build, so it is never in
# a build arg, an ENV or a layer. Without a token SECRET_URL is empty.
# The URL is not the secret (it is dead once the build ends): DL3064 does not apply.
# hadolint ignore=DL3064
ARG SECRET_URL=
RUN if [ -n "${SECRET_URL}" ]; then GITHUB_TOKEN="$(curl -fsS "${SECRET_URL}")"; export GITHUB_TOKEN; fi; \
    ./build-static.sh
