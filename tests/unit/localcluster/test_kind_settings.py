"""The pure parts of the kind path: this machine's settings as build inputs, kind's source, kubeadm's list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcluster import docker, dockerimages, kind, runc_bounded
from localcluster.kindnode import kindnetd, node
from localcluster.kindnode import versions as v

DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://vendor.example/apt
Suites: stable
Components: main
"""


def test_debian_source_lines_keep_the_debian_archives_only() -> None:
    one_line = (
        "deb [arch=amd64] http://other.example/debian/ bookworm main contrib # comment\ndeb-src x y z\n"
    )
    assert dockerimages.debian_source_lines(DEB822 + "\n" + one_line) == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
        "deb http://other.example/debian bookworm main contrib",
    ]


def test_debian_source_lines_skip_disabled_stanzas() -> None:
    assert dockerimages.debian_source_lines(
        DEB822.replace("Components: main\n", "Components: main\nEnabled: no\n", 1)
    ) == ["deb http://mirror.example/debian-security bookworm-security main"]


def test_pip_settings_environment_beats_files_and_paths_are_dropped() -> None:
    listed = (
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        "global.index-url='https://file.example/simple'\n"
        ":env:.index-url='https://env.example/simple'\n"
        ":env:.find-links='/opt/wheels'\n"
        ":env:.default-timeout='180'\n"
    )
    settings = dockerimages.pip_settings(listed)
    assert settings == {
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "index-url": "https://env.example/simple",
        "default-timeout": "180",
    }
    assert dockerimages.pip_conf(settings, "/run/secrets/pip-cert.pem") == (
        "[global]\ndefault-timeout = 180\nindex-url = https://env.example/simple\n"
        "cert = /run/secrets/pip-cert.pem\n"
    )
    assert "cert" not in dockerimages.pip_conf(settings, None)


def test_iptables_rules_compare_without_counters_and_comments() -> None:
    before = "# Generated\n*filter\n:INPUT ACCEPT [10:200]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n# End\n"
    after = "# Generated later\n*filter\n:INPUT ACCEPT [99:9999]\n:FORWARD ACCEPT [5:50]\nCOMMIT\n"
    dropped = after.replace(":FORWARD ACCEPT", ":FORWARD DROP")
    assert docker.rules_without_counters(before) == docker.rules_without_counters(after)
    assert docker.rules_without_counters(before) != docker.rules_without_counters(dropped)


GO_SOURCE = """package nodeimage

const kindnetdImage = "docker.io/kindest/kindnetd:v1-abc"

var defaultCNIImages = []string{kindnetdImage}

const defaultCNIManifest = `
kind: DaemonSet
image: ` + kindnetdImage + `
subnet: {{ .PodSubnet }}
`

const other = "a\\"b" + "c"
"""


def test_go_string_constants_joins_raw_strings_and_names() -> None:
    consts = node.go_string_constants(GO_SOURCE)
    assert consts["kindnetdImage"] == "docker.io/kindest/kindnetd:v1-abc"
    assert consts["defaultCNIManifest"] == (
        "\nkind: DaemonSet\nimage: docker.io/kindest/kindnetd:v1-abc\nsubnet: {{ .PodSubnet }}\n"
    )
    assert consts["other"] == 'a"bc'


def test_sandbox_image_from_containerd_config() -> None:
    config = (
        '[plugins."io.containerd.grpc.v1.cri"]\n  # fixed\n  sandbox_image = "registry.k8s.io/pause:3.10"\n'
    )
    assert node.sandbox_image(config) == "registry.k8s.io/pause:3.10"
    with pytest.raises(ValueError):
        node.sandbox_image("version = 2\n")


KUBEADM_LIST = [
    "registry.k8s.io/kube-apiserver:v1.34.4",
    "registry.k8s.io/kube-controller-manager:v1.34.4",
    "registry.k8s.io/kube-scheduler:v1.34.4",
    "registry.k8s.io/kube-proxy:v1.34.4",
    f"registry.k8s.io/coredns/coredns:{v.COREDNS_VERSION}",
    "registry.k8s.io/pause:3.10.1",
    f"registry.k8s.io/etcd:{v.ETCD_VERSION.removeprefix('v')}-0",
]


def test_image_targets_follow_kubeadm_and_containerds_pause() -> None:
    refs = node.image_targets(KUBEADM_LIST, "registry.k8s.io/pause:3.10")
    assert refs["pause"] == "registry.k8s.io/pause:3.10"
    assert refs["coredns"] == f"registry.k8s.io/coredns/coredns:{v.COREDNS_VERSION}"
    assert set(refs) == set(node.TARGETS)


def test_image_targets_refuse_a_drifted_pin() -> None:
    with pytest.raises(ValueError, match="etcd"):
        node.image_targets([*KUBEADM_LIST[:-1], "registry.k8s.io/etcd:3.7.0-0"], "p")
    with pytest.raises(ValueError, match="does not make"):
        node.image_targets([*KUBEADM_LIST, "registry.k8s.io/something:v1"], "p")


def test_the_host_routes_the_kind_configs_pod_and_service_subnets() -> None:
    config = "networking:\n  podSubnet: 10.245.0.0/16\n  serviceSubnet: 10.97.0.0/16\n"
    assert kind.routed_subnets(config) == ["10.245.0.0/16", "10.97.0.0/16"]
    assert kind.routed_subnets("kind: Cluster\n") == ["10.244.0.0/16", "10.96.0.0/16"]
    # Beside the local cluster's (its pods and Services keep their own routes on the host).
    ours = kind.routed_subnets(kind.KIND_CONFIG.read_text())
    assert ours[0] != "10.244.0.0/16" and ours[1] != "10.96.0.0/16", ours


def test_kindnetd_conflist_and_node_lookup() -> None:
    nodes = {
        "items": [
            {"status": {"addresses": [{"address": "172.18.0.3"}]}, "spec": {"podCIDR": "10.245.1.0/24"}},
            {"status": {"addresses": [{"address": "172.18.0.2"}]}, "spec": {"podCIDRs": ["10.245.0.0/24"]}},
        ]
    }
    assert kindnetd.node_pod_cidrs(nodes, "172.18.0.2") == ["10.245.0.0/24"]
    assert kindnetd.node_pod_cidrs(nodes, "172.18.0.3") == ["10.245.1.0/24"]
    assert kindnetd.node_pod_cidrs(nodes, "172.18.0.9") == []
    doc = json.loads(kindnetd.conflist(["10.245.0.0/24"], 1400))
    ptp, portmap = doc["plugins"]
    assert ptp["type"] == "ptp" and ptp["mtu"] == 1400
    assert ptp["ipam"]["ranges"] == [[{"subnet": "10.245.0.0/24"}]]
    assert portmap["capabilities"] == {"portMappings": True}


def test_runc_bounded_drops_only_what_the_bounding_set_lacks() -> None:
    missing = runc_bounded.missing_caps("000001fffeffffff")  # this machine's root: no CAP_SYS_RESOURCE
    assert missing == {"CAP_SYS_RESOURCE"}
    process = {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_FUTURE"], "ambient": []}}
    assert runc_bounded.without(process, missing)
    assert process["capabilities"] == {"bounding": ["CAP_CHOWN", "CAP_FUTURE"], "ambient": []}
    assert not runc_bounded.without(process, missing)


def test_runc_bounded_finds_the_spec_runc_reads() -> None:
    root = ["--root", "/run/x", "--log-format", "json"]
    assert runc_bounded.spec_file([*root, "create", "--bundle", "/b", "id"]) == Path("/b/config.json")
    assert runc_bounded.spec_file([*root, "run", "-b=/b", "id"]) == Path("/b/config.json")
    assert runc_bounded.spec_file([*root, "exec", "--process", "/tmp/p.json", "id"]) == Path("/tmp/p.json")
    assert runc_bounded.spec_file([*root, "create", "id"]) == Path("config.json")
    assert runc_bounded.spec_file([*root, "start", "id"]) is None


# kube-proxy v1.34's /metrics, shortened (help texts cut)
KUBE_PROXY_METRICS = """# HELP kubeproxy_sync_proxy_rules_iptables_total [ALPHA] iptables rules
# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge
kubeproxy_sync_proxy_rules_iptables_total{table="filter"} 7
# HELP kubeproxy_iptables_ct_state_invalid_dropped_packets_total [ALPHA] packets dropped by iptables
# TYPE kubeproxy_iptables_ct_state_invalid_dropped_packets_total counter
kubeproxy_iptables_ct_state_invalid_dropped_packets_total 3
"""


def test_invalid_drops_reads_kube_proxys_counter() -> None:
    assert kind.invalid_drops(KUBE_PROXY_METRICS) == 3.0
    without = "\n".join(KUBE_PROXY_METRICS.splitlines()[:3]) + "\n"
    assert kind.invalid_drops(without) is None
    assert kind.invalid_drops("") is None


def test_the_suite_on_kind_leaves_out_what_needs_the_local_cluster() -> None:
    argv = kind.suite_argv(["e2e"], ["-s", "-k", "fleet"])
    assert argv == ["e2e", "--ignore=e2e/test_pull_window.py", "-s", "-k", "fleet"]
    assert kind.suite_argv(["e2e/test_chart.py"], [])[0] == "e2e/test_chart.py"
    # An empty E2E_KIND_TESTS is the whole suite, not pytest's testpaths (tests/, against the kind cluster).
    assert kind.suite_argv([], [])[0] == "e2e"


def test_a_local_cluster_test_named_on_kind_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert kind.local_cluster_only(["e2e/test_upgrade.py", "e2e/test_pull_window.py::test_x"]) == [
        "e2e/test_pull_window.py::test_x"
    ]
    assert kind.local_cluster_only(["e2e", "e2e/test_chart.py"]) == []
    with pytest.raises(SystemExit) as exited:
        kind.main(["e2e", "--tests", "e2e/test_pull_window.py"])
    assert exited.value.code == 2
    assert "make e2e" in capsys.readouterr().err


def test_drops_line_counts_the_suites_drops_only() -> None:
    assert kind.drops_line(2.0, 5.0).endswith(": 3")
    assert "unknown" in kind.drops_line(None, 5.0) and "unknown" in kind.drops_line(2.0, None)


def test_online_builds_on_the_engine_started_here_use_the_hosts_network() -> None:
    assert dockerimages.online_flags(docker.engine_env()) == ["--network=host"]
    assert dockerimages.online_flags({"DOCKER_HOST": "unix:///var/run/docker.sock"}) == []
    assert dockerimages.online_flags({}) == []


def test_offline_refuses_a_node_image_to_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIND_NODE_IMAGE", "kindest/node:v1.34.0")
    with pytest.raises(SystemExit) as exited:
        kind.main(["e2e", "--offline"])
    assert exited.value.code == 2
