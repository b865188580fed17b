"""Pure renderers for the configuration files and command lines of the cluster's components."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from localcluster import settings as s


@dataclass(frozen=True)
class Component:
    """A host process of the cluster: name, argv and extra environment."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


def containerd_config(hosts_dir: Path = s.REGISTRY_HOSTS_DIR) -> str:
    """containerd 1.6 config (version 2): private root/state/socket, cgroupfs, our CNI dirs, and the
    registry hosts directory (`<host:port>/hosts.toml`, containerd docs/hosts.md; CRI reads it per pull)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{s.CONTAINERD_ROOT}"',
            f'state = "{s.CONTAINERD_STATE}"',
            "[grpc]",
            f'  address = "{s.CONTAINERD_SOCKET}"',
            "[debug]",
            '  level = "info"',
            f"[{cri}]",
            f'  sandbox_image = "{s.PAUSE_IMAGE}"',
            # netns bind mounts under our own state dir so teardown finds every one of them.
            "  netns_mounts_under_state_dir = true",
            "  enable_cdi = false",
            # Root here lacks CAP_SYS_RESOURCE: nothing may lower oom_score_adj (runc failed writing -998
            # for the sandbox). Clamp the scores kubelet asks for to containerd's own, as rootless setups do.
            "  restrict_oom_score_adj = true",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            # containerd's default, stated: an image keeps its compressed layers once unpacked.
            "  discard_unpacked_layers = false",
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            '  BinaryName = "/usr/sbin/runc"',
            f'  Root = "{s.RUNC_ROOT}"',
            "  SystemdCgroup = false",
            f"[{cri}.cni]",
            f'  bin_dir = "{s.CNI_BIN_DIR}"',
            f'  conf_dir = "{s.CNI_CONF_DIR}"',
            "  max_conf_num = 1",
            # The e2e registry (localcluster/registry.py) on the node IP, TLS with the cluster's CA: one
            # hosts.toml per host:port. config_path replaces the deprecated `mirrors`/`configs` tables.
            f"[{cri}.registry]",
            f'  config_path = "{hosts_dir}"',
            "",
        ]
    )


def cni_conflist() -> str:
    """Bridge + host-local: the host reaches pod IPs directly through the bridge's gateway address."""
    doc = {
        "cniVersion": "0.4.0",
        "name": s.CNI_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": s.BRIDGE_NAME,
                "isGateway": True,
                # Pods only talk to the host and each other; no NAT rules to leave behind.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": s.POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(s.CNI_IPAM_DIR),
                },
            },
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def kubelet_config(node_ip: str) -> str:
    """KubeletConfiguration for a cgroup v1 host (cgroupfs driver, failCgroupV1 false)."""
    pki = s.PKI_DIR
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "healthzBindAddress": "127.0.0.1",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-server.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-server.key"),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{s.CONTAINERD_SOCKET}",
        "imageServiceEndpoint": f"unix://{s.CONTAINERD_SOCKET}",
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        # The disk is shared with other work: never evict or garbage-collect our imported images.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "registerNode": True,
        "podCIDR": s.POD_CIDR,
        "maxPods": 60,
        "shutdownGracePeriod": "0s",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def kube_proxy_config(node_ip: str) -> str:
    """KubeProxyConfiguration: iptables mode, no conntrack sysctl tuning."""
    doc = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": s.POD_CIDR,
        "hostnameOverride": s.NODE_NAME,
        "bindAddress": node_ip,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        "clientConnection": {"kubeconfig": str(s.CLUSTER_DIR / "kube-proxy.kubeconfig")},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _bin(name: str) -> str:
    return str(s.K8S_BIN_DIR / name)


def etcd_component() -> Component:
    """Debian's etcd 3.4 on loopback, non-default ports (no clash with anything else on the host)."""
    return Component(
        "etcd",
        (
            "/usr/bin/etcd",
            "--name=hotupgrade",
            f"--data-dir={s.ETCD_DATA}",
            f"--listen-client-urls={s.ETCD_CLIENT_URL}",
            f"--advertise-client-urls={s.ETCD_CLIENT_URL}",
            f"--listen-peer-urls={s.ETCD_PEER_URL}",
            f"--initial-advertise-peer-urls={s.ETCD_PEER_URL}",
            f"--initial-cluster=hotupgrade={s.ETCD_PEER_URL}",
            "--listen-metrics-urls=http://127.0.0.1:23810",
            "--unsafe-no-fsync",
            "--snapshot-count=10000",
        ),
    )


def apiserver_component(node_ip: str) -> Component:
    """kube-apiserver with RBAC + Node authorization and the admission plugins a normal cluster runs."""
    pki = s.PKI_DIR
    return Component(
        "kube-apiserver",
        (
            _bin("kube-apiserver"),
            f"--etcd-servers={s.ETCD_CLIENT_URL}",
            "--bind-address=0.0.0.0",
            f"--secure-port={s.APISERVER_PORT}",
            f"--advertise-address={node_ip}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={s.SERVICE_CIDR}",
            "--allow-privileged=true",
            # Webhook Services resolve to endpoints: the apiserver on the host needs no ClusterIP route.
            "--enable-aggregator-routing=true",
            "--profiling=false",
            "--v=1",
        ),
    )


def controller_manager_component() -> Component:
    """kube-controller-manager: per-controller ServiceAccount credentials, token signing root CA."""
    pki = s.PKI_DIR
    kubeconfig = str(s.CLUSTER_DIR / "controller-manager.kubeconfig")
    return Component(
        "kube-controller-manager",
        (
            _bin("kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={s.SERVICE_CIDR}",
            "--v=1",
        ),
    )


def scheduler_component() -> Component:
    """kube-scheduler with its own client certificate."""
    kubeconfig = str(s.CLUSTER_DIR / "scheduler.kubeconfig")
    return Component(
        "kube-scheduler",
        (
            _bin("kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--v=1",
        ),
    )


def kubelet_component(node_ip: str) -> Component:
    """kubelet pointed at our containerd, registering the single node."""
    return Component(
        "kubelet",
        (
            _bin("kubelet"),
            f"--config={s.CLUSTER_DIR / 'kubelet.yaml'}",
            f"--kubeconfig={s.CLUSTER_DIR / 'kubelet.kubeconfig'}",
            f"--root-dir={s.KUBELET_ROOT}",
            f"--hostname-override={s.NODE_NAME}",
            f"--node-ip={node_ip}",
            "--v=1",
        ),
    )


def kube_proxy_component() -> Component:
    """kube-proxy in iptables mode, so pods reach Services (e.g. `kubernetes`)."""
    return Component(
        "kube-proxy",
        (
            _bin("kube-proxy"),
            f"--config={s.CLUSTER_DIR / 'kube-proxy.yaml'}",
            "--v=1",
        ),
    )


def containerd_component() -> Component:
    """containerd from Debian with our private config."""
    return Component("containerd", ("/usr/bin/containerd", f"--config={s.CLUSTER_DIR / 'containerd.toml'}"))


def all_files(node_ip: str) -> dict[Path, str]:
    """Every config file the components read, by path."""
    return {
        s.CLUSTER_DIR / "containerd.toml": containerd_config(),
        s.CNI_CONF_DIR / f"10-{s.CNI_NETWORK_NAME}.conflist": cni_conflist(),
        s.CLUSTER_DIR / "kubelet.yaml": kubelet_config(node_ip),
        s.CLUSTER_DIR / "kube-proxy.yaml": kube_proxy_config(node_ip),
    }
