/**
 * pgoutput messages (protocol 1) as PostgreSQL writes them, for tests that decode bytes without a
 * server: https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 */
export const i8 = (n: number): Buffer => Buffer.from([n]);

export const i16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};

export const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

export const i64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};

/** A NUL-terminated string. */
export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);

/** 'R': relid, namespace, name, replica identity, columns (flags, name, type oid, typmod). */
export function relationMessage(relid: number, schema: string, name: string, columns: [string, number][]): Buffer {
  return Buffer.concat([
    Buffer.from('R'),
    i32(relid),
    cstr(schema),
    cstr(name),
    i8(0x64 /* d */),
    i16(columns.length),
    ...columns.flatMap(([c, oid], i) => [i8(i === 0 ? 1 : 0), cstr(c), i32(oid), i32(-1)]),
  ]);
}

/** TupleData: each value as text ('t', length, bytes) or null ('n'). */
export function tupleData(values: (string | null)[]): Buffer {
  return Buffer.concat([
    i16(values.length),
    ...values.map((v) => (v === null ? Buffer.from('n') : Buffer.concat([Buffer.from('t'), i32(Buffer.byteLength(v)), Buffer.from(v)]))),
  ]);
}

/** 'I' (insert) or 'U' (update without the old row): relid, 'N', the new tuple. */
export const insertMessage = (relid: number, values: (string | null)[]): Buffer =>
  Buffer.concat([Buffer.from('I'), i32(relid), Buffer.from('N'), tupleData(values)]);

export const updateMessage = (relid: number, values: (string | null)[]): Buffer =>
  Buffer.concat([Buffer.from('U'), i32(relid), Buffer.from('N'), tupleData(values)]);
