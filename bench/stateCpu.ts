/**
 * CPU accounting for the state bench's Cairn run, for loaded machines where wall time says little:
 * `UV_THREADPOOL_SIZE=64 node --import tsx bench/stateCpu.ts [blocks=40] [hashWorkers]`.
 * Prints one JSON line per run: keys/s, the writer (main) thread's CPU ms per block (Linux
 * /proc/self/task/<pid>/stat), the whole process's CPU ms per block, and block p50s. The writer
 * thread's CPU is the critical path on an idle machine; the process total bounds throughput when
 * every core is busy. Same workload and store options as `npm run bench -- state`.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { makeWorkload, runCairn } from './state.ts';
import { median } from './support/stats.ts';

const CLOCK_TICK_MS = 10;

function mainThreadCpuMs(): number {
  const raw = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS;
}

const blocks = Number(process.argv[2] ?? 40);
const workersArg = process.argv[3];
const hashWorkers = workersArg === undefined ? undefined : Number(workersArg);
mkdirSync('.bench-tmp', { recursive: true });
const workload = makeWorkload(blocks, 0x5eed5);
await runCairn(workload.slice(0, 4), hashWorkers); // warm-up, discarded
const cpu0 = process.cpuUsage();
const main0 = mainThreadCpuMs();
const r = await runCairn(workload, hashWorkers);
const cpu = process.cpuUsage(cpu0);
const mainMs = mainThreadCpuMs() - main0;
console.log(
  JSON.stringify({
    hashWorkers: hashWorkers ?? 'default',
    keysPerSec: Math.round(r.keysPerSec),
    mainThreadCpuMsPerBlock: Math.round((mainMs / blocks) * 10) / 10,
    processCpuMsPerBlock: Math.round(((cpu.user + cpu.system) / 1000 / blocks) * 10) / 10,
    blockP50Ms: Math.round(median(r.blockMs) * 10) / 10,
    applyP50Ms: Math.round(median(r.applyMs) * 10) / 10,
    commitP50Ms: Math.round(median(r.commitMs) * 10) / 10,
    root: r.root,
  }),
);
