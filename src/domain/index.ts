/** Public surface of consensus types, codecs, hashing/signing and fixtures' building blocks. */
export * from './codecs.ts';
export * from './committee.ts';
export * from './crypto.ts';
export * from './types.ts';
