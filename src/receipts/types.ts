/**
 * Data model of the receipt store: Ethereum receipts and their logs, one block at a time.
 *
 * Block numbers are safe integers (the store rejects anything above 2^53 - 1); hashes and
 * addresses are raw bytes (32 and 20 bytes). Log indices are block-wide and deterministic: the
 * receipts of a block are ordered by transaction index and their logs numbered 0, 1, 2, ... in
 * that order, on the write path, on WAL replay and in the archive alike.
 */

export interface LogInput {
  /** 20 bytes. */
  address: Uint8Array;
  /** 0 to 4 topics of 32 bytes each, in position order. */
  topics: readonly Uint8Array[];
  data: Uint8Array;
}

/** One transaction's receipt as the executor hands it to the store. */
export interface ReceiptInput {
  /** 32 bytes. */
  txHash: Uint8Array;
  /** Position of the transaction in its block; unique within the block. */
  txIndex: number;
  /** EIP-2718 transaction type (0..255). */
  type: number;
  /** 1 success, 0 failure. */
  status: 0 | 1;
  /** 20 bytes. */
  from: Uint8Array;
  /** 20 bytes, or undefined for a contract creation. */
  to: Uint8Array | undefined;
  /** 20 bytes for a contract creation, otherwise undefined. */
  contractAddress: Uint8Array | undefined;
  gasUsed: number;
  cumulativeGasUsed: number;
  /** Fits in u64. */
  effectiveGasPrice: bigint;
  logs: readonly LogInput[];
}

export interface BlockReceiptsInput {
  number: number;
  /** 32 bytes. */
  hash: Uint8Array;
  /** Any order; the store orders them by txIndex. An empty list is an empty block. */
  receipts: readonly ReceiptInput[];
}

/** A log as returned by reads (the `eth_getLogs` shape). */
export interface Log {
  address: Uint8Array;
  topics: Uint8Array[];
  data: Uint8Array;
  blockNumber: number;
  blockHash: Uint8Array;
  txHash: Uint8Array;
  txIndex: number;
  /** Block-wide log index. */
  logIndex: number;
  removed: false;
}

/** A receipt as returned by reads (the `eth_getTransactionReceipt` shape). */
export interface Receipt {
  txHash: Uint8Array;
  txIndex: number;
  blockNumber: number;
  blockHash: Uint8Array;
  type: number;
  status: 0 | 1;
  from: Uint8Array;
  to: Uint8Array | undefined;
  contractAddress: Uint8Array | undefined;
  gasUsed: number;
  cumulativeGasUsed: number;
  effectiveGasPrice: bigint;
  /** 256 bytes, derived from the logs (it is a pure function of them, so it is not stored). */
  logsBloom: Uint8Array;
  logs: Log[];
}

/**
 * An `eth_getLogs` filter. Either a block range (both ends inclusive; defaults: the latest block)
 * or a block hash. `addresses` is an OR list (empty or absent: any address). `topics` is
 * positional: entry i constrains topic i; null, undefined or an empty list is a wildcard; a list is
 * an OR of values; a null inside that list makes the whole position a wildcard (as geth decodes
 * `[[A, null]]`). A log with fewer topics than a constrained position does not match.
 */
export interface LogFilter {
  fromBlock?: number;
  toBlock?: number;
  blockHash?: Uint8Array;
  addresses?: readonly Uint8Array[];
  topics?: readonly (readonly (Uint8Array | null)[] | null | undefined)[];
}

export interface LogQueryOptions {
  signal?: AbortSignal;
  /** Override the store's result cap for this query (never above it). */
  maxResults?: number;
}

/** A receipt in its canonical, normalized form (what the WAL and the tiers store). */
export interface StoredReceipt {
  txHash: Uint8Array;
  txIndex: number;
  type: number;
  status: 0 | 1;
  from: Uint8Array;
  to: Uint8Array | undefined;
  contractAddress: Uint8Array | undefined;
  gasUsed: number;
  cumulativeGasUsed: number;
  effectiveGasPrice: bigint;
  /** Block-wide index of this receipt's first log. */
  firstLogIndex: number;
  logs: LogInput[];
}

/** One block as the WAL stores it: receipts sorted by txIndex, log indices assigned. */
export interface BlockEntry {
  number: number;
  hash: Uint8Array;
  receipts: StoredReceipt[];
}
