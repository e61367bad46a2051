// Wraps every RPC of a service once: one log line per call (method, ids,
// duration, result code) and the single place where capsa's errors become
// gRPC status codes. Handlers stay plain async functions.
import * as grpc from '@grpc/grpc-js';
import { CapsaError, ErrorKind, asCapsaError, describeContext } from '../errors';
import type { Logger } from '../log';
import { traceCall, tracingEnabled } from '../observability/tracing';
import type { CallContext, ServiceHandlers, StreamHandler, UnaryHandler } from '../cri/services/handler';
import { inFlightCalls } from './in-flight';

export interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

const CODES: Record<ErrorKind, grpc.status> = {
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  NotFound: grpc.status.NOT_FOUND,
  AlreadyExists: grpc.status.ALREADY_EXISTS,
  FailedPrecondition: grpc.status.FAILED_PRECONDITION,
  DeadlineExceeded: grpc.status.DEADLINE_EXCEEDED,
  Unimplemented: grpc.status.UNIMPLEMENTED,
  Unavailable: grpc.status.UNAVAILABLE,
  ResourceExhausted: grpc.status.RESOURCE_EXHAUSTED,
  Internal: grpc.status.INTERNAL,
};

/**
 * Longest status message sent. The message travels in an HTTP/2 trailer: one
 * echoing a 1 MiB id or name overflows the client's header list limit, and
 * the client then never sees the answer (its call hangs to the deadline).
 */
export const MAX_DETAILS = 4096;

export function toStatus(err: CapsaError): grpc.StatusObject {
  // The context (stage, ids) helps the operator reading crictl's output; the
  // InvalidArgument message already starts with the field's name.
  let details = err.kind === 'InvalidArgument' ? err.message : err.message + describeContext(err.context);
  if (details.length > MAX_DETAILS) {
    details = `${details.slice(0, MAX_DETAILS)}… (${details.length - MAX_DETAILS} more characters cut)`;
  }
  return { code: CODES[err.kind], details, metadata: new grpc.Metadata() };
}

/** Calls polled by kubelet every few seconds: their failures (NotFound mostly) log at debug, not warn. */
export function isChatty(method: string): boolean {
  return /^(List|Status$|Version$|ImageFsInfo$|ImageStatus$|PodSandboxStatus$|ContainerStatus$|ContainerStats$|PodSandboxStats$)/.test(
    method,
  );
}

/** Ids worth logging from any CRI request, without knowing its type. */
export function requestIds(req: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof req !== 'object' || req === null) return out;
  const r = req as Record<string, unknown>;
  for (const k of ['podSandboxId', 'containerId']) {
    if (typeof r[k] === 'string' && r[k] !== '') out[k] = r[k] as string;
  }
  const image = r.image as { image?: unknown } | undefined;
  if (image && typeof image.image === 'string' && image.image !== '') out.image = image.image;
  const config = r.config as { metadata?: { name?: unknown } } | undefined;
  if (config?.metadata && typeof config.metadata.name === 'string') out.name = config.metadata.name;
  return out;
}

function methodName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

function unimplemented(method: string): CapsaError {
  return new CapsaError('Unimplemented', `${method} is not implemented by capsa yet`);
}

/** Told of every answered call (the metrics endpoint counts them). */
export type CallObserver = (method: string, code: string, seconds: number) => void;

/**
 * Builds the grpc-js implementation for `definition`: each method gets the
 * matching handler from `handlers` (keyed like the definition) or an
 * UNIMPLEMENTED answer naming it.
 */
export function instrumentService<S>(
  definition: Record<string, MethodDef>,
  handlers: ServiceHandlers<S>,
  log: Logger,
  observe?: CallObserver,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  // Messages arrive decoded by the definition's own deserializers: each handler gets its own type.
  const byName = handlers as Record<string, UnaryHandler | StreamHandler | undefined>;
  for (const [key, def] of Object.entries(definition)) {
    const method = methodName(def.path);
    const handler = byName[key];
    if (def.requestStream) {
      throw new Error(`client-streaming method ${def.path} is not supported by the instrumentation`);
    }
    impl[key] = def.responseStream
      ? streamingImpl(method, handler as StreamHandler | undefined, log, observe)
      : unaryImpl(method, handler as UnaryHandler | undefined, log, observe);
  }
  return impl;
}

function callContext(
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
  method: string,
  log: Logger,
): { ctx: CallContext; done: () => void } {
  const controller = new AbortController();
  const onCancel = (): void =>
    controller.abort(new CapsaError('DeadlineExceeded', `${method} cancelled by the client`));
  call.on('cancelled', onCancel);
  inFlightCalls.begin();
  return {
    ctx: { signal: controller.signal, log, method },
    done: () => {
      call.removeListener('cancelled', onCancel);
      inFlightCalls.end();
    },
  };
}

/** The handler inside the call's own trace (observability/tracing.ts); a plain call when tracing is off. */
function traced<T>(method: string, req: unknown, fn: () => Promise<T>): Promise<T> {
  if (!tracingEnabled()) return fn();
  const service = IMAGE_METHODS.has(method) ? 'runtime.v1.ImageService' : 'runtime.v1.RuntimeService';
  return traceCall(
    service,
    method,
    () => requestIds(req),
    fn,
    (e) => CODES[asCapsaError(e).kind],
  );
}

const IMAGE_METHODS = new Set(['PullImage', 'ImageStatus', 'ListImages', 'RemoveImage', 'ImageFsInfo']);

function logResult(
  log: Logger,
  observe: CallObserver | undefined,
  method: string,
  req: unknown,
  started: bigint,
  err?: CapsaError,
): void {
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const fields = { method, ...requestIds(req), ms: Math.round(ms * 100) / 100 };
  observe?.(method, err ? grpc.status[CODES[err.kind]] : 'OK', ms / 1000);
  if (!err) {
    // One line per call at debug; what a call changed is logged at info by transition().
    log.debug({ ...fields, code: 'OK' }, 'rpc');
    return;
  }
  const code = grpc.status[CODES[err.kind]];
  const level = err.kind === 'Internal' ? 'error' : err.kind === 'Unimplemented' || isChatty(method) ? 'debug' : 'warn';
  log[level]({ ...fields, code, err: err.message, ...err.context }, 'rpc failed');
}

function unaryImpl(
  method: string,
  handler: UnaryHandler | undefined,
  log: Logger,
  observe?: CallObserver,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const { ctx, done } = callContext(call, method, log);
    const run = handler
      ? traced(method, call.request, () => handler(call.request, ctx))
      : Promise.reject(unimplemented(method));
    run.then(
      (res) => {
        done();
        logResult(log, observe, method, call.request, started);
        callback(null, res);
      },
      (e: unknown) => {
        done();
        const err = asCapsaError(e);
        logResult(log, observe, method, call.request, started, err);
        callback(toStatus(err));
      },
    );
  };
}

function streamingImpl(
  method: string,
  handler: StreamHandler | undefined,
  log: Logger,
  observe?: CallObserver,
): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const started = process.hrtime.bigint();
    const { ctx, done } = callContext(call, method, log);
    const send = (msg: unknown): boolean => (call.cancelled ? false : call.write(msg));
    ctx.drained = () => new Promise<void>((resolve) => call.once('drain', () => resolve()));
    const run = handler
      ? traced(method, call.request, () => handler(call.request, send, ctx))
      : Promise.reject(unimplemented(method));
    run.then(
      () => {
        done();
        logResult(log, observe, method, call.request, started);
        call.end();
      },
      (e: unknown) => {
        done();
        const err = asCapsaError(e);
        logResult(log, observe, method, call.request, started, err);
        // grpc-js turns an 'error' event on a server stream into the call's status.
        call.emit('error', toStatus(err));
      },
    );
  };
}
