/**
 * A node upgraded in place: its WAL directories hold version-2 segments written by the previous
 * build (test/fixtures/wal-v2, written by main at 12a2f0d with real files; README.md there says
 * how). They must open and recover exactly as the previous build opened them (the figures below are
 * what that build reported for the same bytes), and new records go to salted version-3 segments.
 */
import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { readAt } from '../../src/io/fileSystem.ts';
import { Rng, seedFromEnv } from '../../src/lib/rng.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { decodeSegmentHeader, SEGMENT_HEADER_BYTES, scanSegment } from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';
import { payloadFor } from './helpers.ts';

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'wal-v2');
const DIR = '/wal';
const SEGMENT_BYTES = 4096;
/** Payload sizes the fixture generator used. */
const sizeOf = (i: number): number => 100 + ((i * 37) % 200);

function loadFixture(name: 'clean' | 'killed', seed = 1): SimulatedFileSystem {
  const fs = new SimulatedFileSystem({ seed });
  // (writeFileBytes creates the directory and every entry durably.)
  for (const file of nodeFs.readdirSync(path.join(FIXTURES, name))) {
    fs.writeFileBytes(`${DIR}/${file}`, nodeFs.readFileSync(path.join(FIXTURES, name, file)));
  }
  return fs;
}

async function open(fs: SimulatedFileSystem, readOnly = false, warnings: string[] = []): Promise<Wal> {
  return Wal.open({
    fs,
    dir: DIR,
    segmentBytes: SEGMENT_BYTES,
    readOnly,
    onWarning: (m) => warnings.push(m),
  });
}

const layout = (wal: Wal): number[][] =>
  wal.segments().map((s) => [s.firstIndex, s.nextIndex, s.formatVersion, s.bytes]);

function assertRecords(
  wal: Wal,
  from: number,
  to: number,
  payload = (i: number) => payloadFor(i, sizeOf(i)),
) {
  for (let i = from; i < to; i++) assert.deepEqual(wal.read(i), payload(i), `record ${i}`);
}

/** Format and salt of a segment as they are on the disk. */
function headerOnDisk(fs: SimulatedFileSystem, file: string): { format: number; salt: number } {
  const h = fs.open(file, { readOnly: true });
  try {
    const header = decodeSegmentHeader(readAt(h, 0, SEGMENT_HEADER_BYTES));
    assert.ok(!('problem' in header), `header of ${file}`);
    return { format: header.format, salt: header.salt };
  } finally {
    h.close();
  }
}

const PREVIOUS_BUILD = {
  clean: {
    next: 30,
    segments: [
      [0, 18, 2, 3925],
      [18, 30, 2, 2754],
    ],
    warnings: [] as RegExp[],
  },
  killed: {
    next: 41,
    segments: [
      [0, 18, 2, 3925],
      [18, 35, 2, 3894],
      [35, 41, 2, 1301],
    ],
    warnings: [/torn tail found \(not repaired: read-only\): frame checksum mismatch/],
  },
};

for (const name of ['clean', 'killed'] as const) {
  const expected = PREVIOUS_BUILD[name];

  test(`version-2 log "${name}" of the previous build: read-only open recovers what that build recovered`, async () => {
    const fs = loadFixture(name);
    const warnings: string[] = [];
    const wal = await open(fs, true, warnings);
    try {
      assert.equal(wal.firstIndex, 0);
      assert.equal(wal.nextIndex, expected.next);
      assert.deepEqual(layout(wal), expected.segments);
      assert.equal(warnings.length, expected.warnings.length, warnings.join('; '));
      expected.warnings.forEach((re, i) => {
        assert.match(warnings[i]!, re);
      });
      assertRecords(wal, 0, expected.next);
    } finally {
      await wal.close();
    }
  });

  test(`version-2 log "${name}": the first writable open seals the old tail; new records go to salted version-3 segments`, async () => {
    const fs = loadFixture(name);
    const wal = await open(fs);
    const next = expected.next;
    assert.equal(wal.nextIndex, next);
    assert.deepEqual(layout(wal), [...expected.segments, [next, next, 3, SEGMENT_HEADER_BYTES]]);
    // Enough records to roll over into a second version-3 segment.
    const extra = (i: number): Uint8Array => payloadFor(i, 700, 1);
    for (let i = next; i < next + 12; i++) wal.append([extra(i)]);
    await wal.sync();
    const newSegments = wal.segments().filter((s) => s.firstIndex >= next);
    assert.ok(newSegments.length >= 2, JSON.stringify(layout(wal)));
    const salts = newSegments.map((s) => headerOnDisk(fs, s.file));
    for (const s of salts) {
      assert.equal(s.format, 3);
      assert.notEqual(s.salt, 0);
    }
    assert.equal(new Set(salts.map((s) => s.salt)).size, salts.length, 'each segment draws its own salt');
    // The frames verify under their segment's salt, and not without it.
    const first = newSegments[0]!;
    const h = fs.open(first.file, { readOnly: true });
    try {
      const salted = scanSegment(h, first.firstIndex, first.bytes, salts[0] as { format: 3; salt: number });
      assert.equal(salted.defect, undefined);
      assert.equal(salted.offsets.length, first.nextIndex - first.firstIndex);
      const unsalted = scanSegment(h, first.firstIndex, first.bytes, { format: 3, salt: 0 });
      assert.match(unsalted.defect?.reason ?? '', /checksum mismatch/);
    } finally {
      h.close();
    }
    wal.verify();
    await wal.close();

    const again = await open(fs);
    assert.equal(again.nextIndex, next + 12);
    assertRecords(again, 0, next);
    assertRecords(again, next, next + 12, extra);
    again.verify();
    await again.close();
  });
}

/**
 * Power loss right after the upgrade: the first open seals the old tail and creates the version-3
 * segment, then records are appended and synced in rounds; the power fails at every mutation
 * of a run in turn. Each image must recover every record synced before the cut and only records
 * that were appended, in order, whatever subset of unsynced pages persisted.
 */
test('power loss at every step of the first session after an upgrade recovers a prefix holding every synced record', async () => {
  const seed = seedFromEnv();
  console.log(`upgradeV2 power loss: CAIRN_SEED=${seed}`);
  const rng = new Rng(seed);
  const extra = (i: number): Uint8Array => payloadFor(i, 300 + (i % 5) * 150, 2);
  let crashPoints = 0;
  for (const name of ['clean', 'killed'] as const) {
    const next = PREVIOUS_BUILD[name].next;
    const run = async (fs: SimulatedFileSystem, synced: { upTo: number }) => {
      const wal = await open(fs);
      for (let round = 0; round < 4; round++) {
        const base = wal.nextIndex;
        for (let k = 0; k < 3; k++) wal.append([extra(base + k)]);
        await wal.sync();
        synced.upTo = base + 3;
      }
      await wal.close();
    };
    // A dry run counts the mutations of the session.
    const dry = loadFixture(name);
    const before = dry.mutationCount;
    await run(dry, { upTo: next });
    const total = dry.mutationCount - before;
    for (let at = 1; at <= total; at++) {
      const fs = loadFixture(name, rng.nextU32());
      fs.crashAfter(fs.mutationCount + at, { seed: rng.nextU32() });
      const synced = { upTo: next };
      await run(fs, synced).catch(() => undefined);
      const image = fs.crashedImage();
      crashPoints++;
      const wal = await open(image).catch((err: unknown) => {
        assert.fail(`${name}, crash after mutation ${at} (CAIRN_SEED=${seed}): ${String(err)}`);
      });
      try {
        assert.ok(wal.nextIndex >= synced.upTo, `${name} @${at}: lost synced records (CAIRN_SEED=${seed})`);
        assertRecords(wal, 0, next);
        assertRecords(wal, next, wal.nextIndex, extra);
        wal.verify();
      } finally {
        await wal.close();
      }
    }
  }
  console.log(`upgradeV2 power loss: ${crashPoints} crash points`);
});
