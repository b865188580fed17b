"""The `hotupgrade` command: a client of SidecarReleases (rollout, pause, resume, rollback, status: edit
the spec, follow the status), and pods by annotation (`rollout --direct`, per-pod status, rollback, abort,
retry).

It never changes images itself; it only writes the release spec or the pod annotations the controller
acts on, so the controller stays the single writer of sidecar images.
"""
