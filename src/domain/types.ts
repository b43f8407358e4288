/**
 * Consensus data types that persistence and the block store rely on. Plain readonly objects; all
 * behaviour lives in pure functions (`codecs.ts`, `crypto.ts`, `committee.ts`).
 *
 * Numbers (block numbers, road indices, global block numbers) are non-negative safe integers. They are
 * encoded as u64 on disk, so a future switch to bigint changes no byte.
 */

/** A lane is a validator's ed25519 public key, written as 64 lowercase hex characters. */
export type LaneId = string;
/** A validator public key (same representation as a lane id). */
export type PublicKeyHex = string;
/** A 32-byte SHA-256 digest. */
export type Hash = Uint8Array;

export const HASH_BYTES = 32;
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** Largest block payload accepted by the codecs (a block of ≤ 2,000 txs of ≤ 1 KiB fits easily). */
export const MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** Largest committee the codecs accept (bounds every per-lane list). */
export const MAX_COMMITTEE_SIZE = 1024;
/** At most this many blocks of one lane are finalized by one CommitQC (proposal rule). */
export const MAX_BLOCKS_PER_LANE_PER_COMMIT = 10;
/** Admission window per lane, relative to the durable anchor: blocks kept in memory and on disk. */
export const BLOCKS_PER_LANE = 3 * MAX_BLOCKS_PER_LANE_PER_COMMIT;

/** The all-zero hash: parent of a lane's first block and last hash of an empty lane range. */
export const ZERO_HASH: Hash = new Uint8Array(HASH_BYTES);

export interface BlockHeader {
  readonly lane: LaneId;
  /** Position of the block inside its lane (0, 1, 2, ...). */
  readonly blockNumber: number;
  /** Hash of the lane's previous header (ZERO_HASH for a lane's first block). */
  readonly parentHash: Hash;
  /** SHA-256 of the payload bytes. */
  readonly payloadHash: Hash;
}

export interface Block {
  readonly header: BlockHeader;
  /** Opaque to persistence (transactions, timestamps, ...). */
  readonly payload: Uint8Array;
}

/** A lane block signed by the lane's owner. This is the lane WAL record. */
export interface SignedLaneProposal {
  readonly block: Block;
  /** ed25519 signature of `header.lane` over the header hash (see `crypto.ts`). */
  readonly signature: Uint8Array;
}

/** Half-open range of global block numbers: [first, next). */
export interface GlobalRange {
  readonly first: number;
  readonly next: number;
}

/** Half-open range of one lane's block numbers finalized by a CommitQC, with the hash of its last block. */
export interface LaneRange {
  readonly lane: LaneId;
  readonly first: number;
  readonly next: number;
  /** Header hash of block `next - 1`; ZERO_HASH when the range is empty. */
  readonly lastHash: Hash;
}

export interface QuorumSignature {
  readonly signer: PublicKeyHex;
  readonly signature: Uint8Array;
}

/**
 * Finality certificate of one consensus road. It finalizes, for each committee lane, the lane range
 * `laneRanges[i]`, which together form the global range
 * `[globalFirst, globalFirst + Σ (next - first))`: lanes in canonical (sorted) order, blocks ascending.
 */
export interface CommitQC {
  readonly roadIndex: number;
  readonly viewNumber: number;
  readonly createdAtMs: number;
  /** Global number of the first block this QC finalizes (= previous QC's global next). */
  readonly globalFirst: number;
  /** One entry per committee lane, sorted by lane id, no duplicates. */
  readonly laneRanges: readonly LaneRange[];
  /** Commit votes of a quorum (n - f distinct committee members) over `commitQCDigest`. */
  readonly signatures: readonly QuorumSignature[];
}

/** Local execution result of one road: the app hash after executing the road's last global block. */
export interface AppProposal {
  readonly roadIndex: number;
  /** Global number of the last block executed (= commitQC global next - 1), or the next for an empty road. */
  readonly globalNumber: number;
  readonly appHash: Hash;
}

export interface AppQC {
  readonly proposal: AppProposal;
  readonly signatures: readonly QuorumSignature[];
}

/** A CommitQC with the headers of every block it finalizes, in global order. */
export interface FullCommitQC {
  readonly qc: CommitQC;
  /** `headers[i]` is the header of global block `globalRange(qc).first + i`. */
  readonly headers: readonly BlockHeader[];
}

/**
 * The crash-recovery low-water mark: the newest AppQC and the CommitQC of the same road. Everything
 * below it may be pruned. Invariant: `appQC.proposal.roadIndex === commitQC.roadIndex`.
 */
export interface PruneAnchor {
  readonly appQC: AppQC;
  readonly commitQC: CommitQC;
}

/** Sorted, duplicate-free set of validators; each validator owns the lane with its key. */
export interface Committee {
  readonly members: readonly PublicKeyHex[];
  /** Max faulty members: floor((n - 1) / 3). */
  readonly faulty: number;
  /** Commit / app quorum: n - f. */
  readonly quorum: number;
  /** Lane quorum (votes that certify a lane block): f + 1. */
  readonly laneQuorum: number;
}
