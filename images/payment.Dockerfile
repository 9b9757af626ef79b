# The payment service. Built by `make images` from a static binary compiled
# on the host; nothing is pulled.
FROM scratch

COPY payment /payment

# Listen on every interface of the container's own network namespace, read
# the identity from where it is mounted, and keep the database in /data,
# the one writable mount of a read-only container.
ENV PAYMENT_GRPC_ADDR=:9003 \
    PAYMENT_ADMIN_ADDR=:9103 \
    PAYMENT_SVID_CERT=/run/rampart/svid/svid.pem \
    PAYMENT_SVID_KEY=/run/rampart/svid/svid.key \
    PAYMENT_TRUST_BUNDLE=/run/rampart/bundle.pem \
    PAYMENT_DATA_DIR=/data

USER 65532:65532
EXPOSE 9003 9103
ENTRYPOINT ["/payment"]
