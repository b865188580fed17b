"""The upgrade controller: watches injected pods and swaps their sidecar images hitlessly.

`steps.next_step` decides (pure); `reconciler`, `kube`, `agents`, `watcher`, `leader` and `main` are the
thin I/O shell around it. Nothing here touches the admission code paths.
"""
