import { ServiceError } from '../errors.js';
import type { ConsoleRole } from './accounts.js';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** the claim that lists the person's groups, and the groups that make an investigator or a viewer */
  groupsClaim: string;
  investigators: string[];
  viewers: string[];
}

/** What the console keeps in the session between sending a person to the provider and their return. */
export interface PendingSignIn {
  verifier: string;
  state: string;
  nonce: string;
}

export interface OidcSignIn {
  /** the provider's host, for the sign-in button, and its origin (where the sign-in form is redirected) */
  readonly provider: string;
  readonly origin: string;
  start(redirectUri: string): Promise<{ url: string; pending: PendingSignIn }>;
  /** the person the provider vouches for, and the console role their groups give (null: none) */
  finish(currentUrl: URL, pending: PendingSignIn): Promise<{ name: string; role: ConsoleRole | null; groups: string[] }>;
}

const isLoopback = (u: URL) => u.hostname === 'localhost' || u.hostname === '[::1]' || /^127\./.test(u.hostname);

/** A role from the groups claim: investigator wins over viewer; none of either, no role. */
export function roleFor(
  claims: Record<string, unknown>,
  s: Pick<OidcSettings, 'groupsClaim' | 'investigators' | 'viewers'>,
): { role: ConsoleRole | null; groups: string[] } {
  const raw = claims[s.groupsClaim];
  const groups = Array.isArray(raw)
    ? raw.filter((g): g is string => typeof g === 'string')
    : typeof raw === 'string'
      ? raw.split(/[\s,]+/).filter(Boolean)
      : [];
  if (groups.some((g) => s.investigators.includes(g))) return { role: 'investigator', groups };
  if (groups.some((g) => s.viewers.includes(g))) return { role: 'viewer', groups };
  return { role: null, groups };
}

/** The person's name as the trail records it: their e-mail, else their user name, else the provider's subject. */
export function nameFor(claims: Record<string, unknown>): string {
  for (const k of ['email', 'preferred_username', 'sub']) {
    const v = claims[k];
    if (typeof v === 'string' && v.trim() !== '') return v.trim().slice(0, 200);
  }
  throw new ServiceError('the identity provider named nobody (no email, preferred_username or sub claim)');
}

/**
 * OpenID Connect sign-in (authorization code flow with PKCE, state and nonce) through openid-client,
 * a certified relying-party library. The provider is discovered at start; a provider on this
 * machine may speak plain HTTP (tests, a local provider), any other must speak HTTPS.
 */
export async function oidcSignIn(s: OidcSettings): Promise<OidcSignIn> {
  const client = await import('openid-client');
  const issuer = new URL(s.issuer);
  let config: Awaited<ReturnType<typeof client.discovery>>;
  try {
    config = await client.discovery(
      issuer,
      s.clientId,
      s.clientSecret,
      undefined,
      isLoopback(issuer) && issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : undefined,
    );
  } catch (err) {
    throw new ServiceError(
      `--oidc-issuer ${s.issuer}: the provider's discovery document could not be read (${err instanceof Error ? err.message : String(err)}); check the URL and that this machine reaches it`,
    );
  }
  return {
    provider: issuer.host,
    origin: new URL(config.serverMetadata().authorization_endpoint ?? issuer.href).origin,
    async start(redirectUri) {
      const pending: PendingSignIn = { verifier: client.randomPKCECodeVerifier(), state: client.randomState(), nonce: client.randomNonce() };
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope: `openid email profile ${s.groupsClaim}`,
        code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
        code_challenge_method: 'S256',
        state: pending.state,
        nonce: pending.nonce,
      });
      return { url: url.href, pending };
    },
    async finish(currentUrl, pending) {
      const tokens = await client.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      });
      let claims: Record<string, unknown> = { ...(tokens.claims() ?? {}) };
      // Providers put groups in the ID token or only in userinfo: ask userinfo when the token lacks them.
      if (claims[s.groupsClaim] === undefined && tokens.access_token) {
        const info = await client.fetchUserInfo(config, tokens.access_token, String(claims.sub));
        claims = { ...claims, ...info };
      }
      return { name: nameFor(claims), ...roleFor(claims, s) };
    },
  };
}
