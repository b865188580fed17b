"""Parsing the reports of the independent clients (wrk, h2load)."""

from __future__ import annotations

import pytest

from podharness.independent import add_h2load, failed_streams, parse_h2load, parse_wrk

WRK_CLEAN = """Running 1m test @ http://10.213.0.2:15001/
  1 threads and 4 connections
  148764 requests in 16.09s, 21.71MB read
Requests/sec:   9245.14
"""

WRK_ERRORS = """  1 threads and 4 connections
  5000 requests in 2.00s, 1.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
"""

H2LOAD = """finished in 3.00s, 501.81 req/s, 19.14KB/s
requests: 8029 total, 8029 started, 8029 done, 8020 succeeded, 9 failed, 2 errored, 1 timeout
status codes: 8020 2xx, 0 3xx, 4 4xx, 5 5xx
"""


def test_wrk_totals() -> None:
    assert parse_wrk(WRK_CLEAN) == {"requests": 148764, "socket_errors": 0, "non_2xx_3xx": 0}
    assert parse_wrk(WRK_ERRORS) == {"requests": 5000, "socket_errors": 6, "non_2xx_3xx": 7}


def test_h2load_totals_add_up_over_rounds() -> None:
    one = parse_h2load(H2LOAD)
    assert one == {
        "rounds": 1,
        "requests": 8029,
        "succeeded": 8020,
        "failed": 9,
        "errored": 2,
        "timeout": 1,
        "non_2xx": 9,
        "errored_unsent": 0,
        "errored_sent": 0,
    }
    assert add_h2load(one, one)["requests"] == 16058 and add_h2load(one, one)["rounds"] == 2


# h2load --log-file lines: request start (microseconds since the epoch, 0 if the request was never
# sent), status (-1 for a failed stream), microseconds to the stream's close.
H2LOAD_LOG = """1795968070673027\t200\t1500
0\t-1\t909820732
1795968070675040\t-1\t2100
0\t-1\t909824158
1795968070675835\t200\t900
"""


def test_failed_streams_tell_never_sent_from_sent() -> None:
    assert failed_streams(H2LOAD_LOG) == (2, 1)
    assert failed_streams("") == (0, 0)


def test_h2load_with_its_log_splits_errored_and_sums_the_split() -> None:
    one = parse_h2load(H2LOAD, H2LOAD_LOG)
    assert (one["errored_unsent"], one["errored_sent"]) == (2, 1)
    both = add_h2load(one, one)
    assert (both["errored_unsent"], both["errored_sent"]) == (4, 2)


def test_garbage_is_not_a_report() -> None:
    with pytest.raises(ValueError):
        parse_wrk("wrk: connection refused")
    with pytest.raises(ValueError):
        parse_h2load("")
