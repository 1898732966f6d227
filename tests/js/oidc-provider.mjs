// A local OpenID provider for the OIDC login tests: the certified `oidc-provider` package
// (version 8) with its development login form (devInteractions) and one confidential client.
//
// Usage: node oidc-provider.mjs REDIRECT_URI [CLIENT_ID] [CLIENT_SECRET]
//
// Listens on a free port of 127.0.0.1 and prints one JSON line, {"issuer": "http://..."},
// when ready. The login form accepts any login and password: the login is the account id
// and `sub`, and the account's `email` claim, verified, is the login itself when it
// contains an @. The provider exits when its standard input closes.

import http from 'node:http';

import Provider from 'oidc-provider';

const [redirectUri, clientId = 'tasklane', clientSecret = 'tasklane-test-secret'] =
  process.argv.slice(2);
if (!redirectUri) {
  console.error('usage: node oidc-provider.mjs REDIRECT_URI [CLIENT_ID] [CLIENT_SECRET]');
  process.exit(2);
}

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Every authorization request must carry an S256 code challenge.
  pkce: { methods: ['S256'], required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  cookies: { keys: ['tasklane-oidc-test-cookie-key'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, name: `Test ${id.split('@')[0]}` };
        if (id.includes('@')) {
          claims.email = id;
          claims.email_verified = true;
        }
        return claims;
      },
    };
  },
};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, error) => console.error('provider error:', error));
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer }));
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
