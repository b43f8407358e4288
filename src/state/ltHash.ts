/**
 * The lattice hash (spec-state-store §2): a vector of 1024 u16 limbs, added and subtracted
 * element-wise mod 2^16. Each live row contributes H(k, v) = BLAKE3-XOF(u32le|k| ‖ k ‖ u32le|v| ‖ v)
 * truncated to 2048 bytes, read as little-endian limbs. The root is BLAKE3-256 of the 2048-byte
 * little-endian serialization of the sum. Additive, so order and chunking never matter.
 *
 * BLAKE3 comes from hash-wasm (WASM, ~5 µs per 2 KiB XOF here); the hashers are created once and
 * reused (`init/update/digest`), which is what makes the per-row cost that low.
 */
import { createBLAKE3, type IHasher } from 'hash-wasm';

export const LTHASH_LIMBS = 1024;
export const LTHASH_BYTES = 2048;

/** Typed-array views share host byte order; every supported host is little-endian, and we check. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class LtHash {
  readonly limbs: Uint16Array;

  constructor(limbs?: Uint16Array) {
    this.limbs = limbs ?? new Uint16Array(LTHASH_LIMBS);
  }

  clone(): LtHash {
    return new LtHash(this.limbs.slice());
  }

  add(other: Uint16Array): void {
    const a = this.limbs;
    for (let i = 0; i < LTHASH_LIMBS; i++) a[i] = (a[i]! + other[i]!) & 0xffff;
  }

  sub(other: Uint16Array): void {
    const a = this.limbs;
    for (let i = 0; i < LTHASH_LIMBS; i++) a[i] = (a[i]! - other[i]!) & 0xffff;
  }

  isIdentity(): boolean {
    for (let i = 0; i < LTHASH_LIMBS; i++) if (this.limbs[i] !== 0) return false;
    return true;
  }

  equals(other: LtHash): boolean {
    for (let i = 0; i < LTHASH_LIMBS; i++) if (this.limbs[i] !== other.limbs[i]) return false;
    return true;
  }

  /** 2048 bytes, limb i little-endian at offset 2i. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(LTHASH_BYTES);
    for (let i = 0; i < LTHASH_LIMBS; i++) {
      const v = this.limbs[i]!;
      out[2 * i] = v & 0xff;
      out[2 * i + 1] = v >>> 8;
    }
    return out;
  }

  static fromBytes(bytes: Uint8Array): LtHash {
    if (bytes.length !== LTHASH_BYTES)
      throw new RangeError(`an LtHash is ${LTHASH_BYTES} bytes, got ${bytes.length}`);
    const limbs = new Uint16Array(LTHASH_LIMBS);
    for (let i = 0; i < LTHASH_LIMBS; i++) limbs[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
    return new LtHash(limbs);
  }

  static sum(parts: readonly LtHash[]): LtHash {
    const out = new LtHash();
    for (const p of parts) out.add(p.limbs);
    return out;
  }
}

/** Reusable BLAKE3 hashers: XOF for element hashes, 256-bit for checksums. One per thread. */
export class LtHasher {
  private scratch = new Uint8Array(256);
  private readonly elementLimbs = new Uint16Array(LTHASH_LIMBS);

  private constructor(
    private readonly xof: IHasher,
    private readonly checksumHasher: IHasher,
  ) {}

  static async create(): Promise<LtHasher> {
    const [xof, sum] = await Promise.all([createBLAKE3(LTHASH_BYTES * 8), createBLAKE3(256)]);
    return new LtHasher(xof, sum);
  }

  /** `u32le(len k) ‖ k ‖ u32le(len v) ‖ v`, the element-hash input (exposed for vectors). */
  static serializeKV(key: Uint8Array, value: Uint8Array): Uint8Array {
    const out = new Uint8Array(8 + key.length + value.length);
    writeInput(out, key, value);
    return out;
  }

  /**
   * H(k, v) as limbs, or undefined when the pair is not a member (empty key or value). The returned
   * array is reused by the next call.
   */
  element(key: Uint8Array, value: Uint8Array): Uint16Array | undefined {
    if (key.length === 0 || value.length === 0) return undefined;
    const need = 8 + key.length + value.length;
    if (this.scratch.length < need) this.scratch = new Uint8Array(Math.max(need, this.scratch.length * 2));
    writeInput(this.scratch, key, value);
    this.xof.init();
    this.xof.update(this.scratch.subarray(0, need));
    const bytes = this.xof.digest('binary');
    if (HOST_LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
      return new Uint16Array(bytes.buffer, bytes.byteOffset, LTHASH_LIMBS);
    }
    const limbs = this.elementLimbs;
    for (let i = 0; i < LTHASH_LIMBS; i++) limbs[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
    return limbs;
  }

  mixIn(acc: LtHash, key: Uint8Array, value: Uint8Array): void {
    const h = this.element(key, value);
    if (h) acc.add(h);
  }

  mixOut(acc: LtHash, key: Uint8Array, value: Uint8Array): void {
    const h = this.element(key, value);
    if (h) acc.sub(h);
  }

  /** The 32-byte root: BLAKE3-256 of the 2048-byte serialization. */
  checksum(hash: LtHash): Uint8Array {
    this.checksumHasher.init();
    this.checksumHasher.update(hash.toBytes());
    return this.checksumHasher.digest('binary');
  }
}

function writeInput(out: Uint8Array, key: Uint8Array, value: Uint8Array): void {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, key.length, true);
  out.set(key, 4);
  dv.setUint32(4 + key.length, value.length, true);
  out.set(value, 8 + key.length);
}

let shared: Promise<LtHasher> | undefined;
/** The process-wide hasher (the store runs on one thread; WASM instances are not shareable). */
export function sharedLtHasher(): Promise<LtHasher> {
  shared ??= LtHasher.create();
  return shared;
}
