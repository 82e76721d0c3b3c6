/** @module The HTTP endpoint: /metrics for Prometheus, /healthz for liveness, /readyz for readiness (caches synced). */
import type { Registry } from './prom.ts';
import type { Runnable } from '../runtime/runnable.ts';
import type { Logger } from '../util/log.ts';

export interface HttpServerOptions {
  host: string;
  port: number;
  registry: Registry;
  ready: () => boolean;
  log: Logger;
}

export class HttpServer implements Runnable {
  readonly name = 'http';
  private server?: ReturnType<typeof Bun.serve>;

  constructor(private readonly opts: HttpServerOptions) {}

  /** The bound port (differs from the configured one when that is 0). */
  get port(): number | undefined {
    return this.server?.port;
  }

  async start(signal: AbortSignal): Promise<void> {
    const { registry, ready } = this.opts;
    this.server = Bun.serve({
      hostname: this.opts.host,
      port: this.opts.port,
      fetch: async (req) => {
        const path = new URL(req.url).pathname;
        if (path === '/metrics') {
          return new Response(await registry.metrics(), { headers: { 'Content-Type': registry.contentType } });
        }
        if (path === '/healthz') return new Response('ok\n');
        if (path === '/readyz') return ready() ? new Response('ok\n') : new Response('caches not synced\n', { status: 503 });
        return new Response('not found\n', { status: 404 });
      },
    });
    this.opts.log.info('serving metrics and health', { address: `${this.opts.host}:${this.server.port}` });
    await new Promise<void>((ok) => signal.addEventListener('abort', () => ok(), { once: true }));
    await this.server.stop();
  }
}
