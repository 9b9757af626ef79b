# NATS with JetStream, built by `make images` from the nats-server module
# that platform/go.mod pins, as a static binary; nothing is pulled. The
# configuration, with its TLS files and the users that natsauth derives,
# is mounted at /etc/nats/nats.conf; JetStream keeps its files in /data.
FROM scratch

COPY nats-server /nats-server

USER 65532:65532
EXPOSE 4222 8222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "/etc/nats/nats.conf"]
