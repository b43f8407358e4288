/**
 * The two intent markers of the state store, small record files (`files.ts`: magic ‖ body ‖ CRC32C,
 * written tmp + fsync + rename + directory fsync) in the data directory:
 *
 *  - ROLLBACK_INTENT (target u64 BE ‖ base u64 BE): written before a rollback changes anything and
 *    removed when it is complete; an open that finds it finishes the rollback.
 *  - IMPORT_IN_PROGRESS (height u64 BE): written before an import wipes the store and removed once
 *    the imported state is final; an open that finds it wipes the half import.
 */
import * as path from 'node:path';
import type { FileSystem } from '../io/fileSystem.ts';
import { CairnError } from '../lib/errors.ts';
import { readRecordFile, removeFileDurable, writeRecordFile } from './files.ts';
import { IMPORT_MARKER_FILE, ROLLBACK_INTENT_FILE } from './storeTypes.ts';

const INTENT_MAGIC = new TextEncoder().encode('CAIRNRBK1');
const IMPORT_MAGIC = new TextEncoder().encode('CAIRNIMP1');

export function writeRollbackIntent(fs: FileSystem, dataDir: string, target: number, base: number): void {
  const body = new Uint8Array(16);
  const dv = new DataView(body.buffer);
  dv.setBigUint64(0, BigInt(target), false);
  dv.setBigUint64(8, BigInt(base), false);
  writeRecordFile(fs, path.join(dataDir, ROLLBACK_INTENT_FILE), INTENT_MAGIC, body);
}

export function readRollbackIntent(
  fs: FileSystem,
  dataDir: string,
): { target: number; base: number } | undefined {
  const body = readRecordFile(fs, path.join(dataDir, ROLLBACK_INTENT_FILE), INTENT_MAGIC);
  if (body === undefined) return undefined;
  if (body.length !== 16)
    throw new CairnError('CORRUPT', `${ROLLBACK_INTENT_FILE} has a ${body.length}-byte body`);
  const dv = new DataView(body.buffer, body.byteOffset, 16);
  return { target: Number(dv.getBigUint64(0, false)), base: Number(dv.getBigUint64(8, false)) };
}

export function removeRollbackIntent(fs: FileSystem, dataDir: string): void {
  removeFileDurable(fs, path.join(dataDir, ROLLBACK_INTENT_FILE));
}

export function writeImportMarker(fs: FileSystem, dataDir: string, height: number): void {
  const body = new Uint8Array(8);
  new DataView(body.buffer).setBigUint64(0, BigInt(height), false);
  writeRecordFile(fs, path.join(dataDir, IMPORT_MARKER_FILE), IMPORT_MAGIC, body);
}

export function readImportMarker(fs: FileSystem, dataDir: string): number | undefined {
  const body = readRecordFile(fs, path.join(dataDir, IMPORT_MARKER_FILE), IMPORT_MAGIC);
  if (body === undefined) return undefined;
  if (body.length !== 8)
    throw new CairnError('CORRUPT', `${IMPORT_MARKER_FILE} has a ${body.length}-byte body`);
  return Number(new DataView(body.buffer, body.byteOffset, 8).getBigUint64(0, false));
}

export function removeImportMarker(fs: FileSystem, dataDir: string): void {
  removeFileDurable(fs, path.join(dataDir, IMPORT_MARKER_FILE));
}
