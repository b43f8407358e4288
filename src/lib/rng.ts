/**
 * Seeded PRNG (sfc32) for tests, simulations and the devnet. Every randomized test prints its seed
 * and replays from it, so nothing here may read Math.random.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = this.seed;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [lo, hi). */
  int(lo: number, hi: number): number {
    if (hi <= lo) return lo;
    return lo + Math.floor(this.next() * (hi - lo));
  }

  bool(probability = 0.5): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from empty list');
    return items[this.int(0, items.length)] as T;
  }

  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += 4) {
      const v = this.nextU32();
      out[i] = v & 0xff;
      if (i + 1 < length) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < length) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < length) out[i + 3] = v >>> 24;
    }
    return out;
  }

  /** A new independent generator derived from this one. */
  fork(): Rng {
    return new Rng(this.nextU32());
  }
}

/** Seed from CAIRN_SEED if set (to replay a failure), otherwise a fresh one. */
export function seedFromEnv(envName = 'CAIRN_SEED'): number {
  const fromEnv = process.env[envName];
  if (fromEnv !== undefined && fromEnv !== '') {
    const parsed = Number(fromEnv);
    if (Number.isInteger(parsed)) return parsed >>> 0;
  }
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}
