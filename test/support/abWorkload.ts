/**
 * A/B snapshot file workload and checker shared by the power-loss, error-injection and bit-flip
 * suites. The workload writes payloads of varied size (so slot files grow and shrink), reopens the
 * file now and then, and records what was attempted per sequence number and what was acknowledged
 * (the synchronous `write` returned).
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { openAbFile } from '../../src/io/abFile.ts';
import type { AbSnapshotFile } from '../../src/io/abFile.types.ts';
import { mkdirDurable } from '../../src/io/fileSystem.ts';
import { bytesEqual, toHex } from '../../src/lib/bytes.ts';
import { describe as describeError } from '../../src/lib/errors.ts';
import { Rng } from '../../src/lib/rng.ts';
import { DROP_ALL, type SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';

export const AB_DIR = '/node/state';
export const AB_NAME = 'anchor';

export interface AbWorkloadOptions {
  writes: number;
  /** Close and reopen after every this many writes (0: never). */
  reopenEvery: number;
  /** Largest payload (bytes). */
  maxPayloadBytes: number;
  /** Keep writing after a failed write (error-injection runs); default false. */
  continueAfterErrors?: boolean;
}

export interface AbState {
  rng: Rng;
  options: AbWorkloadOptions;
  /** Every payload attempted, by the sequence number it was written with. */
  attempted: Map<number, Uint8Array[]>;
  lastAcked: { seq: number; payload: Uint8Array } | undefined;
  acks: number;
  /** Errors thrown by write/open (the workload stops at the first unless continueAfterErrors). */
  errors: unknown[];
  /** Acknowledged writes when the first error was thrown. */
  acksAtFirstError: number | undefined;
}

export function newAbState(seed: number, options: AbWorkloadOptions): AbState {
  return {
    rng: new Rng(seed),
    options,
    attempted: new Map(),
    lastAcked: undefined,
    acks: 0,
    errors: [],
    acksAtFirstError: undefined,
  };
}

/** A payload that names its sequence number, so a mix-up between writes is visible. */
function payloadFor(rng: Rng, seq: number, maxBytes: number): Uint8Array {
  const size = rng.bool(0.1) ? 0 : rng.int(8, maxBytes + 1);
  const p = rng.bytes(size);
  if (size >= 8) new DataView(p.buffer).setFloat64(0, seq, true);
  return p;
}

function openAb(fs: SimulatedFileSystem): {
  file: AbSnapshotFile;
  seq: number;
  payload: Uint8Array | undefined;
} {
  mkdirDurable(fs, AB_DIR, path.posix);
  const { file, loaded } = openAbFile(fs, AB_DIR, AB_NAME);
  return { file, seq: loaded.seq, payload: loaded.payload };
}

export async function runAbWorkload(fs: SimulatedFileSystem, state: AbState): Promise<void> {
  try {
    runAbWrites(fs, state);
  } catch (err) {
    if (!state.errors.includes(err)) {
      state.errors.push(err);
      state.acksAtFirstError ??= state.acks;
    }
    throw err;
  }
}

function runAbWrites(fs: SimulatedFileSystem, state: AbState): void {
  const { options, rng } = state;
  let opened = openAb(fs);
  for (let i = 0; i < options.writes; i++) {
    if (options.reopenEvery > 0 && i > 0 && i % options.reopenEvery === 0) {
      opened.file.close();
      opened = openAb(fs);
      // While the power is on, a reopen must see exactly the last acknowledged write.
      if (state.errors.length === 0) assertLoadedIsAcked(opened.seq, opened.payload, state, 'reopen');
    }
    const seq = opened.file.seq + 1;
    const payload = payloadFor(rng, seq, options.maxPayloadBytes);
    const list = state.attempted.get(seq) ?? [];
    list.push(payload);
    state.attempted.set(seq, list);
    try {
      opened.file.write(payload);
    } catch (err) {
      state.errors.push(err);
      state.acksAtFirstError ??= state.acks;
      if (!options.continueAfterErrors) throw err;
      continue;
    }
    state.lastAcked = { seq, payload };
    state.acks++;
  }
  opened.file.close();
}

function assertLoadedIsAcked(
  seq: number,
  payload: Uint8Array | undefined,
  state: AbState,
  what: string,
): void {
  const acked = state.lastAcked;
  assert.equal(seq, acked?.seq ?? 0, `${what}: loaded seq ${seq}, last acknowledged ${acked?.seq ?? 0}`);
  if (acked)
    assert.ok(payload && bytesEqual(payload, acked.payload), `${what}: payload differs from the acked one`);
}

/**
 * Recovers the A/B file from a crash image and checks: loading never fails; the loaded value is the
 * last acknowledged write or a later attempted one, byte-identical; with nothing acknowledged it is
 * empty or the first attempt; a second open agrees; a write after recovery survives another crash.
 */
export function checkAbImage(
  image: SimulatedFileSystem,
  state: AbState,
): { seq: number; warnings: string[] } {
  mkdirDurable(image, AB_DIR, path.posix);
  let loaded: ReturnType<typeof openAbFile>['loaded'];
  let file: AbSnapshotFile;
  try {
    ({ file, loaded } = openAbFile(image, AB_DIR, AB_NAME));
  } catch (err) {
    throw new Error(`opening the A/B file after a crash failed: ${describeError(err)}`, { cause: err });
  }
  const ackedSeq = state.lastAcked?.seq ?? 0;
  assert.ok(
    loaded.seq >= ackedSeq,
    `loaded seq ${loaded.seq} is older than the acknowledged seq ${ackedSeq}`,
  );
  if (loaded.seq === 0) {
    assert.equal(loaded.payload, undefined);
  } else if (loaded.seq === ackedSeq) {
    assert.ok(
      loaded.payload !== undefined && bytesEqual(loaded.payload, state.lastAcked!.payload),
      `seq ${loaded.seq}: payload ${toHex(loaded.payload ?? new Uint8Array()).slice(0, 32)} differs from the acknowledged one`,
    );
  } else {
    const candidates = state.attempted.get(loaded.seq) ?? [];
    assert.ok(
      loaded.payload !== undefined && candidates.some((c) => bytesEqual(c, loaded.payload!)),
      `seq ${loaded.seq} (acked ${ackedSeq}): payload matches no write attempted with that seq`,
    );
  }

  const again = openAbFile(image, AB_DIR, AB_NAME).loaded;
  assert.equal(again.seq, loaded.seq, 'a second open disagrees on seq');
  assert.ok(
    (again.payload === undefined && loaded.payload === undefined) ||
      (again.payload !== undefined &&
        loaded.payload !== undefined &&
        bytesEqual(again.payload, loaded.payload)),
    'a second open disagrees on the payload',
  );

  const next = new Uint8Array([1, 2, 3, loaded.seq & 0xff]);
  file.write(next);
  file.close();
  const after = openAbFile(image.crashImage(DROP_ALL), AB_DIR, AB_NAME).loaded;
  assert.equal(after.seq, loaded.seq + 1, 'a write after recovery did not survive a second crash');
  assert.ok(after.payload && bytesEqual(after.payload, next), 'post-recovery write came back different');
  return { seq: loaded.seq, warnings: loaded.warnings };
}
