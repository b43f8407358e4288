import { CairnError } from './errors.ts';

/** Throws INVALID_ARGUMENT unless `value` is a non-negative safe integer. */
export function assertIndex(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new CairnError(
      'INVALID_ARGUMENT',
      `${name} must be a non-negative safe integer, got ${String(value)}`,
    );
  }
}

export function assertPositiveInt(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new CairnError('INVALID_ARGUMENT', `${name} must be a positive safe integer, got ${String(value)}`);
  }
}

/** Internal invariant: a failure here is a bug in Cairn, not bad input. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
