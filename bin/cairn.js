#!/usr/bin/env node
// Entry point of the `cairn` command. Many logs (one per lane) fsync in parallel on the libuv pool,
// whose default of 4 threads would serialize them; the size must be set before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= '64';
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
