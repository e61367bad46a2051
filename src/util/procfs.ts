// Processes as /proc shows them: a pid plus its start time names one process
// across pid reuse; a scan by program name finds our helpers (capsa-monitor,
// capsa-pause) after a restart, from their argv alone.
import { promises as fs } from 'fs';
import * as path from 'path';

/** A process as the kernel names it: pid plus start time (field 22 of /proc/<pid>/stat), against pid reuse. */
export interface ProcessIdentity {
  pid: number;
  startTime: number;
}

/** Field 22 of /proc/<pid>/stat; undefined when the process is gone or a zombie. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: fields start after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  return Number(rest[19]);
}

/** True when the process with this identity still runs (not a zombie, not a reused pid). */
export async function isAlive(p: ProcessIdentity | undefined): Promise<boolean> {
  if (!p || !Number.isInteger(p.pid) || p.pid <= 1) return false;
  return (await processStartTime(p.pid)) === p.startTime;
}

/** kill(2) after checking the start time; false when the process is gone. */
export async function killChecked(p: ProcessIdentity | undefined, sig: NodeJS.Signals | number): Promise<boolean> {
  if (!(await isAlive(p))) return false;
  try {
    process.kill(p!.pid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Every live process whose program (argv[0]'s base name) is `program`, with its argv. */
export async function processesNamed(program: string): Promise<{ pid: number; argv: string[] }[]> {
  const out: { pid: number; argv: string[] }[] = [];
  let entries: string[];
  try {
    entries = await fs.readdir('/proc');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue; // exited meanwhile
    }
    if (path.basename(argv[0] ?? '') === program) out.push({ pid: Number(entry), argv });
  }
  return out;
}
