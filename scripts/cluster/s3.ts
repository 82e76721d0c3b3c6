/**
 * @module The test node's S3 endpoint, https on port 9000 of the node with a certificate of the node's CA. By default
 * Ceph's RADOS Gateway (Debian's `radosgw`) on a single-node Ceph of one monitor and one OSD: a real S3 server that
 * checks signatures and has users, versioning, object lock and bucket policies. Its state is under `<node>/rgw`; its
 * daemons run in the node's network namespace (monitor on 127.0.0.1:3300, the OSD on 6800-6803).
 * KUBEDR_S3=s3rver when the node starts runs s3rver instead: a fake that ignores the secret key (the benches use it, so
 * their numbers stay comparable with those published). See shared/notes/rgw/README.md for the measurements.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { run } from './procs.ts';

export type S3Server = 'rgw' | 's3rver';
export const S3_PORT = 9000;

/**
 * The keys of the node's S3 user, which tests and scripts use. The access key is s3rver's only account (it refuses
 * any other), so the same keys work on both servers; RGW also checks the secret key, s3rver does not.
 */
export const S3_ACCESS_KEY = 'S3RVER';
export const S3_SECRET_KEY = 'kubedr-testenv-secret-checked-by-rgw-0001';
/** The RGW user that owns S3_ACCESS_KEY. */
const NODE_USER = 'kubedr-testenv';

export interface S3Keys {
  accessKey: string;
  secretKey: string;
}

/** The server a node starts with: `KUBEDR_S3` (rgw or s3rver), RGW by default. */
export function s3ServerFromEnv(): S3Server {
  const v = process.env.KUBEDR_S3 || 'rgw';
  if (v !== 'rgw' && v !== 's3rver') throw new Error(`KUBEDR_S3=${v}: expected rgw or s3rver`);
  return v;
}

/**
 * Writes the server's configuration and data directories under the node's `dir` and returns the processes to start,
 * in order; the last one answers S3 and is named `s3`.
 */
export function prepareS3(server: S3Server, dir: string, pki: string): [name: 'ceph-mon' | 'ceph-osd' | 's3', cmd: string[]][] {
  const [cert, key] = [join(pki, 's3.crt'), join(pki, 's3.key')];
  if (server === 's3rver') {
    mkdirSync(join(dir, 's3-data'), { recursive: true });
    // The legacy provider: s3rver encrypts its list continuation tokens with DES, which Node 20's OpenSSL 3 lacks by
    // default, so any listing of more than 1,000 keys (a repository's snapshots/ at scale) failed with a 500.
    const s3rver = join(resolve(import.meta.dir, '../..'), 'node_modules/s3rver/bin/s3rver.js');
    return [['s3', ['node', '--openssl-legacy-provider', s3rver, '-d', join(dir, 's3-data'), '-a', '0.0.0.0', '-p', String(S3_PORT),
      '--silent', '--key', key, '--cert', cert]]];
  }
  const c = cephDir(dir);
  for (const d of ['data/mon.a', 'data/osd.0', 'data/crash', 'run', 'log']) mkdirSync(join(c, d), { recursive: true });
  const conf = join(c, 'ceph.conf');
  const fsid = randomUUID();
  writeFileSync(conf, cephConf(c, fsid, cert, key));
  const env = { ...process.env, CEPH_CONF: conf };
  const keyring = join(c, 'keyring');
  CEPH_KEYS.forEach(([name, caps], i) => run('ceph-authtool', [keyring, ...(i === 0 ? ['--create-keyring'] : []), '--gen-key', '-n', name,
    ...Object.entries(caps).flatMap(([service, cap]) => ['--cap', service, cap])], { env }));
  // The OSD is in the monitor's first map, so nothing needs the monitor running before the daemons start (`ceph osd
  // new` would): monitor, OSD and gateway start together, and each waits for what it needs.
  run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${MON_PORT}]`, join(c, 'monmap')], { env });
  run('osdmaptool', ['--createsimple', '1', '--clobber', join(c, 'osdmap')], { env });
  run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', join(c, 'monmap'), '--osdmap', join(c, 'osdmap'), '--keyring', keyring], { env });
  run('ceph-osd', ['--mkfs', '-i', '0', '--osd-uuid', randomUUID(), '--no-mon-config'], { env });
  return [
    ['ceph-mon', ['ceph-mon', '-f', '-i', 'a', '--conf', conf]],
    ['ceph-osd', ['ceph-osd', '-f', '-i', '0', '--conf', conf]],
    ['s3', ['radosgw', '-f', '-n', 'client.rgw.gw', '--conf', conf]],
  ];
}

/** Once the server answers: RGW gets the user of S3_ACCESS_KEY (s3rver has it built in). */
export function provisionS3(server: S3Server, dir: string): void {
  if (server === 'rgw') addS3User(dir, NODE_USER, { accessKey: S3_ACCESS_KEY, secretKey: S3_SECRET_KEY });
}

/** Keys of a user, made up now: unique to the caller, so finding them anywhere in output proves a leak. */
export function newS3Keys(prefix: string): S3Keys {
  return {
    accessKey: `${prefix.toUpperCase().replace(/[^A-Z0-9]/g, '')}${randomBytes(8).toString('hex').toUpperCase()}`.slice(0, 20),
    secretKey: `${prefix}-sk-${randomUUID()}`,
  };
}

/**
 * Creates (or replaces) an RGW user `uid` whose only S3 keys are `keys` (several: a key rotation's old and new). The user's record goes through stdin
 * (`radosgw-admin metadata put`), because `user create --secret-key` would put the secret on a command line.
 * Runs inside the node's network namespace, where the monitor is.
 */
export function addS3User(dir: string, uid: string, keys: S3Keys | S3Keys[]): void {
  const all = Array.isArray(keys) ? keys : [keys];
  const quota = { enabled: false, check_on_raw: false, max_size: -1, max_size_kb: 0, max_objects: -1 };
  const user = {
    user_id: uid, display_name: uid, email: '', suspended: 0, max_buckets: 1000, subusers: [],
    keys: all.map((k) => ({ user: uid, access_key: k.accessKey, secret_key: k.secretKey })), swift_keys: [], caps: [],
    op_mask: 'read, write, delete', default_placement: '', default_storage_class: '', placement_tags: [],
    bucket_quota: quota, user_quota: quota, temp_url_keys: [], type: 'rgw', mfa_ids: [], attrs: [],
  };
  radosgwAdmin(dir, ['metadata', 'put', `user:${uid}`], JSON.stringify({ key: `user:${uid}`, data: user }));
}

/** Removes an RGW user and its keys (its buckets stay): requests signed with them are refused from then on. */
export function removeS3User(dir: string, uid: string): void {
  radosgwAdmin(dir, ['user', 'rm', `--uid=${uid}`]);
}

const MON_PORT = 3300;
const cephDir = (dir: string) => join(dir, 'rgw');

function radosgwAdmin(dir: string, args: string[], input?: string): string {
  return run('radosgw-admin', args, { input, env: { ...process.env, CEPH_CONF: join(cephDir(dir), 'ceph.conf') } });
}

/** Each daemon's and the admin's key, with its capabilities. */
const CEPH_KEYS: [name: string, caps: Record<string, string>][] = [
  ['mon.', { mon: 'allow *' }],
  ['client.admin', { mon: 'allow *', osd: 'allow *', mgr: 'allow *' }],
  ['osd.0', { mon: 'allow profile osd', mgr: 'allow profile osd', osd: 'allow *' }],
  ['client.rgw.gw', { mon: 'allow rw', osd: 'allow rwx' }],
];

/**
 * One of everything, on loopback of the node's namespace, every path under `c`. The OSD keeps its data in BlueStore on
 * a sparse file with a 64 MB cache: memstore (the notes' choice) holds everything in memory, which grew the OSD to
 * 430 MB for 200 MB stored, against 77 MB here, at the same backup speed. The gateway creates its pools itself;
 * with the monitor's proposal interval at 0.1 s (1 s by default) that takes about a second, faster than creating them
 * beforehand with the `ceph` command. The disk-space checks are off: a test machine's disk may be fuller than a real
 * one's, and below 5% free the monitor would stop.
 */
function cephConf(c: string, fsid: string, cert: string, key: string): string {
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${MON_PORT}]
public network = 127.0.0.0/8
ms bind msgr1 = false
keyring = ${c}/keyring
run dir = ${c}/run
log file = ${c}/log/$name.log
mon cluster log file = default=${c}/log/$cluster.$channel.log cluster=${c}/log/$cluster.log
crash dir = ${c}/data/crash
mon data = ${c}/data/mon.$id
osd data = ${c}/data/osd.$id
rgw data = ${c}/data/rgw.$id
osd objectstore = bluestore
bluestore block size = 21474836480
bluestore cache autotune = false
bluestore cache size = 67108864
bluestore fsck on mkfs = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.1
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false

[client.rgw.gw]
rgw frontends = beast ssl_endpoint=0.0.0.0:${S3_PORT} ssl_certificate=${cert} ssl_private_key=${key}
`;
}
