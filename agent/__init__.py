"""The data plane of sidecar-hotupgrade: one agent per sidecar container hands Envoy over by hot restart.

Two agents (slots `a` and `b`) share a run dir, a network namespace and /dev/shm, nothing else. They
coordinate only through the run dir (flock on LOCK_FILE, atomically replaced STATE_FILE) and Envoy's own
hot-restart protocol. Layout:
- pure core (no I/O, no clock, no environment): `contract`, `state`, `decisions`, `startplan`, `config`,
  `listeners` (listener parity across a take-over);
- shells: `supervisor` orchestrates; `launch` carries out a start (with `preflight`, `envoy`, `admin`,
  `hotrestart`, `bootstrap`: the static, xds and custom modes' templates) and ends a child that misses
  its take-over deadline; `handover` follows the Envoy we replaced and stands in for it; `drain` is
  our SIGTERM drain; `records` writes the state file (`rundir`); `view`, `status` and `metrics` are what
  /healthz/ready, /status and /metrics show; `logs` the event lines;
- `cli` is `hotupgrade-agent run | wait | status`. docs/contract.md is all it shares with webhook/.
"""
