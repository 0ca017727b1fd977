# revgate in a container: built with the same setup script as everywhere else.
#   docker build -t revgate .
#   docker run --rm -p 8080:8080 -v $PWD/my.yaml:/etc/revgate/revgate.yaml revgate
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN scripts/setup.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN rm -rf build && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DREVGATE_BUILD_TESTS=OFF -DREVGATE_BUILD_BENCH=OFF \
 && cmake --build build --target revgate

FROM debian:bookworm-slim
COPY scripts/setup.sh /tmp/setup.sh
RUN /tmp/setup.sh --runtime && rm -rf /var/lib/apt/lists/* /tmp/setup.sh \
 && useradd --system --no-create-home --uid 10001 revgate
COPY --from=build /src/build/revgate /usr/local/bin/revgate
COPY examples/canary.yaml /etc/revgate/revgate.yaml
# The default stateFile lives beside the config (/etc/revgate/revgate.state.json): the directory
# is the revgate user's so that runtime traffic changes can be kept. A read-only mount of
# /etc/revgate (a Kubernetes ConfigMap) needs stateFile pointed elsewhere, e.g. an emptyDir.
RUN chown revgate /etc/revgate
USER revgate
EXPOSE 8080 9901
ENTRYPOINT ["revgate"]
CMD ["run", "-c", "/etc/revgate/revgate.yaml"]
