"""Envoy hot-restart plumbing: socket names, /proc/net/unix parsing, message framing, shm flags word."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from agent.decisions import INITIALIZING_FLAG
from agent.hotrestart import (
    DRAIN_LISTENERS_REQUEST,
    EMPTY_STATS_REPLY,
    REQUEST_DRAIN_LISTENERS,
    REQUEST_STATS,
    REQUEST_TERMINATE,
    SUN_PATH_MAX,
    SharedMemoryMismatchError,
    ShmLayout,
    abstract_names,
    bound_parent_ids,
    clear_initializing,
    frame,
    layout_from_hot_restart_version,
    parse_request_kind,
    read_flags,
    shm_path,
    socket_address,
    socket_name,
)

# Two Envoys of base id 911 (epochs 0 and 1) and an unrelated socket, as /proc/net/unix shows them.
PROC_NET_UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
000000001477b48f: 00000002 00000000 00000000 0002 01  8737 @envoy_domain_socket_child_9110@@@@@@@@@@@@@@@@@@@@
00000000ab51dde8: 00000002 00000000 00000000 0002 01  8739 @envoy_domain_socket_parent_9110@@@@@@@@@@@@@@@@@@@
00000000ab51dde9: 00000002 00000000 00000000 0002 01  8740 @envoy_domain_socket_parent_9111@@@@@@@@@@@@@@@@@@@
00000000ab51ddea: 00000002 00000000 00000000 0002 01  8741 @envoy_domain_socket_parent_9122@@@@@@@@@@@@@@@@@@@
00000000f15de527: 00000002 00000000 00010000 0001 01 118444 /root/.gunicorn/gunicorn.ctl
0000000018d5ecae: 00000003 00000000 00000000 0001 03   562
"""


def test_socket_names_follow_base_id_times_ten_plus_epoch_mod_three() -> None:
    assert socket_name(911, 0, "parent") == "envoy_domain_socket_parent_9110"
    assert socket_name(911, 4, "child") == "envoy_domain_socket_child_9111"
    assert socket_name(7, 2, "parent") == "envoy_domain_socket_parent_72"


def test_socket_address_is_nul_padded_like_envoys_sizeof_sockaddr() -> None:
    address = socket_address("envoy_domain_socket_parent_9110")
    assert len(address) == SUN_PATH_MAX
    assert address.startswith(b"\0envoy_domain_socket_parent_9110\0")
    assert address.strip(b"\0") == b"envoy_domain_socket_parent_9110"


def test_bound_parent_ids_from_proc_net_unix() -> None:
    names = abstract_names(PROC_NET_UNIX)
    assert "envoy_domain_socket_child_9110" in names
    assert bound_parent_ids(names, 911) == frozenset({0, 1})
    assert bound_parent_ids(names, 912) == frozenset({2})
    assert bound_parent_ids(names, 913) == frozenset()


def request(field: int) -> bytes:
    """A HotRestartMessage{request{<field>{}}} as Envoy frames it."""
    inner = bytes([field << 3 | 2, 0])
    return frame(bytes([0x0A, len(inner)]) + inner)


def test_requests_are_recognised() -> None:
    assert parse_request_kind(request(REQUEST_STATS)) == REQUEST_STATS
    assert parse_request_kind(request(REQUEST_TERMINATE)) == REQUEST_TERMINATE
    assert parse_request_kind(frame(DRAIN_LISTENERS_REQUEST)) == REQUEST_DRAIN_LISTENERS
    assert frame(DRAIN_LISTENERS_REQUEST) == request(REQUEST_DRAIN_LISTENERS)
    assert parse_request_kind(b"short") is None
    assert parse_request_kind(frame(bytes([0x12, 0x00]))) is None  # a reply, not a request


def test_frame_is_a_big_endian_length_then_the_message() -> None:
    framed = frame(EMPTY_STATS_REPLY)
    assert struct.unpack(">Q", framed[:8]) == (4,)
    assert framed[8:] == b"\x12\x02\x1a\x00"


def test_layout_comes_from_the_hot_restart_version() -> None:
    layout = layout_from_hot_restart_version("11.104")
    assert layout == ShmLayout(size=104, version=11)
    assert layout.flags_offset == 96


def segment(path: Path, *, size: int = 104, version: int = 11, flags: int = 0) -> Path:
    path.write_bytes(struct.pack("=QQ", size, version) + bytes(80) + struct.pack("=Q", flags))
    return path


def test_flags_are_read_and_initializing_is_cleared_without_touching_other_bits(tmp_path: Path) -> None:
    layout = layout_from_hot_restart_version("11.104")
    path = segment(tmp_path / "seg", flags=INITIALIZING_FLAG | 0x4)
    assert read_flags(path, layout) == INITIALIZING_FLAG | 0x4
    assert clear_initializing(path, layout, INITIALIZING_FLAG) == INITIALIZING_FLAG | 0x4
    assert read_flags(path, layout) == 0x4
    assert path.read_bytes()[:16] == struct.pack("=QQ", 104, 11)


def test_missing_segment_reads_as_none(tmp_path: Path) -> None:
    assert read_flags(tmp_path / "none", layout_from_hot_restart_version("11.104")) is None


@pytest.mark.parametrize(("size", "version"), [(112, 11), (104, 12)])
def test_a_segment_of_another_layout_is_not_touched(tmp_path: Path, size: int, version: int) -> None:
    path = segment(tmp_path / "seg", size=size, version=version, flags=1)
    before = path.read_bytes()
    with pytest.raises(SharedMemoryMismatchError):
        clear_initializing(path, layout_from_hot_restart_version("11.104"), INITIALIZING_FLAG)
    assert path.read_bytes() == before


def test_shm_path() -> None:
    assert shm_path(Path("/dev/shm"), 7) == Path("/dev/shm/envoy_shared_memory_70")
