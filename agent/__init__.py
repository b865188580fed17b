"""The data plane of sidecar-hotupgrade: one agent per sidecar container hands Envoy over by hot restart.

Two agents (slots `a` and `b`) share a run dir, a network namespace and /dev/shm, nothing else. They
coordinate only through the run dir (flock on LOCK_FILE, atomically replaced STATE_FILE) and Envoy's own
hot-restart protocol. Layout: `decisions` and `state` are the pure core; `supervisor` drives Envoy
(`envoy`, `admin`, `hotrestart`) and records every step; `status` serves /healthz/ready, /status and
/metrics; `cli` is `hotupgrade-agent run | wait | status`. docs/contract.md is all it shares with webhook/.
"""
