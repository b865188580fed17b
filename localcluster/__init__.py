"""The local Kubernetes distribution built from its parts (`python -m localcluster up|down|status|...`,
README.md beside this file): the e2e suite's cluster, and the API server of the integration tests.

Layers, each importing only those below it (no module-level cycle):
- `settings`: pinned versions, paths, ports, address ranges (imports nothing of ours).
- `build` (the Kubernetes binaries and pause), `configs` (component flags and files), `pki`
  (certificates and kubeconfigs, built by webhook/certs.py), `helm` (the pinned helm on the chart).
- `host` (processes, mounts, netns, iptables on this machine; uses `configs`) and `imagebuilder`
  (OCI images without Docker; `imagebuilder.builder` uses `settings` and `build`, never `lifecycle`).
- `registry` (the e2e OCI registry pair; uses `build`, `host`, `pki`, `registryclient`) and `nodeimages`
  (which image is imported into containerd, which pushed to the registry; uses `registry`, `imagebuilder`).
- `lifecycle`: up/down/status; the only module that uses all the others.
- `__main__`: the command line over `lifecycle`, `build` and `imagebuilder`.
"""
