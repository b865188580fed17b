"""The pod harness: real Envoy in real network/mount/PID namespaces, under load that counts failures honestly.

- pod.py: a Pod (network namespace + veth, shared /dev/shm and run dir) and its Containers.
- sidecar.py: the injected pod (app + sidecar pair) and the kubelet/controller choreography of an upgrade.
- upstream.py: the app (HTTP/1.1 keep-alive server, TCP echo server) behind Envoy; backends.py: its gRPC
  server and WebSocket echo on the same port.
- load.py / loadstats.py: HTTP/1.1, HTTP/2 and long-lived TCP load without retries, and its figures.
- independent.py: Debian's wrk and h2load as independent clients.
- clients.py / clientstats.py: the clients users have (gRPC unary and streaming, WebSocket, HTTP/1.1
  without keep-alive), counted without retries, and how their streams' ends are judged.
- figures.py: the JSON object of bench/hotupgrade.py.
- envoyproc.py, netns.py, metrics.py: plain Envoy for self-tests, sockets inside a pod, /metrics lookups.

Needs root (tests and CI run as root). Used by tests/integration/agent/ and bench/ (hotupgrade, demo).
"""
