# Multi-stage build of the reel workers on Debian 12.
FROM debian:12 AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh
COPY . /src
RUN cmake -S /src -B /src/build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build /src/build -j "$(nproc)" --target reel

FROM debian:12-slim
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       librdkafka1 libavro23 libopenblas0-pthread libhiredis0.14 libsndfile1 \
       libmicrohttpd12 libjansson4 libjpeg62-turbo libpng16-16 libsamplerate0 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/reel /usr/local/bin/reel
RUN useradd --system --home /var/lib/reel --create-home reel
USER reel
WORKDIR /var/lib/reel
VOLUME /var/lib/reel/models
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/reel"]
CMD ["--help"]
