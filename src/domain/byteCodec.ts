import { CairnError } from '../lib/errors.ts';

/**
 * Minimal bounded binary writer/reader used by the consensus codecs. Integers are little-endian;
 * u64 values are JavaScript safe integers (≤ 2^53 - 1), which is far beyond any block number or
 * road index a chain reaches, and keeps the API on plain `number`.
 */

/**
 * Size a writer exactly (`initialBytes` = the encoded length) whenever the length is known up
 * front: `finish()` then hands out the writer's own buffer instead of copying it, which halves the
 * allocation per encoded record on the consensus hot path. A writer is single-use: once finished,
 * every further call throws, so the returned bytes can never change under their new owner.
 */
export class ByteWriter {
  private buf: Uint8Array;
  private view: DataView;
  private length = 0;
  private finished = false;

  constructor(initialBytes = 256) {
    this.buf = new Uint8Array(initialBytes);
    this.view = new DataView(this.buf.buffer);
  }

  /**
   * Empties the writer for reuse as a scratch buffer (hot paths that encode, use the bytes at once
   * through `written()`, and never hand them out): no allocation per record.
   */
  reuse(): this {
    this.length = 0;
    this.finished = false;
    return this;
  }

  /** Bytes written so far, as a view of the writer's buffer: valid only until the next write. */
  written(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  /**
   * The writer's buffer itself, whose first `size` bytes are the written ones (for a consumer that
   * takes a length, so not even a view is made). Valid only until the next write.
   */
  get backing(): Uint8Array {
    return this.buf;
  }

  /** Bytes written so far. */
  get size(): number {
    return this.length;
  }

  private reserve(extra: number): void {
    if (this.finished) throw new Error('invariant violated: ByteWriter used after finish()');
    const needed = this.length + extra;
    if (needed <= this.buf.byteLength) return;
    let size = this.buf.byteLength * 2;
    while (size < needed) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(value: number): this {
    this.reserve(1);
    this.buf[this.length++] = value & 0xff;
    return this;
  }

  u16(value: number): this {
    this.reserve(2);
    this.view.setUint16(this.length, value, true);
    this.length += 2;
    return this;
  }

  u32(value: number): this {
    this.reserve(4);
    this.view.setUint32(this.length, value, true);
    this.length += 4;
    return this;
  }

  /** `value` must be a non-negative safe integer (callers check); written as two u32 halves. */
  u64(value: number): this {
    this.reserve(8);
    // Two 32-bit stores instead of setBigUint64: no BigInt allocated per number (hot path).
    this.view.setUint32(this.length, value >>> 0, true);
    this.view.setUint32(this.length + 4, Math.floor(value / 0x1_0000_0000), true);
    this.length += 8;
    return this;
  }

  /** Raw bytes of a length the reader knows (fixed-size fields). */
  fixed(bytes: Uint8Array): this {
    this.reserve(bytes.byteLength);
    this.buf.set(bytes, this.length);
    this.length += bytes.byteLength;
    return this;
  }

  /** u32 length prefix, then the bytes. */
  bytes(bytes: Uint8Array): this {
    this.u32(bytes.byteLength);
    return this.fixed(bytes);
  }

  /**
   * The encoded bytes, owned by the caller from now on. Exactly filled: the writer's buffer itself
   * (no copy). Otherwise a right-sized copy, so a long-lived record never pins a larger buffer.
   */
  finish(): Uint8Array {
    if (this.finished) throw new Error('invariant violated: ByteWriter.finish() called twice');
    this.finished = true;
    return this.length === this.buf.byteLength ? this.buf : this.buf.slice(0, this.length);
  }
}

export class ByteReader {
  private offset = 0;
  private readonly view: DataView;

  /** `what` names the record being decoded; it appears in every error. */
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.buf.byteLength - this.offset;
  }

  fail(message: string, extra: Record<string, unknown> = {}): never {
    throw new CairnError(
      'DECODE',
      `${this.what}: ${message} (at byte ${this.offset} of ${this.buf.byteLength})`,
      {
        details: { record: this.what, offset: this.offset, ...extra },
      },
    );
  }

  private need(count: number, field: string): void {
    if (count > this.remaining) {
      this.fail(`truncated ${field}: needs ${count} bytes, ${this.remaining} left`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.offset++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  u64(field: string): number {
    this.need(8, field);
    const lo = this.view.getUint32(this.offset, true);
    const hi = this.view.getUint32(this.offset + 4, true);
    // 2^53 - 1 is the largest safe integer: the high half may use at most 21 bits.
    if (hi > 0x1f_ffff) this.fail(`${field} ${this.view.getBigUint64(this.offset, true)} exceeds 2^53-1`);
    this.offset += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** A copy of `length` bytes (decoded objects never alias the input buffer). */
  fixed(length: number, field: string): Uint8Array {
    this.need(length, field);
    const out = this.buf.slice(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  /** u32 length prefix (checked against `maxBytes` before allocating), then the bytes. */
  bytes(field: string, maxBytes: number): Uint8Array {
    const length = this.u32(`${field} length`);
    if (length > maxBytes) this.fail(`${field} length ${length} exceeds the maximum ${maxBytes}`);
    return this.fixed(length, field);
  }

  /** A count that will drive allocation: bounded by `max` and by the bytes actually left. */
  count(field: string, max: number, minBytesEach: number, width: 2 | 4 = 2): number {
    const n = width === 2 ? this.u16(field) : this.u32(field);
    if (n > max) this.fail(`${field} ${n} exceeds the maximum ${max}`);
    if (n * minBytesEach > this.remaining) {
      this.fail(`${field} ${n} needs at least ${n * minBytesEach} bytes, ${this.remaining} left`);
    }
    return n;
  }

  expectEnd(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} trailing bytes`);
  }
}
