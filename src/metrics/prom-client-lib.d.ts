// prom-client publishes types for its index only; src/metrics/prom.ts gives these their types from it.
declare module 'prom-client/lib/counter' { const v: unknown; export default v; }
declare module 'prom-client/lib/gauge' { const v: unknown; export default v; }
declare module 'prom-client/lib/histogram' { const v: unknown; export default v; }
declare module 'prom-client/lib/registry' { const v: unknown; export default v; }
declare module 'prom-client/lib/metrics/*' {
  const register: (registry: import('prom-client').Registry, config: object) => void;
  export default register;
}
