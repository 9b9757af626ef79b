# The gateway: the platform's only public entry. Built by `make images`
# from a static binary compiled on the host; nothing is pulled.
FROM scratch

# Public CA roots, for an OpenID Connect issuer reached over HTTPS.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY gateway /gateway

# Listen on every interface of the container's own network namespace, and
# read the identity and signing keys from where they are mounted.
ENV GATEWAY_HTTP_ADDR=:8080 \
    GATEWAY_INTERNAL_ADDR=:9004 \
    GATEWAY_ADMIN_ADDR=:9104 \
    GATEWAY_SVID_CERT=/run/rampart/svid/svid.pem \
    GATEWAY_SVID_KEY=/run/rampart/svid/svid.key \
    GATEWAY_TRUST_BUNDLE=/run/rampart/bundle.pem \
    GATEWAY_TXN_SIGNING_KEYS=/run/rampart/keys/gateway-txn.jwks

USER 65532:65532
EXPOSE 8080 9004 9104
ENTRYPOINT ["/gateway"]
