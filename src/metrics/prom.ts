/**
 * @module The parts of prom-client the controller uses, imported one file each. The package's index also loads its
 * Pushgateway (node:http and node:https) and every default collector: in compiled test programs the index added 11 MB
 * of resident memory, these files 2.5 MB (issue 14; shared/notes/stack.md).
 */
import type * as Prom from 'prom-client';
import CounterImpl from 'prom-client/lib/counter';
import GaugeImpl from 'prom-client/lib/gauge';
import HistogramImpl from 'prom-client/lib/histogram';
import processCpuTotal from 'prom-client/lib/metrics/processCpuTotal';
import processMaxFileDescriptors from 'prom-client/lib/metrics/processMaxFileDescriptors';
import processOpenFileDescriptors from 'prom-client/lib/metrics/processOpenFileDescriptors';
import processResidentMemory from 'prom-client/lib/metrics/osMemoryHeap';
import processStartTime from 'prom-client/lib/metrics/processStartTime';
import RegistryImpl from 'prom-client/lib/registry';

export type Registry = Prom.Registry;
export type Counter<T extends string> = Prom.Counter<T>;
export type Gauge<T extends string> = Prom.Gauge<T>;
export type Histogram<T extends string> = Prom.Histogram<T>;

export const Registry = RegistryImpl as typeof Prom.Registry;
export const Counter = CounterImpl as typeof Prom.Counter;
export const Gauge = GaugeImpl as typeof Prom.Gauge;
export const Histogram = HistogramImpl as typeof Prom.Histogram;

/**
 * The process_* metrics every Prometheus client exports (CPU, resident memory, start time, file descriptors). The
 * nodejs_* ones of prom-client's defaults are left out: under Bun there is no V8 heap or Node event loop for them to
 * describe.
 */
export function registerProcessMetrics(registry: Registry): void {
  for (const register of [processCpuTotal, processResidentMemory, processStartTime, processOpenFileDescriptors, processMaxFileDescriptors]) {
    register(registry, {});
  }
}
