"""OCI images without Docker: `builder` (debootstrap rootfs, cached layers, import into containerd),
`oci` (the layout writer), `apt_sources` (where this machine's apt gets Debian).
Imports `localcluster.settings` and `localcluster.build`, never `localcluster.lifecycle`."""
