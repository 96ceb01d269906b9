// A real, independent OpenID provider for the end-to-end tests: panva's oidc-provider (pinned in
// package.json), with a fixed set of accounts and minimal sign-in and consent pages that an HTTP
// client can drive by submitting their HTML forms. Started by e2e/oidcprovider_test.go.
// oidc-provider is held at 8.8.1, the newest release for Node.js 18 and 20 (Debian bookworm has
// 18): 9.x asks for Node.js 22.
//
//   npm ci --prefix e2e/oidcprovider     # once
//   OP_CLIENTS='[{"client_id":"bridge","client_secret":"s3cret","redirect_uris":["http://127.0.0.1:8065/oauth/callback"]}]' \
//     node e2e/oidcprovider/provider.mjs
//
// Settings, from the environment:
//   OP_PORT        port to listen on at 127.0.0.1; 0 or unset picks a free one. The issuer is
//                  http://127.0.0.1:PORT (no path).
//   OP_CLIENTS     JSON array of clients, each {client_id, client_secret, redirect_uris} and
//                  optionally token_endpoint_auth_method ("client_secret_basic", the default, or
//                  "client_secret_post": oidc-provider holds each client to the one it registered)
//                  or any other client metadata oidc-provider takes. Clients may use the
//                  authorization_code and refresh_token grants.
//   OP_EMAIL_OVERRIDE
//                  login=address pairs, comma separated ("ada=ada.new@example.com"), replacing
//                  those accounts' email (verified unless the account's was not); an empty
//                  address ("ada=") removes the email claims.
//   OP_CONFORM_ID_TOKEN_CLAIMS
//                  "true": ID tokens that come with an access token carry only sub and the
//                  protocol claims, the profile and email claims being left to userinfo (as some
//                  providers do). Otherwise ID tokens carry every claim the scopes grant.
//
// What it speaks: discovery, the authorization code flow with PKCE (S256 only; a request without
// a code_challenge is refused), nonce passed into the ID token, client authentication
// client_secret_basic or client_secret_post, userinfo, refresh tokens, RS256 ID tokens. Scopes:
// openid (sub), email (email, email_verified), profile (name, preferred_username, picture,
// groups), offline_access. oidc-provider grants offline_access, and so issues a refresh token,
// only when the authorization request also says prompt=consent.
//
// Accounts, found by login name; any password is taken, and any other login is refused with a
// 403 and the sign-in form again:
//   ada      sub 4c3f0d2e-8b6a-4e1f-9a57-2d7c1b0e6f31  ada@example.com, verified, "Ada Lovelace",
//            groups ["eng", "eng/platform"]
//   bob      sub 9e21b7a4-3c58-4f0d-b6e2-71a8d4c9f502  bob@example.com, verified, "Bob Babbage",
//            groups ["eng"]
//   eve      sub d07a5c19-6e34-4b8f-8c21-5f9e0a3b7d64  eve@example.com, NOT verified, "Eve Example",
//            groups []
//   noemail  sub 1b8e6f40-2d97-4a3c-a5f8-c6e0d2b4193a  no email claim at all, "No Email"
// preferred_username is the login; picture is <issuer>/avatars/<login>.png, served here (a 1x1 PNG).
//
// Pages: GET /interaction/<uid> shows the sign-in form (fields login and password, POST
// /interaction/<uid>/login) or, once signed in, the consent form (POST /interaction/<uid>/confirm),
// each followed by a second form that cancels (POST /interaction/<uid>/abort, giving the client
// error=access_denied). The first form on a page is the one that goes on. A browser that has
// signed in keeps its session (a cookie) and its consent for that client, and is not asked again.
//
// Output: one line "ready <issuer>" on stdout once listening; errors only on stderr.
// Standard input takes one command a line, each answered on stdout by "ok" or "error <why>":
//   email <login> [address]   sets the account's email as OP_EMAIL_OVERRIDE does (no address:
//                             removes the email claims), for the sign-ins that follow
// It exits when its standard input closes, on SIGTERM and on SIGINT, so a test that dies leaves
// nothing running.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import Provider from 'oidc-provider';

// Standard output carries only the ready line and the answers to commands: oidc-provider's own
// notices go to standard error.
console.log = console.error;
console.info = console.error;

const accounts = new Map(Object.entries({
  ada: {
    sub: '4c3f0d2e-8b6a-4e1f-9a57-2d7c1b0e6f31', email: 'ada@example.com', email_verified: true,
    name: 'Ada Lovelace', groups: ['eng', 'eng/platform'],
  },
  bob: {
    sub: '9e21b7a4-3c58-4f0d-b6e2-71a8d4c9f502', email: 'bob@example.com', email_verified: true,
    name: 'Bob Babbage', groups: ['eng'],
  },
  eve: {
    sub: 'd07a5c19-6e34-4b8f-8c21-5f9e0a3b7d64', email: 'eve@example.com', email_verified: false,
    name: 'Eve Example', groups: [],
  },
  noemail: {
    sub: '1b8e6f40-2d97-4a3c-a5f8-c6e0d2b4193a', name: 'No Email', groups: [],
  },
}));

function setEmail(login, address) {
  const account = accounts.get(login);
  if (!account) throw new Error(`no account ${login}`);
  if (address) {
    account.email = address;
    account.email_verified ??= true;
  } else {
    delete account.email;
    delete account.email_verified;
  }
}

for (const pair of (process.env.OP_EMAIL_OVERRIDE || '').split(',').filter(Boolean)) {
  const eq = pair.indexOf('=');
  if (eq < 0) fail(`OP_EMAIL_OVERRIDE: ${pair}: not login=address`);
  try {
    setEmail(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  } catch (err) {
    fail(`OP_EMAIL_OVERRIDE: ${err.message}`);
  }
}

const bySub = () => new Map([...accounts].map(([login, a]) => [a.sub, { login, ...a }]));

function fail(message) {
  process.stderr.write(`oidcprovider: ${message}\n`);
  process.exit(2);
}

let clients;
try {
  clients = JSON.parse(process.env.OP_CLIENTS || '[]');
} catch (err) {
  fail(`OP_CLIENTS is not JSON: ${err.message}`);
}
if (!Array.isArray(clients) || clients.length === 0) fail('OP_CLIENTS: give a JSON array of one client or more');
clients = clients.map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...c,
}));

// An in-memory store of the provider's state: oidc-provider's own warns that it is for
// development only, which is what this is.
const store = new Map();
class Adapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), { payload, expires: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    if (this.model === 'Session') store.set(`sessionUid:${payload.uid}`, { payload: id, expires: Infinity });
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expires: Infinity });
    if (payload.grantId) {
      const grant = store.get(`grant:${payload.grantId}`) ?? { payload: [], expires: Infinity };
      grant.payload.push(this.key(id));
      store.set(`grant:${payload.grantId}`, grant);
    }
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry || entry.expires < Date.now()) return undefined;
    return entry.payload;
  }

  async findByUid(uid) { return this.find(store.get(`sessionUid:${uid}`)?.payload); }

  async findByUserCode(code) { return this.find(store.get(`userCode:${code}`)?.payload); }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of store.get(`grant:${grantId}`)?.payload ?? []) store.delete(key);
    store.delete(`grant:${grantId}`);
  }
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body>
<h1>${escape(title)}</h1>
${body}
</body></html>
`);
}

function loginPage(res, uid, status, error) {
  page(res, status, 'Sign in to the test OpenID provider', `${error ? `<p id="error">${escape(error)}</p>\n` : ''}\
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label>Login <input type="text" name="login" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`);
}

function consentPage(res, uid, clientId, scopes) {
  page(res, 200, `Allow ${clientId}?`, `<p>${escape(clientId)} asks for: ${escape(scopes.join(' '))}</p>
<form method="post" action="/interaction/${escape(uid)}/confirm">
<input type="hidden" name="decision" value="allow">
<button type="submit">Allow</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 << 10) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

const avatar = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPj/HwADAgH/eL9GtQAAAABJRU5ErkJggg==',
  'base64',
);

const server = createServer();
server.listen(Number(process.env.OP_PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    adapter: Adapter,
    clients,
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { methods: ['S256'], required: () => true },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'picture', 'groups'],
    },
    conformIdTokenClaims: process.env.OP_CONFORM_ID_TOKEN_CLAIMS === 'true',
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, RefreshToken: 86400,
      Interaction: 600, Session: 86400, Grant: 86400,
    },
    clientBasedCORS: () => false,
    async findAccount(ctx, sub) {
      const account = bySub().get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          const claims = {
            sub,
            name: account.name,
            preferred_username: account.login,
            picture: `${issuer}/avatars/${account.login}.png`,
            groups: account.groups,
          };
          if (account.email !== undefined) {
            claims.email = account.email;
            claims.email_verified = account.email_verified;
          }
          return claims;
        },
      };
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Error</title></head><body>
<h1>Error</h1><p id="error">${escape(out.error)}: ${escape(out.error_description ?? '')}</p></body></html>`;
    },
  });
  // oidc-provider reports server errors as events; everything else it answers to the client.
  provider.on('server_error', (ctx, err) => process.stderr.write(`oidcprovider: ${ctx.method} ${ctx.path}: ${err.stack}\n`));
  const oidc = provider.callback();

  server.on('request', async (req, res) => {
    try {
      const { pathname } = new URL(req.url, issuer);
      const avatarMatch = /^\/avatars\/([a-z]+)\.png$/.exec(pathname);
      if (avatarMatch && req.method === 'GET' && accounts.has(avatarMatch[1])) {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(avatar);
        return;
      }
      const m = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/.exec(pathname);
      if (!m) {
        oidc(req, res);
        return;
      }
      const [, uid, action] = m;
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== uid) throw new Error('interaction does not match its cookie');
      const { prompt, params } = details;
      if (!action && req.method === 'GET') {
        if (prompt.name === 'login') loginPage(res, uid, 200);
        else consentPage(res, uid, params.client_id, String(params.scope ?? '').split(' '));
        return;
      }
      if (req.method !== 'POST' || !action) {
        res.writeHead(405).end();
        return;
      }
      if (action === 'abort') {
        await provider.interactionFinished(req, res, {
          error: 'access_denied', error_description: 'End-User aborted interaction',
        }, { mergeWithLastSubmission: false });
        return;
      }
      const form = await readForm(req);
      if (action === 'login') {
        if (prompt.name !== 'login') throw new Error(`a sign-in sent while the provider asks for ${prompt.name}`);
        const account = accounts.get(form.get('login') ?? '');
        if (!account) {
          loginPage(res, uid, 403, `No account ${form.get('login') ?? ''} here.`);
          return;
        }
        await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
        return;
      }
      if (prompt.name !== 'consent') throw new Error(`a consent sent while the provider asks for ${prompt.name}`);
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    } catch (err) {
      if (!res.headersSent) {
        page(res, 400, 'Error', `<p id="error">${escape(err.message)}</p>`);
      } else {
        res.end();
      }
    }
  });

  process.stdout.write(`ready ${issuer}\n`);
});
server.on('error', (err) => fail(err.message));

function quit() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', quit);
process.on('SIGINT', quit);

const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  const [command, ...args] = line.trim().split(/\s+/);
  if (!command) return;
  try {
    switch (command) {
      case 'email':
        if (args.length < 1 || args.length > 2) throw new Error('usage: email <login> [address]');
        setEmail(args[0], args[1]);
        break;
      default:
        throw new Error(`unknown command ${command}`);
    }
    process.stdout.write('ok\n');
  } catch (err) {
    process.stdout.write(`error ${err.message}\n`);
  }
});
commands.on('close', quit);
