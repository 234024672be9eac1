import { createHash, randomUUID } from 'node:crypto';
import {
  DescribeDeliveryStreamCommand,
  FirehoseClient,
  PutRecordBatchCommand,
  ServiceUnavailableException,
  type DescribeDeliveryStreamCommandOutput,
  type PutRecordBatchCommandInput,
  type PutRecordBatchCommandOutput,
} from '@aws-sdk/client-firehose';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { testS3Client } from './s3.js';

/**
 * An in-process stand-in for Amazon Data Firehose: no Firehose emulator can run here, so its API is
 * mocked (aws-sdk-client-mock) and its delivery is reproduced against the real S3 server. Like the
 * real service it throttles whole calls, fails some entries inside a successful call
 * (FailedPutCount > 0), delivers some records twice, and writes objects of its own grouping in no
 * particular order under <prefix>YYYY/MM/DD/HH/ (UTC arrival time).
 */
export class FakeFirehose {
  readonly calls: { records: number; bytes: number }[] = [];
  readonly recordSizes: number[] = [];
  throttled = 0;
  refusedEntries = 0;
  duplicated = 0;
  objects: string[] = [];
  /** refuse every entry (a long partial outage) while true */
  refuseAll = false;
  private buffer: Buffer[] = [];
  private rnd: () => number;
  readonly mock = mockClient(FirehoseClient);
  private description: NonNullable<DescribeDeliveryStreamCommandOutput['DeliveryStreamDescription']>;

  constructor(
    readonly stream: string,
    readonly bucket: string,
    readonly prefix: string,
    seed = 7,
  ) {
    let s = seed;
    this.rnd = () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31;
    };
    this.description = {
      DeliveryStreamName: stream,
      DeliveryStreamARN: `arn:aws:firehose:us-east-1:000000000000:deliverystream/${stream}`,
      DeliveryStreamStatus: 'ACTIVE',
      DeliveryStreamType: 'DirectPut',
      VersionId: '1',
      HasMoreDestinations: false,
      Destinations: [
        {
          DestinationId: 'destinationId-000000000001',
          ExtendedS3DestinationDescription: {
            RoleARN: 'arn:aws:iam::000000000000:role/firehose',
            BucketARN: `arn:aws:s3:::${bucket}`,
            Prefix: prefix,
            BufferingHints: { SizeInMBs: 5, IntervalInSeconds: 300 },
            CompressionFormat: 'UNCOMPRESSED',
            EncryptionConfiguration: { NoEncryptionConfig: 'NoEncryption' },
          },
        },
      ],
    };
    this.mock.on(DescribeDeliveryStreamCommand).callsFake(async () => ({ DeliveryStreamDescription: this.description }));
    this.mock.on(PutRecordBatchCommand).callsFake((input: PutRecordBatchCommandInput) => this.putRecordBatch(input));
  }

  /** Change what DescribeDeliveryStream says (to test the start-up checks). */
  describeAs(change: (d: FakeFirehose['description']) => void): void {
    change(this.description);
  }

  private async putRecordBatch(input: PutRecordBatchCommandInput): Promise<PutRecordBatchCommandOutput> {
    const records = input.Records!.map((r) => Buffer.from(r.Data!));
    this.calls.push({ records: records.length, bytes: records.reduce((n, r) => n + r.length, 0) });
    for (const r of records) this.recordSizes.push(r.length);
    if (this.calls.length % 5 === 2) {
      this.throttled++;
      throw new ServiceUnavailableException({ message: 'Slow down.', $metadata: { httpStatusCode: 503 } });
    }
    let failed = 0;
    const RequestResponses = records.map((r) => {
      if (this.refuseAll || this.rnd() < 0.2) {
        failed++;
        return { ErrorCode: 'ServiceUnavailableException', ErrorMessage: 'Slow down.' };
      }
      this.buffer.push(r);
      if (this.rnd() < 0.15) {
        this.buffer.push(r); // at-least-once: delivered again, in some other object
        this.duplicated++;
      }
      return { RecordId: randomUUID() };
    });
    this.refusedEntries += failed;
    if (this.buffer.length >= 6) await this.flush();
    return { FailedPutCount: failed, Encrypted: false, RequestResponses, $metadata: {} };
  }

  /** Deliver what is buffered: shuffled, cut into objects of random sizes. */
  async flush(): Promise<void> {
    const items = this.buffer.splice(0);
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.rnd() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    const s3 = testS3Client();
    while (items.length > 0) {
      const body = Buffer.concat(items.splice(0, 1 + Math.floor(this.rnd() * 4)));
      const now = new Date();
      const iso = now.toISOString();
      const key =
        `${this.prefix}${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}/` +
        `${this.stream}-1-${iso.slice(0, 19).replace(/[T:]/g, '-')}-${randomUUID()}`;
      // No lock headers: like Firehose, the bucket's default retention is the lock.
      await s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentMD5: createHash('md5').update(body).digest('base64') }));
      this.objects.push(key);
    }
  }

  restore(): void {
    this.mock.restore();
  }
}
