/**
 * Firehose limits (Amazon Data Firehose quotas): a record is at most 1,000 KiB, a PutRecordBatch
 * call at most 500 records and 4 MiB. Firehose concatenates records into objects in no promised
 * order and may deliver one twice, so every record is whole lines, each a complete archived record
 * that carries its own sequence number: readers gather, de-duplicate and order them by it.
 */
export const MAX_RECORD_BYTES = 1000 * 1024;
export const MAX_CALL_RECORDS = 500;
export const MAX_CALL_BYTES = 4 * 1024 * 1024;

/** Cut a file's JSON lines into records of whole lines, each at most `max` bytes. */
export function toStreamRecords(content: Buffer, max = MAX_RECORD_BYTES): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  let cut = 0; // end of the last whole line that fits
  for (let nl = content.indexOf(10); nl >= 0; nl = content.indexOf(10, nl + 1)) {
    if (nl + 1 - start > max) {
      if (cut === start) throw new RangeError(`a record line of ${nl + 1 - start} bytes exceeds the ${max}-byte delivery record limit`);
      out.push(content.subarray(start, cut));
      start = cut;
      if (nl + 1 - start > max) throw new RangeError(`a record line of ${nl + 1 - start} bytes exceeds the ${max}-byte delivery record limit`);
    }
    cut = nl + 1;
  }
  if (cut > start) out.push(content.subarray(start, cut));
  return out;
}

/** Group records into PutRecordBatch calls within the count and size limits. */
export function toCalls(records: Buffer[], maxRecords = MAX_CALL_RECORDS, maxBytes = MAX_CALL_BYTES): Buffer[][] {
  const calls: Buffer[][] = [];
  let call: Buffer[] = [];
  let bytes = 0;
  for (const r of records) {
    if (call.length > 0 && (call.length >= maxRecords || bytes + r.length > maxBytes)) {
      calls.push(call);
      call = [];
      bytes = 0;
    }
    call.push(r);
    bytes += r.length;
  }
  if (call.length > 0) calls.push(call);
  return calls;
}
