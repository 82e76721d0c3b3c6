/** @module A free TCP port on loopback, for a process this program starts (a throwaway etcd, a test server). */
import { createServer } from 'node:net';

/** A port free on 127.0.0.1 right now (bound, then released); whoever binds it next may race another, and then fails. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}
