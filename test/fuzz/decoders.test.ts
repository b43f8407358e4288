/**
 * Fuzzing of every decoder of bytes read from disk (issue #9 §3): the WAL segment header, the frame
 * scan (and a whole read-only WAL open over a fuzzed segment), the WAL meta payload, the A/B slot
 * (through openAbFile), the block store's record frame and the domain codecs. Each gets arbitrary
 * bytes and mutations of valid encodings, including mutations re-checksummed so the decoder gets
 * past its CRC. Rule: a decoder returns a value or throws a typed CairnError, never a raw
 * RangeError/TypeError; and a length field up to 2^32-1 never allocates what it claims (the
 * arrayBuffers footprint after each case stays bounded). fast-check seed printed; replay with
 * CAIRN_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  decodeAppQC,
  decodeBlock,
  decodeBlockHeader,
  decodeCommitQC,
  decodeFullCommitQC,
  decodePruneAnchor,
  decodeSignedLaneProposal,
  encodeAppQC,
  encodeBlock,
  encodeBlockHeader,
  encodeCommitQC,
  encodeFullCommitQC,
  encodePruneAnchor,
  encodeSignedLaneProposal,
} from '../../src/domain/codecs.ts';
import { encodeSlotImage, openAbFile } from '../../src/io/abFile.ts';
import { crc32c } from '../../src/lib/crc32c.ts';
import { CairnError } from '../../src/lib/errors.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import { decodeRecordFrame, recordFrameBytes } from '../../src/records/recordFrame.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';
import { SimulatedFileSystem } from '../../src/testing/simulatedFileSystem.ts';
import { encodeFrame, type FrameFormat } from '../../src/wal/frame.ts';
import { decodeMeta, encodeMeta } from '../../src/wal/meta.ts';
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  findIntactFramesAfter,
  readFrame,
  scanSegment,
  segmentFileName,
} from '../../src/wal/segmentFile.ts';
import { Wal } from '../../src/wal/wal.ts';

const seed = seedFromEnv();
console.log('fuzz seed', seed, `(replay: CAIRN_SEED=${seed})`);
const RUNS = 400;
/** Growth of arrayBuffers a single decode may leave behind (a 2^32 length must not allocate). */
const MAX_RETAINED_BYTES = 64 * 1024 * 1024;

/** Returns normally, or throws a CairnError: anything else fails with the input in the message. */
function typedOnly(what: string, input: Uint8Array, decode: () => unknown): void {
  const before = process.memoryUsage().arrayBuffers;
  let result: unknown;
  try {
    result = decode();
  } catch (err) {
    if (err instanceof CairnError) {
      assert.ok(err.code.length > 0 && err.kind.length > 0, `${what}: CairnError without code/kind`);
      return;
    }
    assert.fail(`${what}: untyped ${(err as Error)?.name}: ${(err as Error)?.message} on ${hexOf(input)}`);
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(
    grown < MAX_RETAINED_BYTES,
    `${what}: ${grown} bytes retained for a ${input.byteLength}-byte input`,
  );
  void result;
}

async function typedOnlyAsync(
  what: string,
  input: Uint8Array,
  decode: () => Promise<unknown>,
): Promise<void> {
  try {
    await decode();
  } catch (err) {
    if (err instanceof CairnError) return;
    assert.fail(`${what}: untyped ${(err as Error)?.name}: ${(err as Error)?.message} on ${hexOf(input)}`);
  }
}

function hexOf(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes.subarray(0, 96)).toString('hex');
  return bytes.byteLength > 96 ? `${hex}… (${bytes.byteLength} bytes)` : hex;
}

/** A field value that stresses length checks: small, boundary, or huge. */
const u32Edge = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.constantFrom(0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x10000, 0xffff),
  fc.nat({ max: 0xffffffff }),
);

type Mutation =
  | { kind: 'set'; at: number; value: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'truncate'; to: number }
  | { kind: 'extend'; bytes: Uint8Array };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: u32Edge }),
  fc.record({ kind: fc.constant('truncate' as const), to: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
);

function applyMutations(valid: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let out = valid.slice();
  for (const m of mutations) {
    if (out.byteLength === 0 && m.kind !== 'extend') continue;
    if (m.kind === 'set') out[m.at % out.byteLength] = m.value;
    else if (m.kind === 'u32') {
      if (out.byteLength < 4) continue;
      new DataView(out.buffer, out.byteOffset).setUint32(m.at % (out.byteLength - 3), m.value, true);
    } else if (m.kind === 'truncate') out = out.slice(0, m.to % (out.byteLength + 1));
    else {
      const grown = new Uint8Array(out.byteLength + m.bytes.byteLength);
      grown.set(out);
      grown.set(m.bytes, out.byteLength);
      out = grown;
    }
  }
  return out;
}

/** Arbitrary bytes, or a valid encoding with 1..6 mutations, optionally re-checksummed. */
function around(valids: readonly Uint8Array[], rechecksum?: (bytes: Uint8Array) => Uint8Array) {
  const mutated = fc
    .tuple(fc.constantFrom(...valids), fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.boolean())
    .map(([valid, ms, fix]) => {
      const bytes = applyMutations(valid, ms);
      return fix && rechecksum ? rechecksum(bytes) : bytes;
    });
  return fc.oneof(fc.uint8Array({ maxLength: 2048 }), mutated);
}

const params = (): fc.Parameters<unknown> => ({ seed, numRuns: RUNS });

// ---------------------------------------------------------------------------------------- WAL

describe('fuzz: WAL decoders', () => {
  test('segment header: decodeSegmentHeader never throws', () => {
    const fixCrc = (b: Uint8Array): Uint8Array => {
      if (b.byteLength < 28) return b;
      const out = b.slice();
      new DataView(out.buffer).setUint32(24, crc32c(out.subarray(0, 24)), true);
      return out;
    };
    const valids = [
      encodeSegmentHeader(0),
      encodeSegmentHeader(2 ** 40),
      encodeSegmentHeader(Number.MAX_SAFE_INTEGER),
      encodeSegmentHeader(7, 1),
    ];
    fc.assert(
      fc.property(around(valids, fixCrc), (bytes) => {
        typedOnly('decodeSegmentHeader', bytes, () => decodeSegmentHeader(bytes));
        // It reports, it does not throw.
        const r = decodeSegmentHeader(bytes);
        assert.ok('problem' in r || Number.isSafeInteger(r.firstIndex));
      }),
      params(),
    );
  });

  test('WAL meta: decodeMeta returns safe integers or throws WAL_CORRUPT', () => {
    fc.assert(
      fc.property(
        around([
          encodeMeta({ firstIndex: 0, durableNext: 0, clean: undefined }),
          encodeMeta({ firstIndex: 123456789, durableNext: 123456800, clean: undefined }),
          encodeMeta({
            firstIndex: Number.MAX_SAFE_INTEGER,
            durableNext: Number.MAX_SAFE_INTEGER,
            clean: { tailEndOffset: 4096, spareKept: true },
          }),
        ]),
        (bytes) => {
          typedOnly('decodeMeta', bytes, () => {
            const meta = decodeMeta(bytes, '/w/wal.meta.a');
            assert.ok(Number.isSafeInteger(meta.firstIndex) && meta.firstIndex >= 0);
            assert.ok(Number.isSafeInteger(meta.durableNext) && meta.durableNext >= 0);
          });
        },
      ),
      params(),
    );
  });

  /** A segment file: a valid header for index 0 followed by fuzzed frame bytes. */
  function segmentWith(body: Uint8Array, format: FrameFormat): { fs: SimulatedFileSystem; file: string } {
    const fs = new SimulatedFileSystem({ seed: 1 });
    const header = encodeSegmentHeader(0, format, saltOf(format));
    const bytes = new Uint8Array(header.byteLength + body.byteLength);
    bytes.set(header);
    bytes.set(body, header.byteLength);
    const file = `/w/${segmentFileName(0)}`;
    fs.writeFileBytes(file, bytes);
    return { fs, file };
  }

  /** A fixed salt for version 3 (versions 1 and 2 have none). */
  const saltOf = (format: FrameFormat): number => (format === 3 ? 0x9e37_79b9 : 0);
  /**
   * Version 1: crc32c(length|index|payload) | u32 length | u64 index | payload; version 2 adds
   * syncedNext; version 3 seeds the CRC with the segment's salt.
   */
  const frames = (count: number, format: FrameFormat): Uint8Array => {
    const parts = Array.from({ length: count }, (_, i) =>
      encodeFrame(i, new Uint8Array(i * 7).fill(i + 1), Math.max(0, i - 2), format, saltOf(format)),
    );
    return Buffer.concat(parts);
  };
  const frameBodies = (format: FrameFormat): Uint8Array[] => [
    frames(1, format),
    frames(4, format),
    frames(9, format),
  ];
  const FORMATS: FrameFormat[] = [1, 2, 3];

  for (const format of FORMATS)
    test(`frame scan (format ${format}): scanSegment, findIntactFramesAfter and readFrame over fuzzed segments`, () => {
      fc.assert(
        fc.property(around(frameBodies(format)), fc.nat(), (body, pick) => {
          const { fs, file } = segmentWith(body, format);
          const layout = { format, salt: saltOf(format) };
          const h = fs.open(file, { readOnly: true });
          try {
            const size = h.size();
            typedOnly('scanSegment', body, () => {
              const scan = scanSegment(h, 0, size, layout);
              assert.ok(scan.endOffset <= size);
              if (scan.defect) {
                const found = findIntactFramesAfter(h, {
                  from: scan.defect.offset + 1,
                  minIndex: scan.offsets.length + 1,
                  fileBytes: size,
                  segmentFirstIndex: 0,
                  format,
                  salt: layout.salt,
                  stopAboveSyncedNext: scan.offsets.length,
                });
                // Whatever it reports is a plausible frame: index and synced index consistent.
                for (const f of [found.first, found.highest]) {
                  if (f === undefined) continue;
                  assert.ok(
                    f.index > scan.offsets.length && f.syncedNext <= f.index && f.offset > scan.defect.offset,
                  );
                }
              }
              // readFrame of any claimed frame, with the size the scan implies or a wrong one.
              if (scan.offsets.length > 0) {
                const k = pick % scan.offsets.length;
                const at = scan.offsets[k]!;
                const end = scan.offsets[k + 1] ?? scan.endOffset;
                readFrame(h, file, at, end - at, k, layout);
                // A wrong length (the index is derived data), possibly shorter than a header.
                readFrame(h, file, at, Math.max(0, end - at + (pick % 3) - 1), k, layout);
              }
            });
          } finally {
            h.close();
          }
        }),
        params(),
      );
    });

  for (const format of FORMATS)
    test(`a whole read-only WAL open over a fuzzed segment (format ${format}): a log or a typed error`, async () => {
      await fc.assert(
        fc.asyncProperty(around(frameBodies(format)), async (body) => {
          const { fs } = segmentWith(body, format);
          await typedOnlyAsync('Wal.open', body, async () => {
            const wal = await Wal.open({ fs, dir: '/w', readOnly: true, segmentBytes: 64 * 1024 });
            try {
              for (const _ of wal.iterate()) {
                // every record the open reports must read back
              }
            } finally {
              await wal.close();
            }
          });
        }),
        { seed, numRuns: 75 },
      );
    });
});

// ---------------------------------------------------------------------------------------- A/B

describe('fuzz: A/B slots', () => {
  const fixSlotCrc = (b: Uint8Array): Uint8Array => {
    if (b.byteLength < 16) return b;
    const out = b.slice();
    new DataView(out.buffer).setUint32(0, crc32c(out.subarray(4)), true);
    return out;
  };
  const slots = [encodeSlotImage(1, new Uint8Array(0)), encodeSlotImage(7, new Uint8Array(40).fill(9))];

  test('openAbFile over two fuzzed slots: a payload or a typed error', () => {
    fc.assert(
      fc.property(around(slots, fixSlotCrc), around(slots, fixSlotCrc), (a, b) => {
        const fs = new SimulatedFileSystem({ seed: 2 });
        fs.writeFileBytes('/ab/x.a', a);
        fs.writeFileBytes('/ab/x.b', b);
        typedOnly('openAbFile', a, () => {
          const { file, loaded } = openAbFile(fs, '/ab', 'x', { readOnly: true, maxPayloadBytes: 1024 });
          file.close();
          if (loaded.payload !== undefined) assert.ok(loaded.payload.byteLength <= 1024);
        });
      }),
      params(),
    );
  });
});

// ---------------------------------------------------------------------------------------- blocks

describe('fuzz: block store record frame', () => {
  /** Recomputes the frame's CRC so the decoder's checks after it run. */
  const fixRecordCrc = (b: Uint8Array): Uint8Array => {
    if (b.byteLength < 23) return b;
    const h = b[18]!;
    if (b.byteLength < 23 + h) return b;
    const out = b.slice();
    const crc = crc32c(out.subarray(23 + h), crc32c(out.subarray(0, 19 + h)));
    new DataView(out.buffer).setUint32(19 + h, crc, true);
    return out;
  };
  const valids = [
    recordFrameBytes({ kind: 1, first: 0, next: 1, hash: new Uint8Array(32).fill(3) }, new Uint8Array(50)),
    recordFrameBytes({ kind: 2, first: 1000, next: 1004, hash: new Uint8Array(0) }, new Uint8Array(0)),
  ];

  test('decodeRecordFrame: a record or CORRUPT, never a raw error', () => {
    fc.assert(
      fc.property(around(valids, fixRecordCrc), (bytes) => {
        typedOnly('decodeRecordFrame', bytes, () =>
          decodeRecordFrame(bytes, { file: '/v/0.wal', walIndex: 5 }),
        );
      }),
      params(),
    );
  });

  test('decodeRecordFrame: numbers above 2^53 behind a valid checksum are CORRUPT', () => {
    const bytes = fixRecordCrc(valids[1]!.slice());
    bytes.fill(0xff, 2, 18); // first and next = 2^64 - 1
    typedOnly('decodeRecordFrame', bytes, () =>
      decodeRecordFrame(fixRecordCrc(bytes), { file: '/v/0.wal', walIndex: 5 }),
    );
  });
});

// ---------------------------------------------------------------------------------------- domain

describe('fuzz: domain codecs', () => {
  const f = new ConsensusFixture({ lanes: 3, seed: 11, payloadBytes: 60, sign: true });
  const proposals = f.produceRound(2);
  const qc0 = f.nextCommitQC({ maxPerLane: 2 });
  const qc1 = f.nextCommitQC({ maxPerLane: 2 });
  const cases: { name: string; valids: Uint8Array[]; decode: (b: Uint8Array) => unknown }[] = [
    {
      name: 'decodeBlockHeader',
      valids: proposals.map((p) => encodeBlockHeader(p.block.header)),
      decode: decodeBlockHeader,
    },
    { name: 'decodeBlock', valids: proposals.map((p) => encodeBlock(p.block)), decode: decodeBlock },
    {
      name: 'decodeSignedLaneProposal',
      valids: proposals.map(encodeSignedLaneProposal),
      decode: decodeSignedLaneProposal,
    },
    { name: 'decodeCommitQC', valids: [encodeCommitQC(qc0), encodeCommitQC(qc1)], decode: decodeCommitQC },
    { name: 'decodeAppQC', valids: [encodeAppQC(f.appQC(qc0))], decode: decodeAppQC },
    {
      name: 'decodeFullCommitQC',
      valids: [encodeFullCommitQC(f.fullCommitQC(qc0)), encodeFullCommitQC(f.fullCommitQC(qc1))],
      decode: decodeFullCommitQC,
    },
    { name: 'decodePruneAnchor', valids: [encodePruneAnchor(f.pruneAnchor(qc1))], decode: decodePruneAnchor },
  ];
  for (const c of cases) {
    test(`${c.name}: a value or DECODE, never a raw error`, () => {
      fc.assert(
        fc.property(around(c.valids), (bytes) => {
          typedOnly(c.name, bytes, () => c.decode(bytes));
        }),
        params(),
      );
    });
  }
});
