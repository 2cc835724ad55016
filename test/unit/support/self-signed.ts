// A throwaway self-signed certificate for unit tests that serve TLS, made by openssl.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Writes cert.pem and key.pem (RSA 2048, valid one day) for `commonName` into `dir`, with
 * `subjectAltName` (e.g. "IP:127.0.0.1") when given, and returns their paths.
 */
export function selfSignedCertificate(
  dir: string,
  commonName: string,
  subjectAltName?: string,
): { certFile: string; keyFile: string } {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${commonName}`,
      ...(subjectAltName ? ['-addext', `subjectAltName=${subjectAltName}`] : []),
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile };
}
