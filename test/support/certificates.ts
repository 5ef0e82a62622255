/**
 * Throwaway certificates for TLS tests, made with the machine's openssl.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

function openssl(args: string[], cwd: string): Promise<unknown> {
  return run('openssl', args, { cwd });
}

/** A self-signed certificate for localhost: `<dir>/<name>-cert.pem` and `-key.pem`. */
export async function selfSignedCert(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}-cert.pem`);
  const key = join(dir, `${name}-key.pem`);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], dir);
  return { cert, key };
}

/**
 * A CA (`ca.crt`) and a server certificate it signed for 127.0.0.1 and
 * localhost (`server.crt`, `server.key`), plus an unrelated CA
 * (`other-ca.crt`), all in `dir`.
 */
export async function caSignedServerCert(dir: string): Promise<void> {
  await selfSignedCaAs(dir, 'ca', 'airlock-test-ca');
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], dir);
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext'], dir);
  await selfSignedCaAs(dir, 'other-ca', 'another-ca');
}

function selfSignedCaAs(dir: string, file: string, cn: string): Promise<unknown> {
  return openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${file}.key`, '-out', `${file}.crt`, '-days', '1', '-subj', `/CN=${cn}`], dir);
}
