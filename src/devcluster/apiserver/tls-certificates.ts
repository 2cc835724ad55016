import { execFile } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { WeftError } from '../../shared/errors.js';

const run = promisify(execFile);

/**
 * The server's PKI in dataDir, made with the openssl CLI: a self-signed CA (kept across
 * restarts, since kubeconfigs and pods hold it) and a serving certificate for every name and
 * address clients use, reissued when that set changes.
 */
export interface ServingCertificates {
  caCertPem: string;
  certPem: string;
  keyPem: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim() ?? String(err);
    throw new WeftError(
      'WEFT_ERR_TLS',
      `openssl ${args[0]} failed: ${detail}; is openssl installed (scripts/setup.sh)?`,
      { cause: err },
    );
  }
}

export async function ensureCertificates(dataDir: string, hosts: string[]): Promise<ServingCertificates> {
  const caKey = join(dataDir, 'ca.key');
  const caCrt = join(dataDir, 'ca.crt');
  const key = join(dataDir, 'apiserver.key');
  const crt = join(dataDir, 'apiserver.crt');
  const sansFile = join(dataDir, 'apiserver.sans');
  if (!existsSync(caKey) || !existsSync(caCrt)) {
    await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey], dataDir);
    await openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        caKey,
        '-sha256',
        '-days',
        '3650',
        '-subj',
        '/CN=weft-devcluster-ca',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
        '-out',
        caCrt,
      ],
      dataDir,
    );
  }
  const unique = [...new Set(hosts)].sort();
  const sans = unique.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const current = existsSync(sansFile) ? readFileSync(sansFile, 'utf8') : '';
  if (current !== sans || !existsSync(key) || !existsSync(crt)) {
    const csr = join(dataDir, 'apiserver.csr');
    const ext = join(dataDir, 'apiserver.ext');
    writeFileSync(
      ext,
      `subjectAltName=${sans}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n`,
    );
    await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dataDir);
    await openssl(['req', '-new', '-key', key, '-subj', '/CN=kube-apiserver', '-out', csr], dataDir);
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        caCrt,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-days',
        '825',
        '-sha256',
        '-extfile',
        ext,
        '-out',
        crt,
      ],
      dataDir,
    );
    writeFileSync(sansFile, sans);
  }
  // Private keys are for this server only, whatever the umask was when openssl wrote them.
  chmodSync(caKey, 0o600);
  chmodSync(key, 0o600);
  return {
    caCertPem: readFileSync(caCrt, 'utf8'),
    certPem: readFileSync(crt, 'utf8'),
    keyPem: readFileSync(key, 'utf8'),
  };
}
