"""The upgrade controller: watches injected pods and swaps their sidecar images hitlessly.

`steps.next_step` decides. The pure core (no I/O, no clock, no environment): `steps`, `observed`,
`imageref`, `kubelet`, `prepull`, `restarts`, `record`, `actions`, `events`, `patches`, `policy`, `keys`,
`errors`, `result`. What operators see of it: docs/upgrades.md. The thin I/O shell
around it: `reconciler` (the only place errors become retries), `kube` (the API server), `agents`,
`watcher`, `workqueue`, `leader`, `metrics` and `main`. Nothing here touches the admission code paths.
"""
