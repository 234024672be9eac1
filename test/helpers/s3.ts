import net from 'node:net';
import { CreateBucketCommand, PutObjectLockConfigurationCommand, S3Client } from '@aws-sdk/client-s3';
import { requireEnv } from './env.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** The test radosgw, as the SDK's standard environment names it (what `ship` reads). */
export function s3Env(endpoint = requireEnv('TEST_S3_ENDPOINT')): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: requireEnv('TEST_S3_REGION'),
    AWS_ACCESS_KEY_ID: requireEnv('TEST_S3_ACCESS_KEY'),
    AWS_SECRET_ACCESS_KEY: requireEnv('TEST_S3_SECRET_KEY'),
    AUDIT_S3_FORCE_PATH_STYLE: 'true',
    // radosgw here has no KMS configured, so it refuses SSE-S3 headers; AWS would take AES256.
    AUDIT_S3_SSE: 'none',
  };
}

export function testS3Client(): S3Client {
  return new S3Client({
    endpoint: requireEnv('TEST_S3_ENDPOINT'),
    region: requireEnv('TEST_S3_REGION'),
    forcePathStyle: true,
    credentials: { accessKeyId: requireEnv('TEST_S3_ACCESS_KEY'), secretAccessKey: requireEnv('TEST_S3_SECRET_KEY') },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

let n = 0;
/** A new bucket: Object Lock on (versioning follows), and a default retention unless told otherwise. */
export async function makeBucket(opts: { lock?: boolean; mode?: 'COMPLIANCE' | 'GOVERNANCE' | null; days?: number } = {}): Promise<string> {
  const s3 = testS3Client();
  const name = `audit-${process.pid}-${Date.now().toString(36)}-${n++}`;
  await s3.send(new CreateBucketCommand({ Bucket: name, ObjectLockEnabledForBucket: opts.lock !== false }));
  if (opts.lock !== false && opts.mode !== null) {
    await s3.send(
      new PutObjectLockConfigurationCommand({
        Bucket: name,
        ObjectLockConfiguration: {
          ObjectLockEnabled: 'Enabled',
          Rule: { DefaultRetention: { Mode: opts.mode ?? 'COMPLIANCE', Days: opts.days ?? 1 } },
        },
      }),
    );
  }
  return name;
}

/** A TCP proxy in front of the S3 server that a test can cut and restore: an outage on demand. */
export class Outage {
  private server: net.Server;
  private sockets = new Set<net.Socket>();
  private pairs = new Set<[net.Socket, net.Socket]>();
  /** accept connections and never answer, as a load balancer that lost its state does */
  private hanging = false;
  port = 0;

  constructor(private readonly target: URL) {
    this.server = this.make();
  }

  private make(): net.Server {
    return net.createServer((client) => {
      if (this.hanging) {
        this.sockets.add(client);
        client.on('close', () => this.sockets.delete(client));
        client.on('error', () => client.destroy());
        client.resume(); // read the request, answer nothing
        return;
      }
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      client.on('close', () => this.pairs.delete(pair));
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
    });
  }

  async listen(port = 0): Promise<string> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return `http://127.0.0.1:${this.port}`;
  }

  /** From now on, and on the connections open now (the SDK keeps them alive), requests get no answer. */
  hang(): void {
    this.hanging = true;
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.resume();
      upstream.destroy();
    }
  }

  /** New connections are served again; the hung ones stay hung until the client gives up on them. */
  unhang(): void {
    this.hanging = false;
  }

  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  async restore(): Promise<void> {
    this.server = this.make();
    await this.listen(this.port);
  }
}
