/**
 * @module A kubeconfig user's impersonation (`as`, `as-uid`, `as-groups`, `as-user-extra`, kubectl's `--as` family) as
 * the API server's Impersonate-* headers. Bun's fetch joins repeated headers into one line ("a, b"), which the API
 * server would read as one group named "a, b": a kubeconfig asking for more than one group, or for more than one value
 * of an extra, is refused with what to change, never sent as something else.
 */

/** The impersonation fields of a kubeconfig user entry, as kubectl spells them. */
export interface ImpersonationEntry {
  as?: string;
  'as-uid'?: string;
  'as-groups'?: string[] | null;
  'as-user-extra'?: Record<string, string[] | null> | null;
}

/** Characters an HTTP header name may hold (RFC 7230 tchar), apart from `%`, which escapes the others. */
const HEADER_NAME_CHAR = /^[A-Za-z0-9!#$&'*+\-.^_`|~]$/;

/** An extra's key in a header name: bytes outside tchar (and `%`) percent-encoded, as client-go does. */
function escapeHeaderKey(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && HEADER_NAME_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The headers that make every request act as the impersonated user; throws for what cannot be sent as asked. */
export function impersonationHeaders(user: string, entry: ImpersonationEntry): Record<string, string> {
  const groups = entry['as-groups'] ?? [];
  const extra = Object.entries(entry['as-user-extra'] ?? {});
  const where = `user "${user}" of the kubeconfig`;
  if (!entry.as) {
    const other = entry['as-uid'] ? 'as-uid' : groups.length ? 'as-groups' : extra.length ? 'as-user-extra' : undefined;
    if (other) throw new Error(`${where} sets ${other} without as: the API server impersonates groups, a uid or extras only together with a user name`);
    return {};
  }
  if (groups.length > 1) {
    throw new Error(`${where} sets ${groups.length} as-groups (${groups.join(', ')}); kubedr can impersonate one group only ` +
      '(its HTTP client would join them into one header, read as one group): keep one, or bind the roles to the user in as');
  }
  const headers: Record<string, string> = { 'Impersonate-User': entry.as };
  if (entry['as-uid']) headers['Impersonate-Uid'] = entry['as-uid'];
  if (groups[0]) headers['Impersonate-Group'] = groups[0];
  for (const [key, values] of extra) {
    if ((values ?? []).length > 1) {
      throw new Error(`${where} sets ${values!.length} values of as-user-extra "${key}"; kubedr can send one value per key ` +
        '(its HTTP client would join them into one header, read as one value)');
    }
    if (values?.[0] !== undefined) headers[`Impersonate-Extra-${escapeHeaderKey(key)}`] = values[0];
  }
  return headers;
}
