import { assertIndex, assertPositiveInt } from '../lib/assert.ts';
import { CairnError } from '../lib/errors.ts';
import { FRAME_HEADER_BYTES } from './frame.ts';
import { SEGMENT_HEADER_BYTES } from './segmentFile.ts';
import type { Durability, WalOptions } from './types.ts';

/** Option defaults and validation of `WalOptions` (bad options are caller errors naming the value). */
export const WAL_DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
export const WAL_DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
/** An fsync slower than this is reported through `onWarning` (rate-limited). */
export const WAL_DEFAULT_SLOW_FSYNC_WARN_MS = 500;
export const WAL_DEFAULT_SLOW_FSYNC_WARN_INTERVAL_MS = 60_000;

export interface ResolvedOptions {
  segmentBytes: number;
  maxRecordBytes: number;
  durability: Durability;
  preallocate: boolean;
  initialIndex: number;
  readOnly: boolean;
  warn: (message: string, details: Record<string, unknown>) => void;
  spareSegment: 'at-half-full' | 'always-ready';
  slowFsyncWarnMs: number;
  slowFsyncWarnIntervalMs: number;
}

export function resolveOptions(options: WalOptions): ResolvedOptions {
  if (typeof options.dir !== 'string' || options.dir === '') {
    throw new CairnError('INVALID_ARGUMENT', 'WAL options.dir must be a non-empty path');
  }
  const segmentBytes = options.segmentBytes ?? WAL_DEFAULT_SEGMENT_BYTES;
  assertPositiveInt(segmentBytes, 'segmentBytes');
  const minSegment = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
  if (segmentBytes < minSegment) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `segmentBytes must be at least ${minSegment}, got ${segmentBytes}`,
    );
  }
  const maxRecordBytes = options.maxRecordBytes ?? WAL_DEFAULT_MAX_RECORD_BYTES;
  assertPositiveInt(maxRecordBytes, 'maxRecordBytes');
  if (maxRecordBytes > 0xffff_ffff) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `maxRecordBytes must fit the u32 length field, got ${maxRecordBytes}`,
    );
  }
  const durability = options.durability ?? { mode: 'on-request' };
  if (durability.mode === 'interval') assertPositiveInt(durability.intervalMs, 'durability.intervalMs');
  else if (durability.mode !== 'on-request' && durability.mode !== 'none') {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `unknown durability mode ${String((durability as Durability).mode)}`,
    );
  }
  const initialIndex = options.initialIndex ?? 0;
  assertIndex(initialIndex, 'initialIndex');
  const spareSegment = options.spareSegment ?? 'at-half-full';
  if (spareSegment !== 'at-half-full' && spareSegment !== 'always-ready') {
    throw new CairnError('INVALID_ARGUMENT', `unknown spareSegment mode ${String(spareSegment)}`);
  }
  const slowFsyncWarnMs = options.slowFsyncWarnMs ?? WAL_DEFAULT_SLOW_FSYNC_WARN_MS;
  assertPositiveInt(slowFsyncWarnMs, 'slowFsyncWarnMs');
  const slowFsyncWarnIntervalMs = options.slowFsyncWarnIntervalMs ?? WAL_DEFAULT_SLOW_FSYNC_WARN_INTERVAL_MS;
  assertPositiveInt(slowFsyncWarnIntervalMs, 'slowFsyncWarnIntervalMs');
  return {
    slowFsyncWarnMs,
    slowFsyncWarnIntervalMs,
    segmentBytes,
    maxRecordBytes,
    durability,
    preallocate: options.preallocate ?? true,
    initialIndex,
    readOnly: options.readOnly ?? false,
    warn: options.onWarning ?? (() => {}),
    spareSegment,
  };
}
