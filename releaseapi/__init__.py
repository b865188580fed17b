"""The hotupgrade.io/v1alpha1 API (SidecarRelease): parsing, label selectors, image references and which
release governs a pod. Pure, and shared by the controller (which converges running pods) and the
webhook (which injects the governing release's image into new pods); it imports neither of them.
"""
