// k6 scenarios for the bridge, with Mattermost's requests as Mattermost makes them.
//
//   k6 run -e BRIDGE_URL=https://sso.example.com -e CLIENT_ID=... -e CLIENT_SECRET=... \
//     -e REDIRECT_URI=https://chat.example.com/signup/gitlab/complete [-e SCENARIO=signin] \
//     [-e VUS=64] [-e DURATION=10s] deploy/bench/signin.js
//
// SCENARIO is one of
//   signin   whole sign-ins: the browser's GET /oauth/authorize with Mattermost's state, the
//            redirects through the provider and the bridge's callback (each with a new browser's
//            cookies), stopping at the redirect to Mattermost's redirect_uri, whose code is taken
//            from the Location; then Mattermost's form POST to /oauth/token and its bearer
//            GET /api/v4/user. The provider must sign the person in without a form, as
//            `ssobridge gitlab-emulator` does.
//   user     GET /api/v4/user alone, with one token per VU obtained by sign-ins in setup().
//   refresh  grant_type=refresh_token alone, each VU rotating its own refresh token, obtained by
//            sign-ins in setup(); the application must have refresh tokens.
//
// Every step is checked (k6 checks; the run fails on any failed check) and timed in a Trend of
// its own: signin_authorize, signin_upstream, signin_callback, signin_token, signin_user, and
// signin (the whole sign-in, the sum of its requests' times, connection set-up included).
// deploy/bench/k6.sh runs this script and adds the bridge's and Redis's CPU and Redis commands per
// operation.
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Trend, Counter } from 'k6/metrics';
import { b64encode } from 'k6/encoding';
import { randomBytes } from 'k6/crypto';

const SCENARIO = __ENV.SCENARIO || 'signin';
const BRIDGE = (__ENV.BRIDGE_URL || '').replace(/\/+$/, '');
const CLIENT_ID = __ENV.CLIENT_ID || '';
const CLIENT_SECRET = __ENV.CLIENT_SECRET || '';
const REDIRECT_URI = __ENV.REDIRECT_URI || '';
const VUS = parseInt(__ENV.VUS || '64', 10);
const DURATION = __ENV.DURATION || '10s';
// WARMUP sign-ins are made one after another in setup(), outside the measured window: they prove
// the configuration and fill the bridge's caches.
const WARMUP = parseInt(__ENV.WARMUP || '20', 10);
// READY_PAUSE: k6.sh reads the counters when setup() prints its marker; the pause leaves it the
// time to, before the VUs start.
const READY_PAUSE = parseFloat(__ENV.READY_PAUSE || '0');

const AUTHORIZE = BRIDGE + '/oauth/authorize';
const CALLBACK = BRIDGE + '/oauth/callback';
const TOKEN = BRIDGE + '/oauth/token';
const USER = BRIDGE + '/api/v4/user';

// Mattermost's own requests (AuthorizeOAuthUser) carry these; the browser steps a browser's.
const MATTERMOST_UA = 'Mattermost-Bot/1.1';
const BROWSER_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

const t = {
  signin: new Trend('signin', true),
  authorize: new Trend('signin_authorize', true),
  upstream: new Trend('signin_upstream', true),
  callback: new Trend('signin_callback', true),
  token: new Trend('signin_token', true),
  user: new Trend('signin_user', true),
  refresh: new Trend('refresh', true),
};
const completed = new Counter('operations_completed');

function required() {
  const missing = ['BRIDGE_URL', 'CLIENT_ID', 'CLIENT_SECRET', 'REDIRECT_URI'].filter((k) => !__ENV[k]);
  if (missing.length) {
    throw new Error('set ' + missing.join(', ') + ' (-e NAME=value): see the comment at the top of this script');
  }
  if (!/^https?:\/\/[^/]+/.test(BRIDGE) || !/^https?:\/\/[^/]+/.test(REDIRECT_URI)) {
    throw new Error('BRIDGE_URL and REDIRECT_URI must be absolute http(s) URLs');
  }
  if (!['signin', 'user', 'refresh'].includes(SCENARIO)) {
    throw new Error('SCENARIO=' + SCENARIO + ': want signin, user or refresh');
  }
}
required();

export const options = {
  scenarios: {
    [SCENARIO]: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: SCENARIO, gracefulStop: '5s' },
  },
  // A measurement with a failed step is no measurement: k6 exits non-zero.
  thresholds: { checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
  setupTimeout: '120s',
  // Connections are kept between requests and iterations, as Mattermost's HTTP client and
  // browsers keep theirs; each VU has its own.
};

// The exact time of a request, connection set-up included.
function took(r) {
  const tm = r.timings;
  return tm.blocked + tm.connecting + tm.tls_handshaking + tm.sending + tm.waiting + tm.receiving;
}

// Mattermost's base32 alphabet (model.NewRandomString).
const MM_ALPHABET = 'ybndrfg8ejkmcpqxot1uwisza345h769';

// mattermostState is the state GetAuthorizationCode sends for the login page's GitLab button:
// padded standard base64 of {"action":"login","isMobile":"false","token":<64 characters>}, the
// keys in json.Marshal's order.
function mattermostState() {
  const b = new Uint8Array(randomBytes(64));
  let token = '';
  for (let i = 0; i < 64; i++) token += MM_ALPHABET[b[i] % 32];
  return b64encode(JSON.stringify({ action: 'login', isMobile: 'false', token: token }), 'std');
}

// goQueryEscape is Go's url.QueryEscape, with which Mattermost escapes redirect_uri and state.
function goQueryEscape(s) {
  return encodeURIComponent(s).replace(/%20/g, '+').replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

// form encodes pairs as Go's url.Values.Encode does: keys sorted.
function form(pairs) {
  return Object.keys(pairs).sort().map((k) => goQueryEscape(k) + '=' + goQueryEscape(pairs[k])).join('&');
}

function resolve(base, loc) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(loc)) return loc;
  const origin = base.match(/^[a-z]+:\/\/[^/]+/i)[0];
  if (loc.startsWith('//')) return base.split(':')[0] + ':' + loc;
  if (loc.startsWith('/')) return origin + loc;
  return base.replace(/[?#].*$/, '').replace(/[^/]*$/, '') + loc;
}

function queryParam(u, name) {
  const q = u.indexOf('?');
  if (q < 0) return null;
  for (const part of u.slice(q + 1).split('#')[0].split('&')) {
    const eq = part.indexOf('=');
    const k = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
    if (k === name) return eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '));
  }
  return null;
}

function stepOf(u) {
  const path = u.split('?')[0];
  if (path === AUTHORIZE) return 'authorize';
  if (path === CALLBACK) return 'callback';
  return 'upstream';
}

// LOAD_FIXES names what to change on the bridge under test when it refuses the load itself
// rather than a sign-in: its X-Ssobridge-Failure, and the setting.
const LOAD_FIXES = {
  rate_limited: 'the sign-in rate limit refused the load, which comes from one address: raise SSOBRIDGE_RATE_LIMIT_SIGN_IN on the bridge under test (e.g. 1000000000/1m), as README "Measuring with k6" says',
  too_many_pending_from_address: 'the cap on sign-ins in progress per address refused the load: raise SSOBRIDGE_MAX_PENDING_PER_ADDRESS on the bridge under test',
  too_many_pending: 'the cap on sign-ins in progress refused the load: raise SSOBRIDGE_MAX_PENDING on the bridge under test',
  overloaded: 'the bridge shed requests beyond SSOBRIDGE_MAX_IN_FLIGHT: lower --vus, or raise the setting',
  client_auth_rate_limited: 'failed client authentications are limited: check CLIENT_ID and CLIENT_SECRET',
};

// told counts the failures this VU has logged, by kind: each kind is logged once, not at every
// iteration (the checks count them all).
const told = {};

// tellFailure logs, once per VU and kind, what a request answered instead: the bridge's failure
// name (X-Ssobridge-Failure) and trace id, and what to change when the load itself was refused,
// else the start of the body.
function tellFailure(what, r) {
  const failure = r.headers['X-Ssobridge-Failure'] || '';
  const key = what + ' ' + r.status + ' ' + failure;
  told[key] = (told[key] || 0) + 1;
  if (told[key] > 1) return;
  let line = what + ' answered ' + r.status + (failure ? ' ' + failure : '');
  if (r.headers['X-Trace-Id']) line += ' (trace ' + r.headers['X-Trace-Id'] + ')';
  line += ': ' + (LOAD_FIXES[failure] || detailOf(r));
  console.error(line + ' [logged once per VU]');
}

// detailOf says what a failed request met: no answer at all (the bridge's URL), the bridge's
// OAuth error whole (its description says what to change), or the start of another body.
function detailOf(r) {
  if (r.status === 0) {
    return (r.error || 'no answer') + ': check BRIDGE_URL (' + BRIDGE + '): does the bridge listen there, and over http or https as the URL says?';
  }
  try {
    const j = JSON.parse(r.body);
    if (j && typeof j.error === 'string') return j.error + (j.error_description ? ': ' + j.error_description : '');
  } catch (e) {
    // not JSON: an HTML page, or a proxy's answer
  }
  return String(r.body).slice(0, 300);
}

// browse is the browser's part: authorize, the provider, the callback, up to the redirect to
// REDIRECT_URI, which it does not follow (Mattermost's completeOAuth would take over). It returns
// the code, or null after failing a check.
function browse() {
  const state = mattermostState();
  const jar = new http.CookieJar();
  let url = AUTHORIZE + '?response_type=code&client_id=' + CLIENT_ID + '&redirect_uri=' + goQueryEscape(REDIRECT_URI) + '&state=' + goQueryEscape(state);
  const times = { authorize: 0, upstream: 0, callback: 0 };
  let total = 0;
  for (let hop = 0; hop < 10; hop++) {
    const step = stepOf(url);
    const r = http.get(url, { jar: jar, redirects: 0, headers: { 'User-Agent': BROWSER_UA }, tags: { name: step } });
    const d = took(r);
    times[step] += d;
    total += d;
    const loc = r.headers.Location;
    if (!check(r, { [step + ' redirects (302/303 with a Location)']: (x) => (x.status === 302 || x.status === 303) && !!loc })) {
      tellFailure(step + ', instead of a redirect,', r);
      return null;
    }
    url = resolve(url, loc);
    if (url.split('?')[0] === REDIRECT_URI) {
      const code = queryParam(url, 'code');
      const ok = check(url, {
        'back at redirect_uri with a code': () => !!code,
        'state returned byte for byte': () => queryParam(url, 'state') === state,
      });
      if (!ok) {
        console.error('back at redirect_uri without a code or with another state: error=' + queryParam(url, 'error') + ' ' + (queryParam(url, 'error_description') || ''));
        return null;
      }
      t.authorize.add(times.authorize);
      t.upstream.add(times.upstream);
      t.callback.add(times.callback);
      return { code: code, took: total };
    }
  }
  check(null, { 'reaches redirect_uri within 10 redirects': () => false });
  return null;
}

function tokenRequest(params, trend) {
  const r = http.post(TOKEN, form(params), {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json', 'User-Agent': MATTERMOST_UA },
    tags: { name: 'token' },
  });
  let body = null;
  try {
    body = r.json();
  } catch (e) {
    body = null;
  }
  const ok = check(r, {
    [trend + ': 200']: (x) => x.status === 200,
    [trend + ': a bearer access_token']: () => !!body && !!body.access_token && String(body.token_type).toLowerCase() === 'bearer',
    [trend + ': expires_in an int32']: () => !!body && Number.isInteger(body.expires_in) && body.expires_in <= 2147483647,
  });
  if (!ok) {
    tellFailure('POST /oauth/token', r);
    return null;
  }
  return { body: body, took: took(r) };
}

function exchange(code) {
  return tokenRequest({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, code: code, grant_type: 'authorization_code', redirect_uri: REDIRECT_URI }, 'token');
}

function fetchUser(accessToken) {
  // Mattermost sends the form Content-Type on this GET too.
  const r = http.get(USER, {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json', Authorization: 'Bearer ' + accessToken, 'User-Agent': MATTERMOST_UA },
    tags: { name: 'user' },
  });
  let u = null;
  try {
    u = r.json();
  } catch (e) {
    u = null;
  }
  const ok = check(r, {
    'user: 200': (x) => x.status === 200,
    'user: a GitLab user with id and username': () => !!u && Number.isInteger(u.id) && u.id > 0 && typeof u.username === 'string' && u.username !== '',
  });
  if (!ok) {
    tellFailure('GET /api/v4/user', r);
    return null;
  }
  return took(r);
}

// signInOnce is one whole sign-in; it returns the token response, or null.
function signInOnce(record) {
  const b = browse();
  if (!b) return null;
  const tok = exchange(b.code);
  if (!tok) return null;
  const u = fetchUser(tok.body.access_token);
  if (u === null) return null;
  if (record) {
    t.token.add(tok.took);
    t.user.add(u);
    t.signin.add(b.took + tok.took + u);
    completed.add(1);
  }
  return tok.body;
}

export function setup() {
  const n = SCENARIO === 'signin' ? WARMUP : Math.max(WARMUP, VUS);
  const tokens = [];
  for (let i = 0; i < n; i++) {
    const tok = signInOnce(false);
    if (!tok) fail('a sign-in of setup() failed (see the error above): check BRIDGE_URL, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI and that the provider signs the person in without a form');
    if (SCENARIO === 'refresh' && !tok.refresh_token) fail('the token response has no refresh_token: the refresh scenario needs an application with refresh tokens (ssobridge apps update ID --refresh-tokens)');
    tokens.push(SCENARIO === 'refresh' ? tok.refresh_token : tok.access_token);
  }
  // The marker deploy/bench/k6.sh waits for to read its counters before the window.
  console.log('ssobridge-k6: setup done');
  if (READY_PAUSE > 0) sleep(READY_PAUSE);
  return { tokens: tokens.slice(0, VUS) };
}

export function signin() {
  signInOnce(true);
}

export function user(data) {
  const d = fetchUser(data.tokens[(__VU - 1) % data.tokens.length]);
  if (d !== null) {
    t.user.add(d);
    completed.add(1);
  }
}

// Each VU's current refresh token: the one setup() obtained, then each rotation's.
let current = null;

export function refresh(data) {
  if (current === null) current = data.tokens[(__VU - 1) % data.tokens.length];
  const tok = tokenRequest({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, grant_type: 'refresh_token', refresh_token: current }, 'refresh');
  if (!tok) return;
  check(tok.body, { 'refresh: a new refresh_token (rotated)': (b) => !!b.refresh_token && b.refresh_token !== current });
  if (tok.body.refresh_token) current = tok.body.refresh_token;
  t.refresh.add(tok.took);
  completed.add(1);
}
