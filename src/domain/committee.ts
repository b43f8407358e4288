import { bytesEqual } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { Rng } from '../lib/rng.ts';
import { shortLane } from './codecs.ts';
import {
  appProposalDigest,
  commitQCDigest,
  hashBlockHeader,
  hashPayload,
  type SigningKey,
  signingKeyFromSeed,
  verifyDigest,
  verifySignedLaneProposal,
} from './crypto.ts';
import {
  type AppQC,
  type CommitQC,
  type Committee,
  type FullCommitQC,
  type GlobalRange,
  type LaneId,
  type LaneRange,
  MAX_BLOCKS_PER_LANE_PER_COMMIT,
  MAX_COMMITTEE_SIZE,
  type PruneAnchor,
  type PublicKeyHex,
  type QuorumSignature,
  type SignedLaneProposal,
  ZERO_HASH,
} from './types.ts';

/** Builds a committee (sorted, distinct members); quorum sizes follow BFT with f = floor((n-1)/3). */
export function makeCommittee(members: readonly PublicKeyHex[]): Committee {
  if (members.length === 0 || members.length > MAX_COMMITTEE_SIZE) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `committee size must be in [1, ${MAX_COMMITTEE_SIZE}], got ${members.length}`,
    );
  }
  const sorted = [...members].sort();
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1])
      throw new CairnError('INVALID_ARGUMENT', `duplicate committee member ${sorted[i]}`);
  }
  const faulty = Math.floor((sorted.length - 1) / 3);
  return { members: sorted, faulty, quorum: sorted.length - faulty, laneQuorum: faulty + 1 };
}

/**
 * A committee of `n` ed25519 keys derived from `seed`: same seed, same keys, so a devnet data directory
 * (which stores only the seed) reopens with the committee that wrote it. `keys[i]` owns lane
 * `committee.members[i]`. Test fixtures use the same derivation.
 */
export function seededCommittee(n: number, seed: number): { committee: Committee; keys: SigningKey[] } {
  const rng = new Rng(seed);
  const keys = Array.from({ length: n }, () => signingKeyFromSeed(rng.bytes(32)));
  keys.sort((a, b) => (a.publicKey < b.publicKey ? -1 : a.publicKey > b.publicKey ? 1 : 0));
  return { committee: makeCommittee(keys.map((k) => k.publicKey)), keys };
}

export function isMember(committee: Committee, key: PublicKeyHex): boolean {
  return binarySearch(committee.members, key) >= 0;
}

function binarySearch(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = sorted[mid]!;
    if (v === key) return mid;
    if (v < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** The lane range a CommitQC finalizes for `lane`; a lane the QC omits reads as [0, 0). */
export function laneRangeOf(qc: CommitQC, lane: LaneId): LaneRange {
  const ranges = qc.laneRanges;
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (r.lane === lane) return r;
    if (r.lane < lane) lo = mid + 1;
    else hi = mid - 1;
  }
  return { lane, first: 0, next: 0, lastHash: ZERO_HASH };
}

/** Global block range [first, next) a CommitQC finalizes. */
export function globalRangeOf(qc: CommitQC): GlobalRange {
  let length = 0;
  for (const lr of qc.laneRanges) length += lr.next - lr.first;
  return { first: qc.globalFirst, next: qc.globalFirst + length };
}

function checkQuorum(
  what: string,
  committee: Committee,
  digest: Uint8Array,
  sigs: readonly QuorumSignature[],
  verifySignatures: boolean,
): void {
  let valid = 0;
  const seen = new Set<string>();
  for (const s of sigs) {
    if (seen.has(s.signer))
      throw new CairnError('INVALID_ARGUMENT', `${what}: duplicate signer ${shortLane(s.signer)}`);
    seen.add(s.signer);
    if (!isMember(committee, s.signer)) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `${what}: signer ${shortLane(s.signer)} is not a committee member`,
      );
    }
    if (verifySignatures && !verifyDigest(s.signer, digest, s.signature)) {
      throw new CairnError('INVALID_ARGUMENT', `${what}: bad signature from ${shortLane(s.signer)}`);
    }
    valid++;
  }
  if (valid < committee.quorum) {
    throw new CairnError('INVALID_ARGUMENT', `${what}: ${valid} signatures, quorum is ${committee.quorum}`);
  }
}

export interface VerifyOptions {
  /** Check ed25519 signatures (default true). Structural checks always run. */
  signatures?: boolean;
}

/** Throws INVALID_ARGUMENT unless the QC covers exactly the committee lanes and carries a valid quorum. */
export function verifyCommitQC(qc: CommitQC, committee: Committee, options: VerifyOptions = {}): void {
  const what = `CommitQC ${qc.roadIndex}`;
  if (qc.laneRanges.length !== committee.members.length) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `${what}: ${qc.laneRanges.length} lane ranges for a committee of ${committee.members.length}`,
    );
  }
  qc.laneRanges.forEach((lr, i) => {
    if (lr.lane !== committee.members[i]) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `${what}: lane range ${i} is for ${shortLane(lr.lane)}, not a committee lane`,
      );
    }
    if (lr.next < lr.first || lr.next - lr.first > MAX_BLOCKS_PER_LANE_PER_COMMIT) {
      throw new CairnError(
        'INVALID_ARGUMENT',
        `${what}: lane ${shortLane(lr.lane)} range [${lr.first}, ${lr.next}) exceeds ${MAX_BLOCKS_PER_LANE_PER_COMMIT} blocks`,
      );
    }
  });
  checkQuorum(what, committee, commitQCDigest(qc), qc.signatures, options.signatures ?? true);
}

export function verifyAppQC(qc: AppQC, committee: Committee, options: VerifyOptions = {}): void {
  checkQuorum(
    `AppQC ${qc.proposal.roadIndex}`,
    committee,
    appProposalDigest(qc.proposal),
    qc.signatures,
    options.signatures ?? true,
  );
}

/** Checks the QC and that each lane's headers form a hash chain ending in the lane range's lastHash. */
export function verifyFullCommitQC(
  full: FullCommitQC,
  committee: Committee,
  options: VerifyOptions = {},
): void {
  verifyCommitQC(full.qc, committee, options);
  const problem = headersMismatch(full);
  if (problem !== undefined) throw new CairnError('INVALID_ARGUMENT', problem);
}

/**
 * Whether the headers of a FullCommitQC are the ones its (signed) CommitQC finalizes: one header per
 * finalized number, each lane's headers in lane order forming a hash chain that ends in the lane
 * range's `lastHash` (which binds every header of the range). Needs no committee. Returns a
 * description of the first mismatch, or undefined. A mismatch with a valid QC means the holder
 * assembled it from blocks the quorum did not certify (an equivocating lane owner).
 */
export function headersMismatch(
  full: FullCommitQC,
  headerHashes: readonly Uint8Array[] = full.headers.map(hashBlockHeader),
): string | undefined {
  const range = globalRangeOf(full.qc);
  const what = `FullCommitQC ${full.qc.roadIndex}`;
  if (full.headers.length !== range.next - range.first) {
    return `${what}: ${full.headers.length} headers for ${range.next - range.first} blocks`;
  }
  let i = 0;
  for (const lr of full.qc.laneRanges) {
    let previousHash: Uint8Array | undefined;
    for (let n = lr.first; n < lr.next; n++, i++) {
      const h = full.headers[i]!;
      if (h.lane !== lr.lane || h.blockNumber !== n) {
        return `${what}: header ${i} is ${shortLane(h.lane)}/${h.blockNumber}, expected ${shortLane(lr.lane)}/${n}`;
      }
      if (previousHash !== undefined && !bytesEqual(h.parentHash, previousHash)) {
        return `${what}: lane ${shortLane(lr.lane)} block ${n} breaks the hash chain`;
      }
      previousHash = headerHashes[i]!;
    }
    if (previousHash !== undefined && !bytesEqual(previousHash, lr.lastHash)) {
      return `${what}: lane ${shortLane(lr.lane)} last header does not match the QC's lastHash`;
    }
  }
  return undefined;
}

export function verifyPruneAnchor(
  anchor: PruneAnchor,
  committee: Committee,
  options: VerifyOptions = {},
): void {
  if (anchor.appQC.proposal.roadIndex !== anchor.commitQC.roadIndex) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `prune anchor: AppQC road ${anchor.appQC.proposal.roadIndex} != CommitQC road ${anchor.commitQC.roadIndex}`,
    );
  }
  verifyCommitQC(anchor.commitQC, committee, options);
  verifyAppQC(anchor.appQC, committee, options);
}

/**
 * Admission check of a lane proposal: the lane is a committee lane, the payload hash matches and the
 * lane owner signed it. Throws INVALID_ARGUMENT naming lane and number.
 */
export function verifyLaneProposal(p: SignedLaneProposal, committee: Committee): void {
  const { header } = p.block;
  const where = `lane ${shortLane(header.lane)} block ${header.blockNumber}`;
  if (!isMember(committee, header.lane))
    throw new CairnError('INVALID_ARGUMENT', `${where}: lane is not in the committee`);
  if (!bytesEqual(hashPayload(p.block.payload), header.payloadHash)) {
    throw new CairnError('INVALID_ARGUMENT', `${where}: payload hash does not match the header`);
  }
  if (!verifySignedLaneProposal(p)) throw new CairnError('INVALID_ARGUMENT', `${where}: bad signature`);
}
