/**
 * Growable byte array with copy-on-write sharing, the storage of one simulated file image.
 *
 * Crash images copy every file; sharing the buffer until one side mutates makes an image of a file
 * without unsynced data O(1), which is what lets crash harnesses build tens of thousands of images.
 */
export class ByteContent {
  private buf: Uint8Array;
  private len: number;
  /** True while `buf` may be referenced by another ByteContent: copy before mutating. */
  private shared: boolean;

  private constructor(buf: Uint8Array, len: number, shared: boolean) {
    this.buf = buf;
    this.len = len;
    this.shared = shared;
  }

  static empty(): ByteContent {
    return new ByteContent(new Uint8Array(0), 0, false);
  }

  static of(bytes: Uint8Array): ByteContent {
    return new ByteContent(bytes.slice(), bytes.byteLength, false);
  }

  get length(): number {
    return this.len;
  }

  /** A logically independent copy that shares memory until either side writes. */
  clone(): ByteContent {
    this.shared = true;
    return new ByteContent(this.buf, this.len, true);
  }

  /** Copies out up to `length` bytes at `position`; returns the count (short at the end). */
  read(dst: Uint8Array, dstOffset: number, length: number, position: number): number {
    if (position >= this.len || length <= 0) return 0;
    const n = Math.min(length, this.len - position, dst.byteLength - dstOffset);
    dst.set(this.buf.subarray(position, position + n), dstOffset);
    return n;
  }

  /** A copy of [from, to). */
  slice(from = 0, to = this.len): Uint8Array {
    return this.buf.slice(from, Math.min(to, this.len));
  }

  /** Writes `src` at `position`, zero-filling any gap after the current end. */
  write(src: Uint8Array, position: number): void {
    const end = position + src.byteLength;
    this.resize(Math.max(this.len, end));
    this.buf.set(src, position);
  }

  /** Sets the length: shrinks, or extends with zeros. */
  truncate(length: number): void {
    this.resize(length);
  }

  /** Extends with zeros to at least `length`. */
  extendTo(length: number): void {
    if (length > this.len) this.resize(length);
  }

  flipBit(byteOffset: number, bit: number): void {
    this.own(this.len);
    this.buf[byteOffset] = (this.buf[byteOffset] ?? 0) ^ (1 << bit);
  }

  private resize(length: number): void {
    this.own(length);
    if (length > this.buf.byteLength) {
      const grown = new Uint8Array(Math.max(length, this.buf.byteLength * 2, 64));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    } else if (length > this.len) {
      // The buffer may hold stale bytes from before a shrink; a grown region must read as zeros.
      this.buf.fill(0, this.len, length);
    }
    this.len = length;
  }

  private own(minCapacity: number): void {
    if (!this.shared) return;
    const copy = new Uint8Array(Math.max(minCapacity, this.len));
    copy.set(this.buf.subarray(0, this.len));
    this.buf = copy;
    this.shared = false;
  }
}
