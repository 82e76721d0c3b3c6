/**
 * @module A TCP port that accepts connections and never answers: an S3 address for tests whose restic is a stand-in.
 * The engine checks that an S3 endpoint accepts connections before it runs restic (restic >= 0.17 would retry a dead
 * one for 15 minutes); the stand-in never talks to it.
 */
import { createServer, type Socket } from 'node:net';

export interface SilentEndpoint {
  port: number;
  close(): void;
}

export async function silentEndpoint(): Promise<SilentEndpoint> {
  const sockets: Socket[] = [];
  const server = createServer((s) => sockets.push(s));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  server.unref();
  return {
    port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
