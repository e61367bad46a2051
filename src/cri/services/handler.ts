// What a CRI handler is: a plain async function of its request and the
// call's context. The handlers (this directory) are written against these
// types; src/server/instrument.ts turns them into grpc-js methods.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../log';

export interface CallContext {
  /** Aborts when the client cancels or its deadline passes. */
  signal: AbortSignal;
  log: Logger;
  method: string;
  /** Streams only: resolves once the transport takes writes again after `send` returned false. */
  drained?: () => Promise<void>;
}

export type UnaryHandler<Req = unknown, Res = unknown> = (req: Req, ctx: CallContext) => Promise<Res>;
/**
 * Server-streaming handler: calls `send` per message, resolves when the
 * stream ends. `send` returns false when the transport's buffer is full (the
 * message is still queued): a handler that can outrun its reader waits for
 * `ctx.drained()`.
 */
export type StreamHandler<Req = unknown, Res = unknown> = (
  req: Req,
  send: (msg: Res) => boolean,
  ctx: CallContext,
) => Promise<void>;

/** Our handler for one method of a generated grpc-js service interface, typed by its messages. */
export type HandlerFor<M> =
  M extends grpc.handleServerStreamingCall<infer Req, infer Res>
    ? StreamHandler<Req, Res>
    : M extends grpc.handleUnaryCall<infer Req, infer Res>
      ? UnaryHandler<Req, Res>
      : never;

/** Handlers for some methods of service `S` (e.g. RuntimeServiceServer); the rest answer UNIMPLEMENTED. */
export type ServiceHandlers<S> = { [K in keyof S as string extends K ? never : K]?: HandlerFor<S[K]> };
