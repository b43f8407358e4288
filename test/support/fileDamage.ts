/**
 * Damage to real files, for corruption sweeps on real disks (the engines' files included: LevelDB's
 * `.ldb` tables, `MANIFEST-*`, `CURRENT`, `.log`). The simulated file system has the same helpers
 * (`zeroPage`, `garblePage`, `flipBit`) for its in-memory files.
 *
 * Each helper changes the file in place with plain node:fs calls (the damage comes from outside
 * Cairn, so it does not go through the injectable FileSystem) and returns what it did, so a failing
 * sweep can name the damage it applied.
 */
import { closeSync, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../../src/lib/rng.ts';

export const PAGE_BYTES = 4096;

export type PageDamage =
  | { kind: 'zero-page'; file: string; page: number; from: number; to: number }
  | { kind: 'garble-page'; file: string; page: number; from: number; to: number; seed: number };
export type BitDamage = { kind: 'flip-bit'; file: string; byteOffset: number; bit: number };
export type Damage = PageDamage | BitDamage;

export function describeDamage(d: Damage): string {
  if (d.kind === 'flip-bit') return `flip bit ${d.bit} of byte ${d.byteOffset} in ${d.file}`;
  return `${d.kind} ${d.page} (bytes ${d.from}..${d.to}) in ${d.file}${d.kind === 'garble-page' ? ` seed ${d.seed}` : ''}`;
}

/** Number of 4 KiB pages of a file (the last may be partial). */
export function pageCount(file: string, pageBytes = PAGE_BYTES): number {
  return Math.ceil(statSync(file).size / pageBytes);
}

/** Page `page` of the file reads as zeros (the last page up to the end of the file). */
export function zeroPage(file: string, page: number, pageBytes = PAGE_BYTES): PageDamage {
  const { from, to } = pageRange(file, page, pageBytes);
  overwrite(file, from, new Uint8Array(to - from));
  return { kind: 'zero-page', file, page, from, to };
}

/** Page `page` of the file reads as random non-zero bytes drawn from `seed`. */
export function garblePage(file: string, page: number, seed: number, pageBytes = PAGE_BYTES): PageDamage {
  const { from, to } = pageRange(file, page, pageBytes);
  const rng = new Rng(seed);
  const junk = rng.bytes(to - from);
  for (let i = 0; i < junk.length; i++) if (junk[i] === 0) junk[i] = 1 + rng.int(0, 255);
  overwrite(file, from, junk);
  return { kind: 'garble-page', file, page, from, to, seed };
}

/** Flips one bit. */
export function flipBit(file: string, byteOffset: number, bit: number): BitDamage {
  const size = statSync(file).size;
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset >= size) {
    throw new RangeError(`flipBit: offset ${byteOffset} outside ${file} (${size} bytes)`);
  }
  if (!Number.isInteger(bit) || bit < 0 || bit > 7)
    throw new RangeError(`flipBit: bit must be 0..7, got ${bit}`);
  const fd = openSync(file, 'r+');
  try {
    const one = Buffer.alloc(1);
    readSync(fd, one, 0, 1, byteOffset);
    one[0] = one[0]! ^ (1 << bit);
    writeSync(fd, one, 0, 1, byteOffset);
  } finally {
    closeSync(fd);
  }
  return { kind: 'flip-bit', file, byteOffset, bit };
}

/** One seeded random damage of the file: a zeroed page, a garbled page or a flipped bit. */
export function randomDamage(file: string, rng: Rng): Damage {
  const size = statSync(file).size;
  if (size === 0) throw new RangeError(`randomDamage: ${file} is empty`);
  const r = rng.next();
  if (r < 1 / 3) return zeroPage(file, rng.int(0, pageCount(file)));
  if (r < 2 / 3) return garblePage(file, rng.int(0, pageCount(file)), rng.nextU32());
  return flipBit(file, rng.int(0, size), rng.int(0, 8));
}

export type LevelDbFileKind = 'table' | 'manifest' | 'current' | 'log';

/** LevelDB's own files in `dir`, by kind, sorted by name (LOCK and LOG are not data). */
export function levelDbFiles(dir: string): { kind: LevelDbFileKind; file: string }[] {
  const out: { kind: LevelDbFileKind; file: string }[] = [];
  for (const name of readdirSync(dir).sort()) {
    const kind: LevelDbFileKind | undefined = name.endsWith('.ldb')
      ? 'table'
      : name.startsWith('MANIFEST-')
        ? 'manifest'
        : name === 'CURRENT'
          ? 'current'
          : /^\d+\.log$/.test(name)
            ? 'log'
            : undefined;
    if (kind !== undefined) out.push({ kind, file: join(dir, name) });
  }
  return out;
}

function pageRange(file: string, page: number, pageBytes: number): { from: number; to: number } {
  const size = statSync(file).size;
  const from = page * pageBytes;
  if (!Number.isSafeInteger(page) || page < 0 || from >= size) {
    throw new RangeError(`page ${page} of ${pageBytes} bytes is outside ${file} (${size} bytes)`);
  }
  return { from, to: Math.min(from + pageBytes, size) };
}

function overwrite(file: string, position: number, bytes: Uint8Array): void {
  const fd = openSync(file, 'r+');
  try {
    let done = 0;
    while (done < bytes.byteLength)
      done += writeSync(fd, bytes, done, bytes.byteLength - done, position + done);
  } finally {
    closeSync(fd);
  }
}
