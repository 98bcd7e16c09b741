# Embed the app into the FrankenPHP binary, on top of the cached base image.
# Build context (made by cloudbuilder.binary.embed_context): this file, deps/
# (the app's composer.json and composer.lock, when it has one) and app/ (the
# app archive: git archive or a filtered tar; never .git, tests/, .env*, and
# without vendor/, which composer installs here).
#
# The classic builder (no BuildKit here) starts a container for every step
# after the first cache miss: keep the steps few.  Its cache is what makes an
# app-only change fast: the vendor tree is installed from deps/ alone, so that
# layer is reused ("Using cache") while composer.json/composer.lock are unchanged.
#
# Stage 1: the vendor tree and an optimized autoloader, like
# `composer install --no-dev -a`, in two halves. The gnu builder image has no
# php/composer, so this runs in COMPOSER_IMAGE (builder.composer_image:
# composer:2, or the stand-in builder).
ARG COMPOSER_IMAGE=composer:2
ARG BASE_IMAGE=orangescrum-cloud-base:latest
# hadolint ignore=DL3006
FROM ${COMPOSER_IMAGE} AS composer
COPY deps/ /app/
# Extensions are checked against the binary, not this image: ignore platform reqs.
RUN composer install --working-dir=/app --no-dev --no-autoloader --no-interaction --no-progress --no-scripts \
        --ignore-platform-reqs \
    && rm -rf /app/.composer
COPY app/ /app/
RUN composer dump-autoload --working-dir=/app --no-dev --classmap-authoritative --no-interaction --no-scripts \
        --ignore-platform-reqs

# Stage 2: the static build with the app embedded, in /go/src/app (the base
# image's WORKDIR, inherited: no step of its own).
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
COPY --from=composer /app /go/src/app/dist/app
# The URL is not the secret (it is dead once the build ends): DL3064 does not apply.
# hadolint ignore=DL3064
ARG SECRET_URL= EMBED_KEY=
RUN set -eu; \
    if [ -n "${SECRET_URL}" ]; then GITHUB_TOKEN="$(curl -fsS "${SECRET_URL}")"; export GITHUB_TOKEN; fi; \
    EMBED=dist/app/ ./build-static.sh
LABEL org.orangescrum.cloudbuilder.role=embed org.orangescrum.cloudbuilder.embed-key=${EMBED_KEY}
