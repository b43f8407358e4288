/**
 * The state store's data model: key families, routing of logical (module, key) writes to physical
 * rows, and the byte-exact value encodings. Every byte here is hashed into the LtHash root, so these
 * encodings are consensus: they follow spec-state-store §1.3-1.5 exactly (golden vectors in tests).
 */
import { CairnError } from '../lib/errors.ts';

export type Family = 'account' | 'code' | 'storage' | 'misc';
export const FAMILIES: readonly Family[] = ['account', 'code', 'storage', 'misc'];
/** Index of a family in per-family arrays (roots, stats) and its on-disk tag byte minus one. */
export const FAMILY_INDEX: Readonly<Record<Family, number>> = { account: 0, code: 1, storage: 2, misc: 3 };

export const EVM_MODULE = 'evm';
/** Logical x/evm key type bytes. */
export const EVM_STORAGE = 0x03;
export const EVM_CODE = 0x07;
export const EVM_CODE_HASH = 0x08;
export const EVM_NONCE = 0x0a;
const ADDRESS_BYTES = 20;
const SLOT_BYTES = 32;
/** Current (and only) value serialization version. */
export const VALUE_FORMAT = 0;
/** Version byte + 8-byte big-endian height. */
export const VALUE_HEADER_BYTES = 9;
export const STORAGE_VALUE_BYTES = VALUE_HEADER_BYTES + 32;
export const ACCOUNT_COMPACT_BYTES = VALUE_HEADER_BYTES + 32 + 8;
export const ACCOUNT_FULL_BYTES = ACCOUNT_COMPACT_BYTES + 32;

const EVM_PREFIX = new TextEncoder().encode('evm/');
const textEncoder = new TextEncoder();
const SLASH = 0x2f;

export type EvmKind = 'storage' | 'nonce' | 'codeHash' | 'code' | 'misc';

/** Classifies a raw x/evm key (spec §1.3): the type byte plus the exact total length. */
export function classifyEvmKey(key: Uint8Array): EvmKind {
  const t = key[0];
  if (t === EVM_STORAGE && key.length === 1 + ADDRESS_BYTES + SLOT_BYTES) return 'storage';
  if (key.length === 1 + ADDRESS_BYTES) {
    if (t === EVM_NONCE) return 'nonce';
    if (t === EVM_CODE_HASH) return 'codeHash';
    if (t === EVM_CODE) return 'code';
  }
  return 'misc';
}

/** `"evm/" ‖ typeByte ‖ stripped`: storage, account (always labelled 0x0a) and code rows. */
export function evmPhysicalKey(typeByte: number, stripped: Uint8Array): Uint8Array {
  const out = new Uint8Array(EVM_PREFIX.length + 1 + stripped.length);
  out.set(EVM_PREFIX, 0);
  out[EVM_PREFIX.length] = typeByte;
  out.set(stripped, EVM_PREFIX.length + 1);
  return out;
}

/** `module ‖ "/" ‖ key`: misc rows (EVM misc keys use module "evm"). */
export function miscPhysicalKey(module: string, key: Uint8Array): Uint8Array {
  const m = textEncoder.encode(module);
  const out = new Uint8Array(m.length + 1 + key.length);
  out.set(m, 0);
  out[m.length] = SLASH;
  out.set(key, m.length + 1);
  return out;
}

/** Physical key of the account row of `addr` (20 bytes). */
export function accountKey(addr: Uint8Array): Uint8Array {
  return evmPhysicalKey(EVM_NONCE, addr);
}

/** Module name of a physical key (before the first '/'), or undefined if it has none or it is empty. */
export function moduleOf(physicalKey: Uint8Array): string | undefined {
  const slash = physicalKey.indexOf(SLASH);
  if (slash <= 0) return undefined;
  return Buffer.from(physicalKey.buffer, physicalKey.byteOffset, slash).toString('utf8');
}

/**
 * Family of a physical key, or undefined for a key no write can produce (no module, or an "evm/"
 * key that looks optimized but has a shape routing never emits, e.g. a 0x08 code-hash row).
 * Used to route imported rows and to check scans.
 */
export function familyOfPhysicalKey(key: Uint8Array): Family | undefined {
  const slash = key.indexOf(SLASH);
  if (slash <= 0) return undefined;
  const isEvm = slash === 3 && key[0] === 0x65 && key[1] === 0x76 && key[2] === 0x6d;
  if (!isEvm) return 'misc';
  const rest = key.subarray(4);
  if (rest.length === 0) return undefined;
  const kind = classifyEvmKey(rest);
  if (kind === 'storage') return 'storage';
  if (kind === 'nonce') return 'account';
  if (kind === 'code') return 'code';
  if (kind === 'codeHash') return undefined;
  return 'misc';
}

// ---- values ----------------------------------------------------------------------------------

/** Version byte and big-endian u64 height, written bytewise (no DataView or BigInt per row). */
function header(out: Uint8Array, height: number): void {
  out[0] = VALUE_FORMAT;
  const hi = Math.floor(height / 0x1_0000_0000);
  const lo = height >>> 0;
  out[1] = hi >>> 24;
  out[2] = hi >>> 16;
  out[3] = hi >>> 8;
  out[4] = hi;
  out[5] = lo >>> 24;
  out[6] = lo >>> 16;
  out[7] = lo >>> 8;
  out[8] = lo;
}

export function encodeStorage(height: number, word: Uint8Array): Uint8Array {
  const out = new Uint8Array(STORAGE_VALUE_BYTES);
  header(out, height);
  out.set(word, VALUE_HEADER_BYTES);
  return out;
}

export function encodeCode(height: number, bytecode: Uint8Array): Uint8Array {
  const out = new Uint8Array(VALUE_HEADER_BYTES + bytecode.length);
  header(out, height);
  out.set(bytecode, VALUE_HEADER_BYTES);
  return out;
}

export function encodeMisc(height: number, value: Uint8Array): Uint8Array {
  return encodeCode(height, value);
}

export interface Account {
  balance: Uint8Array; // 32 bytes
  nonce: bigint; // u64
  codeHash: Uint8Array; // 32 bytes
}

export function zeroAccount(): Account {
  return { balance: new Uint8Array(32), nonce: 0n, codeHash: new Uint8Array(32) };
}

export function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

export function accountIsEmpty(a: Account): boolean {
  return a.nonce === 0n && isZero(a.balance) && isZero(a.codeHash);
}

/** Compact (49 bytes) when the code hash is zero, full (81 bytes) otherwise. */
export function encodeAccount(height: number, a: Account): Uint8Array {
  const compact = isZero(a.codeHash);
  const out = new Uint8Array(compact ? ACCOUNT_COMPACT_BYTES : ACCOUNT_FULL_BYTES);
  header(out, height);
  out.set(a.balance, VALUE_HEADER_BYTES);
  new DataView(out.buffer).setBigUint64(VALUE_HEADER_BYTES + 32, a.nonce, false);
  if (!compact) out.set(a.codeHash, ACCOUNT_COMPACT_BYTES);
  return out;
}

function decodeError(what: string, bytes: Uint8Array, reason: string): CairnError {
  return new CairnError('DECODE', `${what} value of ${bytes.length} bytes: ${reason}`, {
    details: { length: bytes.length },
  });
}

function checkHeader(what: string, bytes: Uint8Array): number {
  if (bytes.length < VALUE_HEADER_BYTES) throw decodeError(what, bytes, 'shorter than the 9-byte header');
  if (bytes[0] !== VALUE_FORMAT) throw decodeError(what, bytes, `unknown serialization version ${bytes[0]}`);
  const h = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(1, false);
  if (h > BigInt(Number.MAX_SAFE_INTEGER)) throw decodeError(what, bytes, `height ${h} out of range`);
  return Number(h);
}

/** Height stamped in any encoded value (checks the header only). */
export function valueHeight(family: Family, bytes: Uint8Array): number {
  return checkHeader(family, bytes);
}

export function decodeAccount(bytes: Uint8Array): Account & { height: number } {
  const height = checkHeader('account', bytes);
  if (bytes.length !== ACCOUNT_COMPACT_BYTES && bytes.length !== ACCOUNT_FULL_BYTES) {
    throw decodeError('account', bytes, `expected ${ACCOUNT_COMPACT_BYTES} or ${ACCOUNT_FULL_BYTES} bytes`);
  }
  const balance = bytes.slice(VALUE_HEADER_BYTES, VALUE_HEADER_BYTES + 32);
  const nonce = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(
    VALUE_HEADER_BYTES + 32,
    false,
  );
  const codeHash =
    bytes.length === ACCOUNT_FULL_BYTES ? bytes.slice(ACCOUNT_COMPACT_BYTES) : new Uint8Array(32);
  return { height, balance, nonce, codeHash };
}

export function decodeStorage(bytes: Uint8Array): { height: number; word: Uint8Array } {
  const height = checkHeader('storage', bytes);
  if (bytes.length !== STORAGE_VALUE_BYTES)
    throw decodeError('storage', bytes, `expected ${STORAGE_VALUE_BYTES}`);
  return { height, word: bytes.subarray(VALUE_HEADER_BYTES) };
}

/** Code and misc: header + opaque bytes. */
export function decodeOpaque(
  family: 'code' | 'misc',
  bytes: Uint8Array,
): { height: number; body: Uint8Array } {
  const height = checkHeader(family, bytes);
  return { height, body: bytes.subarray(VALUE_HEADER_BYTES) };
}

/**
 * Full structural check of a stored value for its family (import and verify use it): a row that
 * decodes but could never have been written (a zero storage word, empty code, an all-zero account,
 * a full account with a zero code hash) is rejected too, because it would hash differently from
 * anything a commit produces.
 */
export function checkStoredValue(family: Family, bytes: Uint8Array): number {
  switch (family) {
    case 'account': {
      const a = decodeAccount(bytes);
      if (accountIsEmpty(a)) throw decodeError('account', bytes, 'all-zero account rows are never stored');
      if (bytes.length === ACCOUNT_FULL_BYTES && isZero(a.codeHash)) {
        throw decodeError('account', bytes, 'a zero code hash must use the compact form');
      }
      return a.height;
    }
    case 'storage': {
      const s = decodeStorage(bytes);
      if (isZero(s.word)) throw decodeError('storage', bytes, 'zero storage words are never stored');
      return s.height;
    }
    case 'code': {
      const c = decodeOpaque('code', bytes);
      if (c.body.length === 0) throw decodeError('code', bytes, 'empty code is never stored');
      return c.height;
    }
    case 'misc':
      return decodeOpaque('misc', bytes).height;
  }
}
