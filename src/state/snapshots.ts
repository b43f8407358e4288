/**
 * Snapshot directories, their manifest and the CURRENT pointer.
 *
 * `snapshots/snapshot-<height, 20 digits>/` holds an engine checkpoint of the committed state at
 * that height plus `MANIFEST`: the height, the per-family meta record (roots and stats, the same
 * bytes the engine holds as its checkpoint record), the 32-byte root, and every engine file with
 * its size and CRC32C. A snapshot exists only once its manifest is durable and the directory was
 * renamed from `-tmp`; `CURRENT` (top level) names the newest snapshot the store vouches for.
 */
import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { padIndex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { fileChecksum, readRecordFile, removeFileDurable, writeRecordFile } from './files.ts';
import { decodeMeta, encodeMeta, META_BYTES, type MetaRecord } from './records.ts';

export const SNAPSHOTS_DIR = 'snapshots';
export const MANIFEST_FILE = 'MANIFEST';
export const CURRENT_FILE = 'CURRENT';
const SNAPSHOT_PREFIX = 'snapshot-';
const MANIFEST_MAGIC = new TextEncoder().encode('CAIRNSNAP1');
const CURRENT_MAGIC = new TextEncoder().encode('CAIRNCUR1');

export function snapshotName(height: number): string {
  return `${SNAPSHOT_PREFIX}${padIndex(height)}`;
}

/** Height of a snapshot directory name, or undefined for any other name. */
export function parseSnapshotName(name: string): number | undefined {
  if (!name.startsWith(SNAPSHOT_PREFIX) || name.length !== SNAPSHOT_PREFIX.length + 20) return undefined;
  const digits = name.slice(SNAPSHOT_PREFIX.length);
  if (!/^\d{20}$/.test(digits)) return undefined;
  const h = Number(digits);
  return Number.isSafeInteger(h) ? h : undefined;
}

export interface ManifestFileEntry {
  name: string;
  bytes: number;
  crc32c: number;
}

export interface Manifest {
  height: number;
  meta: MetaRecord;
  root: Uint8Array;
  files: ManifestFileEntry[];
}

/** `u64 height ‖ meta record ‖ root(32) ‖ u32 fileCount ‖ (u16 nameLen ‖ name ‖ u64 bytes ‖ u32 crc)*`. */
export function encodeManifest(m: Manifest): Uint8Array {
  const te = new TextEncoder();
  const meta = encodeMeta(m.meta);
  const names = m.files.map((f) => te.encode(f.name));
  const size = 8 + meta.length + 32 + 4 + names.reduce((s, n) => s + 2 + n.length + 12, 0);
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(m.height), false);
  out.set(meta, 8);
  out.set(m.root, 8 + meta.length);
  let off = 8 + meta.length + 32;
  dv.setUint32(off, m.files.length, false);
  off += 4;
  m.files.forEach((f, i) => {
    const n = names[i]!;
    dv.setUint16(off, n.length, false);
    out.set(n, off + 2);
    off += 2 + n.length;
    dv.setBigUint64(off, BigInt(f.bytes), false);
    dv.setUint32(off + 8, f.crc32c, false);
    off += 12;
  });
  return out;
}

export function decodeManifest(body: Uint8Array, file: string): Manifest {
  const bad = (reason: string) =>
    new CairnError('CORRUPT', `${file} is malformed: ${reason}`, { details: { file } });
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (body.length < 8 + META_BYTES + 36) throw bad('too short');
  const height = Number(dv.getBigUint64(0, false));
  const meta = decodeMeta(body.subarray(8, 8 + META_BYTES), `${file} meta`);
  if (meta.height !== height) throw bad(`meta height ${meta.height} differs from ${height}`);
  const root = body.slice(8 + META_BYTES, 8 + META_BYTES + 32);
  let off = 8 + META_BYTES + 32;
  const count = dv.getUint32(off, false);
  off += 4;
  const td = new TextDecoder();
  const files: ManifestFileEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (off + 2 > body.length) throw bad('file list truncated');
    const n = dv.getUint16(off, false);
    if (off + 2 + n + 12 > body.length) throw bad('file list truncated');
    const name = td.decode(body.subarray(off + 2, off + 2 + n));
    off += 2 + n;
    if (name.includes('/') || name === '' || name === '..' || name === '.')
      throw bad(`bad file name ${name}`);
    files.push({ name, bytes: Number(dv.getBigUint64(off, false)), crc32c: dv.getUint32(off + 8, false) });
    off += 12;
  }
  if (off !== body.length) throw bad('trailing bytes');
  return { height, meta, root, files };
}

export function writeManifest(fs: FileSystem, dir: string, m: Manifest): void {
  writeRecordFile(fs, path.join(dir, MANIFEST_FILE), MANIFEST_MAGIC, encodeManifest(m));
}

/**
 * Reads and checks a snapshot: the manifest must be intact and name this height, and every listed
 * file must exist with its size (and, with `checkContents`, its CRC32C: done before cloning, since
 * a flipped bit in a table file would otherwise be served).
 */
export function readSnapshot(fs: FileSystem, dir: string, height: number, checkContents: boolean): Manifest {
  const file = path.join(dir, MANIFEST_FILE);
  const body = readRecordFile(fs, file, MANIFEST_MAGIC);
  if (body === undefined) {
    throw new CairnError('CORRUPT', `snapshot ${dir} has no manifest (torn or not a snapshot)`, {
      details: { file },
    });
  }
  const m = decodeManifest(body, file);
  if (m.height !== height) {
    throw new CairnError('CORRUPT', `snapshot ${dir} manifest names height ${m.height}`, {
      details: { file },
    });
  }
  for (const f of m.files) {
    const p = path.join(dir, f.name);
    if (!fs.exists(p))
      throw new CairnError('CORRUPT', `snapshot file ${p} is missing`, { details: { file: p } });
    if (checkContents) {
      const c = fileChecksum(fs, p);
      if (c.bytes !== f.bytes || c.crc32c !== f.crc32c) {
        throw new CairnError(
          'CORRUPT',
          `snapshot file ${p} is damaged: ${c.bytes} bytes crc ${c.crc32c.toString(16)}, manifest says ${f.bytes} bytes crc ${f.crc32c.toString(16)}`,
          { details: { file: p } },
        );
      }
    } else if (fs.stat(p).size !== f.bytes) {
      throw new CairnError('CORRUPT', `snapshot file ${p} has the wrong size`, { details: { file: p } });
    }
  }
  return m;
}

/** Heights of the snapshot directories under `snapshotsDir` (complete or not), ascending. */
export function listSnapshotHeights(fs: FileSystem, snapshotsDir: string): number[] {
  if (!fs.exists(snapshotsDir)) return [];
  const out: number[] = [];
  for (const name of fs.readdir(snapshotsDir)) {
    const h = parseSnapshotName(name);
    if (h !== undefined) out.push(h);
  }
  return out.sort((a, b) => a - b);
}

/** CURRENT: `u64 height` of the newest snapshot the store vouches for. */
export function readCurrent(fs: FileSystem, dataDir: string): number | undefined {
  const body = readRecordFile(fs, path.join(dataDir, CURRENT_FILE), CURRENT_MAGIC);
  if (body === undefined) return undefined;
  if (body.length !== 8) {
    throw new CairnError('CORRUPT', `${CURRENT_FILE} has a ${body.length}-byte body`, {
      details: { file: CURRENT_FILE },
    });
  }
  return Number(new DataView(body.buffer, body.byteOffset).getBigUint64(0, false));
}

export function writeCurrent(fs: FileSystem, dataDir: string, height: number): void {
  const body = new Uint8Array(8);
  new DataView(body.buffer).setBigUint64(0, BigInt(height), false);
  writeRecordFile(fs, path.join(dataDir, CURRENT_FILE), CURRENT_MAGIC, body);
}

/** No CURRENT: the store vouches for no snapshot (its history starts from the empty state). */
export function removeCurrent(fs: FileSystem, dataDir: string): void {
  removeFileDurable(fs, path.join(dataDir, CURRENT_FILE));
}
