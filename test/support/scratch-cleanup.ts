/**
 * Preloaded into every `bun test` process (bunfig.toml). The code under test keeps its temporary files under one
 * scratch root per process, removed by a process exit handler, which the test runner does not run: without this the
 * runner's own root was left empty in /tmp after each run.
 */
import { afterAll } from 'bun:test';
import { removeScratchRoot } from '../../src/util/scratch.ts';

afterAll(removeScratchRoot);
