import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Bearer-token authentication: the admin token (random, in dataDir) and ServiceAccount tokens,
 * which are JWTs signed with a key kept in dataDir, so that tokens written into pods stay valid
 * across restarts. Anything else is 401.
 */
export type Identity = { kind: 'admin' } | { kind: 'serviceaccount'; namespace: string; name: string };

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function readOrCreate(path: string, make: () => string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const value = make();
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return value;
}

export class TokenAuthority {
  readonly adminToken: string;
  private readonly signingKey: Buffer;

  constructor(dataDir: string) {
    this.adminToken = readOrCreate(join(dataDir, 'admin.token'), () => randomBytes(32).toString('hex'));
    this.signingKey = Buffer.from(
      readOrCreate(join(dataDir, 'sa-signing.key'), () => randomBytes(32).toString('hex')),
      'hex',
    );
  }

  private sign(input: string): string {
    return createHmac('sha256', this.signingKey).update(input).digest('base64url');
  }

  /** A ServiceAccount token; without expirationSeconds it does not expire (in-cluster config files). */
  serviceAccountToken(namespace: string, name: string, expirationSeconds?: number): string {
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const payload = b64url(
      JSON.stringify({
        iss: 'https://kubernetes.default.svc.cluster.local',
        sub: `system:serviceaccount:${namespace}:${name}`,
        aud: ['https://kubernetes.default.svc.cluster.local'],
        iat: now,
        ...(expirationSeconds ? { exp: now + expirationSeconds } : {}),
        'kubernetes.io': { namespace, serviceaccount: { name } },
      }),
    );
    return `${header}.${payload}.${this.sign(`${header}.${payload}`)}`;
  }

  authenticate(authorization: string | undefined): Identity | undefined {
    if (!authorization?.startsWith('Bearer ')) return undefined;
    const token = authorization.slice(7).trim();
    if (equal(token, this.adminToken)) return { kind: 'admin' };
    const parts = token.split('.');
    if (parts.length !== 3) return undefined;
    if (!equal(parts[2]!, this.sign(`${parts[0]}.${parts[1]}`))) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as {
        exp?: number;
        'kubernetes.io'?: { namespace?: string; serviceaccount?: { name?: string } };
      };
      if (typeof claims.exp === 'number' && claims.exp < Date.now() / 1000) return undefined;
      const k = claims['kubernetes.io'];
      if (!k?.namespace || !k.serviceaccount?.name) return undefined;
      return { kind: 'serviceaccount', namespace: k.namespace, name: k.serviceaccount.name };
    } catch {
      return undefined;
    }
  }
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
