"""UDP and QUIC around a hot upgrade, for the stalled-child tests: a bootstrap with both kinds of UDP
listener, a UDP echo app, a raw UDP prober and a flood of QUIC packets no connection owns.

The template is the packaged static one plus an HTTP/3 listener (QUIC transport, a self-signed
certificate) on QUIC_PORT and a udp_proxy listener on UDP_PORT in front of a UDP echo server on
UDP_UPSTREAM_PORT (docs/bootstrap-modes.md, "UDP and QUIC listeners").
"""

from __future__ import annotations

import contextlib
import datetime
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE
from podharness.sidecar import SidecarPod
from webhook.certs import issue_serving, new_ca

QUIC_PORT = 15112
UDP_PORT = 15113
UDP_UPSTREAM_PORT = 8002

_LISTENERS = """\
  - name: h3
    address:
      socket_address: { address: 0.0.0.0, port_value: %(quic)d, protocol: UDP }
    udp_listener_config:
      quic_options: {}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.quic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport
          downstream_tls_context:
            common_tls_context:
              alpn_protocols: [h3]
              tls_certificates:
              - certificate_chain: { filename: %(cert)s }
                private_key: { filename: %(key)s }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": %(hcm)s
          codec_type: HTTP3
          stat_prefix: ingress_http3
          drain_timeout: 1s
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: app, timeout: 30s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: udp
    address:
      socket_address: { address: 0.0.0.0, port_value: %(udp)d, protocol: UDP }
    listener_filters:
    - name: envoy.filters.udp_listener.udp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig
        stat_prefix: udp
        matcher:
          on_no_match:
            action:
              name: route
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route
                cluster: udp_echo
"""

_CLUSTER = """\
  - name: udp_echo
    type: STATIC
    load_assignment:
      cluster_name: udp_echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: %(upstream)d, protocol: UDP }
"""

# A UDP echo server, run as the app's second container.
ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"s.bind(('127.0.0.1', {UDP_UPSTREAM_PORT}))\n"
    "while True:\n"
    "    data, peer = s.recvfrom(65536)\n"
    "    s.sendto(data, peer)\n"
)


def udp_template(directory: Path) -> Path:
    """The packaged template plus the HTTP/3 and UDP listeners, and a certificate for HTTP/3."""
    now = datetime.datetime.now(datetime.UTC)
    ca = new_ca(now=now, validity=datetime.timedelta(days=1), common_name="udp-test-ca")
    serving = issue_serving(ca=ca, dns_names=["localhost"], now=now, validity=datetime.timedelta(days=1))
    cert, key = directory / "h3-cert.pem", directory / "h3-key.pem"
    cert.write_bytes(serving.cert_pem)
    key.write_bytes(serving.key_pem)
    text = DEFAULT_TEMPLATE.read_text()
    assert text.count("\n  clusters:\n") == 1
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    hcm += "HttpConnectionManager"
    values = {
        "hcm": hcm,
        "quic": QUIC_PORT,
        "udp": UDP_PORT,
        "cert": cert,
        "key": key,
        "upstream": UDP_UPSTREAM_PORT,
    }
    text = text.replace("\n  clusters:\n", "\n" + _LISTENERS % values + "  clusters:\n" + _CLUSTER % values)
    path = directory / "udp-envoy.yaml.tmpl"
    path.write_text(text)
    return path


def udp_env(template: Path, *, skip_parent_stats: bool) -> dict[str, str]:
    """The pair's extra environment: the custom template, and the parent-stats setting."""
    env = {contract.ENV_BOOTSTRAP_MODE: "custom", contract.ENV_BOOTSTRAP_TEMPLATE: str(template)}
    if skip_parent_stats:
        env[contract.ENV_SKIP_HOT_RESTART_PARENT_STATS] = "true"
    return env


def start_udp_echo(sidecars: SidecarPod) -> None:
    """The UDP echo app container."""
    sidecars.pod.container("udpecho").start([sys.executable, "-c", ECHO], {})


def quic_initial(rng: bytes) -> bytes:
    """A QUIC v1 long-header Initial packet with random connection ids and payload (1200+ bytes): no
    connection of the old Envoy owns it, so while it drains it forwards each one to the new Envoy."""
    return (
        bytes([0xC3]) + b"\x00\x00\x00\x01" + b"\x08" + rng[:8] + b"\x08" + rng[8:16] + b"\x00\x44\xd0" + rng
    )


# The flood's sender, in a process of its own so the load generator's threads cannot starve it (GIL).
_FLOOD = """
import os, socket, sys, time
sys.path.insert(0, sys.argv[4])
from tests.integration.agent.udpquic import quic_initial
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
packets = [quic_initial(os.urandom(1200)) for _ in range(1024)]
sent, until = 0, time.monotonic() + seconds
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    while time.monotonic() < until:
        for packet in packets[(sent % 16) * 64 :][:64]:
            try:
                sock.sendto(packet, (host, port))
            except OSError:
                pass
            sent += 1
        time.sleep(0.001)
except KeyboardInterrupt:
    pass
finally:
    print(sent, flush=True)
"""


@dataclass
class Flood:
    """Sends QUIC Initial packets to the pod's HTTP/3 port from a process of its own, as fast as it can in
    bursts of 64 a millisecond apart, for `seconds` or until stopped: far more than the datagrams a unix
    socket queues (net.unix.max_dgram_qlen), so the forwarding fills the new Envoy's queue."""

    host: str
    seconds: float = 3600.0
    _process: subprocess.Popen[str] | None = None

    def start(self) -> Flood:
        root = str(Path(__file__).resolve().parents[3])
        argv = [sys.executable, "-c", _FLOOD, self.host, str(QUIC_PORT), str(self.seconds), root]
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        return self

    def stop(self) -> int:
        """Stop sending (SIGINT ends its loop); how many packets it sent."""
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        out, _ = self._process.communicate(timeout=10)
        return int(out.split()[-1]) if out.split() else 0


@dataclass
class UdpProbe:
    """One UDP flow to the pod's udp_proxy listener: a numbered datagram every `interval` seconds; which
    came back (echoed by the app through Envoy) within `timeout`. Counted by the probe itself."""

    host: str
    interval: float = 0.01
    timeout: float = 1.0
    sent: dict[int, float] = field(default_factory=dict)
    echoed: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

    def start(self) -> UdpProbe:
        self._sock.settimeout(0.2)
        for target in (self._send, self._receive):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _send(self) -> None:
        number = 0
        while not self._stop.is_set():
            self.sent[number] = time.time()
            with contextlib.suppress(OSError):
                self._sock.sendto(struct.pack(">Q", number), (self.host, UDP_PORT))
            number += 1
            time.sleep(self.interval)

    def _receive(self) -> None:
        while not self._stop.is_set() or len(self.echoed) < len(self.sent):
            try:
                data, _ = self._sock.recvfrom(64)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            except OSError:
                return
            (number,) = struct.unpack(">Q", data[:8])
            self.echoed.setdefault(number, time.time())

    def stop(self) -> None:
        time.sleep(self.timeout)  # the last datagrams' echoes
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()

    def lost_between(self, start: float, end: float) -> tuple[int, int]:
        """(sent, not echoed) for datagrams sent in [start, end) (time.time())."""
        numbers = [n for n, at in self.sent.items() if start <= at < end]
        return len(numbers), sum(1 for n in numbers if n not in self.echoed)
