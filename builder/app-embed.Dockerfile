# Embed the app into the FrankenPHP binary, on top of the cached base image.
# Build context (made by cloudbuilder.binary): this file and app/ (the app
# archive: git archive or a filtered tar; never .git, tests/, .env*).
#
# Stage 1: composer install --no-dev with an optimized autoloader. The gnu
# builder image has no php/composer, so this runs in COMPOSER_IMAGE
# (builder.composer_image: composer:2, or the stand-in builder).
ARG COMPOSER_IMAGE=composer:2
ARG BASE_IMAGE=orangescrum-cloud-base:latest
# hadolint ignore=DL3006
FROM ${COMPOSER_IMAGE} AS composer
WORKDIR /app
COPY app/ /app/
# Extensions are checked against the binary, not this image: ignore platform reqs.
RUN composer install --no-dev -a --no-interaction --no-progress --no-scripts --ignore-platform-reqs \
    && rm -rf /app/.composer

# Stage 2: the static build with the app embedded.
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
WORKDIR /go/src/app
COPY --from=composer /app /go/src/app/dist/app
SHELL ["/bin/sh", "-eu", "-c"]
# The URL is not the secret (it is dead once the build ends): DL3064 does not apply.
# hadolint ignore=DL3064
ARG SECRET_URL=
RUN if [ -n "${SECRET_URL}" ]; then GITHUB_TOKEN="$(curl -fsS "${SECRET_URL}")"; export GITHUB_TOKEN; fi; \
    EMBED=dist/app/ ./build-static.sh
