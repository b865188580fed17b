"""cert-manager and Prometheus Operator objects, checked field by field (no CRD schemas offline)."""

from localcluster.helm import NAMESPACE, rendered


def test_cert_manager_bootstraps_its_own_ca_by_default() -> None:
    r = rendered(["cert-manager"])
    issuers = {i["metadata"]["name"]: i["spec"] for i in r.of_kind("Issuer")}
    certificates = {c["metadata"]["name"]: c["spec"] for c in r.of_kind("Certificate")}
    assert len(issuers) == 2 and len(certificates) == 2
    [self_signed] = [n for n, spec in issuers.items() if spec == {"selfSigned": {}}]
    [ca_issuer] = [n for n, spec in issuers.items() if "ca" in spec]
    [ca_cert] = [spec for spec in certificates.values() if spec.get("isCA")]
    [serving] = [spec for spec in certificates.values() if not spec.get("isCA")]
    assert ca_cert["issuerRef"]["name"] == self_signed
    assert issuers[ca_issuer]["ca"]["secretName"] == ca_cert["secretName"]
    assert serving["issuerRef"] == {"kind": "Issuer", "name": ca_issuer, "group": "cert-manager.io"}
    service = next(s for s in r.of_kind("Service") if s["metadata"]["name"].endswith("webhook"))["metadata"][
        "name"
    ]
    assert f"{service}.{NAMESPACE}.svc" in serving["dnsNames"]
    assert serving["usages"] == ["server auth", "digital signature"]
    assert (serving["duration"], serving["renewBefore"]) == ("720h", "240h")
    for spec in certificates.values():
        assert set(spec) <= {
            "secretName",
            "duration",
            "renewBefore",
            "dnsNames",
            "usages",
            "privateKey",
            "issuerRef",
            "isCA",
            "commonName",
        }


def test_cert_manager_with_an_existing_issuer_creates_only_the_certificate() -> None:
    r = rendered(["cert-manager-issuer"])
    assert r.of_kind("Issuer") == []
    [serving] = r.of_kind("Certificate")
    assert serving["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "corporate-ca",
        "group": "cert-manager.io",
    }
    assert serving["spec"]["secretName"] == "hotupgrade-serving-cert"
    assert r.of_kind("Secret") == []  # cert-manager creates it


def test_service_monitor_scrapes_both_components_with_tls_verification() -> None:
    r = rendered(["servicemonitor"])
    monitor = r.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert set(endpoints) == {"https", "metrics"}
    tls = endpoints["https"]["tlsConfig"]
    assert "insecureSkipVerify" not in tls
    assert tls["ca"]["secret"] == {"name": r.one("Secret")["metadata"]["name"], "key": "ca.crt"}
    service_ports = {
        (p["name"]): s["metadata"]["labels"] for s in r.of_kind("Service") for p in s["spec"]["ports"]
    }
    assert set(service_ports) == {"https", "metrics"}
    for labels in service_ports.values():
        assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert endpoints["https"]["interval"] == "15s"
