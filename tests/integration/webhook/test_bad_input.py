"""Bad input over real TLS: HTTP 400 with a message that says what is wrong, never a 500, never a hang."""

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.webhook.admission_helpers import response_of
from tests.integration.webhook.conftest import WebhookProcess, client_context, load_fixture, start_webhook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LIMIT = 64 * 1024
READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    """A server with a small body limit and a short body read timeout."""
    server = start_webhook(
        tmp_path_factory.mktemp("bad-input"),
        config={"maxRequestBytes": LIMIT},
        extra_args=["--read-timeout", str(READ_TIMEOUT)],
    )
    yield server
    server.stop()


def valid() -> dict[str, Any]:
    body: dict[str, Any] = load_fixture("create-pod")["review"]
    return body


def without(path: list[str]) -> dict[str, Any]:
    body = valid()
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize("endpoint", ["/mutate", "/validate"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json at all", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe\x00", "not JSON"),
        (json.dumps(without(["request"])).encode(), "no 'request'"),
        (json.dumps(without(["request", "uid"])).encode(), "request.uid"),
        (json.dumps({**valid(), "apiVersion": "admission.k8s.io/v1beta1"}).encode(), "admission.k8s.io/v1"),
        (json.dumps({**valid(), "apiVersion": None}).encode(), "unsupported apiVersion"),
        (b"[" * 20000 + b"]" * 20000, "not JSON"),  # nesting deeper than the parser recurses,
    ],
)
def test_bad_bodies_get_400_with_the_reason(
    small: WebhookProcess, endpoint: str, content: bytes, message: str
) -> None:
    with small.client() as client:
        http = client.post(endpoint, content=content, headers={"content-type": "application/json"})
    assert http.status_code == 400, http.text
    assert message in http.json()["error"]


@pytest.mark.parametrize("endpoint", ["/mutate", "/validate"])
def test_a_kind_other_than_pod_is_allowed_without_a_patch(small: WebhookProcess, endpoint: str) -> None:
    body = load_fixture("create-deployment")["review"]
    with small.client() as client:
        response = response_of(client.post(endpoint, json=body), body["request"]["uid"])
    assert response == {"uid": body["request"]["uid"], "allowed": True}


def test_a_body_over_the_limit_is_refused(small: WebhookProcess) -> None:
    body = valid()
    body["request"]["object"]["metadata"]["annotations"] = {"big": "x" * LIMIT}
    # One connection per request: gunicorn closes a connection whose body was not read to the end.
    with small.client() as client:
        http = client.post("/mutate", json=body)
    assert http.status_code == 400
    assert f"over the limit of {LIMIT} bytes" in http.json()["error"]
    # Also without a Content-Length (chunked): the limit holds while reading.
    content = json.dumps(body).encode()
    with small.client() as client:
        http = client.post("/mutate", content=(content[i : i + 4096] for i in range(0, len(content), 4096)))
    assert http.status_code == 400 and "over the limit" in http.json()["error"]
    with small.client() as client:
        assert client.get("/healthz").status_code == 200


def test_a_client_that_stalls_mid_body_gets_400_not_a_hang(small: WebhookProcess) -> None:
    context = client_context(small.tls.ca)
    with (
        socket.create_connection(("127.0.0.1", small.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n")
        tls.sendall(b'Content-Length: 1000\r\n\r\n{"apiVersion":')
        started = time.monotonic()
        answer = tls.recv(65536)
        elapsed = time.monotonic() - started
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"could not read the body" in body
    assert elapsed < READ_TIMEOUT + 20


def test_clients_stalled_in_the_handshake_or_headers_do_not_starve_the_server(small: WebhookProcess) -> None:
    # More stalled connections than the server has threads (2 workers x 4): without a bound on every
    # socket read, they would hold all of them and the next admission would wait forever.
    context = client_context(small.tls.ca)
    stalled: list[socket.socket] = []
    try:
        for index in range(12):
            raw = socket.create_connection(("127.0.0.1", small.port), timeout=30)
            if index % 2:
                raw.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
                stalled.append(raw)
            else:
                tls = context.wrap_socket(raw, server_hostname="localhost")
                tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: loc")  # half a header block, then nothing
                stalled.append(tls)
        time.sleep(READ_TIMEOUT + 1)
        started = time.monotonic()
        body = valid()
        with small.client() as client:
            response = response_of(client.post("/mutate", json=body), body["request"]["uid"])
        assert response["allowed"] is True
        assert time.monotonic() - started < 20
        # The stalled connections were dropped by the server, each logged as one warning.
        for sock in stalled:
            sock.settimeout(10)
            assert sock.recv(1024) == b""
        timeouts = [e for e in small.log_events() if e["event"] == "client-timed-out"]
        assert len(timeouts) >= len(stalled) and {e["level"] for e in timeouts} == {"warning"}
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_methods_are_client_errors(small: WebhookProcess, method: str) -> None:
    with small.client() as client:
        assert client.request(method, "/mutate").status_code == 405


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
POD_KEYS = [
    "metadata",
    "spec",
    "labels",
    "annotations",
    "containers",
    "initContainers",
    "volumes",
    "name",
    "image",
    "hostNetwork",
]


def review_like(draw: Any) -> dict[str, Any]:
    """A valid review with random parts replaced: the shapes an attacker or a buggy client could send."""
    body = valid()
    request = body["request"]
    old = json.loads(json.dumps(request["object"]))
    request["oldObject"] = old
    request["operation"] = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", 7, None]))
    for _ in range(draw(st.integers(0, 4))):
        obj = request.get("object")
        spec = obj.get("spec") if isinstance(obj, dict) else None
        containers = spec.get("containers") if isinstance(spec, dict) else None
        first = containers[0] if isinstance(containers, list) and containers else None
        candidates = [c for c in (body, request, obj, old, spec, first) if isinstance(c, dict)]
        target = draw(st.sampled_from(candidates))
        key = draw(
            st.sampled_from(
                [*POD_KEYS, "uid", "kind", "dryRun", "userInfo", "namespace", "request", "object"]
            )
        )
        target[key] = draw(JSON)
    return body


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_never_500_always_an_answer(small: WebhookProcess, data: st.DataObject) -> None:
    endpoint = data.draw(st.sampled_from(["/mutate", "/validate"]))
    kind = data.draw(st.sampled_from(["json", "review", "bytes"]))
    if kind == "json":
        content = json.dumps(data.draw(JSON)).encode()
    elif kind == "review":
        content = json.dumps(review_like(data.draw)).encode()
    else:
        content = data.draw(st.binary(max_size=256))
    with httpx.Client(base_url=small.url, verify=client_context(small.tls.ca), timeout=30.0) as client:
        http = client.post(endpoint, content=content, headers={"content-type": "application/json"})
    assert http.status_code in (200, 400), http.text
    if http.status_code == 400:
        assert http.json()["error"]
        return
    response = http.json()["response"]
    assert isinstance(response["allowed"], bool)
    assert "internal error" not in json.dumps(response), response
    if "patch" in response:
        assert endpoint == "/mutate" and response["patchType"] == "JSONPatch"


def test_fuzzing_left_the_server_healthy(small: WebhookProcess) -> None:
    with small.client() as client:
        assert client.get("/healthz").status_code == 200
    assert "Traceback" not in small.logs()
    assert not [e for e in small.log_events() if e["level"] == "error"]
