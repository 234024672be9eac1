import { setTimeout as sleep } from 'node:timers/promises';
import { storageRequestHandler } from '../http.js';
import { DescribeDeliveryStreamCommand, FirehoseClient, FirehoseServiceException, PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import type { S3Client } from '@aws-sdk/client-s3';
import { ConfigError, ServiceError } from '../../errors.js';
import { DIGEST_DIR, parseStreamKey, STREAM_DIR } from '../keys.js';
import { checkBucket, s3Archive, type S3ArchiveConfig } from '../s3/s3-archive.js';
import type { Archive, ArchiveObject, Receipt, Sink } from '../sink.js';
import { toCalls, toStreamRecords } from './records.js';
import { withStreamedFiles } from './stream-reader.js';
import { BACKOFF, backoffMs } from '../../backoff.js';

/** `firehose://STREAM` -> the delivery stream's name. */
export function parseFirehoseUrl(url: string): string {
  const m = /^firehose:\/\/([a-zA-Z0-9_.-]{1,64})\/?$/.exec(url);
  if (!m) throw new ConfigError(`--archive (AUDIT_ARCHIVE) ${url} is not a delivery stream; e.g. firehose://audit-trail`);
  return m[1]!;
}

export function firehoseClient(): FirehoseClient {
  return new FirehoseClient({
    region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1',
    maxAttempts: 3,
    requestHandler: storageRequestHandler(),
  });
}

export interface StreamDestination {
  bucket: string;
  root: string;
}

/**
 * What the stream does with records, checked before anything is sent: it must deliver them to S3
 * unchanged (no transformation, no format conversion), under `<root>firehose/` with Firehose's
 * default time prefix, into a bucket whose default Object Lock retention (the only lock Firehose's
 * objects get) is COMPLIANCE and long enough. Digests then go to `<root>digests/` in that bucket.
 */
export async function checkStream(client: FirehoseClient, s3: S3Client, stream: string, minDefaultRetentionDays: number): Promise<StreamDestination> {
  let desc;
  try {
    desc = (await client.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: stream }))).DeliveryStreamDescription;
  } catch (err) {
    throw new ServiceError(`cannot describe delivery stream ${stream}: ${describeFirehoseError(err)}`);
  }
  const where = `delivery stream ${stream}`;
  if (!desc || !['ACTIVE', 'UPDATING'].includes(desc.DeliveryStreamStatus ?? '')) {
    throw new ConfigError(`${where} is ${desc?.DeliveryStreamStatus ?? 'unknown'}, not ACTIVE`);
  }
  const dest = desc.Destinations?.[0];
  const ext = dest?.ExtendedS3DestinationDescription;
  const s3d = ext ?? dest?.S3DestinationDescription;
  if (!s3d?.BucketARN) throw new ConfigError(`${where} does not deliver to S3; the archive needs an S3 Object Lock bucket`);
  if (ext?.ProcessingConfiguration?.Enabled || ext?.DataFormatConversionConfiguration?.Enabled) {
    throw new ConfigError(`${where} transforms records (Lambda processing or format conversion); sealed records must be delivered byte for byte`);
  }
  const compression = s3d.CompressionFormat ?? 'UNCOMPRESSED';
  if (compression !== 'UNCOMPRESSED' && compression !== 'GZIP') {
    throw new ConfigError(`${where} compresses with ${compression}; use UNCOMPRESSED or GZIP, which verify and query read`);
  }
  const prefix = s3d.Prefix ?? '';
  if (!prefix.endsWith(STREAM_DIR) || prefix.includes('!{')) {
    throw new ConfigError(
      `${where} delivers under the S3 prefix "${prefix}"; set it to "<archive prefix>/${STREAM_DIR}" ` +
        '(no expressions: Firehose then adds YYYY/MM/DD/HH/, where verify and query look)',
    );
  }
  const bucket = /^arn:aws[\w-]*:s3:::(.+)$/.exec(s3d.BucketARN)?.[1];
  if (!bucket) throw new ConfigError(`${where} names the bucket ${s3d.BucketARN}, which is not an S3 bucket ARN`);
  await checkBucket(s3, { bucket, minDefaultRetentionDays });
  return { bucket, root: prefix.slice(0, -STREAM_DIR.length) };
}

/**
 * Data files go through the stream, digests and heartbeats straight to the Object Lock bucket.
 * put() resolves only when the stream accepted every record of the file (failed entries of a
 * partly successful call are sent again), so the shipper acknowledges nothing Firehose refused.
 */
class FirehoseSink implements Sink {
  constructor(
    private readonly client: FirehoseClient,
    private readonly stream: string,
    private readonly digests: Sink,
    private readonly onPartialFailure: (failed: number, code: string) => void,
  ) {}

  async put(obj: ArchiveObject): Promise<Receipt> {
    if (obj.key.startsWith(DIGEST_DIR)) return this.digests.put(obj);
    if (!parseStreamKey(obj.key)) throw new ServiceError(`${obj.key} is not a streamed data file; it cannot go through ${this.stream}`);
    let pending = toStreamRecords(obj.body);
    const total = pending.length;
    for (let round = 0; pending.length > 0; round++) {
      const refused: Buffer[] = [];
      let code = '';
      for (const call of toCalls(pending)) {
        let r;
        try {
          r = await this.client.send(new PutRecordBatchCommand({ DeliveryStreamName: this.stream, Records: call.map((Data) => ({ Data })) }));
        } catch (err) {
          throw new ServiceError(`delivery stream ${this.stream} refused ${obj.key}: ${describeFirehoseError(err)}`);
        }
        if (!r.FailedPutCount) continue;
        r.RequestResponses?.forEach((rr, i) => {
          if (rr.ErrorCode) {
            refused.push(call[i]!);
            code = rr.ErrorCode;
          }
        });
      }
      if (refused.length === 0) break;
      this.onPartialFailure(refused.length, code);
      if (round >= 5) throw new ServiceError(`delivery stream ${this.stream} keeps refusing ${refused.length} of ${total} records of ${obj.key} (${code})`);
      pending = refused;
      await sleep(backoffMs(BACKOFF.streamRecords, round));
    }
    return { key: obj.key, bytes: obj.body.length };
  }
}

export function firehoseArchive(
  client: FirehoseClient,
  s3: S3Client,
  stream: string,
  dest: StreamDestination,
  s3cfg: Omit<S3ArchiveConfig, 'bucket' | 'prefix'>,
  onPartialFailure: (failed: number, code: string) => void = () => undefined,
): Archive {
  const digests = s3Archive(s3, { ...s3cfg, bucket: dest.bucket, prefix: dest.root });
  return {
    location: `firehose://${stream} (s3://${dest.bucket}/${dest.root})`,
    sink: new FirehoseSink(client, stream, digests.sink, onPartialFailure),
    reader: withStreamedFiles(digests.reader),
    layout: { kind: 'stream', stream },
  };
}

export function describeFirehoseError(err: unknown): string {
  if (err instanceof FirehoseServiceException) return `${err.name}${err.message ? `: ${err.message}` : ''}`;
  return (err as Error).message ?? String(err);
}
