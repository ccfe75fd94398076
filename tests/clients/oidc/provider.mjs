// A real OpenID provider for tollgate's console tests: node-oidc-provider (installed by
// tests/clients/setup.sh into target/clients/web) with one client, `tollgate-console`, and four
// people whose `groups` claim the console maps to roles:
//
//   ada    ["search-admins"]     fin    ["finance"]
//   root   ["platform-admins"]   nobody ["interns"]
//
// Sign-in uses the provider's built-in forms (devInteractions): the login name picks the
// person, any password is accepted, then a consent page. The ID token carries `email`, `name`,
// `preferred_username` and, when the `groups` scope is asked for, `groups`.
//
// Usage: node provider.mjs [--port N] [--redirect-uri URI]...
//   --port / OIDC_PORT                  listen on 127.0.0.1:N (default 0: any free port)
//   --redirect-uri / OIDC_REDIRECT_URIS the client's redirect URIs (the env var: space-separated)
//   OIDC_CLIENT_SECRET                  make the client confidential (client_secret_basic);
//                                       unset: a public client (token_endpoint_auth_method none)
//   OIDC_ID_TOKEN_ALG                   RS256 (default) or ES256
//   TOLLGATE_CLIENTS_DIR                where setup.sh installed (default <repo>/target/clients)
// Prints `listening http://127.0.0.1:<port>` (the issuer) on stdout once it accepts requests.
// The signing keys are new on every start, so a restart on the same port is a key rotation.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const clientsDir = process.env.TOLLGATE_CLIENTS_DIR || resolve(here, '../../../target/clients');
const providerModule = join(clientsDir, 'web/node_modules/oidc-provider/lib/index.js');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
  },
});
const port = Number(args.port ?? process.env.OIDC_PORT ?? 0);
const redirectUris = args['redirect-uri']
  ?? (process.env.OIDC_REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean);
if (redirectUris.length === 0) {
  console.error('provider.mjs: give the client\'s redirect URI (--redirect-uri or OIDC_REDIRECT_URIS)');
  process.exit(64);
}
const secret = process.env.OIDC_CLIENT_SECRET || undefined;
const idTokenAlg = process.env.OIDC_ID_TOKEN_ALG || 'RS256';

let Provider;
try {
  ({ default: Provider } = await import(pathToFileURL(providerModule).href));
} catch (error) {
  console.error(`provider.mjs: cannot load oidc-provider from ${providerModule} (run tests/clients/setup.sh): ${error.message}`);
  process.exit(69);
}

const people = {
  ada: { name: 'Ada Lovelace', groups: ['search-admins'] },
  fin: { name: 'Fin Ance', groups: ['finance'] },
  root: { name: 'Root Admin', groups: ['platform-admins'] },
  nobody: { name: 'No Body', groups: ['interns'] },
};

function signingKey(type, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig' };
}

const configuration = {
  clients: [{
    client_id: 'tollgate-console',
    ...(secret
      ? { client_secret: secret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
    redirect_uris: redirectUris,
    response_types: ['code'],
    grant_types: ['authorization_code'],
    id_token_signed_response_alg: idTokenAlg,
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  // Scope claims go into the ID token itself (the console reads no userinfo).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  jwks: {
    keys: [
      signingKey('rsa', { modulusLength: 2048 }),
      signingKey('ec', { namedCurve: 'P-256' }),
    ],
  },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const person = people[id];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.com`,
          email_verified: true,
          name: person.name,
          preferred_username: id,
          groups: person.groups,
        };
      },
    };
  },
};

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});
server.on('error', (error) => {
  console.error(`provider.mjs: ${error.message}`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
