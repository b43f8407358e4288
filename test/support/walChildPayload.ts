import { Rng } from '../../src/lib/rng.ts';

/** Segment size of the kill -9 child's WAL: small, so segments seal and rotate under the kills. */
export const WAL_CHILD_SEGMENT_BYTES = 16 * 1024;

/** Deterministic payload of record `index` in a directory seeded with `dirSeed` (1..300 bytes). */
export function walChildPayload(dirSeed: number, index: number): Uint8Array {
  const rng = new Rng((dirSeed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const p = rng.bytes(rng.int(1, 301));
  p[0] = index & 0xff;
  return p;
}
