/** @module Which successful backups to expire: keep the newest N per policy; never the newest one. Pure. */

export interface RetainedBackup {
  /** Record name. */
  name: string;
  snapshotId: string;
  /** When the backup finished (RFC 3339); ties are broken by name for a stable order. */
  time: string;
}

/** The backups beyond the newest `keep` (at least 1), oldest last-kept first out. */
export function selectExpired<T extends RetainedBackup>(backups: readonly T[], keep: number): T[] {
  const n = Math.max(1, Math.floor(keep));
  const newestFirst = [...backups].sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.name.localeCompare(a.name));
  return newestFirst.slice(n);
}
