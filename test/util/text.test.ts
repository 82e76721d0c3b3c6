import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { plainText } from '../../src/util/text.ts';

test('terminal escapes and control characters go; the words stay', () => {
  // What restic 0.14 wrote to a pipe when it was stopped mid-upload (the backupErrorMessage).
  expect(plainText('\u001b[2Ksignal interrupt received, cleaning up\n')).toBe('signal interrupt received, cleaning up\n');
  expect(plainText('\u001b[1;31mFatal:\u001b[0m wrong password')).toBe('Fatal: wrong password');
  expect(plainText('\u001b]0;restic\u0007title set')).toBe('title set');
  expect(plainText('bell\u0007 and\u0000 nul, tab\tkept')).toBe('bell and nul, tab\tkept');
});

test('a carriage return starts a new line, as a terminal would have drawn it', () => {
  expect(plainText('[0:01] 10%\r[0:02] 20%\r\nFatal: gone')).toBe('[0:01] 10%\n[0:02] 20%\nFatal: gone');
});

// What restic 0.18 (Debian 13's, built by Go 1.24 with -trimpath) wrote when it got SIGQUIT during `backup --stdin`:
// every goroutine's stack, then the registers (536 lines).
const sigquit = readFileSync(join(import.meta.dir, '../fixtures/restic-0.18-sigquit.txt'), 'utf8');

// A nil-pointer panic as restic 0.18 prints it: the cause, the signal, the panicking goroutine's frames.
const panicking = `repository 2f5a4c1e opened (version 2, compression level auto)
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x8f0c21]

goroutine 1 gp=0xc000002380 m=0 mp=0x18134c0 [running]:
github.com/restic/restic/internal/repository/index.(*MasterIndex).Lookup(0x0, {0x2?, {0x5c, 0x1f, 0x3a}})
	github.com/restic/restic/internal/repository/index/master_index.go:52 +0x21
github.com/restic/restic/internal/repository.(*Repository).LoadBlob(0xc0001e2000, {0x1275e88, 0xc00012c0a0}, 0x1, {0x5c, 0x1f}, {0x0, 0x0, 0x0})
	github.com/restic/restic/internal/repository/repository.go:282 +0x9c
main.runCat({0x1275e88, 0xc00012c0a0}, {{0x0, 0x0}, {0x0, 0x0}, 0x0}, {0xc00013e1a0, 0x2, 0x2})
	github.com/restic/restic/cmd/restic/cmd_cat.go:187 +0x5f4
main.main()
	github.com/restic/restic/cmd/restic/main.go:179 +0x45
created by github.com/restic/restic/internal/ui.(*Backup).Run in goroutine 1
	github.com/restic/restic/internal/ui/backup.go:60 +0x8d
`;

test('a Go crash dump keeps its cause and loses its goroutines, frames and registers', () => {
  expect(plainText(sigquit)).toBe('SIGQUIT: quit');
  expect(plainText(panicking)).toBe('repository 2f5a4c1e opened (version 2, compression level auto)\n' +
    'panic: runtime error: invalid memory address or nil pointer dereference');
});

test('a recovered panic that panics again says its first cause once', () => {
  const text = `panic: close of closed channel [recovered]
	panic: close of closed channel

goroutine 7 [running]:
panic({0xdb3b40?, 0x12691d0?})
	runtime/panic.go:785 +0x132
main.main()
	cmd/restic/main.go:160 +0x45
`;
  expect(plainText(text)).toBe('panic: close of closed channel');
});

test('fatal errors with a runtime stack, and frames outside a crash, are dropped too', () => {
  const text = `fatal error: concurrent map writes

runtime stack:
runtime.throw({0xe1f4c2?, 0x0?})
	/usr/lib/go-1.24/src/runtime/panic.go:1101 +0x48 fp=0x7ffd4c1e8f40 sp=0x7ffd4c1e8f10 pc=0x47ab68
...additional frames elided...

goroutine 18 [chan receive, 2 minutes]:
main.main()
	/build/restic-0.18.0/cmd/restic/main.go:160 +0x45
`;
  expect(plainText(text)).toBe('fatal error: concurrent map writes');
  expect(plainText('main.main()\n\t/build/x/main.go:1 +0x1\nFatal: gone')).toBe('Fatal: gone');
});

test('text that merely looks like Go stays', () => {
  const words = 'Fatal: unable to open config file: Stat: The specified key does not exist.\nIs there a repository at the following location?\n' +
    'goroutines: 4\nrax 0x1\npanicked? no';
  expect(plainText(words)).toBe(words);
});

test('an etcd 3.5 fatal log line keeps its message and error, not its stacktrace', () => {
  // etcd 3.5.16 told to listen on an address this machine does not have (its last log line).
  const line = '{"level":"fatal","ts":"2026-12-05T06:13:36.070985Z","caller":"etcdmain/etcd.go:204","msg":"discovery failed",' +
    '"error":"listen tcp 192.0.2.1:2379: bind: cannot assign requested address","stacktrace":"go.etcd.io/etcd/server/etcdmain.startEtcdOrProxyV2\\n' +
    '\\tgo.etcd.io/etcd/server/etcdmain/etcd.go:204\\ngo.etcd.io/etcd/server/etcdmain.Main\\n\\tgo.etcd.io/etcd/server/etcdmain/main.go:40\\n' +
    'main.main\\n\\tgo.etcd.io/etcd/server/main.go:31\\nruntime.main\\n\\truntime/proc.go:283"}';
  expect(plainText(line)).toBe('{"level":"fatal","ts":"2026-12-05T06:13:36.070985Z","caller":"etcdmain/etcd.go:204","msg":"discovery failed",' +
    '"error":"listen tcp 192.0.2.1:2379: bind: cannot assign requested address"}');
});
