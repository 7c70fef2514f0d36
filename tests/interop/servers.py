"""The interop suite's authorization servers and MCP servers, built from released PyPI packages
(versions pinned by tests/interop/requirements.txt). One role per process, so the suite can stop
and restart one of them:

    servers.py fastmcp-as  CONFIG_JSON   fastmcp's OAuthProxy with IdentityAssertion (ID-JAG via
                                         jwt-bearer, a public client, issuer WITH a trailing slash)
                                         and the FastMCP server it protects ("notes"), one process
    servers.py authlib-as  CONFIG_JSON   Authlib's IDJAGGrant behind a small Starlette adapter
                                         (confidential client, client_secret_basic or
                                         private_key_jwt with a registered public JWK, RFC 9068
                                         JWT access tokens, jti replay rejected)
    servers.py fastmcp-oauth CONFIG_JSON fastmcp's OAuthProxy doing the standard MCP authorization
                                         (dynamic registration, authorization code + PKCE, its own
                                         consent page, refresh) in front of the IdP (oidc-provider's
                                         login and consent), and the FastMCP server it protects
                                         ("tickets"), one process: Lanyard's `oauth` mode
    servers.py jwks-mcp    CONFIG_JSON   FastMCP servers ("wiki", "payroll", "hr", "ghost") that
                                         accept the Authlib AS's JWT access tokens, verified against
                                         its JWKS

Each prints `ready <role>` on stdout once every listener is up. `GET /_interop/state` (test-only)
on the authorization servers counts grants and rejections (replays by reason) for the checks.

This file owns the peers' configuration and the thinnest glue a library needs to run (Authlib has no
Starlette server integration). It must not re-implement what the libraries do: ID-JAG validation,
replay checks, token issuance and bearer verification stay theirs.
"""

import asyncio
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fastmcp import FastMCP
from fastmcp.server.dependencies import get_access_token


def load_config():
    with open(sys.argv[2], encoding="utf-8") as f:
        return json.load(f)


def tools(mcp):
    """The same two tools on every MCP server: who the bearer is, and an echo."""

    @mcp.tool
    def whoami() -> str:
        """The caller as the access token says: sub, client_id, jti, exp, iss."""
        token = get_access_token()
        claims = dict(token.claims or {}) if token else {}
        return json.dumps(
            {
                "server": mcp.name,
                "sub": claims.get("sub"),
                "client_id": claims.get("client_id") or (token.client_id if token else None),
                "jti": claims.get("jti"),
                "exp": claims.get("exp"),
                "iss": claims.get("iss"),
            }
        )

    @mcp.tool
    def echo(text: str) -> str:
        """Returns the text."""
        return text


async def serve(apps):
    """Runs every (app, port) on 127.0.0.1 and says ready once all of them listen."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        for app, port in apps
    ]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()
            raise SystemExit("a listener stopped before it started")
        await asyncio.sleep(0.02)
    print(f"ready {sys.argv[1]}", flush=True)
    await asyncio.gather(*tasks)


# ---- fastmcp: OAuthProxy + IdentityAssertion ---------------------------------------------------


def fastmcp_as(config):
    from fastmcp.server.auth import IdentityAssertion, OAuthProxy
    from fastmcp.server.auth.providers.jwt import JWTVerifier
    from key_value.aio.stores.memory import MemoryStore

    port = config["port"]
    base = f"http://127.0.0.1:{port}"
    idp = config["idp_issuer"]
    stats = {"granted": 0, "rejected": 0}

    class CountingProxy(OAuthProxy):
        """OAuthProxy, counting what its ID-JAG grant accepted and refused (the suite's checks)."""

        async def exchange_identity_assertion(self, client, params):
            try:
                token = await super().exchange_identity_assertion(client, params)
            except Exception:
                stats["rejected"] += 1
                raise
            stats["granted"] += 1
            return token

    auth = CountingProxy(
        # The proxy's upstream (interactive OAuth) leg is unused here: Lanyard only presents
        # ID-JAGs. It must still name an upstream; the IdP is the natural one.
        upstream_authorization_endpoint=f"{idp}/auth",
        upstream_token_endpoint=f"{idp}/token",
        # Quirk: fastmcp has no way to register a client for the jwt-bearer grant other than DCR
        # or being the upstream client id, which it "synthesizes" as a public client
        # (token_endpoint_auth_method none) allowed to use jwt-bearer when identity assertion is
        # on. So Lanyard's client id here is the upstream client id.
        upstream_client_id=config["client_id"],
        token_verifier=JWTVerifier(jwks_uri=f"{idp}/jwks", issuer=idp),
        base_url=base,
        # Quirk: pydantic renders the bare-origin issuer as "http://127.0.0.1:PORT/", so the
        # metadata's issuer (and the ID-JAG audience Lanyard must send) ends in "/".
        jwt_signing_key=config["jwt_signing_key"],
        client_storage=MemoryStore(),
        require_authorization_consent=False,
        valid_scopes=config["scopes"],
        identity_assertion=IdentityAssertion(
            trusted_issuers=[idp],
            access_token_expiry_seconds=config["token_ttl"],
        ),
    )
    mcp = FastMCP(config["name"], auth=auth)
    tools(mcp)
    app = mcp.http_app(path="/mcp")

    async def state(_request):
        return JSONResponse(stats)

    app.router.routes.insert(0, Route("/_interop/state", state))
    return [(app, port)]


# ---- fastmcp: OAuthProxy doing the standard authorization (Lanyard's `oauth` mode) -------------


def fastmcp_oauth(config):
    from fastmcp.server.auth import OAuthProxy
    from fastmcp.server.auth.providers.introspection import IntrospectionTokenVerifier
    from key_value.aio.stores.memory import MemoryStore

    port = config["port"]
    base = f"http://127.0.0.1:{port}"
    idp = config["idp_issuer"]
    upstream = config["upstream"]
    stats = {"registered": 0, "codes": 0, "refreshed": 0, "refresh_rejected": 0}

    class CountingProxy(OAuthProxy):
        """OAuthProxy, counting registrations, code redemptions and refreshes (the suite's checks)."""

        async def register_client(self, client_info):
            await super().register_client(client_info)
            stats["registered"] += 1

        async def exchange_authorization_code(self, client, authorization_code):
            token = await super().exchange_authorization_code(client, authorization_code)
            stats["codes"] += 1
            return token

        async def exchange_refresh_token(self, client, refresh_token, scopes):
            try:
                token = await super().exchange_refresh_token(client, refresh_token, scopes)
            except Exception:
                stats["refresh_rejected"] += 1
                raise
            stats["refreshed"] += 1
            return token

    auth = CountingProxy(
        upstream_authorization_endpoint=f"{idp}/auth",
        upstream_token_endpoint=f"{idp}/token",
        upstream_client_id=upstream["client_id"],
        upstream_client_secret=upstream["client_secret"],
        # oidc-provider's access tokens are opaque: the proxy asks the IdP about each (RFC 7662).
        token_verifier=IntrospectionTokenVerifier(
            introspection_url=f"{idp}/token/introspection",
            client_id=upstream["client_id"],
            client_secret=upstream["client_secret"],
        ),
        base_url=base,
        jwt_signing_key=config["jwt_signing_key"],
        client_storage=MemoryStore(),
        # The default: the proxy's own consent page (a form the scripted browser submits).
        # (The proxy's access tokens live as long as the IdP's, 30 s here: Lanyard renews them with
        # the proxy's refresh token, which the proxy rotates at every use.)
        require_authorization_consent=True,
        valid_scopes=config["scopes"],
        # Quirk: the proxy forwards the MCP client's RFC 8707 `resource` (this server's URL) to
        # the upstream IdP by default; an IdP that knows no such resource server refuses it
        # (oidc-provider: invalid_target). The proxy's own tokens still carry the resource.
        forward_resource=False,
        # oidc-provider issues a refresh token (offline_access) only with prompt=consent (OpenID
        # Connect Core §11); without one the proxy cannot renew, and neither can Lanyard.
        extra_authorize_params={"prompt": "consent"},
    )
    mcp = FastMCP(config["name"], auth=auth)
    tools(mcp)
    app = mcp.http_app(path="/mcp")

    async def state(_request):
        return JSONResponse(stats)

    app.router.routes.insert(0, Route("/_interop/state", state))
    return [(app, port)]


# ---- Authlib: IDJAGGrant behind a minimal Starlette adapter ------------------------------------


def authlib_as(config):
    import urllib.request

    from authlib.oauth2 import AuthorizationServer
    from authlib.oauth2.drafts import IDJAGGrant
    from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, OAuth2Payload, OAuth2Request
    from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
    from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
    from joserfc.jwk import KeySet

    port = config["port"]
    issuer = f"http://127.0.0.1:{port}"  # no trailing slash: the usual spelling
    idp = config["idp_issuer"]
    resources = config["resources"]  # resource URL -> scopes it serves
    signing = KeySet.import_key_set({"keys": [config["signing_jwk"]]})
    public_jwks = {"keys": [config["public_jwk"]]}
    stats = {"granted": 0, "rejected": {}, "jtis": []}
    seen_jtis = {}
    idp_keys = {}

    class Client(ClientMixin):
        def __init__(self, client_id, secret, public_jwk=None):
            self.client_id, self.secret, self.public_jwk = client_id, secret, public_jwk

        def get_client_id(self):
            return self.client_id

        def get_default_redirect_uri(self):
            return None

        def get_allowed_scope(self, scope):
            return scope

        def check_redirect_uri(self, redirect_uri):
            return False

        def check_client_secret(self, client_secret):
            return client_secret == self.secret

        def check_endpoint_auth_method(self, method, endpoint):
            # The same client may authenticate either way: Lanyard uses a secret for some servers
            # and a key held in a PKCS#11 token for another.
            return method == "client_secret_basic" or (
                method == "private_key_jwt" and self.public_jwk is not None
            )

        def check_response_type(self, response_type):
            return False

        def check_grant_type(self, grant_type):
            return grant_type == IDJAGGrant.GRANT_TYPE

    clients = {
        c["client_id"]: Client(c["client_id"], c["client_secret"], c.get("public_jwk"))
        for c in config["clients"]
    }
    assertion_jtis = {}

    class PrivateKeyJwt(JWTBearerClientAssertion):
        """RFC 7523 client authentication, as Authlib implements it; the hooks it leaves open."""

        CLIENT_AUTH_METHOD = "private_key_jwt"

        def get_audiences(self):
            return [issuer, f"{issuer}/token"]

        def validate_jti(self, claims, jti):
            if jti in assertion_jtis:
                return False
            assertion_jtis[jti] = claims["exp"]
            stats["client_assertions"] = stats.get("client_assertions", 0) + 1
            return True

        def resolve_client_public_key(self, client):
            return KeySet.import_key_set({"keys": [client.public_jwk]})

    class User:
        def __init__(self, sub):
            self.sub = sub

        def get_user_id(self):
            return self.sub

    class Grant(IDJAGGrant):
        """The application hooks Authlib leaves to the server (its docs list exactly these)."""

        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]

        def get_audiences(self):
            return [issuer]

        def resolve_issuer_key(self, iss, headers):
            if iss != idp:
                raise InvalidRequestError(f"untrusted issuer {iss!r}")
            if iss not in idp_keys:
                with urllib.request.urlopen(f"{idp}/jwks", timeout=10) as r:
                    idp_keys[iss] = KeySet.import_key_set(json.load(r))
            return idp_keys[iss]

        def authenticate_user(self, subject):
            return User(subject)

        def check_jti(self, claims, jti):
            if jti in seen_jtis:
                return False
            seen_jtis[jti] = claims["exp"]
            stats["jtis"].append(jti)
            return True

        def check_id_jag_permission(self, client, user, scopes):
            # RFC 8707: the resource asked for must be one this AS serves, and the one the IdP
            # put into the ID-JAG.
            resource = self.request.payload.data.get("resource")
            claimed = self.request.id_jag_claims.get("resource")
            return resource in resources and (claimed is None or claimed == resource)

    class Tokens(JWTBearerTokenGenerator):
        def get_jwks(self):
            return signing

        def get_audiences(self, client, user, scope):
            # RFC 9068 §3: aud = the resource (Authlib leaves RFC 8707 to the application).
            return current["resource"]

    current = {"resource": None}

    class FormPayload(OAuth2Payload):
        def __init__(self, form):
            self._form = form

        @property
        def data(self):
            return self._form

        @property
        def datalist(self):
            return {k: [v] for k, v in self._form.items()}

    class FormRequest(OAuth2Request):
        def __init__(self, method, uri, headers, form):
            super().__init__(method, uri, headers=headers)
            self.payload = FormPayload(form)
            self._form = form

        @property
        def form(self):
            return self._form

        @property
        def args(self):
            return {}

    class Server(AuthorizationServer):
        def query_client(self, client_id):
            return clients.get(client_id)

        def save_token(self, token, request):
            stats["granted"] += 1

        def create_oauth2_request(self, request):
            return request

        def handle_response(self, status, body, headers):
            return Response(
                json.dumps(body) if isinstance(body, dict) else body,
                status_code=status,
                headers=dict(headers),
            )

        def send_signal(self, name, *args, **kwargs):
            pass

    server = Server(scopes_supported=sorted({s for v in resources.values() for s in v}))
    server.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt())
    server.register_grant(Grant)
    server.register_token_generator(
        "default",
        Tokens(issuer=issuer, expires_generator=lambda client, grant_type: config["token_ttl"]),
    )

    async def token(request):
        form = {k: v for k, v in (await request.form()).items()}
        current["resource"] = form.get("resource")
        # Authlib reads "Authorization" by that spelling: keep Starlette's case-insensitive headers.
        req = FormRequest("POST", str(request.url), request.headers, form)
        response = server.create_token_response(req)
        if response.status_code != 200:
            try:
                body = json.loads(response.body)
                reason = body.get("error_description") or body.get("error")
            except ValueError:
                reason = "?"
            stats["rejected"][reason] = stats["rejected"].get(reason, 0) + 1
        return response

    def metadata_for(name):
        async def metadata(_request):
            return JSONResponse(
                {
                    "issuer": name,
                    "token_endpoint": f"{issuer}/token",
                    "jwks_uri": f"{issuer}/jwks",
                    "grant_types_supported": [IDJAGGrant.GRANT_TYPE],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
                    "authorization_grant_profiles_supported": [
                        "urn:ietf:params:oauth:grant-profile:id-jag"
                    ],
                    "scopes_supported": server.scopes_supported,
                }
            )

        return metadata

    async def jwks(_request):
        return JSONResponse(public_jwks)

    async def state(_request):
        return JSONResponse(stats)

    app = Starlette(
        routes=[
            Route("/.well-known/oauth-authorization-server", metadata_for(issuer)),
            # A second issuer with a path (RFC 8414 path-inserted well-known) that the IdP has no
            # client at: the IdP must refuse ID-JAGs for it (an unknown audience).
            Route(
                "/.well-known/oauth-authorization-server/unregistered",
                metadata_for(f"{issuer}/unregistered"),
            ),
            Route("/token", token, methods=["POST"]),
            Route("/jwks", jwks),
            Route("/_interop/state", state),
        ]
    )
    return [(app, port)]


# ---- FastMCP servers verifying the Authlib AS's JWT access tokens via its JWKS ------------------


def jwks_mcp(config):
    from fastmcp.server.auth import RemoteAuthProvider
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    apps = []
    for server in config["servers"]:
        base = f"http://127.0.0.1:{server['port']}"
        verifier = JWTVerifier(
            jwks_uri=f"{config['as_issuer']}/jwks",
            issuer=config["as_issuer"],
            audience=f"{base}/mcp",
            required_scopes=server["scopes"],
        )
        auth = RemoteAuthProvider(
            token_verifier=verifier,
            authorization_servers=[server.get("as_issuer", config["as_issuer"])],
            base_url=base,
            scopes_supported=server["scopes"],
        )
        mcp = FastMCP(server["name"], auth=auth)
        tools(mcp)
        apps.append((mcp.http_app(path="/mcp"), server["port"]))
    return apps


ROLES = {
    "fastmcp-as": fastmcp_as,
    "fastmcp-oauth": fastmcp_oauth,
    "authlib-as": authlib_as,
    "jwks-mcp": jwks_mcp,
}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ROLES:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(ROLES[sys.argv[1]](load_config())))
