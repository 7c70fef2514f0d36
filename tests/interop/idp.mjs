// The interop suite's identity provider: npm `oidc-provider` (panva's certified OpenID provider,
// version pinned by tests/interop/package-lock.json) as it ships — its own login form
// (devInteractions), PKCE, refresh tokens, RFC 7009 revocation, RFC 7662 introspection — plus the
// one thing it does not ship: an RFC 8693 token-exchange grant that issues Identity Assertion JWT
// Authorization Grants (ID-JAGs), registered with the provider's public `registerGrantType`.
//
// This file owns the provider's configuration and the ID-JAG grant. It must not implement any OAuth
// that oidc-provider already implements (sign-in, tokens, refresh, revocation stay the library's).
//
// Usage: node idp.mjs CONFIG_JSON   (CONFIG_JSON written by run.py; see `config` below)
// Prints `ready <issuer>` on stdout once it listens. `GET /_interop/state` (test-only, not OAuth)
// shows what happened: interactive logins, every ID-JAG issued (jti, aud, client_id, resource),
// every refresh token issued and revoked-grant events, so the suite can check them. Those of the
// upstream client of fastmcp's OAuthProxy (the `oauth`-mode server, which signs its users in here
// too) are counted apart, under `upstream`: Lanyard's own sign-in stays one login.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The peers live in the git-ignored tool folder, not next to this file.
const modules = config.node_modules;
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider/lib/index.js')));
const jose = await import(pathToFileURL(join(modules, 'jose/dist/webapi/index.js')));

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_JAG_TYPE = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const ID_JAG_TTL = 300;

const issuer = `http://127.0.0.1:${config.port}`;
const signingJwk = config.signing_jwk; // RSA private JWK with kid, also the provider's only key
const signingKey = await jose.importJWK(signingJwk, 'RS256');
const publicKey = await jose.importJWK(
  { kty: signingJwk.kty, n: signingJwk.n, e: signingJwk.e },
  'RS256',
);

// What the suite checks afterwards.
const state = {
  logins: 0,
  id_jags: [],
  exchange_errors: [],
  refresh_tokens: [],
  grants_revoked: 0,
  grants: {}, // token endpoint successes by grant_type
  upstream: { logins: 0, refresh_tokens: 0, grants: {} }, // fastmcp's OAuthProxy as a client
};

const isUpstream = (clientId) => clientId === config.upstream.client_id;

const provider = new Provider(issuer, {
  clients: [
    {
      // Lanyard: a native public client (PKCE), loopback redirect on any port (RFC 8252 §7.3,
      // which oidc-provider implements for application_type native).
      client_id: config.lanyard_client_id,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
    },
    {
      // fastmcp's OAuthProxy in front of the `oauth`-mode server: a confidential web client whose
      // redirect is the proxy's own callback. It also asks the introspection endpoint about the
      // (opaque) access tokens it holds for its users.
      client_id: config.upstream.client_id,
      client_secret: config.upstream.client_secret,
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [config.upstream.redirect_uri],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
    },
    {
      // The suite's own confidential client, used only to ask the introspection endpoint.
      client_id: config.auditor.client_id,
      client_secret: config.auditor.client_secret,
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [],
      response_types: [],
      grant_types: [],
    },
  ],
  jwks: { keys: [signingJwk] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: () => ({ sub, email: sub, email_verified: true }) };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'email'],
  features: {
    devInteractions: { enabled: true }, // the provider's own login + consent form
    introspection: {
      enabled: true,
      // Only the auditor (the suite) and fastmcp's proxy may introspect.
      allowedPolicy: async (_ctx, client) =>
        [config.auditor.client_id, config.upstream.client_id].includes(client.clientId),
    },
    revocation: { enabled: true },
  },
  ttl: {
    IdToken: config.id_token_ttl,
    AccessToken: config.id_token_ttl,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
  },
});

provider.on('interaction.started', (ctx, prompt) => {
  if (prompt?.name !== 'login') return;
  if (isUpstream(ctx.oidc.client?.clientId)) state.upstream.logins += 1;
  else state.logins += 1;
});
provider.on('refresh_token.saved', (token) => {
  // Opaque refresh tokens: the value is the jti (oidc-provider's opaque format).
  if (isUpstream(token.clientId)) state.upstream.refresh_tokens += 1;
  else state.refresh_tokens.push(token.jti);
});
provider.on('grant.success', (ctx) => {
  if (ctx.status !== 200) return; // the ID-JAG grant answers its own errors
  const type = ctx.oidc.params.grant_type;
  const grants = isUpstream(ctx.oidc.client?.clientId) ? state.upstream.grants : state.grants;
  grants[type] = (grants[type] || 0) + 1;
});
provider.on('grant.revoked', () => {
  state.grants_revoked += 1;
});

function fail(ctx, error, description) {
  const { audience, resource } = ctx.oidc.params;
  state.exchange_errors.push({ error, description, audience, resource });
  ctx.status = 400;
  ctx.body = { error, error_description: description };
}

// RFC 8693 token exchange: subject = an ID token this provider issued to the same client, result = an
// ID-JAG for the authorization server named by `audience` (its issuer, byte for byte).
async function idJagGrant(ctx) {
  const { client, params } = ctx.oidc;
  if (params.requested_token_type !== ID_JAG_TYPE) {
    return fail(ctx, 'invalid_request', `requested_token_type must be ${ID_JAG_TYPE}`);
  }
  if (params.subject_token_type !== ID_TOKEN_TYPE || !params.subject_token) {
    return fail(ctx, 'invalid_request', `subject_token_type must be ${ID_TOKEN_TYPE}`);
  }
  let subject;
  try {
    ({ payload: subject } = await jose.jwtVerify(params.subject_token, publicKey, {
      issuer,
      audience: client.clientId,
      algorithms: ['RS256'],
    }));
  } catch (e) {
    return fail(ctx, 'invalid_grant', `the subject token is not valid: ${e.code || e.message}`);
  }
  const audience = params.audience;
  const target = config.audiences[audience];
  if (!target) {
    // Unknown audience: this IdP has no client registered at that authorization server.
    return fail(ctx, 'invalid_target', `no authorization server ${JSON.stringify(audience)} is registered at this IdP`);
  }
  const denial = (config.denials || []).find(
    (d) => d.sub === subject.sub && d.audience === audience && (!d.resource || d.resource === params.resource),
  );
  if (denial) {
    return fail(ctx, denial.error, denial.description);
  }
  const now = Math.floor(Date.now() / 1000);
  const jti = randomUUID();
  const claims = {
    sub: subject.sub,
    client_id: target.client_id,
    jti,
    auth_time: subject.auth_time,
    email: subject.sub,
  };
  if (params.resource) claims.resource = params.resource;
  if (params.scope) claims.scope = params.scope;
  const idJag = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'oauth-id-jag+jwt' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ID_JAG_TTL)
    .sign(signingKey);
  state.id_jags.push({ jti, aud: audience, client_id: target.client_id, resource: params.resource, sub: subject.sub, value: idJag });
  ctx.body = {
    issued_token_type: ID_JAG_TYPE,
    access_token: idJag,
    token_type: 'N_A',
    expires_in: ID_JAG_TTL,
    ...(params.scope ? { scope: params.scope } : {}),
  };
}

provider.registerGrantType(
  TOKEN_EXCHANGE,
  idJagGrant,
  ['audience', 'resource', 'scope', 'requested_token_type', 'subject_token', 'subject_token_type'],
  // resource (and audience) may repeat in RFC 8693; Lanyard sends one of each.
  ['resource', 'audience'],
);

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url === '/_interop/state') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(state));
    return;
  }
  callback(req, res);
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
