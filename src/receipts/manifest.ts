import { CairnError } from '../lib/errors.ts';

/**
 * The receipt store's own state, kept in an A/B snapshot file (`<dir>/archive/MANIFEST.{a,b}`,
 * each slot checksummed by abFile): the closed archive files and the floors. It is the only truth
 * about which archive files exist and what they hold; nothing is ever derived from a file name or
 * from the configured file span.
 *
 * Payload (little-endian):
 *   version u8 = 1 | flags u8 (bit0: firstBlock set) | firstBlock u64 | floor u64 | hotFloor u64
 *   | nextToArchive u64 | fileCount u32 | files: first u64 | last u64 | receiptRows u32 | logRows u32
 *     | receipts FileRef | logs FileRef
 *   FileRef: nameLength u16 | name utf8 | bytes u64 | crc32c u32 (of the whole file)
 */

export interface FileRef {
  /** Name inside the archive directory. */
  name: string;
  bytes: number;
  crc32c: number;
}

export interface ArchiveFileEntry {
  first: number;
  last: number;
  receiptRows: number;
  logRows: number;
  receipts: FileRef;
  logs: FileRef;
}

export interface StoreState {
  /** First block the store ever accepted (undefined: nothing written yet). */
  firstBlock: number | undefined;
  /** Reads below this block fail with PRUNED. */
  floor: number;
  /** Blocks in [floor, hotFloor) are served by the archive only. */
  hotFloor: number;
  /**
   * First block not in a closed archive file. Kept apart from the file list because retired files
   * leave the list; the WAL must hold every block from here (and the trailing file's window).
   */
  nextToArchive: number;
  /**
   * Closed files in block order, contiguous. Files whose `last` < floor are retired: invisible to
   * reads, kept until their tx-hash index entries are removed, then deleted.
   */
  files: ArchiveFileEntry[];
}

const VERSION = 1;

export function emptyState(): StoreState {
  return { firstBlock: undefined, floor: 0, hotFloor: 0, nextToArchive: 0, files: [] };
}

export function encodeState(s: StoreState): Uint8Array {
  const names = s.files.flatMap((f) => [Buffer.from(f.receipts.name), Buffer.from(f.logs.name)]);
  const size = 1 + 1 + 32 + 4 + s.files.length * (24 + 2 * 14) + names.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let p = 0;
  out[p++] = VERSION;
  out[p++] = s.firstBlock === undefined ? 0 : 1;
  v.setBigUint64(p, BigInt(s.firstBlock ?? 0), true);
  v.setBigUint64(p + 8, BigInt(s.floor), true);
  v.setBigUint64(p + 16, BigInt(s.hotFloor), true);
  v.setBigUint64(p + 24, BigInt(s.nextToArchive), true);
  p += 32;
  v.setUint32(p, s.files.length, true);
  p += 4;
  let n = 0;
  for (const f of s.files) {
    v.setBigUint64(p, BigInt(f.first), true);
    v.setBigUint64(p + 8, BigInt(f.last), true);
    v.setUint32(p + 16, f.receiptRows, true);
    v.setUint32(p + 20, f.logRows, true);
    p += 24;
    for (const ref of [f.receipts, f.logs]) {
      const name = names[n++]!;
      v.setUint16(p, name.length, true);
      out.set(name, p + 2);
      p += 2 + name.length;
      v.setBigUint64(p, BigInt(ref.bytes), true);
      v.setUint32(p + 8, ref.crc32c, true);
      p += 12;
    }
  }
  return out;
}

export function decodeState(bytes: Uint8Array): StoreState {
  const bad = (why: string): CairnError =>
    new CairnError('CORRUPT', `receipt store manifest: ${why}`, { details: { what: 'manifest' } });
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  const need = (n: number): void => {
    if (p + n > bytes.length) throw bad(`truncated at byte ${p}`);
  };
  const u64 = (): number => {
    need(8);
    const x = v.getBigUint64(p, true);
    p += 8;
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`value ${x} out of range`);
    return Number(x);
  };
  const u32 = (): number => {
    need(4);
    const x = v.getUint32(p, true);
    p += 4;
    return x;
  };
  need(2);
  const version = bytes[p++]!;
  if (version !== VERSION) throw bad(`unknown version ${version}`);
  const flags = bytes[p++]!;
  const firstBlockRaw = u64();
  const floor = u64();
  const hotFloor = u64();
  const nextToArchive = u64();
  const count = u32();
  const files: ArchiveFileEntry[] = [];
  const ref = (): FileRef => {
    need(2);
    const len = v.getUint16(p, true);
    p += 2;
    need(len);
    const name = Buffer.from(bytes.subarray(p, p + len)).toString();
    p += len;
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw bad(`bad file name ${JSON.stringify(name)}`);
    return { name, bytes: u64(), crc32c: u32() };
  };
  for (let i = 0; i < count; i++) {
    const first = u64();
    const last = u64();
    const receiptRows = u32();
    const logRows = u32();
    const receipts = ref();
    const logs = ref();
    if (last < first) throw bad(`file ${i} spans ${first}..${last}`);
    const prev = files[files.length - 1];
    if (prev && first !== prev.last + 1)
      throw bad(`file ${i} starts at ${first}, previous ends at ${prev.last}`);
    files.push({ first, last, receiptRows, logRows, receipts, logs });
  }
  if (p !== bytes.length) throw bad(`${bytes.length - p} trailing bytes`);
  if (hotFloor < floor) throw bad(`hot floor ${hotFloor} below floor ${floor}`);
  const lastFile = files[files.length - 1];
  if (lastFile && lastFile.last >= nextToArchive)
    throw bad(`file ends at ${lastFile.last}, archive next is ${nextToArchive}`);
  return { firstBlock: flags & 1 ? firstBlockRaw : undefined, floor, hotFloor, nextToArchive, files };
}
