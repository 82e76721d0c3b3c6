/**
 * @module Where restore pods run by default. Apart from group.ts because it needs the Toleration type: group.ts is
 * imported by schema.ts, from which types.ts derives every type, so group.ts must import nothing of types.ts.
 */
import type { Toleration } from './types.ts';

/**
 * The NoSchedule taints kubeadm puts on control-plane nodes: `node-role.kubernetes.io/control-plane` since Kubernetes
 * 1.24, `node-role.kubernetes.io/master` before. Restore pods tolerate both by default, so a restore also runs on a
 * cluster whose only nodes are control-plane nodes (the claim's volume may live on one).
 */
export const CONTROL_PLANE_TOLERATIONS: readonly Toleration[] = Object.freeze([
  { key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' },
  { key: 'node-role.kubernetes.io/master', operator: 'Exists', effect: 'NoSchedule' },
]);
