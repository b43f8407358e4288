/**
 * Apply: routes a block's change sets into physical rows (module → family, EVM key kinds, account
 * read-modify-write), checks every limit before anything changes, and folds the rows into a copy of
 * the working LtHash (old values mixed out, new ones in; on worker threads for large blocks). Only
 * when all of that succeeded do the rows join the pending block and the copy become the working
 * state, so a refused block changes nothing (A20). Nothing here writes a file: `commitBlock.ts`
 * makes the pending block durable.
 */
import type { OrderedKv } from '../kv/orderedKv.ts';
import { CairnError, describe } from '../lib/errors.ts';
import { loadBlake3Module } from './blake3Wasm.ts';
import {
  type Account,
  accountIsEmpty,
  accountKey,
  classifyEvmKey,
  decodeAccount,
  EVM_CODE,
  EVM_MODULE,
  EVM_STORAGE,
  encodeAccount,
  encodeCode,
  encodeMisc,
  encodeStorage,
  evmPhysicalKey,
  FAMILY_INDEX,
  type Family,
  isZero,
  miscPhysicalKey,
  zeroAccount,
} from './encoding.ts';
import { MAX_EXPORT_FIELD_BYTES } from './exportFormat.ts';
import { type HashItem, HashPool, PARALLEL_MIN_ELEMENTS } from './hashPool.ts';
import { loadLtKernel } from './ltKernel.ts';
import { blockRecordRowBytes, kvKey, type RowChange } from './records.ts';
import { WAL_MAX_RECORD_BYTES } from './stateWal.ts';
import { caller, engineReadError, idOf, type StoreCore } from './storeCore.ts';
import type { NamedChangeSet } from './storeTypes.ts';

/** Keys per engine `getMany` when a block reads its rows' old values (bounds one engine request). */
const OLD_VALUE_READ_CHUNK = 8192;

/** One engine `getMany` per `OLD_VALUE_READ_CHUNK` keys, all issued at once (in key order). */
function getManyInChunks(kv: OrderedKv, keys: readonly Uint8Array[]): Promise<(Uint8Array | undefined)[]>[] {
  const reads: Promise<(Uint8Array | undefined)[]>[] = [];
  for (let at = 0; at < keys.length; at += OLD_VALUE_READ_CHUNK) {
    reads.push(kv.getMany(keys.slice(at, at + OLD_VALUE_READ_CHUNK)));
  }
  return reads;
}

function describeType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Adds a block's change sets at `height` (the next one) to the pending block, all or nothing. */
export async function applyBlock(
  core: StoreCore,
  height: number,
  changeSets: readonly (NamedChangeSet | null | undefined)[],
): Promise<void> {
  core.checkWritable();
  const expected = core.committed.height + 1;
  if (height !== expected) {
    throw new CairnError('OUT_OF_ORDER', `apply at height ${height}: the next block is ${expected}`, {
      details: { height, expected },
    });
  }
  const overlay = new Map<string, RowChange & { kk: Uint8Array }>();
  /** Rows read before this block touched them (accounts, read-modify-write): their old values. */
  const readBefore = new Map<string, Uint8Array | undefined>();
  // Accounts are read-modify-write: their committed rows are fetched in one engine `getMany`
  // that runs while the other rows are routed, instead of one synchronous read per account.
  const prefetch = prefetchAccounts(core, changeSets);
  const current = (kk: Uint8Array): Uint8Array | undefined => {
    const id = idOf(kk);
    const o = overlay.get(id);
    if (o) return o.value ?? undefined;
    if (readBefore.has(id)) return readBefore.get(id);
    const v = core.readKk(id, kk);
    readBefore.set(id, v);
    return v;
  };
  /** Account writes, applied in their order after the prefetch (other families never share a row). */
  const accountWrites: { kind: 'nonce' | 'codeHash'; key: Uint8Array; value: Uint8Array; del: boolean }[] =
    [];
  const put = (family: Family, key: Uint8Array, value: Uint8Array | null) => {
    // Every row must fit the export format, or an export of this state could never be imported.
    const longest = Math.max(key.length, value?.length ?? 0);
    if (longest > MAX_EXPORT_FIELD_BYTES) {
      throw new CairnError(
        'RECORD_TOO_LARGE',
        `a ${family} row of block ${height} has a ${longest}-byte key or stored value, above the ` +
          `${MAX_EXPORT_FIELD_BYTES}-byte row limit; nothing was applied`,
        { details: { height, family, bytes: longest, limit: MAX_EXPORT_FIELD_BYTES } },
      );
    }
    const kk = kvKey(family, key);
    overlay.set(idOf(kk), { family, key, value, kk });
  };
  for (const cs of changeSets) {
    if (!cs?.pairs || cs.pairs.length === 0) continue;
    if (typeof cs.name !== 'string' || cs.name === '' || cs.name.includes('/')) {
      throw caller(`changeset module name ${JSON.stringify(cs.name)} is empty or contains "/"`);
    }
    for (const pair of cs.pairs) {
      const key = pair?.key;
      if (!(key instanceof Uint8Array)) {
        throw caller(`changeset ${JSON.stringify(cs.name)}: a key is ${describeType(key)}, not a Uint8Array`);
      }
      if (pair.value !== undefined && pair.value !== null && !(pair.value instanceof Uint8Array)) {
        throw caller(
          `changeset ${JSON.stringify(cs.name)}: a value is ${describeType(pair.value)}, not a Uint8Array or null`,
        );
      }
      const del = pair.delete === true;
      const value = pair.value ?? new Uint8Array(0);
      if (cs.name !== EVM_MODULE) {
        put('misc', miscPhysicalKey(cs.name, key), del ? null : encodeMisc(height, value));
        continue;
      }
      if (!key || key.length === 0) throw caller('empty key in an evm changeset');
      const kind = classifyEvmKey(key);
      if (kind === 'storage') {
        if (!del && value.length !== 32) throw caller(`storage value must be 32 bytes, got ${value.length}`);
        const zero = del || isZero(value);
        put(
          'storage',
          evmPhysicalKey(EVM_STORAGE, key.subarray(1)),
          zero ? null : encodeStorage(height, value),
        );
      } else if (kind === 'code') {
        const empty = del || value.length === 0;
        put('code', evmPhysicalKey(EVM_CODE, key.subarray(1)), empty ? null : encodeCode(height, value));
      } else if (kind === 'misc') {
        put('misc', miscPhysicalKey(EVM_MODULE, key), del ? null : encodeMisc(height, value));
      } else {
        accountWrites.push({ kind, key, value, del });
      }
    }
  }
  // Hash on copies; swap in only after everything succeeded (atomic apply, A20).
  const roots = core.working.roots.map((r) => r.clone());
  const stats = core.working.stats.map((s) => ({ ...s }));
  const pool =
    overlay.size + accountWrites.length >= PARALLEL_MIN_ELEMENTS ? await startedHashPool(core) : undefined;
  // The rows routed so far (every family but accounts): their old values are read from the engine
  // while their new values are mixed in, and meanwhile the accounts' prefetch completes.
  const routed = overlay.size;
  const routedOlds = oldValues(core, overlay, readBefore, (news) => {
    if (pool && news.length >= PARALLEL_MIN_ELEMENTS) return pool.apply(news, roots);
    core.hasher.mixItems(roots, news);
    return undefined;
  });
  try {
    for (const [id, v] of await prefetch) readBefore.set(id, v);
    for (const { kind, key, value, del } of accountWrites) {
      const phys = accountKey(key.subarray(1));
      const kk = kvKey('account', phys);
      const old = current(kk);
      const acct: Account = old ? decodeAccount(old) : zeroAccount();
      if (kind === 'nonce') {
        if (del) acct.nonce = 0n;
        else {
          if (value.length !== 8) throw caller(`nonce value must be 8 bytes, got ${value.length}`);
          acct.nonce = new DataView(value.buffer, value.byteOffset, 8).getBigUint64(0, false);
        }
      } else {
        if (del) acct.codeHash = new Uint8Array(32);
        else {
          if (value.length !== 32) throw caller(`code hash value must be 32 bytes, got ${value.length}`);
          acct.codeHash = value.slice();
        }
      }
      put('account', phys, accountIsEmpty(acct) ? null : encodeAccount(height, acct));
    }
  } catch (err) {
    // Nothing is left running behind a refused block (the reads and the hash pool finish first).
    await routedOlds.catch(() => undefined);
    throw err;
  }
  const olds = await routedOlds;
  // Refuse a block whose WAL record would exceed the limit now, before the pending block grows:
  // refused at commit, it would be stuck pending with no way forward.
  let recordBytes = core.pendingRecordBytes;
  for (const [id, row] of overlay) {
    const was = core.pending.get(id);
    if (was) recordBytes -= blockRecordRowBytes(was);
    recordBytes += blockRecordRowBytes(row);
  }
  if (recordBytes > WAL_MAX_RECORD_BYTES) {
    throw new CairnError(
      'RECORD_TOO_LARGE',
      `block ${height} would encode to ${recordBytes} bytes, above the state WAL limit of ${WAL_MAX_RECORD_BYTES}; ` +
        'these changes were not applied',
      { details: { height, bytes: recordBytes, limit: WAL_MAX_RECORD_BYTES } },
    );
  }
  // Mix-outs of every row with an old value, and the account rows' mix-ins (an account's value
  // before the block is the one `current` read: from the pending block or the engine).
  const rest: HashItem[] = [];
  let i = 0;
  for (const [id, row] of overlay) {
    const f = FAMILY_INDEX[row.family];
    const old = i < routed ? olds[i] : readBefore.get(id);
    const hasNew = row.value !== null && row.value.length > 0;
    const hasOld = old !== undefined && old.length > 0;
    if (hasOld) {
      stats[f]!.keys--;
      stats[f]!.bytes -= row.key.length + old.length;
    }
    if (hasNew) {
      stats[f]!.keys++;
      stats[f]!.bytes += row.key.length + row.value!.length;
    }
    if (i >= routed && (hasOld || hasNew)) {
      rest.push({
        family: f,
        key: row.key,
        old: hasOld ? old : undefined,
        neu: hasNew ? row.value! : undefined,
      });
    } else if (hasOld) {
      rest.push({ family: f, key: row.key, old });
    }
    i++;
  }
  if (pool && rest.length >= PARALLEL_MIN_ELEMENTS) {
    await pool.apply(rest, roots);
  } else {
    core.hasher.mixItems(roots, rest);
  }
  // The overlay's rows go in as they are (their engine key `kk` saves re-encoding at commit).
  for (const [id, row] of overlay) core.pending.set(id, row);
  core.working = { roots, stats };
  core.pendingHeight = height;
  core.pendingRecordBytes = recordBytes;
}

/**
 * The committed rows of the accounts `changeSets` writes that neither the pending block nor the
 * read-only overlay holds, read in one engine `getMany` (by id). Malformed input is skipped here:
 * the apply loop refuses it. Never rejects unhandled: the caller awaits it after routing, and if
 * routing throws first, the read's outcome is dropped.
 */
function prefetchAccounts(
  core: StoreCore,
  changeSets: readonly (NamedChangeSet | null | undefined)[],
): Promise<[string, Uint8Array | undefined][]> {
  const ids: string[] = [];
  const kks: Uint8Array[] = [];
  const seen = new Set<string>();
  for (const cs of changeSets) {
    if (cs?.name !== EVM_MODULE || !Array.isArray(cs.pairs)) continue;
    for (const pair of cs.pairs) {
      const key = pair?.key;
      if (!(key instanceof Uint8Array)) continue;
      const kind = classifyEvmKey(key);
      if (kind !== 'nonce' && kind !== 'codeHash') continue;
      const kk = kvKey('account', accountKey(key.subarray(1)));
      const id = idOf(kk);
      if (
        seen.has(id) ||
        core.pending.has(id) ||
        core.inflight?.has(id) ||
        (core.overlay.size > 0 && core.overlay.has(id))
      )
        continue;
      seen.add(id);
      ids.push(id);
      kks.push(kk);
    }
  }
  if (kks.length === 0) return Promise.resolve([]);
  const kv = core.kv;
  if (!kv) return Promise.reject(new CairnError('CLOSED', 'state store is closed'));
  const all = Promise.all(getManyInChunks(kv, kks)).then(
    (chunks) => {
      const out: [string, Uint8Array | undefined][] = [];
      let i = 0;
      for (const chunk of chunks) for (const v of chunk) out.push([ids[i++]!, v]);
      return out;
    },
    (err: unknown) => {
      throw engineReadError(err);
    },
  );
  all.catch(() => undefined);
  return all;
}

/**
 * The values the block's rows had before it, in `overlay` order: from the pending block, from the
 * reads the block already made, else from the engine in one `getMany` per chunk. `whileReading`
 * gets the rows' mix-ins (new values) and runs while the engine works on its own threads.
 */
async function oldValues(
  core: StoreCore,
  overlay: ReadonlyMap<string, RowChange & { kk: Uint8Array }>,
  readBefore: ReadonlyMap<string, Uint8Array | undefined>,
  whileReading: (news: HashItem[]) => Promise<void> | undefined,
): Promise<(Uint8Array | undefined)[]> {
  const kv = core.kv;
  if (!kv) throw new CairnError('CLOSED', 'state store is closed');
  const olds: (Uint8Array | undefined)[] = new Array(overlay.size);
  const missing: number[] = [];
  const missingKeys: Uint8Array[] = [];
  const news: HashItem[] = [];
  let i = 0;
  for (const [id, row] of overlay) {
    const p = core.pending.get(id) ?? core.inflight?.get(id);
    if (p) olds[i] = p.value ?? undefined;
    else if (readBefore.has(id)) olds[i] = readBefore.get(id);
    else if (core.overlay.size > 0 && core.overlay.has(id))
      olds[i] = core.overlay.get(id)!.value ?? undefined;
    else {
      missing.push(i);
      missingKeys.push(row.kk);
    }
    if (row.value !== null && row.value.length > 0) {
      news.push({ family: FAMILY_INDEX[row.family], key: row.key, neu: row.value });
    }
    i++;
  }
  const reads = getManyInChunks(kv, missingKeys);
  // Settle every read before returning, even if hashing throws, so none is left running.
  const settled = Promise.allSettled(reads);
  let hashing: unknown;
  try {
    await whileReading(news);
  } catch (err) {
    hashing = err;
  }
  const results = await settled;
  if (hashing !== undefined) throw hashing;
  let j = 0;
  for (const r of results) {
    if (r.status === 'rejected') {
      throw engineReadError(r.reason);
    }
    for (const v of r.value) olds[missing[j++]!] = v;
  }
  return olds;
}

/** The LtHash worker pool, started on first use; undefined when the store hashes on one thread. */
async function startedHashPool(core: StoreCore): Promise<HashPool | undefined> {
  if (core.pool || core.hashWorkers === 0 || core.poolUnavailable) return core.pool;
  const onFallback = (reason: string) =>
    core.warn('an LtHash worker failed; hashing continues on the writer thread', { error: reason });
  try {
    const [module, kernel] = await Promise.all([loadBlake3Module(), loadLtKernel()]);
    core.pool = HashPool.create(core.hashWorkers, core.hasher, module, onFallback, kernel);
  } catch (err) {
    // No worker threads here (a restricted runtime): hash on the writer thread, as with 0.
    core.poolUnavailable = true;
    onFallback(describe(err));
  }
  return core.pool;
}
