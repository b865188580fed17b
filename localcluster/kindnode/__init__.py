"""kind on a machine without the public registries: the pinned kind binary and a node image built here.

`kind build node-image` pulls its component images (etcd, CoreDNS, pause, kindnetd, the storage
provisioner) from registries inside its build container, and its base image's Dockerfile clones
containerd, runc, crictl and the CNI plugins from GitHub. Neither works offline, so this package builds
the same layout from what this machine reaches (localcluster/README.md, "kind"):
- `versions.py`: every pin, and where each piece comes from;
- `gobuild.py`: kind, kubeadm, etcd, CoreDNS and crictl from the Go module proxy, cached by version;
- `Dockerfile`: kind's base image on the local Debian base (kind's own `images/base/files`, read from
  the kind module in the Go module cache), and the component images;
- `kindnetd.py`: a single-node stand-in for kindnetd, whose source the Go module proxy does not serve;
- `node.py`: kind's node-image assembly (binaries, /kind/version, kind's manifests, images imported into
  the node's containerd, `docker commit`), step by step as `sigs.k8s.io/kind/pkg/build/nodeimage` does it.
"""
