// The receipt store's read path: point reads and log queries on the views the store publishes
// (receiptStore.ts owns the views, the file checks and the write side; this module only reads).
import { CairnError, isCairnError } from '../lib/errors.ts';
import type { ArchiveEngine } from './archiveEngine.ts';
import { logsBloom } from './bloom.ts';
import { checkAbort, type HotTier } from './hotTier.ts';
import { type NormalizedFilter, normalizeFilter } from './logFilter.ts';
import type { ArchiveFileEntry } from './manifest.ts';
import type { Log, LogFilter, LogQueryOptions, Receipt, StoredReceipt } from './types.ts';

/** A closed archive file as readers see it, with its reference count. */
export interface LiveFile {
  entry: ArchiveFileEntry;
  receiptsPath: string;
  logsPath: string;
  refs: number;
  /** Set once the manifest no longer lists it: deleted when the last reader releases it. */
  doomed: boolean;
  /**
   * The check of each file against the manifest before the engine first reads it, started once per
   * process (the files are immutable; see checkBeforeRead). Settled: the file may be read, or not.
   */
  checks?: { receipts?: Promise<void>; logs?: Promise<void> };
}

/**
 * An immutable snapshot readers run on (reads never go through the write queue). Everything it
 * names stays readable while it has readers: its archive files (reference counts) and the hot
 * bodies from its `hotFloor` on (a prune of hot bodies waits for the views below the new floor).
 */
export interface View {
  floor: number;
  hotFloor: number;
  latest: number;
  files: readonly LiveFile[];
  /** Reads in progress on this view. */
  readers: number;
}

/** Defaults of the query guards (ReceiptStoreOptions documents each). */
export const DEFAULT_MAX_BLOCK_RANGE = 100_000;
export const DEFAULT_MAX_RESULTS = 10_000;
export const DEFAULT_MAX_RESULT_BYTES = 64 * 1024 * 1024;

/** The store's query guards (its options; read at each query, as the store always did). */
export interface QueryGuards {
  maxBlockRange?: number;
  maxResults?: number;
  maxResultBytes?: number;
}

/**
 * What the read path needs of its store, and nothing more: built once by the store's constructor,
 * so the store's other state stays private to it.
 */
export interface ReadHost {
  /** Throws CLOSED once close was called. */
  checkReadable(): void;
  /** Pins the current view (its files and hot bodies) until `release`. */
  acquire(): View;
  release(view: View): void;
  /** Resolves once the files match the manifest (see ReceiptStore.checkBeforeRead). */
  checkBeforeRead(files: readonly LiveFile[]): Promise<void>;
  /** The store's hot floor now (a view's own may be lower). */
  hotFloor(): number;
  /** Hot bodies below this may be gone (see ReceiptStore.pruneHotBodies). */
  bodiesPrunedTo(): number;
  readonly hot: HotTier;
  readonly engine: ArchiveEngine;
  readonly guards: QueryGuards;
}

/** getReceipt, getLogs and getArchivedLogs of a ReceiptStore, which delegates to them. */
export class ReceiptReads {
  constructor(private readonly host: ReadHost) {}

  /**
   * The receipt of a transaction, or undefined when no retained block ([floor, latest], see
   * `ranges()`) holds it: a definite answer for that range, since the tx-hash index covers every
   * retained block and no file is scanned. When a hash was stored in two blocks, the later block's
   * receipt is returned (as geth does).
   *
   * Below the floor the store cannot tell "pruned" from "never existed" for every hash: that would
   * take an index of every pruned transaction, growing with history forever. So a miss stays
   * undefined (an RPC provider answers `null`, as it must for a transaction not yet mined, and may
   * point clients at an archive node when `ranges().floor > ranges().first`), and PRUNED (details:
   * floor, block) is returned where the index still places the hash below the floor: the blocks of
   * an archive file that straddles the floor (files and their index entries go whole), and briefly
   * while a prune removes a retired file's entries.
   */
  async getReceipt(txHash: Uint8Array): Promise<Receipt | undefined> {
    this.host.checkReadable();
    if (!(txHash instanceof Uint8Array) || txHash.length !== 32) {
      throw new CairnError('INVALID_ARGUMENT', 'transaction hash must be 32 bytes');
    }
    const loc = this.host.hot.txLocation(txHash);
    if (loc === undefined) return undefined;
    const view = this.host.acquire();
    try {
      if (loc.block > view.latest) return undefined;
      if (loc.block < view.floor) {
        throw new CairnError(
          'PRUNED',
          `the receipt is in block ${loc.block}, below the floor ${view.floor}`,
          { details: { floor: view.floor, block: loc.block } },
        );
      }
      if (loc.block >= view.hotFloor) {
        const body = this.host.hot.body(loc.block, loc.txIndex);
        if (body) return toReceipt(loc.block, body.blockHash, body.receipt);
        if (loc.block >= this.host.hotFloor()) {
          throw new CairnError(
            'CORRUPT',
            `hot tier: receipt ${loc.block}/${loc.txIndex} is indexed but missing`,
          );
        }
      }
      const file = view.files.find((f) => f.entry.first <= loc.block && loc.block <= f.entry.last);
      if (!file) {
        throw new CairnError('CORRUPT', `no archive file holds block ${loc.block} (floor ${view.floor})`);
      }
      await this.host.checkBeforeRead([file]);
      const found = await this.host.engine.readReceipt(
        file.receiptsPath,
        file.logsPath,
        loc.block,
        loc.txIndex,
      );
      if (!found)
        throw new CairnError(
          'CORRUPT',
          `archive file ${file.entry.receipts.name} lacks receipt ${loc.block}/${loc.txIndex}`,
        );
      return toReceipt(loc.block, found.blockHash, found.receipt);
    } finally {
      this.host.release(view);
    }
  }

  /**
   * eth_getLogs: matching logs in (block, log index) order. See LogFilter for the semantics. The
   * answer is the one of the view the query started on: its range splits at that view's hot floor
   * (archive files below, the hot tier above), and a rotation or prune that moves the floor while
   * the query runs deletes nothing the view still reaches (see pruneHotBodies).
   */
  async getLogs(filter: LogFilter, options: LogQueryOptions = {}): Promise<Log[]> {
    this.host.checkReadable();
    checkAbort(options.signal);
    const maxResults = this.resultCap(options);
    const maxBytes = this.host.guards.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
    const view = this.host.acquire();
    // Set when an aborted query is still running in an engine (archive or hot tier): the view (its
    // files, its hot bodies) is then released when the engine is done, not when the caller gets
    // ABORTED.
    let engineStillReading: Promise<unknown> | undefined;
    try {
      let from: number;
      let to: number;
      if (filter.blockHash !== undefined) {
        if (filter.fromBlock !== undefined || filter.toBlock !== undefined) {
          throw new CairnError(
            'INVALID_ARGUMENT',
            'a filter takes either blockHash or fromBlock/toBlock, not both',
          );
        }
        if (!(filter.blockHash instanceof Uint8Array) || filter.blockHash.length !== 32) {
          throw new CairnError('INVALID_ARGUMENT', 'blockHash must be 32 bytes');
        }
        const n = this.host.hot.blockNumberByHash(filter.blockHash);
        if (n === undefined || n > view.latest) throw new CairnError('NOT_FOUND', 'unknown block hash');
        if (n < view.floor) {
          throw new CairnError('PRUNED', `block ${n} of this hash is below the floor ${view.floor}`, {
            details: { floor: view.floor, block: n },
          });
        }
        from = n;
        to = n;
      } else {
        from = filter.fromBlock ?? view.latest;
        to = filter.toBlock ?? view.latest;
        for (const [name, v] of [
          ['fromBlock', from],
          ['toBlock', to],
        ] as const) {
          if (!Number.isSafeInteger(v) || v < 0) {
            if (view.latest < 0 && v === -1) return [];
            throw new CairnError('INVALID_ARGUMENT', `${name} must be a block number, got ${v}`);
          }
        }
        if (from > to) throw new CairnError('INVALID_ARGUMENT', `fromBlock ${from} > toBlock ${to}`);
      }
      if (from < view.floor) {
        throw new CairnError('PRUNED', `blocks below ${view.floor} are pruned (query starts at ${from})`, {
          details: { floor: view.floor, fromBlock: from },
        });
      }
      const maxRange = this.host.guards.maxBlockRange ?? DEFAULT_MAX_BLOCK_RANGE;
      if (to - from + 1 > maxRange) {
        throw new CairnError(
          'LIMIT_EXCEEDED',
          `block range ${from}..${to} spans ${to - from + 1} blocks (max ${maxRange})`,
          {
            details: { maxBlockRange: maxRange },
          },
        );
      }
      to = Math.min(to, view.latest);
      if (from > to) return [];
      const out: Log[] = [];
      let bytes = 0;
      if (from < view.hotFloor) {
        const archiveTo = Math.min(to, view.hotFloor - 1);
        const query = this.queryArchive(
          view,
          normalizeFilter(filter, from, archiveTo),
          maxResults,
          options.signal,
        );
        const rows = await untilAborted(query, options.signal).catch((err: unknown) => {
          if (isCairnError(err, 'ABORTED')) engineStillReading = query;
          throw err;
        });
        checkAbort(options.signal);
        if (rows.length > maxResults) throw tooMany(from, to, maxResults);
        for (const l of rows) {
          bytes += resultBytes(l);
          if (bytes > maxBytes) throw tooBig(from, to, maxBytes);
          out.push(l);
        }
      }
      if (to >= view.hotFloor) {
        const nf = normalizeFilter(filter, Math.max(from, view.hotFloor), to);
        const query = this.host.hot.queryLogs(nf, {
          maxResults: maxResults - out.length,
          maxBytes: maxBytes - bytes,
          signal: options.signal,
          // Never above this view's hot floor while the view is held: a missing body is not a prune.
          hotFloor: () => this.host.bodiesPrunedTo(),
        });
        let rows: Log[];
        try {
          rows = await untilAborted(query, options.signal);
        } catch (err) {
          if (isCairnError(err, 'ABORTED')) engineStillReading = query;
          // The hot tier counts against what the archive part left: report the whole query's numbers.
          if (isCairnError(err, 'LIMIT_EXCEEDED') && err.details?.maxResults !== undefined) {
            throw tooMany(from, to, maxResults);
          }
          if (isCairnError(err, 'LIMIT_EXCEEDED') && err.details?.maxBytes !== undefined) {
            throw tooBig(from, to, maxBytes);
          }
          throw err;
        }
        out.push(...rows);
      }
      return out;
    } finally {
      if (engineStillReading) {
        const held = view;
        void engineStillReading.then(
          () => this.host.release(held),
          () => this.host.release(held),
        );
      } else {
        this.host.release(view);
      }
    }
  }

  /** Matching logs of the view's archive files over `nf`'s range, at most maxResults + 1 of them. */
  private async queryArchive(
    view: View,
    nf: NormalizedFilter,
    maxResults: number,
    signal: AbortSignal | undefined,
  ): Promise<Log[]> {
    const hit = view.files.filter((f) => f.entry.last >= nf.fromBlock && f.entry.first <= nf.toBlock);
    await this.host.checkBeforeRead(hit);
    // The caller has answered ABORTED already if the signal fired during the check.
    checkAbort(signal);
    return this.host.engine.queryLogs(
      hit.map((f) => f.logsPath),
      nf,
      maxResults + 1,
      signal,
    );
  }

  /** The result cap of one query: the store's, or the caller's if lower (a positive integer). */
  private resultCap(options: LogQueryOptions): number {
    const storeCap = this.host.guards.maxResults ?? DEFAULT_MAX_RESULTS;
    const asked = options.maxResults;
    if (asked === undefined) return storeCap;
    if (!Number.isSafeInteger(asked) || asked <= 0) {
      throw new CairnError('INVALID_ARGUMENT', `maxResults must be a positive integer, got ${asked}`);
    }
    return Math.min(asked, storeCap);
  }

  /**
   * Archive-only query (benchmarks and verification): logs of [from, to] from the closed files,
   * under the same result-count and byte guards as getLogs.
   */
  async getArchivedLogs(filter: LogFilter & { fromBlock: number; toBlock: number }): Promise<Log[]> {
    this.host.checkReadable();
    const maxResults = this.resultCap({});
    const maxBytes = this.host.guards.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
    const view = this.host.acquire();
    try {
      const { fromBlock: from, toBlock: to } = filter;
      for (const [name, v] of [
        ['fromBlock', from],
        ['toBlock', to],
      ] as const) {
        if (!Number.isSafeInteger(v) || v < 0) {
          throw new CairnError('INVALID_ARGUMENT', `${name} must be a block number, got ${v}`);
        }
      }
      if (from < view.floor) {
        throw new CairnError('PRUNED', `blocks below ${view.floor} are pruned (query starts at ${from})`, {
          details: { floor: view.floor, fromBlock: from },
        });
      }
      const rows = await this.queryArchive(view, normalizeFilter(filter, from, to), maxResults, undefined);
      if (rows.length > maxResults) throw tooMany(from, to, maxResults);
      let bytes = 0;
      for (const l of rows) {
        bytes += resultBytes(l);
        if (bytes > maxBytes) throw tooBig(from, to, maxBytes);
      }
      return rows;
    } finally {
      this.host.release(view);
    }
  }
}

function toReceipt(block: number, blockHash: Uint8Array, r: StoredReceipt): Receipt {
  return {
    txHash: r.txHash,
    txIndex: r.txIndex,
    blockNumber: block,
    blockHash,
    type: r.type,
    status: r.status,
    from: r.from,
    to: r.to,
    contractAddress: r.contractAddress,
    gasUsed: r.gasUsed,
    cumulativeGasUsed: r.cumulativeGasUsed,
    effectiveGasPrice: r.effectiveGasPrice,
    logsBloom: logsBloom(r.logs),
    logs: r.logs.map((l, i) => ({
      address: l.address,
      topics: [...l.topics],
      data: l.data,
      blockNumber: block,
      blockHash,
      txHash: r.txHash,
      txIndex: r.txIndex,
      logIndex: r.firstLogIndex + i,
      removed: false,
    })),
  };
}

/** Approximate in-memory size of a returned log, the unit of maxResultBytes (the hot tier counts alike). */
function resultBytes(l: Log): number {
  return 20 + 32 * l.topics.length + l.data.length + 128;
}

function tooBig(from: number, to: number, maxBytes: number): CairnError {
  return new CairnError(
    'LIMIT_EXCEEDED',
    `log query over blocks ${from}..${to} returns more than ${maxBytes} bytes; narrow the range or the filter`,
    { details: { maxBytes } },
  );
}

/**
 * `work`, or ABORTED as soon as `signal` aborts, whichever comes first: the caller gets its answer
 * promptly even from an engine that finishes the query before it notices the abort.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      try {
        checkAbort(signal);
      } catch (err) {
        reject(err);
      }
    };
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function tooMany(from: number, to: number, max: number): CairnError {
  return new CairnError(
    'LIMIT_EXCEEDED',
    `log query over blocks ${from}..${to} matches more than ${max} logs; narrow the range or the filter`,
    { details: { maxResults: max } },
  );
}
