/**
 * The LtHash element kernel: BLAKE3-XOF to 2048 bytes of one short input, added into (or subtracted
 * from) an LtHash accumulator, in one WebAssembly call using 128-bit SIMD.
 *
 * Why: the element hash is the state store's hot path. A 2048-byte XOF output is 32 compressions of
 * the same root block that differ only in the output counter, so four of them run side by side in
 * the four 32-bit lanes of a v128 (8 rounds of 4 instead of 32 scalar compressions), and the
 * 16-bit limb sums are single `i16x8.add`/`i16x8.sub` instructions (exactly mod 2^16 per limb). The
 * general BLAKE3 (hash-wasm) does one output block at a time and the limb sums ran in JavaScript.
 *
 * The module is assembled here from this source (no binary is checked in): `assemble()` emits the
 * bytecode of one function, `mix(length, accumulatorOffset, sign)`. Scope: inputs of 1..1024 bytes
 * (one BLAKE3 chunk: every row the EVM families produce; longer inputs use hash-wasm). Before use the
 * kernel is compared with hash-wasm's BLAKE3 on inputs of many lengths (`loadLtKernel` returns
 * undefined on any difference or when the runtime lacks WebAssembly SIMD, and callers keep using
 * hash-wasm), and the tests compare it again, including the spec's vectors.
 *
 * Memory (one 64 KiB page, never grown, so views of it stay valid):
 *   [0, 1088)            input, zero-padded by the caller to a multiple of 64 bytes
 *   [2048, 2048 + 4·2048) four accumulators, 512 host-order 32-bit words each (the LtHash layout)
 */
import { createBLAKE3 } from 'hash-wasm';

/** Longest input the kernel hashes (one BLAKE3 chunk). */
export const KERNEL_MAX_INPUT = 1024;
export const KERNEL_ACC_BASE = 2048;
const ACC_BASE = KERNEL_ACC_BASE;
const ACC_BYTES = 2048;
export const KERNEL_SLOTS = 4;

// ---- a minimal WebAssembly assembler for the one function ----------------------------------------

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const MSG_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1;
const CHUNK_END = 2;
const ROOT = 8;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** Opcodes used (core and SIMD; SIMD ones are prefixed 0xfd and LEB-encoded). */
const OP = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32LtU: 0x49,
  i32LeU: 0x4d,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32Or: 0x72,
} as const;
const SIMD = {
  load: 0x00,
  load32Splat: 0x09,
  store: 0x0b,
  const: 0x0c,
  shuffle: 0x0d,
  i32x4Splat: 0x11,
  or: 0x50,
  xor: 0x51,
  i16x8Add: 0x8e,
  i16x8Sub: 0x91,
  i32x4Shl: 0xab,
  i32x4ShrU: 0xad,
  i32x4Add: 0xae,
} as const;

class Code {
  readonly bytes: number[] = [];
  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  simd(op: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(op), ...imm);
  }
  get(i: number): this {
    return this.op(OP.localGet, ...uleb(i));
  }
  set(i: number): this {
    return this.op(OP.localSet, ...uleb(i));
  }
  tee(i: number): this {
    return this.op(OP.localTee, ...uleb(i));
  }
  i32(n: number): this {
    return this.op(OP.i32Const, ...sleb(n | 0));
  }
  v128Words(w: readonly number[]): this {
    const b: number[] = [];
    for (const x of w) b.push(x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff);
    return this.simd(SIMD.const, ...b);
  }
  splat(x: number): this {
    return this.v128Words([x, x, x, x]);
  }
  /** memarg: alignment hint 0 (always valid), static offset. */
  mem(op: number, offset: number): this {
    return this.simd(op, 0, ...uleb(offset));
  }
  /** i8x16.shuffle of the two stack operands with 32-bit lane indices (0-3 first, 4-7 second). */
  shuffle32(lanes: readonly number[]): this {
    const b: number[] = [];
    for (const l of lanes) b.push(4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3);
    return this.simd(SIMD.shuffle, ...b);
  }
}

/** The whole module's bytes. */
export function assemble(): Uint8Array<ArrayBuffer> {
  // Locals: params 0 len, 1 acc, 2 sign; i32 3 off, 4 flags, 5 g, 6 dst; v128 from 7 on.
  const LEN = 0;
  const ACC = 1;
  const SIGN = 2;
  const OFF = 3;
  const FLAGS = 4;
  const G = 5;
  const DST = 6;
  let next = 7;
  const vec = (n: number) => Array.from({ length: n }, () => next++);
  const h = vec(8);
  const v = vec(16);
  const m = vec(16);
  const out = vec(16);
  const tr = vec(4);
  const [T] = vec(1) as [number];
  const v128Locals = next - 7;

  const c = new Code();
  const rotr = (x: number, n: number) => {
    // x = (x >>> n) | (x << (32 - n)); 16 and 8 are byte moves (a shuffle), the others shifts.
    if (n === 16 || n === 8) {
      c.get(x).get(x);
      const b: number[] = [];
      for (let l = 0; l < 4; l++) {
        for (let i = 0; i < 4; i++) b.push(4 * l + ((i + n / 8) % 4));
      }
      c.simd(SIMD.shuffle, ...b).set(x);
      return;
    }
    c.get(x)
      .i32(n)
      .simd(SIMD.i32x4ShrU)
      .get(x)
      .i32(32 - n)
      .simd(SIMD.i32x4Shl)
      .simd(SIMD.or)
      .set(x);
  };
  const add3 = (a: number, b: number, mx: number) => {
    c.get(a).get(b).simd(SIMD.i32x4Add).get(mx).simd(SIMD.i32x4Add).set(a);
  };
  const xorInto = (x: number, y: number) => {
    c.get(x).get(y).simd(SIMD.xor).set(x);
  };
  const addInto = (x: number, y: number) => {
    c.get(x).get(y).simd(SIMD.i32x4Add).set(x);
  };
  const gmix = (a: number, b: number, cc: number, d: number, mx: number, my: number) => {
    add3(a, b, mx);
    xorInto(d, a);
    rotr(d, 16);
    addInto(cc, d);
    xorInto(b, cc);
    rotr(b, 12);
    add3(a, b, my);
    xorInto(d, a);
    rotr(d, 8);
    addInto(cc, d);
    xorInto(b, cc);
    rotr(b, 7);
  };
  /** Seven rounds over v with the message words in m (the schedule is unrolled here). */
  const rounds = () => {
    let s = m.slice();
    for (let r = 0; r < 7; r++) {
      gmix(v[0]!, v[4]!, v[8]!, v[12]!, s[0]!, s[1]!);
      gmix(v[1]!, v[5]!, v[9]!, v[13]!, s[2]!, s[3]!);
      gmix(v[2]!, v[6]!, v[10]!, v[14]!, s[4]!, s[5]!);
      gmix(v[3]!, v[7]!, v[11]!, v[15]!, s[6]!, s[7]!);
      gmix(v[0]!, v[5]!, v[10]!, v[15]!, s[8]!, s[9]!);
      gmix(v[1]!, v[6]!, v[11]!, v[12]!, s[10]!, s[11]!);
      gmix(v[2]!, v[7]!, v[8]!, v[13]!, s[12]!, s[13]!);
      gmix(v[3]!, v[4]!, v[9]!, v[14]!, s[14]!, s[15]!);
      s = MSG_PERMUTATION.map((p) => s[p]!);
    }
  };
  const loadMessage = () => {
    for (let i = 0; i < 16; i++)
      c.get(OFF)
        .mem(SIMD.load32Splat, 4 * i)
        .set(m[i]!);
  };
  /** v = (h, IV0..3, counter vector, 0, splat(blockLen), splat(flags)); blockLen/flags on the stack order below. */
  const initState = (counter: () => void, blockLen: () => void) => {
    for (let i = 0; i < 8; i++) c.get(h[i]!).set(v[i]!);
    for (let i = 0; i < 4; i++) c.splat(IV[i]!).set(v[8 + i]!);
    counter();
    c.set(v[12]!);
    c.splat(0).set(v[13]!);
    blockLen();
    c.simd(SIMD.i32x4Splat).set(v[14]!);
    c.get(FLAGS).simd(SIMD.i32x4Splat).set(v[15]!);
  };

  // h = IV; off = 0; flags = CHUNK_START
  for (let i = 0; i < 8; i++) c.splat(IV[i]!).set(h[i]!);
  c.i32(0).set(OFF).i32(CHUNK_START).set(FLAGS);
  // Every block but the last: h = compress(h, block, counter 0, 64, flags)[0..8].
  c.op(OP.block, 0x40).op(OP.loop, 0x40);
  c.get(LEN).get(OFF).op(OP.i32Sub).i32(64).op(OP.i32LeU).op(OP.brIf, 1);
  loadMessage();
  initState(
    () => c.splat(0),
    () => c.i32(64),
  );
  rounds();
  for (let i = 0; i < 8; i++)
    c.get(v[i]!)
      .get(v[8 + i]!)
      .simd(SIMD.xor)
      .set(h[i]!);
  c.i32(0).set(FLAGS);
  c.get(OFF).i32(64).op(OP.i32Add).set(OFF);
  c.op(OP.br, 0).op(OP.end).op(OP.end);
  // The last block is the root: 32 output blocks, four at a time (lane j = output counter 4g + j).
  c.get(FLAGS)
    .i32(CHUNK_END | ROOT)
    .op(OP.i32Or)
    .set(FLAGS);
  loadMessage();
  c.v128Words([0, 1, 2, 3]).set(T);
  c.i32(0).set(G);
  c.get(ACC).set(DST);
  c.op(OP.loop, 0x40);
  initState(
    () => c.get(T),
    () => c.get(LEN).get(OFF).op(OP.i32Sub),
  );
  rounds();
  for (let i = 0; i < 8; i++) {
    c.get(v[i]!)
      .get(v[8 + i]!)
      .simd(SIMD.xor)
      .set(out[i]!);
    c.get(v[8 + i]!)
      .get(h[i]!)
      .simd(SIMD.xor)
      .set(out[8 + i]!);
  }
  // out[w] lane j is word w of output block 4g + j, i.e. LtHash word 64g + 16j + w. Transpose each
  // 4×4 group (words 4k..4k+3) so lane order becomes word order, then add at dst + 64j + 16k.
  const accumulate = (op: number) => {
    for (let k = 0; k < 4; k++) {
      const [r0, r1, r2, r3] = [out[4 * k]!, out[4 * k + 1]!, out[4 * k + 2]!, out[4 * k + 3]!];
      c.get(r0).get(r1).shuffle32([0, 4, 1, 5]).set(tr[0]!);
      c.get(r0).get(r1).shuffle32([2, 6, 3, 7]).set(tr[1]!);
      c.get(r2).get(r3).shuffle32([0, 4, 1, 5]).set(tr[2]!);
      c.get(r2).get(r3).shuffle32([2, 6, 3, 7]).set(tr[3]!);
      const cols: [number, number, readonly number[]][] = [
        [tr[0]!, tr[2]!, [0, 1, 4, 5]],
        [tr[0]!, tr[2]!, [2, 3, 6, 7]],
        [tr[1]!, tr[3]!, [0, 1, 4, 5]],
        [tr[1]!, tr[3]!, [2, 3, 6, 7]],
      ];
      cols.forEach(([a, b, lanes], j) => {
        const at = 64 * j + 16 * k;
        c.get(DST).get(DST).mem(SIMD.load, at);
        c.get(a).get(b).shuffle32(lanes);
        c.simd(op).mem(SIMD.store, at);
      });
    }
  };
  c.get(SIGN).op(OP.if, 0x40);
  accumulate(SIMD.i16x8Add);
  c.op(OP.else);
  accumulate(SIMD.i16x8Sub);
  c.op(OP.end);
  c.get(T).splat(4).simd(SIMD.i32x4Add).set(T);
  c.get(DST).i32(256).op(OP.i32Add).set(DST);
  c.get(G).i32(1).op(OP.i32Add).tee(G).i32(8).op(OP.i32LtU).op(OP.brIf, 0);
  c.op(OP.end); // loop
  c.op(OP.end); // function

  const body = [0x02, ...uleb(4), 0x7f, ...uleb(v128Locals), 0x7b, ...c.bytes];
  const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]),
    ...section(3, [1, 0]),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [2, ...name('mix'), 0x00, 0, ...name('memory'), 0x02, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

// ---- the instance ----------------------------------------------------------------------------

interface KernelExports {
  memory: WebAssembly.Memory;
  mix(length: number, accOffset: number, sign: number): void;
}

/** One instance (one per thread): input buffer and four accumulator slots in its memory. */
export class LtKernel {
  /** Write the serialized input here (offset 0), then `mix`. */
  readonly input: Uint8Array;
  private readonly slots: Uint32Array[];

  private constructor(private readonly ex: KernelExports) {
    const buf = ex.memory.buffer;
    this.input = new Uint8Array(buf, 0, KERNEL_MAX_INPUT + 64);
    this.slots = Array.from(
      { length: KERNEL_SLOTS },
      (_, i) => new Uint32Array(buf, ACC_BASE + i * ACC_BYTES, ACC_BYTES / 4),
    );
  }

  static async instantiate(module: WebAssembly.Module): Promise<LtKernel> {
    const instance = await WebAssembly.instantiate(module, {});
    return new LtKernel(instance.exports as unknown as KernelExports);
  }

  /** Accumulator slot `i` (0-3) as 512 host-order words, the LtHash layout (a live view). */
  slot(i: number): Uint32Array {
    return this.slots[i]!;
  }

  /**
   * Adds (sign > 0) or subtracts BLAKE3-XOF-2048 of `input[0, length)` into slot `slot`.
   * 1 ≤ length ≤ KERNEL_MAX_INPUT; the bytes after the input up to the next multiple of 64 are
   * zeroed here.
   */
  mix(length: number, slot: number, sign: number): void {
    this.input.fill(0, length, (length + 63) & ~63);
    this.ex.mix(length, ACC_BASE + slot * ACC_BYTES, sign > 0 ? 1 : 0);
  }
}

let compiled: Promise<WebAssembly.Module | undefined> | undefined;

/**
 * The compiled kernel (shareable with worker threads), or undefined when this runtime cannot run
 * it or it disagrees with hash-wasm's BLAKE3 on any probe input (lengths 1..1024 across block
 * boundaries), in which case callers keep hashing with hash-wasm.
 */
export function loadLtKernel(): Promise<WebAssembly.Module | undefined> {
  compiled ??= (async () => {
    try {
      if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) return undefined; // little-endian only
      const module = await WebAssembly.compile(assemble());
      const kernel = await LtKernel.instantiate(module);
      const reference = await createBLAKE3(ACC_BYTES * 8);
      for (const length of [1, 10, 63, 64, 65, 82, 106, 114, 127, 128, 129, 500, 1023, 1024]) {
        const probe = new Uint8Array(length);
        for (let i = 0; i < length; i++) probe[i] = (i * 131 + length * 7 + 1) & 0xff;
        reference.init();
        reference.update(probe);
        const want = new Uint32Array(reference.digest('binary').slice().buffer);
        const slot = kernel.slot(length % KERNEL_SLOTS);
        slot.fill(0);
        kernel.input.set(probe);
        kernel.mix(length, length % KERNEL_SLOTS, 1);
        for (let i = 0; i < want.length; i++) if (slot[i] !== want[i]) return undefined;
        kernel.input.set(probe);
        kernel.mix(length, length % KERNEL_SLOTS, -1);
        for (let i = 0; i < want.length; i++) if (slot[i] !== 0) return undefined;
      }
      return module;
    } catch {
      return undefined;
    }
  })();
  return compiled;
}
