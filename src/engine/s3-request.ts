/**
 * @module Plain S3 requests signed with AWS Signature Version 4, for the calls restic does not make (listing object
 * versions, copying a version). Written by hand because no S3 client library is among our dependencies, and the few
 * calls we need do not justify the size of one in the single binary. The keys never leave this module's headers.
 */
import { createHash, createHmac } from 'node:crypto';

export interface S3Keys {
  accessKey: string;
  secretKey: string;
}

export interface S3Endpoint {
  /** The endpoint, e.g. `https://s3.example.com:9000`. */
  url: string;
  keys: S3Keys;
  /** PEM CA bundle for an endpoint with a private CA. */
  caCert?: string;
  region?: string;
}

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
/** RFC 3986 encoding, as Signature Version 4 wants it. */
export const uriEncode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export interface S3RequestOptions {
  query?: Record<string, string>;
  body?: Uint8Array;
  /** Extra headers (e.g. x-amz-copy-source); all are signed. Names in lower case. */
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** One signed request; `path` is `/bucket/key` (not yet encoded). */
export async function s3Request(endpoint: S3Endpoint, method: string, path: string, opts: S3RequestOptions = {}): Promise<Response> {
  const url = new URL(endpoint.url);
  const base = url.pathname.replace(/\/+$/, '');
  const canonicalPath = `${base}${path.split('/').map(uriEncode).join('/')}`;
  const query = Object.entries(opts.query ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${uriEncode(k)}=${uriEncode(v)}`).join('&');
  const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const scope = `${amzDate.slice(0, 8)}/${endpoint.region ?? 'us-east-1'}/s3/aws4_request`;
  const payloadHash = sha256(opts.body ?? '');
  const headers: Record<string, string> = { ...opts.headers, host: url.host, 'x-amz-content-sha256': payloadHash, 'x-amz-date': amzDate };
  const signed = Object.keys(headers).sort();
  const canonicalRequest = [method, canonicalPath, query, ...signed.map((h) => `${h}:${headers[h]!.trim()}`), '', signed.join(';'), payloadHash].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const signingKey = scope.split('/').reduce<string | Buffer>((key, part) => hmac(key, part), `AWS4${endpoint.keys.secretKey}`);
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${endpoint.keys.accessKey}/${scope}, SignedHeaders=${signed.join(';')}, ` +
    `Signature=${hmac(signingKey, stringToSign).toString('hex')}`;
  return fetch(`${url.origin}${canonicalPath}${query ? `?${query}` : ''}`, {
    method, headers, body: opts.body, signal: opts.signal, ...(endpoint.caCert ? { tls: { ca: endpoint.caCert } } : {}),
  });
}

/** The text of an S3 XML element's first occurrence in `xml`, entities decoded. */
export function xmlText(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? decodeXml(m[1]!) : undefined;
}

export function decodeXml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}
