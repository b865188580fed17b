"""Transparent inbound capture: the nat rules the capture init container installs, as pure functions.

The webhook names the redirects (`HOTUPGRADE_CAPTURE_REDIRECTS`, docs/contract.md "Traffic capture"):
`APP_PORT:ENVOY_PORT` pairs, each an app port whose inbound TCP connections go to the Envoy listener that
forwards to it. The rules live in the pod's network namespace, in a chain of ours hooked into PREROUTING
only, as Istio's istio-init does for inbound traffic (tools/istio-iptables, ISTIO_INBOUND). PREROUTING
sees only packets that arrive from outside the pod: Envoy's own connections to the app (127.0.0.1) are
created in OUTPUT, where the nat table decides their fate once (nf_nat_inet_fn only consults the rules
for a connection whose mapping is not initialised yet), so they are never redirected back to Envoy.

`iptables-nft` (the nf_tables backend) on purpose: it is Debian's default `iptables`, the node's
kube-proxy uses it here, and kernels from 6.17 may be built without the legacy xtables tables
(CONFIG_IP_NF_IPTABLES_LEGACY), which the nf_tables backend does not need. No I/O in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CHAIN = "HOTUPGRADE_INBOUND"
JUMP = f"-A PREROUTING -p tcp -j {CHAIN}"
SAVE = ("iptables-nft-save", "-t", "nat")
RESTORE = ("iptables-nft-restore", "--noflush")


class CaptureConfigError(ValueError):
    """The redirect list is malformed; the message says which entry and why."""


@dataclass(frozen=True)
class Redirect:
    """Inbound TCP to `app_port` goes to Envoy's listener on `envoy_port` (both in 1..65535)."""

    app_port: int
    envoy_port: int

    def rule(self) -> str:
        """The rule as `iptables-save` prints it (so a saved table can be compared line by line)."""
        return f"-A {CHAIN} -p tcp -m tcp --dport {self.app_port} -j REDIRECT --to-ports {self.envoy_port}"


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise CaptureConfigError(f"{entry!r}: {text!r} is not a port in 1..65535")
    return int(text)


def parse_redirects(text: str) -> tuple[Redirect, ...]:
    """`8080:15110,9000:15111` -> Redirects; raise CaptureConfigError on an empty list, a bad entry, an app
    port named twice, or a redirect onto a captured port (which would capture Envoy's own listener)."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise CaptureConfigError("no redirects: expected APP_PORT:ENVOY_PORT[,...]")
    redirects: list[Redirect] = []
    for entry in entries:
        app, sep, envoy = entry.partition(":")
        if not sep:
            raise CaptureConfigError(f"{entry!r}: expected APP_PORT:ENVOY_PORT")
        redirects.append(Redirect(_port(app, entry), _port(envoy, entry)))
    apps = [r.app_port for r in redirects]
    if len(set(apps)) != len(apps):
        raise CaptureConfigError(f"an app port is named twice in {text!r}")
    looped = sorted({r.envoy_port for r in redirects} & set(apps))
    if looped:
        raise CaptureConfigError(f"port {looped[0]} is both captured and a redirect target")
    return tuple(redirects)


def restore_input(redirects: Sequence[Redirect], saved_nat: str) -> str:
    """The `iptables-restore --noflush` input that leaves exactly `redirects` in our chain.

    `saved_nat` is `iptables-save -t nat` of the pod's namespace now. Declaring the chain flushes it, so a
    second run (an init container re-run in the same namespace) rewrites the same rules; the PREROUTING
    jump is added only when it is not there yet, so it never doubles. Other tables and chains are untouched.
    """
    lines = ["*nat", f":{CHAIN} - [0:0]", *(r.rule() for r in redirects)]
    if JUMP not in saved_nat.splitlines():
        lines.append(JUMP)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def missing_rules(redirects: Sequence[Redirect], saved_nat: str) -> list[str]:
    """The rules (and the jump) that `saved_nat` lacks: empty once the capture is in place."""
    present = set(saved_nat.splitlines())
    return [rule for rule in [JUMP, *(r.rule() for r in redirects)] if rule not in present]
