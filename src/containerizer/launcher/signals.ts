// Signal names → numbers (Linux, x86_64 and arm64 alike for these), for an
// image's StopSignal ("SIGUSR1", "USR1", "10", "SIGRTMIN+3") and CRI's enum
// names ("SIGTERM", "SIGRTMINPLUS3", "SIGRTMAXMINUS2"). Pure.
export const SIGKILL = 9;
export const SIGTERM = 15;

const NUMBERS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  IOT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  POLL: 29,
  PWR: 30,
  SYS: 31,
};

/** glibc's SIGRTMIN/SIGRTMAX as seen by programs (the kernel's 32 and 33 are taken by NPTL). */
const RTMIN = 34;
const RTMAX = 64;

/** A signal number from a name or number; undefined when it is not one. */
export function signalNumber(name: string): number | undefined {
  const s = name.trim().toUpperCase();
  if (/^\d{1,2}$/.test(s)) {
    const n = Number(s);
    return n >= 1 && n <= RTMAX ? n : undefined;
  }
  const bare = s.startsWith('SIG') ? s.slice(3) : s;
  if (bare in NUMBERS) return NUMBERS[bare];
  const rt = /^RT(MIN|MAX)(?:(PLUS|MINUS|\+|-)(\d{1,2}))?$/.exec(bare);
  if (!rt) return undefined;
  const base = rt[1] === 'MIN' ? RTMIN : RTMAX;
  const off = rt[3] === undefined ? 0 : Number(rt[3]);
  const n = rt[2] === 'PLUS' || rt[2] === '+' ? base + off : base - off;
  return n >= RTMIN && n <= RTMAX ? n : undefined;
}
