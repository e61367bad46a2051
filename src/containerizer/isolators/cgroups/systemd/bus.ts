// A connection to systemd's manager over D-Bus (@particle/dbus-next, pure
// JS): the system bus first, then systemd's private socket, which is
// peer-to-peer (no bus daemon: no Hello, no AddMatch; systemd sends its
// signals to every private connection). Every call has a deadline; a job
// (StartTransientUnit, StopUnit) is waited for through its JobRemoved signal
// and its result checked. A broken connection is dropped and the next call
// connects again (dbus-daemon or systemd restarting under us).
import type * as DbusLib from '@particle/dbus-next';
import { existsSync } from 'fs';
import {
  CapsaError,
  DeadlineExceededError,
  ErrorContext,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
} from '../../../../errors';
import type { Logger } from '../../../../log';
import type { UnitProperty } from './properties';

// Loaded on first use: a daemon on the cgroupfs driver never needs it (with
// its XML parser, a few MB of heap).
let lib: typeof DbusLib | undefined;
function dbusLib(): typeof DbusLib {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  lib ??= require('@particle/dbus-next') as typeof DbusLib;
  return lib;
}

export const SYSTEM_BUS = '/run/dbus/system_bus_socket';
export const PRIVATE_BUS = '/run/systemd/private';
const DEST = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
const JOB_REMOVED_MATCH = `type='signal',sender='${DEST}',interface='${MANAGER}',member='JobRemoved',path='${MANAGER_PATH}'`;

/** A D-Bus error reply: `name` is e.g. org.freedesktop.systemd1.NoSuchUnit. */
export class BusError extends InternalError {
  constructor(
    readonly busName: string,
    message: string,
    ctx: ErrorContext,
  ) {
    super(message, ctx);
  }
}

export function isBusError(err: unknown, name: string): boolean {
  return err instanceof BusError && err.busName === name;
}

export interface SystemdBusOptions {
  log: Logger;
  /** Per call (and per job wait) deadline. */
  timeoutMs?: number;
  /** Sockets tried in order; default: $DBUS_SYSTEM_BUS_ADDRESS's path or SYSTEM_BUS, then PRIVATE_BUS. */
  sockets?: string[];
}

interface Conn {
  bus: DbusLib.MessageBus;
  socket: string;
  closed: boolean;
  /** JobRemoved results that arrived before anyone waited (a signal can beat the reply's continuation). */
  done: Map<string, string>;
  waiters: Map<string, (result: string) => void>;
  /** Rejects every call in flight when the connection drops (the library would leave them pending). */
  lost: Promise<never>;
  lose: (err: Error) => void;
}

function systemBusPath(): string {
  const env = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  const m = env ? /^unix:path=([^,;]+)/.exec(env) : null;
  return m ? m[1] : SYSTEM_BUS;
}

export class SystemdBus {
  private conn?: Promise<Conn>;
  private readonly timeoutMs: number;
  private readonly sockets: string[];

  constructor(private readonly opts: SystemdBusOptions) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.sockets = opts.sockets ?? [systemBusPath(), PRIVATE_BUS];
  }

  /** The socket in use (after a successful call), for logs and RuntimeConfig. */
  socket?: string;

  private connection(): Promise<Conn> {
    if (!this.conn) {
      this.conn = this.connect();
      this.conn.catch(() => (this.conn = undefined));
    }
    return this.conn;
  }

  private async connect(): Promise<Conn> {
    const errors: string[] = [];
    for (const socket of this.sockets) {
      if (!existsSync(socket)) {
        errors.push(`${socket}: absent`);
        continue;
      }
      const c = this.open(socket);
      try {
        if (socket !== PRIVATE_BUS)
          await this.raw(c, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'AddMatch', 's', [
            JOB_REMOVED_MATCH,
          ]);
        // Subscribe: without it the manager sends no JobRemoved on the bus.
        await this.raw(c, DEST, MANAGER_PATH, MANAGER, 'Subscribe', '', []);
        this.socket = socket;
        this.opts.log.info({ socket }, 'systemd cgroup driver: connected to systemd');
        return c;
      } catch (err) {
        errors.push(`${socket}: ${(err as Error).message}`);
        c.closed = true;
        c.bus.disconnect();
      }
    }
    throw new FailedPreconditionError(`cannot reach systemd over D-Bus (${errors.join('; ')})`, {
      stage: 'systemd connect',
    });
  }

  private open(socket: string): Conn {
    const dbus = dbusLib();
    const bus = dbus.sessionBus({ busAddress: `unix:path=${socket}` });
    let lose!: (err: Error) => void;
    const lost = new Promise<never>((_, reject) => (lose = reject));
    lost.catch(() => undefined);
    const c: Conn = { bus, socket, closed: false, done: new Map(), waiters: new Map(), lost, lose };
    const drop = (why: string): void => {
      if (c.closed) return;
      c.closed = true;
      c.lose(new InternalError(`D-Bus connection to ${socket} lost: ${why}`, { stage: 'systemd' }));
      this.opts.log.warn({ socket, why }, 'systemd D-Bus connection lost; the next call reconnects');
      if (this.conn) void this.conn.then((cur) => cur === c && (this.conn = undefined)).catch(() => undefined);
      for (const w of c.waiters.values()) w('connection-lost');
      c.waiters.clear();
    };
    bus.on('error', (err: { type?: string; message?: string }) => {
      // The library says Hello on connect; a peer-to-peer socket has no bus to answer it.
      if (socket === PRIVATE_BUS && /UnknownObject|UnknownMethod/.test(err.type ?? '')) return;
      drop(err.message ?? String(err));
    });
    bus.on('message', (m: DbusLib.Message) => {
      if (m.type !== dbus.MessageType.SIGNAL || m.member !== 'JobRemoved' || m.interface !== MANAGER) return;
      const [, job, , result] = m.body as [number, string, string, string];
      const w = c.waiters.get(job);
      if (w) {
        c.waiters.delete(job);
        w(result);
      } else {
        c.done.set(job, result);
        // Results nobody waits for (another client's jobs): keep only recent ones.
        if (c.done.size > 512) c.done.delete(c.done.keys().next().value as string);
      }
    });
    const stream = (bus as unknown as { _connection?: { stream?: NodeJS.EventEmitter } })._connection?.stream;
    stream?.on('close', () => drop('socket closed'));
    return c;
  }

  private async raw(
    c: Conn,
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature: string,
    body: unknown[],
  ): Promise<unknown[]> {
    if (c.closed) throw new InternalError(`D-Bus connection to ${c.socket} is closed`, { stage: 'systemd' });
    const msg = new (dbusLib().Message)({ destination, path, interface: iface, member, signature, body });
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new DeadlineExceededError(`systemd ${member} did not answer in ${this.timeoutMs} ms`, { stage: 'systemd' }),
          ),
        this.timeoutMs,
      );
    });
    try {
      const reply = await Promise.race([c.bus.call(msg), deadline, c.lost]);
      return reply?.body ?? [];
    } catch (err) {
      if (err instanceof CapsaError) throw err;
      const e = err as { type?: string; text?: string; message?: string };
      const name = e.type ?? 'unknown';
      const text = e.text ?? e.message ?? String(err);
      if (name === 'org.freedesktop.DBus.Error.InvalidArgs' || name === 'org.freedesktop.DBus.Error.PropertyReadOnly') {
        throw new InvalidArgumentError('resources', `systemd refused ${member}: ${text}`, { stage: 'systemd' });
      }
      throw new BusError(name, `systemd ${member}: ${text} (${name})`, { stage: 'systemd' });
    } finally {
      clearTimeout(timer);
    }
  }

  /** A Manager method. */
  async call(member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    return this.raw(await this.connection(), DEST, MANAGER_PATH, MANAGER, member, signature, body);
  }

  /** A property of a unit object (org.freedesktop.DBus.Properties.Get). */
  async unitProperty(unitPath: string, iface: string, name: string): Promise<unknown> {
    const c = await this.connection();
    const [v] = await this.raw(c, DEST, unitPath, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [iface, name]);
    return (v as DbusLib.Variant).value;
  }

  /** Calls a job-returning Manager method and waits for the job's result ("done", "failed", …). */
  async job(member: string, signature: string, body: unknown[], unit: string): Promise<string> {
    const c = await this.connection();
    const [job] = (await this.raw(c, DEST, MANAGER_PATH, MANAGER, member, signature, body)) as [string];
    const early = c.done.get(job);
    if (early !== undefined) {
      c.done.delete(job);
      return early;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<string>((resolve, reject) => {
        c.waiters.set(job, resolve);
        timer = setTimeout(() => {
          c.waiters.delete(job);
          reject(
            new DeadlineExceededError(`systemd job ${member} ${unit} did not finish in ${this.timeoutMs} ms`, {
              stage: 'systemd',
              path: unit,
            }),
          );
        }, this.timeoutMs);
      });
    } finally {
      clearTimeout(timer);
    }
  }

  static variants(props: UnitProperty[]): [string, DbusLib.Variant][] {
    const { Variant } = dbusLib();
    return props.map((p) => [p.name, new Variant(p.signature, p.value)]);
  }

  close(): void {
    const c = this.conn;
    this.conn = undefined;
    void c
      ?.then((x) => {
        x.closed = true;
        x.bus.disconnect();
      })
      .catch(() => undefined);
  }
}
