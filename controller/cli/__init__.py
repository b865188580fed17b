"""The `hotupgrade` command: roll a fleet by annotation, show upgrade status, roll back, abort, retry.

It never changes images itself; it only writes the annotations the controller acts on, so the
controller stays the single writer of sidecar images.
"""
