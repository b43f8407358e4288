/**
 * The state export stream (docs/DATA_FILES.md, "State export stream"). Streaming both ways, bounded
 * memory, checksummed end to end:
 *
 *   header  "CAIRNSTX" ‖ u8 format=1 ‖ u64 height ‖ u32 crc32c(header bytes before it)
 *   row*    u32 keyLen (≥ 1) ‖ tag-less physical key ‖ u32 valueLen ‖ encoded value
 *   trailer u32 0xFFFFFFFF ‖ u64 rowCount ‖ root(32) ‖ u32 crc32c(every byte of the stream before it)
 *
 * Rows come in the engine's order: family (account, code, storage, misc), then physical key
 * bytewise, strictly increasing; an importer rejects anything else. Integers are big-endian.
 */
import { bytesEqual } from '../lib/bytes.ts';
import { crc32c } from '../lib/crc32c.ts';
import { CairnError } from '../lib/errors.ts';

const MAGIC = new TextEncoder().encode('CAIRNSTX');
const FORMAT = 1;
export const EXPORT_HEADER_BYTES = MAGIC.length + 1 + 8 + 4;
const END_MARK = 0xffffffff;
/** Keys and values larger than this are refused (bounded reads; EVM code is ≤ 24 KiB). */
export const MAX_EXPORT_FIELD_BYTES = 16 * 1024 * 1024;

export function encodeExportHeader(height: number): Uint8Array {
  const out = new Uint8Array(EXPORT_HEADER_BYTES);
  out.set(MAGIC, 0);
  out[MAGIC.length] = FORMAT;
  const dv = new DataView(out.buffer);
  dv.setBigUint64(MAGIC.length + 1, BigInt(height), false);
  dv.setUint32(EXPORT_HEADER_BYTES - 4, crc32c(out.subarray(0, EXPORT_HEADER_BYTES - 4)), false);
  return out;
}

export function encodeExportRow(key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + key.length + value.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, key.length, false);
  out.set(key, 4);
  dv.setUint32(4 + key.length, value.length, false);
  out.set(value, 8 + key.length);
  return out;
}

/** Trailer; `crcSoFar` is the running CRC32C of every byte written before it. */
export function encodeExportTrailer(rowCount: number, root: Uint8Array, crcSoFar: number): Uint8Array {
  const out = new Uint8Array(4 + 8 + 32 + 4);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, END_MARK, false);
  dv.setBigUint64(4, BigInt(rowCount), false);
  out.set(root, 12);
  dv.setUint32(44, crc32c(out.subarray(0, 44), crcSoFar), false);
  return out;
}

function malformed(reason: string, offset: number): CairnError {
  return new CairnError('CORRUPT', `state export stream is malformed at byte ${offset}: ${reason}`, {
    details: { offset },
  });
}

/** Pulls exact byte counts out of a chunked source, keeping a running CRC of what it consumed. */
export class ExportReader {
  private buf = new Uint8Array(0);
  private pos = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  offset = 0;
  crc = 0;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.it =
      Symbol.asyncIterator in source
        ? (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
        : (async function* () {
            yield* source as Iterable<Uint8Array>;
          })();
  }

  async take(n: number): Promise<Uint8Array> {
    while (this.buf.length - this.pos < n) {
      const next = await this.it.next();
      if (next.done)
        throw malformed(`stream ends ${n - (this.buf.length - this.pos)} bytes short`, this.offset);
      const rest = this.buf.subarray(this.pos);
      const merged = new Uint8Array(rest.length + next.value.length);
      merged.set(rest, 0);
      merged.set(next.value, rest.length);
      this.buf = merged;
      this.pos = 0;
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    this.crc = crc32c(out, this.crc);
    return out;
  }

  /** Nothing may follow the trailer: a stream with bytes after it (two exports glued, junk) is refused. */
  private async expectEnd(): Promise<void> {
    let extra = this.buf.length - this.pos;
    while (extra === 0) {
      const next = await this.it.next();
      if (next.done) return;
      extra = next.value.length;
    }
    throw malformed(`${extra} or more bytes follow the trailer`, this.offset);
  }

  async readHeader(): Promise<{ height: number }> {
    const h = await this.take(EXPORT_HEADER_BYTES);
    if (!bytesEqual(h.subarray(0, MAGIC.length), MAGIC)) throw malformed('not a Cairn state export', 0);
    if (h[MAGIC.length] !== FORMAT) throw malformed(`unknown format ${h[MAGIC.length]}`, MAGIC.length);
    const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
    if (dv.getUint32(EXPORT_HEADER_BYTES - 4, false) !== crc32c(h.subarray(0, EXPORT_HEADER_BYTES - 4))) {
      throw malformed('header checksum mismatch', 0);
    }
    const height = dv.getBigUint64(MAGIC.length + 1, false);
    if (height > BigInt(Number.MAX_SAFE_INTEGER))
      throw malformed(`height ${height} out of range`, MAGIC.length + 1);
    return { height: Number(height) };
  }

  /** The next row, or the trailer's contents once the end mark is read (its CRC already checked). */
  async next(): Promise<
    { kind: 'row'; key: Uint8Array; value: Uint8Array } | { kind: 'end'; rowCount: number; root: Uint8Array }
  > {
    const at = this.offset;
    const lenBytes = await this.take(4);
    const keyLen = new DataView(lenBytes.buffer, lenBytes.byteOffset).getUint32(0, false);
    if (keyLen === END_MARK) {
      const rest = (await this.take(40)).slice();
      const crcBefore = this.crc;
      const tail = await this.take(4);
      const stored = new DataView(tail.buffer, tail.byteOffset).getUint32(0, false);
      if (stored !== crcBefore) throw malformed('stream checksum mismatch', at);
      await this.expectEnd();
      const rowCount = Number(new DataView(rest.buffer).getBigUint64(0, false));
      return { kind: 'end', rowCount, root: rest.subarray(8, 40) };
    }
    if (keyLen === 0 || keyLen > MAX_EXPORT_FIELD_BYTES) throw malformed(`key length ${keyLen}`, at);
    const key = (await this.take(keyLen)).slice();
    const vl = await this.take(4);
    const valueLen = new DataView(vl.buffer, vl.byteOffset).getUint32(0, false);
    if (valueLen === 0 || valueLen > MAX_EXPORT_FIELD_BYTES) throw malformed(`value length ${valueLen}`, at);
    const value = (await this.take(valueLen)).slice();
    return { kind: 'row', key, value };
  }
}
