# The order service. Built by `make images` from a static binary compiled
# on the host; nothing is pulled.
FROM scratch

COPY order /order

# Listen on every interface of the container's own network namespace, read
# the identity from where it is mounted, and keep the database in /data,
# the one writable mount of a read-only container.
ENV ORDER_GRPC_ADDR=:9002 \
    ORDER_ADMIN_ADDR=:9102 \
    ORDER_SVID_CERT=/run/rampart/svid/svid.pem \
    ORDER_SVID_KEY=/run/rampart/svid/svid.key \
    ORDER_TRUST_BUNDLE=/run/rampart/bundle.pem \
    ORDER_DATA_DIR=/data

USER 65532:65532
EXPOSE 9002 9102
ENTRYPOINT ["/order"]
