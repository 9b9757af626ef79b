# The user service. Built by `make images` from a static binary compiled
# on the host; nothing is pulled.
FROM scratch

COPY user /user

# Listen on every interface of the container's own network namespace, read
# the identity from where it is mounted, and keep the database in /data,
# the one writable mount of a read-only container.
ENV USER_GRPC_ADDR=:9001 \
    USER_ADMIN_ADDR=:9101 \
    USER_SVID_CERT=/run/rampart/svid/svid.pem \
    USER_SVID_KEY=/run/rampart/svid/svid.key \
    USER_TRUST_BUNDLE=/run/rampart/bundle.pem \
    USER_DATA_DIR=/data \
    USER_SIGNING_KEYS=/run/rampart/keys/user-access.jwks

USER 65532:65532
EXPOSE 9001 9101
ENTRYPOINT ["/user"]
