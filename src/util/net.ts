/**
 * @module TCP helpers: a free port on loopback, for a process this program starts (a throwaway etcd, a test server),
 * and whether an endpoint accepts connections at all.
 */
import { connect, createServer } from 'node:net';

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

/**
 * Opens and closes a TCP connection to `url`'s host and port (default 443, or 80 for http). Resolves with undefined
 * when it connects, or with the reason it did not (e.g. "connect ECONNREFUSED 127.0.0.1:1", "no answer within 5 s").
 */
export function tcpProblem(url: string, timeoutMs = 5000): Promise<string | undefined> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.resolve(`"${url}" is not a URL`);
  }
  const port = Number(u.port || (u.protocol === 'http:' ? 80 : 443));
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return new Promise((done) => {
    const socket = connect({ host, port });
    const finish = (problem?: string) => {
      clearTimeout(timer);
      socket.destroy();
      done(problem);
    };
    const timer = setTimeout(() => finish(`no answer from ${host}:${port} within ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
    socket.once('connect', () => finish());
    socket.once('error', (err) => finish(err.message));
  });
}
