// OpenTelemetry tracing of CRI calls: one trace per call, with spans for the
// stages it went through (the state machine's stages, a pull and each of its
// layers, each CNI plugin, the monitor's launch). Exported over OTLP/HTTP
// (JSON) to `tracing_endpoint`; off when that is empty, the default.
//
// Off means free: the SDK is not even loaded, `tracer` stays undefined, and
// every hook below is one property test before calling straight through
// (measured by test/integration/tracing.test.ts, which prints the numbers).
// On, the context of the current span follows the call's async work through
// AsyncLocalStorage, so stage code needs no span passed around.
import type { Attributes, Context, Span, Tracer } from '@opentelemetry/api';
import type { Logger } from '../log';

interface Active {
  tracer: Tracer;
  api: typeof import('@opentelemetry/api');
}

let active: Active | undefined;

export interface Tracing {
  /** Exports what is left and stops (daemon shutdown). */
  close(): Promise<void>;
}

const NOOP: Tracing = { close: async () => undefined };

/** True when spans are being recorded. */
export function tracingEnabled(): boolean {
  return active !== undefined;
}

/**
 * Starts exporting to `endpoint` (an OTLP/HTTP traces URL, e.g.
 * http://collector:4318/v1/traces); '' leaves tracing off. One per process.
 */
export function startTracing(opts: { endpoint: string; version: string; log: Logger }): Tracing {
  if (opts.endpoint === '') return NOOP;
  // Loaded here so a daemon without tracing never loads the SDK.
  /* eslint-disable @typescript-eslint/no-require-imports */
  const api = require('@opentelemetry/api') as typeof import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } =
    require('@opentelemetry/context-async-hooks') as typeof import('@opentelemetry/context-async-hooks');
  const { TracerProvider, BatchSpanProcessor } =
    require('@opentelemetry/sdk-trace') as typeof import('@opentelemetry/sdk-trace');
  const { OTLPTraceExporter } =
    require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  /* eslint-enable @typescript-eslint/no-require-imports */

  const contextManager = new AsyncLocalStorageContextManager().enable();
  api.context.setGlobalContextManager(contextManager);
  const exporter = new OTLPTraceExporter({ url: opts.endpoint, timeoutMillis: 10_000 });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'capsa',
      'service.version': opts.version,
      'process.pid': process.pid,
    }),
    // A batch every second: traces show up soon; the exporter never blocks a call.
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 1000, maxQueueSize: 8192 })],
  });
  active = { tracer: provider.getTracer('capsa', opts.version), api };
  opts.log.info({ endpoint: opts.endpoint }, 'tracing: exporting spans over OTLP/HTTP');
  return {
    close: async () => {
      active = undefined;
      try {
        await provider.shutdown();
      } catch (err) {
        opts.log.warn({ endpoint: opts.endpoint, err: (err as Error).message }, 'tracing: last spans not exported');
      }
      api.context.disable();
    },
  };
}

function endWith(span: Span, err: unknown): void {
  const a = active;
  if (a) {
    const e = err instanceof Error ? err : new Error(String(err));
    span.recordException(e);
    span.setStatus({ code: a.api.SpanStatusCode.ERROR, message: e.message });
  }
  span.end();
}

/**
 * Runs `fn` inside a span named `name` (child of the current one). Off: just
 * `fn()`. `annotate` may add attributes from the result before the span ends.
 */
export function withSpan<T>(
  name: string,
  attrs: Attributes | undefined,
  fn: () => Promise<T>,
  annotate?: (span: Span, result: T) => void,
): Promise<T> {
  const a = active;
  if (!a) return fn();
  return a.tracer.startActiveSpan(name, { attributes: attrs }, (span) =>
    fn().then(
      (res) => {
        annotate?.(span, res);
        span.end();
        return res;
      },
      (err: unknown) => {
        endWith(span, err);
        throw err;
      },
    ),
  );
}

/** An event on the current span (a state change); off, nothing. */
export function spanEvent(name: string, attrs: Attributes): void {
  const a = active;
  if (!a) return;
  a.api.trace.getActiveSpan()?.addEvent(name, attrs);
}

/** A span started now and ended by the caller, child of `parent` (default: the current span). */
export interface OpenSpan {
  span: Span;
  /** Its context, to start children under it. */
  context: Context;
  end(err?: unknown): void;
}

export function openSpan(name: string, attrs?: Attributes, parent?: Context): OpenSpan | undefined {
  const a = active;
  if (!a) return undefined;
  const base = parent ?? a.api.context.active();
  const span = a.tracer.startSpan(name, { attributes: attrs }, base);
  let ended = false;
  return {
    span,
    context: a.api.trace.setSpan(base, span),
    end(err?: unknown) {
      if (ended) return;
      ended = true;
      if (err === undefined) span.end();
      else endWith(span, err);
    },
  };
}

/** The current context (to parent spans opened later from callbacks); undefined when off. */
export function currentContext(): Context | undefined {
  return active?.api.context.active();
}

/**
 * A CRI call's span: the root of its own trace (kind SERVER, named like
 * gRPC's `runtime.v1.RuntimeService/RunPodSandbox`), current while `fn`
 * runs. Off: just `fn()`.
 */
export function traceCall<T>(
  service: string,
  method: string,
  attrs: () => Attributes,
  fn: () => Promise<T>,
  statusOf: (err: unknown) => number,
): Promise<T> {
  const a = active;
  if (!a) return fn();
  const span = a.tracer.startSpan(
    `${service}/${method}`,
    {
      kind: a.api.SpanKind.SERVER,
      attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method, ...attrs() },
    },
    a.api.ROOT_CONTEXT,
  );
  return a.api.context.with(a.api.trace.setSpan(a.api.ROOT_CONTEXT, span), fn).then(
    (res) => {
      span.setAttribute('rpc.grpc.status_code', 0);
      span.end();
      return res;
    },
    (err: unknown) => {
      span.setAttribute('rpc.grpc.status_code', statusOf(err));
      endWith(span, err);
      throw err;
    },
  );
}
