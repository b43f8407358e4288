/**
 * Logical reads over physical rows (spec-state-store §1.7), shared by the store and its read-only
 * views. "Not found" is `undefined`, never an exception; a stored value that does not decode is a
 * typed DECODE error (the Go reference panics here, W9).
 */
import {
  accountKey,
  classifyEvmKey,
  decodeAccount,
  decodeOpaque,
  decodeStorage,
  EVM_CODE,
  EVM_MODULE,
  EVM_STORAGE,
  evmPhysicalKey,
  type Family,
  isZero,
  miscPhysicalKey,
} from './encoding.ts';

/** Newest committed-or-pending encoded value of a physical row, undefined if absent. */
export type RowReader = (family: Family, physicalKey: Uint8Array) => Uint8Array | undefined;

export function readLogical(read: RowReader, module: string, key: Uint8Array): Uint8Array | undefined {
  if (module !== EVM_MODULE) {
    if (module === '' || module.includes('/')) return undefined;
    const row = read('misc', miscPhysicalKey(module, key));
    return row === undefined ? undefined : decodeOpaque('misc', row).body.slice();
  }
  if (key.length === 0) return undefined;
  switch (classifyEvmKey(key)) {
    case 'storage': {
      const row = read('storage', evmPhysicalKey(EVM_STORAGE, key.subarray(1)));
      if (row === undefined) return undefined;
      const { word } = decodeStorage(row);
      return isZero(word) ? undefined : word.slice();
    }
    case 'nonce': {
      const row = read('account', accountKey(key.subarray(1)));
      if (row === undefined) return undefined;
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, decodeAccount(row).nonce, false);
      return out;
    }
    case 'codeHash': {
      const row = read('account', accountKey(key.subarray(1)));
      if (row === undefined) return undefined;
      const { codeHash } = decodeAccount(row);
      return isZero(codeHash) ? undefined : codeHash;
    }
    case 'code': {
      const row = read('code', evmPhysicalKey(EVM_CODE, key.subarray(1)));
      if (row === undefined) return undefined;
      const { body } = decodeOpaque('code', row);
      return body.length === 0 ? undefined : body.slice();
    }
    case 'misc': {
      const row = read('misc', miscPhysicalKey(EVM_MODULE, key));
      return row === undefined ? undefined : decodeOpaque('misc', row).body.slice();
    }
  }
}

/** Height of the last write to an EVM storage, account or code row; undefined if absent. */
export function readHeightModified(read: RowReader, module: string, key: Uint8Array): number | undefined {
  if (module !== EVM_MODULE || key.length === 0) return undefined;
  const kind = classifyEvmKey(key);
  let row: Uint8Array | undefined;
  if (kind === 'storage') row = read('storage', evmPhysicalKey(EVM_STORAGE, key.subarray(1)));
  else if (kind === 'nonce' || kind === 'codeHash') row = read('account', accountKey(key.subarray(1)));
  else if (kind === 'code') row = read('code', evmPhysicalKey(EVM_CODE, key.subarray(1)));
  else return undefined;
  if (row === undefined) return undefined;
  return kind === 'storage'
    ? decodeStorage(row).height
    : kind === 'code'
      ? decodeOpaque('code', row).height
      : decodeAccount(row).height;
}
