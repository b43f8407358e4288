import * as path from 'node:path';
import { MAX_PAYLOAD_BYTES } from '../domain/types.ts';
import type { FileSystem } from '../io/fileSystem.ts';
import { CairnError, errnoCode, ioFatal } from '../lib/errors.ts';
import type { Durability, WriteAheadLog } from '../wal/types.ts';
import { Wal } from '../wal/wal.ts';
import { NullWal } from './nullWal.ts';

/**
 * Where the persisters get their logs from: the real segmented WAL on a FileSystem, or the no-op
 * log of the persistence-disabled mode. Keeping this behind one small interface is what lets the
 * no-op mode run exactly the same persister and loop code.
 */
export interface LogOpener {
  /** False in no-op mode: records are not retained and cannot be read back. */
  readonly retainsRecords: boolean;
  /** Opens the log in `dir`, creating it (durably) if missing; a brand-new log starts at `initialIndex`. */
  open(dir: string, initialIndex: number): Promise<WriteAheadLog>;
  /** Names of the sub-directories of `dir` (empty when `dir` does not exist). */
  listDirs(dir: string): string[];
}

export interface WalLogOptions {
  fs: FileSystem;
  /** Segment size of each log (default 4 MiB: small, since one log per lane and pruning drops whole segments). */
  segmentBytes?: number;
  durability?: Durability;
  /** Run fsyncs on the libuv pool so many logs sync in parallel (default true). */
  syncOffThread?: boolean;
  preallocate?: boolean;
  onWarning?: (message: string, details: Record<string, unknown>) => void;
}

/** Largest encoded record: the payload limit plus header, length and signature overhead. */
export const MAX_CONSENSUS_RECORD_BYTES = MAX_PAYLOAD_BYTES + 4096;
export const DEFAULT_CONSENSUS_SEGMENT_BYTES = 4 * 1024 * 1024;

export class WalLogOpener implements LogOpener {
  readonly retainsRecords = true;
  constructor(private readonly options: WalLogOptions) {}

  async open(dir: string, initialIndex: number): Promise<WriteAheadLog> {
    try {
      return await this.openWal(dir, initialIndex);
    } catch (err) {
      // Recovery may surface a raw OS error; give it the typed, fatal shape every caller expects.
      throw err instanceof CairnError ? err : ioFatal(`opening the log in ${dir}`, err, { file: dir });
    }
  }

  private openWal(dir: string, initialIndex: number): Promise<WriteAheadLog> {
    const o = this.options;
    return Wal.open({
      fs: o.fs,
      dir,
      segmentBytes: o.segmentBytes ?? DEFAULT_CONSENSUS_SEGMENT_BYTES,
      maxRecordBytes: MAX_CONSENSUS_RECORD_BYTES,
      durability: o.durability ?? { mode: 'on-request' },
      syncOffThread: o.syncOffThread ?? true,
      preallocate: o.preallocate ?? true,
      // Many lane logs fsync concurrently: a spare prepared in small flushed slices, ahead of
      // time, so neither a lane's burst nor its spare's zeros hold up the other lanes.
      spareSegment: 'always-ready',
      initialIndex,
      ...(o.onWarning ? { onWarning: o.onWarning } : {}),
    });
  }

  listDirs(dir: string): string[] {
    const fs = this.options.fs;
    let names: string[];
    try {
      if (!fs.exists(dir)) return [];
      names = fs.readdir(dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw ioFatal(`listing ${dir}`, err, { file: dir });
    }
    const out: string[] = [];
    for (const name of names.sort()) {
      try {
        if (fs.stat(path.join(dir, name)).isDirectory) out.push(name);
      } catch (err) {
        throw ioFatal(`stat of ${path.join(dir, name)}`, err, { file: path.join(dir, name) });
      }
    }
    return out;
  }
}

export class NullLogOpener implements LogOpener {
  readonly retainsRecords = false;
  async open(_dir: string, initialIndex: number): Promise<WriteAheadLog> {
    return new NullWal(initialIndex);
  }
  listDirs(): string[] {
    return [];
  }
}
