/**
 * The lattice hash (spec-state-store §2): a vector of 1024 u16 limbs, added and subtracted
 * element-wise mod 2^16. Each live row contributes H(k, v) = BLAKE3-XOF(u32le|k| ‖ k ‖ u32le|v| ‖ v)
 * truncated to 2048 bytes, read as little-endian limbs. The root is BLAKE3-256 of the 2048-byte
 * little-endian serialization of the sum. Additive, so order and chunking never matter.
 *
 * Element hashes of inputs up to 1 KiB (every EVM row) run in the SIMD kernel of ltKernel.ts, which
 * also does the limb sums; longer inputs, and runtimes without WebAssembly SIMD, use hash-wasm's
 * BLAKE3 module in place (blake3Wasm.ts). Either way the bits are the same (tests compare them).
 */
import { createBLAKE3, type IHasher } from 'hash-wasm';
import { BLAKE3_IO_BYTES, Blake3Direct, loadBlake3Module } from './blake3Wasm.ts';
import { KERNEL_MAX_INPUT, KERNEL_SLOTS, LtKernel, loadLtKernel } from './ltKernel.ts';

/** One row's element hashes for a batch: H(key, old) mixed out, H(key, neu) mixed in, into `family`. */
export interface HashItem {
  family: number;
  key: Uint8Array;
  /** Bytes to mix out (the row's previous value), if any. */
  old?: Uint8Array | undefined;
  /** Bytes to mix in (the row's new value), if any. */
  neu?: Uint8Array | undefined;
}

/** Element inputs packed in one buffer: op n is (family, sign, start, end) at ops[4n..4n+3]. */
export interface PackedOps {
  buf: Uint8Array;
  ops: Int32Array;
}

export const LTHASH_LIMBS = 1024;
export const LTHASH_BYTES = 2048;

/** Typed-array views share host byte order; every supported host is little-endian, and we check. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const LTHASH_WORDS = LTHASH_LIMBS / 2;
const LOW15 = 0x7fff7fff;
const HIGH1 = 0x80008000;

function words32(limbs: Uint16Array): Uint32Array {
  if (limbs.byteOffset % 4 !== 0) return new Uint32Array(limbs.slice().buffer);
  return new Uint32Array(limbs.buffer, limbs.byteOffset, LTHASH_WORDS);
}

export class LtHash {
  readonly limbs: Uint16Array;
  private readonly words: Uint32Array;

  constructor(limbs?: Uint16Array) {
    // Own, 4-byte-aligned storage so the 32-bit view always aliases the limbs.
    if (!limbs) this.limbs = new Uint16Array(LTHASH_LIMBS);
    else this.limbs = limbs.byteOffset % 4 === 0 ? limbs : limbs.slice();
    this.words = words32(this.limbs);
  }

  /** The limbs as 512 host-order 32-bit words (a view, not a copy). */
  words32(): Uint32Array {
    return this.words;
  }

  clone(): LtHash {
    return new LtHash(this.limbs.slice());
  }

  /**
   * Lane-wise add, two 16-bit lanes per 32-bit word (SWAR): the low 15 bits of each lane add
   * without crossing into the next lane, and the lane's top bit is patched in by xor. Lane order
   * inside a word does not matter for element-wise arithmetic, so host byte order is irrelevant.
   */
  add(other: Uint16Array): void {
    this.addWords(words32(other));
  }

  /** `add` over the 512 32-bit words of an element (two limbs each, host order). */
  addWords(b: Uint32Array): void {
    const a = this.words;
    for (let i = 0; i < LTHASH_WORDS; i++) {
      const x = a[i]!;
      const y = b[i]!;
      a[i] = ((x & LOW15) + (y & LOW15)) ^ ((x ^ y) & HIGH1);
    }
  }

  /** Lane-wise subtract (SWAR): borrow the lane's top bit so no borrow crosses lanes. */
  sub(other: Uint16Array): void {
    this.subWords(words32(other));
  }

  /** `sub` over the 512 32-bit words of an element. */
  subWords(b: Uint32Array): void {
    const a = this.words;
    for (let i = 0; i < LTHASH_WORDS; i++) {
      const x = a[i]!;
      const y = b[i]!;
      a[i] = ((x | HIGH1) - (y & LOW15)) ^ ((x ^ ~y) & HIGH1);
    }
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

/**
 * Reusable BLAKE3 hashers: XOF for element hashes, 256-bit for checksums. One per thread. Element
 * hashes go through hash-wasm's BLAKE3 module directly when it loads (blake3Wasm.ts: input written
 * into the module's buffer, output read in place, no per-row allocation), else through the public
 * hasher.
 */
export class LtHasher {
  private scratch = new Uint8Array(256);
  private readonly elementLimbs = new Uint16Array(LTHASH_LIMBS);

  private constructor(
    private readonly xof: IHasher,
    private readonly checksumHasher: IHasher,
    private readonly direct: Blake3Direct | undefined,
    private readonly kernel: LtKernel | undefined,
  ) {}

  /** `direct: false` / `kernel: false`: do without hash-wasm's module in place / the SIMD kernel. */
  static async create(options: { direct?: boolean; kernel?: boolean } = {}): Promise<LtHasher> {
    const [xof, sum, module, kernelModule] = await Promise.all([
      createBLAKE3(LTHASH_BYTES * 8),
      createBLAKE3(256),
      options.direct === false || !HOST_LITTLE_ENDIAN ? undefined : loadBlake3Module(),
      options.kernel === false || !HOST_LITTLE_ENDIAN ? undefined : loadLtKernel(),
    ]);
    const direct = module ? await Blake3Direct.instantiate(module) : undefined;
    const kernel = kernelModule ? await LtKernel.instantiate(kernelModule) : undefined;
    return new LtHasher(xof, sum, direct, kernel);
  }

  /** Whether element hashes use the module directly (for tests and the bench). */
  get usesDirectWasm(): boolean {
    return this.direct !== undefined;
  }

  /** Whether element hashes of inputs ≤ 1 KiB use the SIMD kernel (for tests and the bench). */
  get usesKernel(): boolean {
    return this.kernel !== undefined;
  }

  /**
   * Adds Σ(H(key, neu) − H(key, old)) of `items` into `roots[item.family]` (≤ 4 roots). Empty keys
   * or values are not members and are skipped. With the kernel, the roots are loaded into its
   * accumulators once, every short input is hashed and summed there, and the sums are stored back.
   */
  mixItems(roots: readonly LtHash[], items: readonly HashItem[]): void {
    const k = this.kernel;
    if (!k || roots.length > KERNEL_SLOTS) {
      for (const it of items) {
        const r = roots[it.family]!;
        if (it.old) this.mixOut(r, it.key, it.old);
        if (it.neu) this.mixIn(r, it.key, it.neu);
      }
      return;
    }
    for (let f = 0; f < roots.length; f++) k.slot(f).set(roots[f]!.words32());
    let long: HashItem[] | undefined;
    const input = k.input;
    for (const it of items) {
      const key = it.key;
      if (key.length === 0) continue;
      const old = it.old;
      const neu = it.neu;
      if (
        (old !== undefined && 8 + key.length + old.length > KERNEL_MAX_INPUT) ||
        (neu !== undefined && 8 + key.length + neu.length > KERNEL_MAX_INPUT)
      ) {
        long ??= [];
        long.push(it);
        continue;
      }
      if (old !== undefined && old.length > 0) {
        writeInput(input, key, old);
        k.mix(8 + key.length + old.length, it.family, -1);
      }
      if (neu !== undefined && neu.length > 0) {
        writeInput(input, key, neu);
        k.mix(8 + key.length + neu.length, it.family, 1);
      }
    }
    for (let f = 0; f < roots.length; f++) roots[f]!.words32().set(k.slot(f));
    if (long) {
      for (const it of long) {
        const r = roots[it.family]!;
        if (it.old) this.mixOut(r, it.key, it.old);
        if (it.neu) this.mixIn(r, it.key, it.neu);
      }
    }
  }

  /**
   * Mixes packed ops into `roots` (4), claiming `chunkOps` at a time from the shared `cursor` until
   * `count` are claimed (other threads claim from the same cursor).
   */
  mixClaimed(
    roots: readonly LtHash[],
    packed: PackedOps,
    count: number,
    cursor: Int32Array,
    chunkOps: number,
  ): void {
    const k = this.kernel;
    const { buf, ops } = packed;
    if (k) for (let f = 0; f < roots.length; f++) k.slot(f).set(roots[f]!.words32());
    try {
      for (;;) {
        const first = Atomics.add(cursor, 0, chunkOps);
        if (first >= count) break;
        const last = Math.min(count, first + chunkOps);
        for (let n = first; n < last; n++) {
          const i = 4 * n;
          const start = ops[i + 2]!;
          const end = ops[i + 3]!;
          if (k && end - start <= KERNEL_MAX_INPUT) {
            k.input.set(buf.subarray(start, end));
            k.mix(end - start, ops[i]!, ops[i + 1]!);
          } else if (k) {
            // Into the kernel's slot, which holds this family's running sum.
            const words = this.serializedWords(buf.subarray(start, end));
            addOrSub(k.slot(ops[i]!), words, ops[i + 1]!);
          } else {
            this.mixSerialized(roots[ops[i]!]!, buf.subarray(start, end), ops[i + 1]!);
          }
        }
      }
    } finally {
      if (k) for (let f = 0; f < roots.length; f++) roots[f]!.words32().set(k.slot(f));
    }
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
    const words = this.elementWords(key, value);
    if (!words) return undefined;
    if (this.direct) {
      // A copy: the module's buffer is overwritten by the next input.
      this.elementLimbs.set(new Uint16Array(words.buffer, words.byteOffset, LTHASH_LIMBS));
      return this.elementLimbs;
    }
    return new Uint16Array(words.buffer, words.byteOffset, LTHASH_LIMBS);
  }

  /** H(k, v) as 512 host-order 32-bit words (two limbs each), valid until the next call. */
  private elementWords(key: Uint8Array, value: Uint8Array): Uint32Array | undefined {
    if (key.length === 0 || value.length === 0) return undefined;
    const need = 8 + key.length + value.length;
    const direct = this.direct;
    if (direct) {
      if (need <= BLAKE3_IO_BYTES) {
        writeInput(direct.input(), key, value);
        return direct.hashInPlace(need, LTHASH_BYTES);
      }
      return direct.hashChunks([LtHasher.serializeKV(key, value)], LTHASH_BYTES);
    }
    if (this.scratch.length < need) this.scratch = new Uint8Array(Math.max(need, this.scratch.length * 2));
    writeInput(this.scratch, key, value);
    this.xof.init();
    this.xof.update(this.scratch.subarray(0, need));
    const bytes = this.xof.digest('binary');
    if (HOST_LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
      return new Uint32Array(bytes.buffer, bytes.byteOffset, LTHASH_LIMBS / 2);
    }
    const limbs = this.elementLimbs;
    for (let i = 0; i < LTHASH_LIMBS; i++) limbs[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
    return words32(limbs);
  }

  /**
   * Adds (sign > 0) or subtracts the element hash of an already serialized input
   * (`serializeKV` layout, non-empty key and value).
   */
  mixSerialized(acc: LtHash, input: Uint8Array, sign: number): void {
    const k = this.kernel;
    if (k && input.length <= KERNEL_MAX_INPUT) {
      const slot = k.slot(0);
      slot.set(acc.words32());
      k.input.set(input);
      k.mix(input.length, 0, sign);
      acc.words32().set(slot);
      return;
    }
    addOrSub(acc.words32(), this.serializedWords(input), sign);
  }

  /** H of an already serialized input as 512 host-order words, valid until the next call. */
  private serializedWords(input: Uint8Array): Uint32Array {
    let words: Uint32Array;
    const direct = this.direct;
    if (direct && input.length <= BLAKE3_IO_BYTES) {
      direct.input().set(input);
      words = direct.hashInPlace(input.length, LTHASH_BYTES);
    } else if (direct) {
      words = direct.hashChunks([input], LTHASH_BYTES);
    } else {
      this.xof.init();
      this.xof.update(input);
      const bytes = this.xof.digest('binary');
      const limbs = this.elementLimbs;
      for (let i = 0; i < LTHASH_LIMBS; i++) limbs[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
      words = words32(limbs);
    }
    return words;
  }

  mixIn(acc: LtHash, key: Uint8Array, value: Uint8Array): void {
    if (this.kernelMix(acc, key, value, 1)) return;
    const h = this.elementWords(key, value);
    if (h) acc.addWords(h);
  }

  mixOut(acc: LtHash, key: Uint8Array, value: Uint8Array): void {
    if (this.kernelMix(acc, key, value, -1)) return;
    const h = this.elementWords(key, value);
    if (h) acc.subWords(h);
  }

  /** One element through the kernel (accumulator copied in and out); false when it does not apply. */
  private kernelMix(acc: LtHash, key: Uint8Array, value: Uint8Array, sign: number): boolean {
    const k = this.kernel;
    if (!k || key.length === 0 || value.length === 0) return false;
    const need = 8 + key.length + value.length;
    if (need > KERNEL_MAX_INPUT) return false;
    const slot = k.slot(0);
    slot.set(acc.words32());
    writeInput(k.input, key, value);
    k.mix(need, 0, sign);
    acc.words32().set(slot);
    return true;
  }

  /** The 32-byte root: BLAKE3-256 of the 2048-byte serialization. */
  checksum(hash: LtHash): Uint8Array {
    this.checksumHasher.init();
    this.checksumHasher.update(hash.toBytes());
    return this.checksumHasher.digest('binary');
  }
}

/** `a += b` (sign > 0) or `a -= b` limb-wise over 512 words (SWAR, as `LtHash.addWords`). */
function addOrSub(a: Uint32Array, b: Uint32Array, sign: number): void {
  if (sign > 0) {
    for (let i = 0; i < LTHASH_WORDS; i++) {
      const x = a[i]!;
      const y = b[i]!;
      a[i] = ((x & LOW15) + (y & LOW15)) ^ ((x ^ y) & HIGH1);
    }
  } else {
    for (let i = 0; i < LTHASH_WORDS; i++) {
      const x = a[i]!;
      const y = b[i]!;
      a[i] = ((x | HIGH1) - (y & LOW15)) ^ ((x ^ ~y) & HIGH1);
    }
  }
}

/** Writes `u32le(len k) ‖ k ‖ u32le(len v) ‖ v` at the start of `out` (no allocation). */
function writeInput(out: Uint8Array, key: Uint8Array, value: Uint8Array): void {
  const k = key.length;
  const v = value.length;
  out[0] = k;
  out[1] = k >>> 8;
  out[2] = k >>> 16;
  out[3] = k >>> 24;
  out.set(key, 4);
  const at = 4 + k;
  out[at] = v;
  out[at + 1] = v >>> 8;
  out[at + 2] = v >>> 16;
  out[at + 3] = v >>> 24;
  out.set(value, at + 4);
}

let shared: Promise<LtHasher> | undefined;
/** The process-wide hasher (the store runs on one thread; WASM instances are not shareable). */
export function sharedLtHasher(): Promise<LtHasher> {
  shared ??= LtHasher.create();
  return shared;
}
