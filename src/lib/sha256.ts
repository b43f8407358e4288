/**
 * SHA-256 (FIPS 180-4) of short inputs, written to a caller's buffer without allocating.
 *
 * Why not node:crypto: its one-shot `hash` returns a fresh Buffer (an external ArrayBuffer) that
 * the caller then copies; for block headers, hashed once per admitted block, that was ~0.7 KB of
 * allocation per block on the consensus bench, and young-generation collections (vote latency's
 * p99 tail) follow allocation. For inputs of a few hundred bytes this is as fast. Long inputs
 * (payloads) keep using node:crypto.
 */

const ROUND_CONSTANTS = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

const INITIAL_STATE = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

export const SHA256_BYTES = 32;

/** Message schedule and chaining state, reused by every call (single-threaded, not reentrant). */
const schedule = new Int32Array(64);
const state = new Int32Array(8);
/** The last one or two blocks: the input's tail, the 0x80 byte, zeros and the bit length. */
const tailBlocks = new Uint8Array(128);

/** Writes SHA-256 of `input[0, length)` (default: all of it) into `out[offset, offset + 32)`. */
export function sha256Into(input: Uint8Array, out: Uint8Array, offset = 0, length = input.byteLength): void {
  if (out.byteLength - offset < SHA256_BYTES) {
    throw new RangeError(`sha256Into: ${out.byteLength - offset} bytes of room, 32 needed`);
  }
  if (length > input.byteLength) {
    throw new RangeError(`sha256Into: ${length} bytes asked of a ${input.byteLength}-byte input`);
  }
  state.set(INITIAL_STATE);
  const wholeBlocks = Math.floor(length / 64);
  for (let b = 0; b < wholeBlocks; b++) compress(input, b * 64);
  // Padding: the remaining bytes, 0x80, zeros up to 8 bytes short of a block end, the length in bits.
  const rest = length - wholeBlocks * 64;
  const tailBytes = rest + 9 <= 64 ? 64 : 128;
  tailBlocks.fill(0);
  for (let i = 0; i < rest; i++) tailBlocks[i] = input[wholeBlocks * 64 + i]!;
  tailBlocks[rest] = 0x80;
  const bitsHigh = Math.floor(length / 0x20000000); // length * 8 / 2^32
  const bitsLow = (length * 8) >>> 0;
  writeUint32BE(tailBlocks, tailBytes - 8, bitsHigh);
  writeUint32BE(tailBlocks, tailBytes - 4, bitsLow);
  compress(tailBlocks, 0);
  if (tailBytes === 128) compress(tailBlocks, 64);
  for (let i = 0; i < 8; i++) writeUint32BE(out, offset + i * 4, state[i]!);
}

function writeUint32BE(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = value >>> 16;
  buf[at + 2] = value >>> 8;
  buf[at + 3] = value;
}

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

/** One 64-byte block of `bytes` at `at` into `state`. */
function compress(bytes: Uint8Array, at: number): void {
  const w = schedule;
  for (let t = 0; t < 16; t++) {
    const i = at + t * 4;
    w[t] = (bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!;
  }
  for (let t = 16; t < 64; t++) {
    const w15 = w[t - 15]!;
    const w2 = w[t - 2]!;
    const sigma0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
    const sigma1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
    w[t] = (w[t - 16]! + sigma0 + w[t - 7]! + sigma1) | 0;
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let e = state[4]!;
  let f = state[5]!;
  let g = state[6]!;
  let h = state[7]!;
  for (let t = 0; t < 64; t++) {
    const bigSigma1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const choose = (e & f) ^ (~e & g);
    const t1 = (h + bigSigma1 + choose + ROUND_CONSTANTS[t]! + w[t]!) | 0;
    const bigSigma0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const majority = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (bigSigma0 + majority) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
  state[5] = (state[5]! + f) | 0;
  state[6] = (state[6]! + g) | 0;
  state[7] = (state[7]! + h) | 0;
}
