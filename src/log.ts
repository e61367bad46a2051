import pino, { Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/**
 * The daemon's root logger. The daemon gives each component a child with its
 * `component`; a part inside a component binds `part`, never `component`
 * again (pino would print the key twice).
 */
export function createLogger(level: LogLevel = 'info', destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

export type { Logger };
