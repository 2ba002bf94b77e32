// A real OpenID Connect provider for the tests: panva's oidc-provider (OpenID Certified), with a
// login form that really checks passwords, first-party auto-consent, PKCE required (S256), and
// per-user `amr`/`acr` so the relying party's MFA mapping can be tested.
//
//   node idp.mjs PORT            (issuer http://127.0.0.1:PORT)
//
// Configured by environment (tests/peers/oidc_provider.py sets all of it):
//   OIDC_REDIRECT_URIS  JSON array of the redirect URIs every client accepts (the public native
//                       client gets the loopback ones; its port is free, RFC 8252 §7.3)
//   OIDC_USERS          JSON object: login -> {password, email, name, preferred_username?,
//                       groups, amr, acr?}
//   OIDC_JWKS           JSON private JWK Set ({"keys": [...]}) used to sign; one RSA, one EC
//                       P-256 and one Ed25519 key. Without it, oidc-provider's dev keys.
//   OIDC_CLIENT_SECRET  the confidential clients' secret (default "gateway-secret")
//
// The form at /interaction/:uid takes `login` and `password` (401 on a wrong one) or `abort=1`
// (the provider then answers the relying party with error=access_denied).
import Provider from 'oidc-provider';
import { parse } from 'node:querystring';

const PORT = Number(process.argv[2] || 39000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const env = (name, fallback) => (process.env[name] ? JSON.parse(process.env[name]) : fallback);

const REDIRECTS = env('OIDC_REDIRECT_URIS', ['http://127.0.0.1:53682/callback']);
const LOOPBACK = REDIRECTS.filter((u) => /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)[:/]/.test(u));
const SECRET = process.env.OIDC_CLIENT_SECRET || 'gateway-secret';
const USERS = env('OIDC_USERS', {
  alice: { password: 'alicepw', email: 'alice@city.example.lg.jp', name: 'Alice Tanaka',
    preferred_username: 'alice', groups: ['tax-clerks', 'tax-dept', 'all-staff'],
    amr: ['pwd', 'otp'], acr: 'urn:sekimori:mfa' },
  bob: { password: 'bobpw', email: 'bob@city.example.lg.jp', name: 'Bob Suzuki',
    preferred_username: 'bob', groups: ['tax-dept', 'all-staff'], amr: ['pwd'], acr: 'urn:sekimori:pwd' },
});
const JWKS = env('OIDC_JWKS', undefined);
const ACRS = [...new Set(Object.values(USERS).map((u) => u.acr).filter(Boolean))];

const confidential = (clientId, alg) => ({
  client_id: clientId, client_secret: SECRET, redirect_uris: REDIRECTS,
  grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic', require_auth_time: true,
  id_token_signed_response_alg: alg,
});
const clients = [
  confidential('gateway', 'RS256'),
  confidential('gateway-es256', 'ES256'),
  confidential('gateway-eddsa', 'EdDSA'),
  { ...confidential('gateway-post', 'RS256'), token_endpoint_auth_method: 'client_secret_post' },
];
if (LOOPBACK.length) {
  clients.push({ client_id: 'agent-public', token_endpoint_auth_method: 'none', redirect_uris: LOOPBACK,
    grant_types: ['authorization_code'], response_types: ['code'], application_type: 'native',
    require_auth_time: true });
}

const provider = new Provider(ISSUER, {
  clients,
  ...(JWKS ? { jwks: JWKS } : {}),
  pkce: { required: () => true },                 // S256 only in v9
  acrValues: ACRS,
  claims: {
    openid: ['sub', 'acr', 'amr'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false,                    // put the scopes' claims into the ID token too
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'] },
  findAccount: async (ctx, sub) => USERS[sub] && ({
    accountId: sub,
    claims: async () => {
      const u = USERS[sub];
      const claims = { sub, email: u.email, email_verified: true, name: u.name, groups: u.groups };
      if (u.preferred_username) claims.preferred_username = u.preferred_username;
      return claims;
    },
  }),
  features: { devInteractions: { enabled: false }, revocation: { enabled: true },
    introspection: { enabled: true } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['test-cookie-key-not-secret'] },
  ttl: { AccessToken: 300, AuthorizationCode: 60, IdToken: 300, RefreshToken: 3600,
    Interaction: 600, Session: 3600, Grant: 3600 },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (uid, msg = '') => `<!doctype html><title>Sign-in</title><p>${escape(msg)}</p>
<form method="post" action="/interaction/${escape(uid)}"><input name="login" placeholder="user">
<input name="password" type="password"><button type="submit">Sign in</button></form>`;

provider.use(async (ctx, next) => {
  const m = ctx.path.match(/^\/interaction\/([\w-]+)$/);
  if (!m) return next();
  ctx.set('cache-control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  if (prompt.name === 'consent') {                 // first party: grant what was asked, no page
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const to = await provider.interactionResult(ctx.req, ctx.res,
      { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    return ctx.redirect(to);
  }
  if (ctx.method === 'GET') { ctx.type = 'html'; ctx.body = page(m[1]); return undefined; }
  if (ctx.method === 'POST') {
    let raw = '';
    for await (const chunk of ctx.req) raw += chunk;
    const { login, password, abort } = parse(raw);
    if (abort) {
      const to = await provider.interactionResult(ctx.req, ctx.res,
        { error: 'access_denied', error_description: 'the user cancelled the login' },
        { mergeWithLastSubmission: false });
      return ctx.redirect(to);
    }
    const u = Object.hasOwn(USERS, login) ? USERS[login] : undefined;
    if (!u || u.password !== password) {
      ctx.status = 401; ctx.type = 'html'; ctx.body = page(m[1], 'Invalid credentials'); return undefined;
    }
    const login_ = { accountId: login, amr: u.amr || ['pwd'], ...(u.acr ? { acr: u.acr } : {}) };
    const to = await provider.interactionResult(ctx.req, ctx.res, { login: login_ },
      { mergeWithLastSubmission: false });
    return ctx.redirect(to);                      // 302 back to /auth/:uid
  }
  return next();
});

const server = provider.listen(PORT, '127.0.0.1', () => console.log(`oidc-provider listening on ${ISSUER}`));
server.on('error', (err) => { console.error(err.message); process.exit(3); });
