// Port forwarding over SPDY (portforward.k8s.io, as client-go's
// tools/portforward speaks it): for every local connection the client opens
// an error stream and a data stream, both with `port` and `requestID`
// headers. We answer each, and once a pair is complete connect to the port
// inside the pod and splice the data stream with the connection. A failure
// is written as text on the error stream. The session lasts until the
// client closes it.
import type { Duplex } from 'stream';
import type { SpdySession, SpdyStream } from './spdy/session';

export const PORTFORWARD_PROTOCOL = 'portforward.k8s.io';

/** A pair has this long to complete. */
const PAIR_TIMEOUT_MS = 30_000;

/** Connects to `port` in the pod; the Duplex is the connection. Rejects with the reason. */
export type PortDialer = (port: number) => Promise<Duplex>;

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

export function servePortForward(session: SpdySession, allowed: number[], dial: PortDialer): Promise<void> {
  const pairs = new Map<string, Pair>();
  const fail = (s: SpdyStream | undefined, message: string): void => {
    if (!s || s.destroyed) return;
    s.end(message);
  };
  session.on('stream', (s: SpdyStream) => {
    session.reply(s);
    s.on('error', () => undefined);
    const type = s.type;
    if (type === 'error') s.resume(); // we only write there
    const portText = s.headers.get('port') ?? '';
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    // Old clients send no requestID: kubelet then pairs by the stream ids (error first, data next).
    const id = s.headers.get('requestid') ?? String(type === 'error' ? s.id : s.id - 2);
    if (type !== 'data' && type !== 'error') {
      s.destroy();
      return;
    }
    let p = pairs.get(id);
    if (!p) {
      p = {
        timer: setTimeout(() => {
          pairs.delete(id);
          fail(p!.error, `timed out waiting for the other stream of request ${id}`);
          p!.data?.destroy();
        }, PAIR_TIMEOUT_MS),
      };
      pairs.set(id, p);
    }
    if (p[type]) {
      s.destroy(); // a duplicate
      return;
    }
    p[type] = s;
    if (!p.data || !p.error) return;
    clearTimeout(p.timer);
    pairs.delete(id);
    const { data, error } = p;
    if (!(port > 0 && port < 65536)) {
      fail(error, `invalid port ${JSON.stringify(portText)}`);
      data.destroy();
      return;
    }
    if (allowed.length > 0 && !allowed.includes(port)) {
      fail(error, `port ${port} is not among the ports of this request`);
      data.destroy();
      return;
    }
    void forward(port, data, error, dial);
  });
  return new Promise((resolve) => session.once('close', resolve));
}

async function forward(port: number, data: SpdyStream, error: SpdyStream, dial: PortDialer): Promise<void> {
  let conn: Duplex;
  try {
    conn = await dial(port);
  } catch (err) {
    error.end(`error forwarding port ${port} to pod: ${(err as Error).message}`);
    data.destroy();
    return;
  }
  conn.on('error', (err: Error) => {
    if (!error.destroyed && !error.writableEnded) error.end(`error forwarding port ${port}: ${err.message}`);
    data.destroy();
  });
  data.on('close', () => conn.destroy());
  // Both directions, half-closes passed on.
  data.pipe(conn);
  conn.pipe(data);
  conn.once('close', () => {
    if (!error.writableEnded && !error.destroyed) error.end();
  });
}
