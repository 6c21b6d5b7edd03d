/**
 * A fixed self-signed certificate (CA:TRUE, SAN IP:127.0.0.1 and DNS:localhost, valid 2000-01-01 to
 * 2100-01-01) and its P-256 key, for the fake API server's TLS mode. Test material only: it protects
 * nothing. Made with `openssl ca -selfsign -startdate 20000101000000Z -enddate 21000101000000Z` over
 * a P-256 CSR for CN=weft-fake-kube, extensions: the SAN above, basicConstraints=critical,CA:TRUE,
 * keyUsage=critical,digitalSignature,keyCertSign, extendedKeyUsage=serverAuth.
 */
export const FAKE_KUBE_CERT = `-----BEGIN CERTIFICATE-----
MIIBljCCATygAwIBAgIBATAKBggqhkjOPQQDAjAZMRcwFQYDVQQDDA53ZWZ0LWZh
a2Uta3ViZTAgFw0wMDAxMDEwMDAwMDBaGA8yMTAwMDEwMTAwMDAwMFowGTEXMBUG
A1UEAwwOd2VmdC1mYWtlLWt1YmUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASo
vQv9nBth0e87y9aTLRzfvLyukl04O9K6sf9GCITYU8tHZq2//dUMucFzlc/pMV1V
YLJlODD257ACcdVxtiCao3MwcTAaBgNVHREEEzARhwR/AAABgglsb2NhbGhvc3Qw
DwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAoQwEwYDVR0lBAwwCgYIKwYB
BQUHAwEwHQYDVR0OBBYEFCXhlgSFObrJGCledbBueuqM4ab+MAoGCCqGSM49BAMC
A0gAMEUCIQCn6P+nZKDoJCBWf/LIR74nwSalZyMQO3YeVpyeWGEdWAIgRwNF/veQ
gQpMDIh+SJsdRVUQEwVgSuwgeXaTaCNNRO0=
-----END CERTIFICATE-----
`

export const FAKE_KUBE_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAYqxiTXi2OPa3PZ4
gCFMLIGx9jpWOQa1s+H+Gmk2EQOhRANCAASovQv9nBth0e87y9aTLRzfvLyukl04
O9K6sf9GCITYU8tHZq2//dUMucFzlc/pMV1VYLJlODD257ACcdVxtiCa
-----END PRIVATE KEY-----
`
