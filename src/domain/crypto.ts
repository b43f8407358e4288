import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { toHex } from '../lib/bytes.ts';
import { CairnError } from '../lib/errors.ts';
import { SHA256_BYTES, sha256Into } from '../lib/sha256.ts';
import { ByteWriter } from './byteCodec.ts';
import { HEADER_BODY_BYTES, writeAppProposalBody, writeCommitQCBody, writeHeaderBody } from './codecs.ts';
import type {
  AppProposal,
  AppQC,
  BlockHeader,
  CommitQC,
  Hash,
  PublicKeyHex,
  QuorumSignature,
  SignedLaneProposal,
} from './types.ts';
import { PUBLIC_KEY_BYTES } from './types.ts';

/**
 * Hashes (SHA-256: node:crypto, and `sha256Into` for block headers) and ed25519 signatures
 * (node:crypto). Every digest is prefixed with a domain tag so that a signature over one kind of
 * message can never be replayed as another kind.
 */

const DOMAIN_HEADER = Buffer.from('cairn/block-header/v1\0');
const DOMAIN_LANE_PROPOSAL = Buffer.from('cairn/lane-proposal/v1\0');
const DOMAIN_COMMIT_VOTE = Buffer.from('cairn/commit-vote/v1\0');
const DOMAIN_APP_VOTE = Buffer.from('cairn/app-vote/v1\0');

export function sha256(...parts: Uint8Array[]): Hash {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function hashPayload(payload: Uint8Array): Hash {
  return sha256(payload);
}

/** Reused for every header hash (domain tag then header body); never handed out. */
const headerScratch = new ByteWriter(DOMAIN_HEADER.byteLength + HEADER_BODY_BYTES);

/**
 * Header hash: the block's identity (parent links, lane ranges, by-hash index). Hashed once per
 * admitted block, so it allocates only the 32-byte result (see `sha256Into` for why not node:crypto).
 */
export function hashBlockHeader(header: BlockHeader): Hash {
  const w = headerScratch.reuse();
  w.fixed(DOMAIN_HEADER);
  writeHeaderBody(w, header);
  const digest = new Uint8Array(SHA256_BYTES);
  sha256Into(w.backing, digest, 0, w.size);
  return digest;
}

/** Digest the committee signs for a CommitQC (its proposal: every field except the signatures). */
export function commitQCDigest(qc: Omit<CommitQC, 'signatures'>): Hash {
  const w = new ByteWriter(256);
  writeCommitQCBody(w, { ...qc, signatures: [] });
  return sha256(DOMAIN_COMMIT_VOTE, w.finish());
}

/** Identity of a CommitQC; equal to the digest its voters signed. */
export const hashCommitQC = commitQCDigest;

export function appProposalDigest(p: AppProposal): Hash {
  const w = new ByteWriter(96);
  writeAppProposalBody(w, p);
  return sha256(DOMAIN_APP_VOTE, w.finish());
}

// ---------------------------------------------------------------- keys

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface SigningKey {
  readonly publicKey: PublicKeyHex;
  readonly privateKey: KeyObject;
}

/** Deterministic ed25519 key pair from a 32-byte seed (test fixtures, devnet). */
export function signingKeyFromSeed(seed: Uint8Array): SigningKey {
  if (seed.byteLength !== 32)
    throw new CairnError('INVALID_ARGUMENT', `ed25519 seed must be 32 bytes, got ${seed.byteLength}`);
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { publicKey: toHex(spki.subarray(ED25519_SPKI_PREFIX.length)), privateKey };
}

const publicKeyCache = new Map<string, KeyObject | null>();
const PUBLIC_KEY_CACHE_LIMIT = 4096;

/** KeyObject for a hex public key, or null when the bytes are not a valid ed25519 key. Cached. */
export function publicKeyObject(hex: PublicKeyHex): KeyObject | null {
  let key = publicKeyCache.get(hex);
  if (key !== undefined) return key;
  try {
    if (hex.length !== PUBLIC_KEY_BYTES * 2) throw new Error('length');
    key = createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(hex, 'hex')]),
      format: 'der',
      type: 'spki',
    });
  } catch {
    key = null;
  }
  if (publicKeyCache.size >= PUBLIC_KEY_CACHE_LIMIT) publicKeyCache.clear();
  publicKeyCache.set(hex, key);
  return key;
}

export function signDigest(key: SigningKey, domainDigest: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, domainDigest, key.privateKey));
}

export function verifyDigest(publicKey: PublicKeyHex, digest: Uint8Array, signature: Uint8Array): boolean {
  const key = publicKeyObject(publicKey);
  if (key === null || signature.byteLength !== 64) return false;
  try {
    return verify(null, digest, key, signature);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- lane proposals

function laneProposalMessage(header: BlockHeader): Uint8Array {
  return sha256(DOMAIN_LANE_PROPOSAL, hashBlockHeader(header));
}

export function signLaneProposal(key: SigningKey, header: BlockHeader): Uint8Array {
  if (header.lane !== key.publicKey) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `lane ${header.lane.slice(0, 12)} is not owned by signer ${key.publicKey.slice(0, 12)}`,
    );
  }
  return signDigest(key, laneProposalMessage(header));
}

/** True iff the proposal is signed by its lane's owner and its payload hash matches. */
export function verifySignedLaneProposal(p: SignedLaneProposal): boolean {
  const { header, payload } = p.block;
  if (!Buffer.from(hashPayload(payload)).equals(Buffer.from(header.payloadHash))) return false;
  return verifyDigest(header.lane, laneProposalMessage(header), p.signature);
}

// ---------------------------------------------------------------- quorum signatures

export function signCommitVote(key: SigningKey, qc: Omit<CommitQC, 'signatures'>): QuorumSignature {
  return { signer: key.publicKey, signature: signDigest(key, commitQCDigest(qc)) };
}

export function signAppVote(key: SigningKey, p: AppProposal): QuorumSignature {
  return { signer: key.publicKey, signature: signDigest(key, appProposalDigest(p)) };
}

/** Every signature valid over `digest` (the caller checks membership and quorum size). */
export function allSignaturesValid(digest: Uint8Array, sigs: readonly QuorumSignature[]): boolean {
  return sigs.every((s) => verifyDigest(s.signer, digest, s.signature));
}

export function appQCSignaturesValid(qc: AppQC): boolean {
  return allSignaturesValid(appProposalDigest(qc.proposal), qc.signatures);
}
