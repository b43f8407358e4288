/**
 * Hands out small byte arrays as views into shared chunks, for the keys and values of a write
 * batch (and the hot tier's other small copies on the ingest path: a view is one small object on
 * the JS heap, an array of its own is two plus its bytes). Why: LevelDB's binding reads each key and value through N-API, and a typed array of 64
 * bytes or less that was created with `new Uint8Array(n)` lives inside the V8 heap, so that read
 * first moves its bytes into a fresh off-heap buffer of its own — an allocation per key on the ingest
 * path (measured: ~1.1-2.2 µs per LevelDB put of a 33-byte key and a 12-byte value, ~0.45-1.0 µs
 * with both as views into one shared buffer). Views are never reused: a KV store that keeps a key it
 * was handed (the test engines do) keeps valid bytes, and a chunk is freed once none of its views
 * is referenced.
 */
const CHUNK_BYTES = 16 * 1024;
/** Larger requests get an array of their own (a chunk would be mostly wasted on them). */
const MAX_SLAB_REQUEST = 1024;

export class ByteSlab {
  private chunk = new Uint8Array(0);
  private used = 0;

  /** `length` zeroed-or-unused bytes that nobody else holds. */
  take(length: number): Uint8Array {
    if (length > MAX_SLAB_REQUEST) return new Uint8Array(length);
    if (this.used + length > this.chunk.length) {
      this.chunk = new Uint8Array(CHUNK_BYTES);
      this.used = 0;
    }
    const view = this.chunk.subarray(this.used, this.used + length);
    this.used += length;
    return view;
  }
}
