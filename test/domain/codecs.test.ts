import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  appQCCodec,
  blockCodec,
  blockHeaderCodec,
  type Codec,
  commitQCCodec,
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
  fullCommitQCCodec,
  pruneAnchorCodec,
  signedLaneProposalCodec,
} from '../../src/domain/codecs.ts';
import {
  globalRangeOf,
  laneRangeOf,
  verifyCommitQC,
  verifyFullCommitQC,
  verifyLaneProposal,
  verifyPruneAnchor,
} from '../../src/domain/committee.ts';
import { hashBlockHeader, verifySignedLaneProposal } from '../../src/domain/crypto.ts';
import { ZERO_HASH } from '../../src/domain/types.ts';
import { bytesEqual, toHex } from '../../src/lib/bytes.ts';
import { CairnError, isCairnError } from '../../src/lib/errors.ts';
import { seedFromEnv } from '../../src/lib/rng.ts';
import { ConsensusFixture } from '../../src/testing/consensusFixture.ts';

function fixture(seed = 7, lanes = 4): ConsensusFixture {
  const f = new ConsensusFixture({ lanes, seed, payloadBytes: 100 });
  f.produceRound(3);
  f.nextCommitQC({ maxPerLane: 2 });
  f.produceRound(1);
  f.nextCommitQC();
  return f;
}

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

test('round trip of every record type is byte-identical', () => {
  const f = fixture();
  const lane = f.laneAt(1);
  const qc = f.commitQC(1);
  const cases: Array<[Codec<never>, unknown]> = [
    [blockHeaderCodec as Codec<never>, f.block(lane, 2).block.header],
    [blockCodec as Codec<never>, f.block(lane, 2).block],
    [signedLaneProposalCodec as Codec<never>, f.block(lane, 2)],
    [commitQCCodec as Codec<never>, qc],
    [appQCCodec as Codec<never>, f.appQC(qc)],
    [fullCommitQCCodec as Codec<never>, f.fullCommitQC(qc)],
    [pruneAnchorCodec as Codec<never>, f.pruneAnchor(qc)],
  ];
  for (const [codec, value] of cases) {
    const bytes = codec.encode(value as never);
    const decoded = codec.decode(bytes);
    assert.deepEqual(decoded, value, codec.name);
    assert.ok(bytesEqual(codec.encode(decoded), bytes), `${codec.name} re-encodes to the same bytes`);
  }
});

test('golden encodings: fixed seed gives fixed bytes (format changes must be deliberate)', () => {
  const f = fixture(42, 4);
  const lane = f.laneAt(0);
  const p = f.block(lane, 0);
  const qc = f.commitQC(0);
  // Layout of the header record: tag 'H', version 1, lane(32), number u64 LE, parent(32), payloadHash(32).
  const header = encodeBlockHeader(p.block.header);
  assert.equal(header.byteLength, 2 + 32 + 8 + 32 + 32);
  assert.equal(toHex(header.subarray(0, 2)), '4801');
  assert.equal(toHex(header.subarray(2, 34)), lane);
  assert.equal(toHex(header.subarray(34, 42)), '0000000000000000');
  assert.ok(bytesEqual(header.subarray(42, 74), ZERO_HASH));
  assert.equal(encodeSignedLaneProposal(p)[0], 0x50);
  assert.equal(encodeCommitQC(qc)[0], 0x43);
  // Digests of the full encodings pin every byte, including keys and signatures (ed25519 is deterministic).
  const golden = {
    header: sha(header),
    proposal: sha(encodeSignedLaneProposal(p)),
    block: sha(encodeBlock(p.block)),
    commitQC: sha(encodeCommitQC(qc)),
    appQC: sha(encodeAppQC(f.appQC(qc))),
    full: sha(encodeFullCommitQC(f.fullCommitQC(qc))),
    anchor: sha(encodePruneAnchor(f.pruneAnchor(qc))),
    headerHash: toHex(hashBlockHeader(p.block.header)),
  };
  assert.deepEqual(golden, GOLDEN);
});

const GOLDEN = {
  header: 'b59dc9c08f2d36494b397975518df1460df599c1b999ea7ed0961245cc9034c3',
  proposal: '9ba2cb552be31da635d041cc952b8043ad36ef27c36023144638e7cf4a15e7ae',
  block: 'b78e00bf4d781a6d4229791af4236f5474bf001d8fd2066f317d7018471b851f',
  commitQC: '31cc0eb02c06fec7975520d905e725cdb28d9e789c6fb3ed05a206813101dc04',
  appQC: 'cfec189f839c85fca6053960d1d3da0f11bc8b3dbf2025f177eda39ca9025deb',
  full: 'ce801c4717c93a000821f1913fb5e67f61fddfebb3fb013ec055306cf7e021c2',
  anchor: '980bb206374dd68299bf67807fb51f595c3eacdb7f0d80a5c60dc248815b7fbf',
  headerHash: '7ba1092b722f125eb0a4396ba5d7a4043f1bb909fea366342573fad5172a58cd',
};

test('fixtures follow the proposal rules and verify', () => {
  const f = fixture(3, 7);
  const q0 = f.commitQC(0);
  const q1 = f.commitQC(1);
  assert.equal(f.committee.quorum, 5);
  assert.deepEqual(globalRangeOf(q0), { first: 0, next: 14 });
  assert.deepEqual(globalRangeOf(q1), { first: 14, next: 28 });
  for (const lane of f.lanes) {
    assert.equal(laneRangeOf(q1, lane).first, laneRangeOf(q0, lane).next);
  }
  verifyCommitQC(q1, f.committee);
  verifyFullCommitQC(f.fullCommitQC(q1), f.committee);
  verifyPruneAnchor(f.pruneAnchor(q1), f.committee);
  verifyLaneProposal(f.block(f.laneAt(3), 2), f.committee);
  assert.ok(verifySignedLaneProposal(f.block(f.laneAt(3), 2)));
  // A lane the QC does not mention reads as empty.
  assert.deepEqual(laneRangeOf(q0, 'ff'.repeat(32)), {
    lane: 'ff'.repeat(32),
    first: 0,
    next: 0,
    lastHash: ZERO_HASH,
  });
});

test('verification rejects tampering with a typed error', () => {
  const f = fixture(5, 4);
  const p = f.block(f.laneAt(0), 1);
  const tampered = { ...p, block: { ...p.block, payload: new Uint8Array(p.block.payload.byteLength) } };
  assert.throws(
    () => verifyLaneProposal(tampered, f.committee),
    (e) => isCairnError(e, 'INVALID_ARGUMENT'),
  );
  const wrongSigner = { ...p, signature: f.block(f.laneAt(1), 1).signature };
  assert.throws(() => verifyLaneProposal(wrongSigner, f.committee), /bad signature/);
  const qc = f.commitQC(1);
  const fewSigs = { ...qc, signatures: qc.signatures.slice(0, 2) };
  assert.throws(() => verifyCommitQC(fewSigs, f.committee), /2 signatures, quorum is 3/);
  const forged = { ...qc, roadIndex: 9 };
  assert.throws(() => verifyCommitQC(forged, f.committee), /bad signature/);
  const full = f.fullCommitQC(qc);
  const badChain = { ...full, headers: [...full.headers].reverse() };
  assert.throws(
    () => verifyFullCommitQC(badChain, f.committee),
    (e) => isCairnError(e, 'INVALID_ARGUMENT'),
  );
  assert.throws(
    () => encodePruneAnchor({ appQC: f.appQC(f.commitQC(0)), commitQC: qc }),
    /AppQC road 0 != CommitQC road 1/,
  );
});

test('malformed bytes give DECODE errors, never a crash or a half object (property)', () => {
  const seed = seedFromEnv();
  console.log('seed', seed);
  const f = fixture(seed, 4);
  const qc = f.commitQC(1);
  const samples: Array<[Codec<unknown>, Uint8Array]> = [
    [signedLaneProposalCodec as Codec<unknown>, encodeSignedLaneProposal(f.block(f.laneAt(2), 1))],
    [commitQCCodec as Codec<unknown>, encodeCommitQC(qc)],
    [appQCCodec as Codec<unknown>, encodeAppQC(f.appQC(qc))],
    [fullCommitQCCodec as Codec<unknown>, encodeFullCommitQC(f.fullCommitQC(qc))],
    [pruneAnchorCodec as Codec<unknown>, encodePruneAnchor(f.pruneAnchor(qc))],
  ];
  const outcome = (codec: Codec<unknown>, bytes: Uint8Array): 'ok' | 'decode-error' => {
    try {
      const value = codec.decode(bytes);
      // Anything accepted must be canonical: it re-encodes to exactly the input.
      assert.ok(bytesEqual(codec.encode(value), bytes), `${codec.name} accepted non-canonical bytes`);
      return 'ok';
    } catch (err) {
      if (err instanceof CairnError && err.code === 'DECODE') return 'decode-error';
      throw err;
    }
  };
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: samples.length - 1 }),
      fc.oneof(
        fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
        fc.record({
          kind: fc.constant('flip' as const),
          at: fc.nat(),
          mask: fc.integer({ min: 1, max: 255 }),
        }),
        fc.record({
          kind: fc.constant('append' as const),
          extra: fc.uint8Array({ minLength: 1, maxLength: 8 }),
        }),
        fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 300 }) }),
      ),
      (which, mutation) => {
        const [codec, good] = samples[which]!;
        let bad: Uint8Array;
        if (mutation.kind === 'truncate') bad = good.subarray(0, mutation.at % good.byteLength);
        else if (mutation.kind === 'append') bad = Buffer.concat([good, mutation.extra]);
        else if (mutation.kind === 'random') bad = mutation.bytes;
        else {
          bad = good.slice();
          const i = mutation.at % bad.byteLength;
          bad[i] = bad[i]! ^ mutation.mask;
        }
        const result = outcome(codec, bad);
        if (mutation.kind === 'truncate' || mutation.kind === 'append') assert.equal(result, 'decode-error');
      },
    ),
    { seed, numRuns: 2000 },
  );
});

test('decoders name the record, the field and the offset; lengths are bounded before allocation', () => {
  const f = fixture(9, 4);
  const bytes = encodeSignedLaneProposal(f.block(f.laneAt(0), 0));
  // Payload length field sits after tag(1) + version(1) + header body (104).
  const huge = bytes.slice();
  new DataView(huge.buffer).setUint32(106, 0xfffffff0, true);
  assert.throws(
    () => decodeSignedLaneProposal(huge),
    (e) =>
      isCairnError(e, 'DECODE') &&
      /payload length 4294967280 exceeds the maximum/.test(e.message) &&
      e.details.offset === 110,
  );
  const wrongTag = encodeCommitQC(f.commitQC(0));
  assert.throws(() => decodeSignedLaneProposal(wrongTag), /expected record tag 0x50, got 0x43/);
  const v2 = wrongTag.slice();
  v2[1] = 2;
  assert.throws(() => decodeCommitQC(v2), /unsupported format version 2/);
  // Unsorted lane ranges are rejected (only one canonical encoding per value).
  const qc = f.commitQC(0);
  const swapped = { ...qc, laneRanges: [qc.laneRanges[1]!, qc.laneRanges[0]!, ...qc.laneRanges.slice(2)] };
  assert.throws(
    () => encodeCommitQC(swapped),
    (e) => isCairnError(e, 'INVALID_ARGUMENT'),
  );
  // A FullCommitQC whose header count disagrees with its QC range fails both ways.
  const full = f.fullCommitQC(f.commitQC(1));
  assert.throws(
    () => encodeFullCommitQC({ ...full, headers: full.headers.slice(1) }),
    /headers for a range of/,
  );
  // A prune anchor whose parts disagree fails to decode.
  const anchorBytes = encodePruneAnchor(f.pruneAnchor(f.commitQC(1)));
  assert.ok(decodePruneAnchor(anchorBytes));
  assert.ok(decodeFullCommitQC(encodeFullCommitQC(full)));
  assert.throws(
    () => decodePruneAnchor(anchorBytes.subarray(0, 20)),
    (e) => isCairnError(e, 'DECODE'),
  );
});
