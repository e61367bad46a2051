// The daemon logger: no key twice in a line (rebound child keys, call fields
// over bindings, pino's own keys), the text line format, and which format
// `auto` picks.
import { Writable } from 'stream';
import type { DestinationStream } from 'pino';
import { createDaemonLogger, formatTextLine, resolveFormat } from '../../src/observability/logging';
import { duplicateKeys, topLevelKeys } from '../helpers/log-lines';

function capture(): { lines: string[]; dest: DestinationStream } {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      cb();
    },
  });
  return { lines, dest };
}

test('topLevelKeys sees duplicates and skips nested and quoted keys', () => {
  expect(topLevelKeys('{"a":1,"b":{"a":2,"c":[{"d":3}]},"e":"x\\",\\"f\\":1","a":4}')).toEqual(['a', 'b', 'e', 'a']);
});

test('no key twice: a rebound child key, a call field over a binding, pino keys in a call', () => {
  const { lines, dest } = capture();
  const log = createDaemonLogger({ level: 'debug', format: 'json', destination: dest });
  const containerizer = log.child({ component: 'containerizer' });
  const recovery = containerizer.child({ component: 'recovery', sandboxId: 'abc' });
  recovery.info({ ready: 1 }, 'sandbox recovery done');
  recovery.warn({ sandboxId: 'abc', stage: 'recover' }, 'same id again');
  recovery.warn({ sandboxId: 'def' }, 'another id');
  recovery.info({ level: 'x', time: 1, msg: 'm' }, 'pino keys');
  containerizer.info('parent unchanged');
  recovery.info('binding back after a clash');
  expect(lines).toHaveLength(6);
  expect(duplicateKeys(lines)).toEqual([]);
  const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(recs[0]).toMatchObject({ level: 30, component: 'recovery', sandboxId: 'abc', ready: 1 });
  expect(recs[0]).not.toHaveProperty('pid');
  expect(recs[1]).toMatchObject({ component: 'recovery', sandboxId: 'abc', stage: 'recover' });
  expect(recs[2]).toMatchObject({ component: 'recovery', sandboxId: 'def', msg: 'another id' });
  expect(recs[3]).toMatchObject({ level: 30, msg: 'pino keys', _level: 'x', _time: 1, _msg: 'm' });
  expect(recs[4]).toMatchObject({ component: 'containerizer', msg: 'parent unchanged' });
  expect(recs[5]).toMatchObject({ component: 'recovery', sandboxId: 'abc' });
  expect(typeof recs[0].time).toBe('string');
});

test('text: one line per event, component first, key=value, quoting, colour on a terminal', () => {
  const { lines, dest } = capture();
  const log = createDaemonLogger({ level: 'info', format: 'text', destination: dest });
  const cri = log.child({ component: 'cri' });
  cri.info({ method: 'RunPodSandbox', ms: 12.5, code: 'OK' }, 'rpc');
  cri.debug('not at info');
  cri.error({ err: 'cannot mount "x": EPERM', ids: ['a', 'b'], n: null }, 'rpc failed');
  log.warn({ component: 'metrics' }, 'call field over nothing');
  expect(lines).toHaveLength(3);
  expect(lines[0]).toMatch(
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}cri: rpc method=RunPodSandbox ms=12.5 code=OK$/,
  );
  expect(lines[1]).toMatch(/ ERROR cri: rpc failed err="cannot mount \\"x\\": EPERM" ids=\["a","b"\] n=null$/);
  expect(lines[2]).toMatch(/ WARN {2}metrics: call field over nothing$/);
  expect(formatTextLine('{"level":50,"time":"t","msg":"m"}', true)).toBe('t \x1b[31mERROR\x1b[0m m\n');
  // Not JSON (cannot happen from pino, but never lose a line).
  expect(formatTextLine('plain')).toBe('plain\n');
});

test('auto is text on a terminal and JSON elsewhere; forced formats stay', () => {
  expect(resolveFormat('auto', true)).toBe('text');
  expect(resolveFormat('auto', false)).toBe('json');
  expect(resolveFormat('json', true)).toBe('json');
  expect(resolveFormat('text', false)).toBe('text');
  const { lines, dest } = capture();
  createDaemonLogger({ level: 'info', format: 'auto', destination: dest, isTTY: true }).info({ a: 1 }, 'hello');
  expect(lines[0].endsWith(' \x1b[32mINFO \x1b[0m hello a=1')).toBe(true);
});
