# Sourced by up.sh: the harness's second registry, which speaks the Bearer token flow as Docker
# Hub does. Debian's docker-registry (distribution) runs on loopback with `auth: token`; in front of
# it, e2e/cluster/tokenregistry issues the tokens (JWTs signed with a key the harness CA certifies,
# the registry's rootcertbundle), fakes Docker Hub's rate-limit HEAD, can answer 429 on demand, and
# serves TLS on TOKEN_REGISTRY_HOST. Users: its own, and the first registry's (so Docker Hub's
# names, which the deployed pullpass logs in to here, verify with the harness's credentials).
cert token-signer pullpass-e2e-token-signer "" "" client
mkdir -p "$E2E_DIR/token-registry/data"
if [ ! -f "$E2E_DIR/token-registry/password" ]; then
  openssl rand -hex 16 >"$E2E_DIR/token-registry/password"
  chmod 600 "$E2E_DIR/token-registry/password"
fi
TOKEN_REGISTRY_PASSWORD=$(cat "$E2E_DIR/token-registry/password")
umask_old=$(umask); umask 077
printf '%s:%s\n%s:%s\n' "$TOKEN_REGISTRY_USERNAME" "$TOKEN_REGISTRY_PASSWORD" "$REGISTRY_USERNAME" "$REGISTRY_PASSWORD" >"$E2E_DIR/token-registry/users"
umask "$umask_old"
cat >"$E2E_DIR/token-registry/config.yml" <<EOC
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $E2E_DIR/token-registry/data
http:
  addr: 127.0.0.1:$TOKEN_REGISTRY_BACKEND_PORT
  relativeurls: true
auth:
  token:
    realm: https://$TOKEN_REGISTRY_HOST/token
    service: pullpass-e2e-token
    issuer: pullpass-e2e-issuer
    rootcertbundle: $PKI/ca.crt
EOC
(cd "$repo_root" && CGO_ENABLED=0 go build -o "$BIN/tokenregistry" ./e2e/cluster/tokenregistry)
start token-registry docker-registry serve "$E2E_DIR/token-registry/config.yml"
start token-registry-front "$BIN/tokenregistry" -listen "127.0.0.1:$TOKEN_REGISTRY_PORT" \
  -backend "http://127.0.0.1:$TOKEN_REGISTRY_BACKEND_PORT" -tls-cert "$PKI/registry.crt" -tls-key "$PKI/registry.key" \
  -signing-cert "$PKI/token-signer.crt" -signing-key "$PKI/token-signer.key" -users "$E2E_DIR/token-registry/users"
wait_for token-registry-front 30 curl -s --cacert "$PKI/ca.crt" -o /dev/null "https://$TOKEN_REGISTRY_HOST/v2/"
challenge=$(curl -s --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code} %header{www-authenticate}' "https://$TOKEN_REGISTRY_HOST/v2/")
case "$challenge" in
  "401 Bearer realm="*) ;;
  *) die "the token registry answers '$challenge' without a token; it must answer 401 with a Bearer challenge" ;;
esac
code=$(curl -s --cacert "$PKI/ca.crt" -o /dev/null -w '%{http_code}' -u "$TOKEN_REGISTRY_USERNAME:wrong" "https://$TOKEN_REGISTRY_HOST/token?service=pullpass-e2e-token")
[ "$code" = 401 ] || die "the token service answers $code to a wrong password; it must answer 401"
