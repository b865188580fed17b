"""Envoy's hot-restart plumbing seen from outside: its domain sockets, its shared memory, a stand-in parent.

Facts from Envoy 1.40 (source/server/: hot_restarting_base.cc, hot_restarting_child.cc, hot_restart_impl.*):
- each process binds `{socket_path}_child_{id}` and `{socket_path}_parent_{id}`, id = base_id*10 + epoch%3;
  with the abstract default socket path the names are netns-scoped, and Envoy binds them with the whole
  108-byte sun_path (NUL padded), so /proc/net/unix shows them padded with '@' and so must we bind them;
- messages are datagrams: an 8-byte big-endian length, then a serialised envoy.HotRestartMessage;
- the shared memory segment is /dev/shm/envoy_shared_memory_{base_id*10}, laid out as
  `struct SharedMemory { uint64_t size_; uint64_t version_; pthread_mutex_t log_lock_;
  pthread_mutex_t access_log_lock_; std::atomic<uint64_t> flags_; }` (hot_restart_impl.h), and
  `--hot-restart-version` prints "{HOT_RESTART_VERSION}.{sizeof(SharedMemory)}" ("11.104" on 1.40), so
  flags_ is the last 8 bytes (offset 96). attachSharedMemory() sets SHMEM_FLAGS_INITIALIZING (0x1) and
  drainParentListeners() clears it; a child that dies in between leaves it set (envoy#33446).
This module must not start or stop Envoys; agent/envoy.py does that.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SOCKET_PATH = "@envoy_domain_socket"
SUN_PATH_MAX = 108
_LENGTH = struct.Struct(">Q")
_U64 = struct.Struct("=Q")

# envoy.HotRestartMessage (source/server/hot_restart.proto): oneof requestreply { Request request = 1;
# Reply reply = 2; }; Request oneof: stats = 3, terminate = 5; Reply oneof: stats = 3.
REQUEST_FIELD = 1
REQUEST_STATS = 3
REQUEST_DRAIN_LISTENERS = 4
REQUEST_TERMINATE = 5
EMPTY_STATS_REPLY = bytes([0x12, 0x02, 0x1A, 0x00])  # reply { stats { } }
DRAIN_LISTENERS_REQUEST = bytes(
    [0x0A, 0x02, REQUEST_DRAIN_LISTENERS << 3 | 2, 0x00]
)  # request { drain_listeners { } }


def socket_name(base_id: int, epoch: int, role: str) -> str:
    """The abstract name (without the leading NUL) Envoy binds for `role` at `epoch`."""
    return f"{SOCKET_PATH[1:]}_{role}_{base_id * 10 + epoch % 3}"


def socket_address(name: str) -> bytes:
    """The sockaddr_un path Envoy uses: a leading NUL, the name, NUL padding to the full sun_path."""
    raw = b"\0" + name.encode()
    if len(raw) > SUN_PATH_MAX:
        raise ValueError(f"socket name too long: {name}")
    return raw.ljust(SUN_PATH_MAX, b"\0")


def abstract_names(proc_net_unix: str) -> set[str]:
    """Abstract socket names listed in /proc/net/unix text ('@' shows NULs, padding stripped)."""
    names: set[str] = set()
    for line in proc_net_unix.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7].startswith("@"):
            names.add(fields[7][1:].rstrip("@"))
    return names


def bound_parent_ids(names: set[str], base_id: int) -> frozenset[int]:
    """Which `epoch % 3` ids have a bound parent socket, i.e. a running Envoy (or our stand-in)."""
    return frozenset(k for k in range(3) if socket_name(base_id, k, "parent") in names)


def read_bound_parent_ids(base_id: int, proc_net_unix: Path = Path("/proc/net/unix")) -> frozenset[int]:
    """Probe this network namespace without binding anything (binding would race a starting Envoy)."""
    return bound_parent_ids(abstract_names(proc_net_unix.read_text()), base_id)


def parse_request_kind(datagram: bytes) -> int | None:
    """The Request oneof field number of one length-prefixed HotRestartMessage, or None if not a request."""
    if len(datagram) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack_from(datagram)
    body = datagram[_LENGTH.size : _LENGTH.size + length]
    if len(body) < 2 or body[0] != (REQUEST_FIELD << 3 | 2):
        return None
    inner_length, offset = _varint(body, 1)
    inner = body[offset : offset + inner_length]
    if not inner:
        return None
    key, _ = _varint(inner, 0)
    return key >> 3


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while offset < len(data):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise ValueError("truncated varint")


def frame(message: bytes) -> bytes:
    """Prefix a serialised HotRestartMessage with its 8-byte big-endian length, as Envoy expects."""
    return _LENGTH.pack(len(message)) + message


def send_drain_listeners(base_id: int, epoch: int) -> None:
    """Ask the Envoy of `epoch` to drain its listeners as if a hot-restart child had started.

    The fallback when its admin API is gone (a failed child's ShutdownAdmin closed it). Envoy expects
    no reply to DrainListeners (HotRestartingChild::drainParentListeners), so no socket of ours is bound.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(frame(DRAIN_LISTENERS_REQUEST), socket_address(socket_name(base_id, epoch, "parent")))


def send_stats_reply(base_id: int, epoch: int) -> None:
    """Send the Envoy of `epoch` one empty Stats reply, as its parent would (docs/contract.md "A stalled
    child"): the reply its main thread waits for when the hot-restart wedge (envoy#34069) holds it.

    From an unbound socket: a child reads its replies from whoever sends them. A surplus reply is read
    as the reply to its next Stats request. OSError when its socket is gone or its queue is full.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(frame(EMPTY_STATS_REPLY), socket_address(socket_name(base_id, epoch, "child")))


class _StandIn:
    """One of Envoy's hot-restart socket names, bound by us and served from a daemon thread."""

    def __init__(self, address: bytes, *, thread_name: str, on_message: Callable[[str], None]) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self._on_message = on_message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)

    def _handle(self, datagram: bytes, fds: list[int]) -> bool:
        """One datagram (and the fds passed with it); True to stop serving."""
        raise NotImplementedError

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        fd_size = array.array("i").itemsize
        try:
            while not self._stop.is_set():
                try:
                    data, ancillary, _flags, _address = self._sock.recvmsg(65536, socket.CMSG_SPACE(fd_size))
                except TimeoutError:
                    continue
                fds = array.array("i")
                for level, kind, payload in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[: len(payload) - len(payload) % fd_size])
                if self._handle(data, list(fds)):
                    return
        except OSError as error:
            self._on_message(f"error {error}")
        finally:
            self._sock.close()

    def close(self) -> None:
        """Stop serving and let go of the socket name (waits up to 2 s)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


class ParentStandIn(_StandIn):
    """Binds a dead parent Envoy's socket so its child keeps running (envoy#7468).

    A child whose parent died mid-drain aborts when a Stats request or the Terminate message cannot be
    delivered. We answer Stats with an empty reply and swallow Terminate, then let go of the name.
    """

    def __init__(
        self,
        *,
        base_id: int,
        parent_epoch: int,
        on_message: Callable[[str], None],
        unblock: bool = False,
    ) -> None:
        """`unblock`: also send one Stats reply at once, for a child whose main thread waits for the
        reply to a Stats request the parent took with it (a parent hung, then killed, mid-drain)."""
        address = socket_address(socket_name(base_id, parent_epoch, "parent"))
        super().__init__(address, thread_name="parent-stand-in", on_message=on_message)
        self._child = socket_address(socket_name(base_id, parent_epoch + 1, "child"))
        self.terminated = threading.Event()
        if unblock:
            # Safe when the child waits for nothing: it only reads replies right after a request, and a
            # surplus empty Stats reply is read as the reply to its next Stats request.
            with contextlib.suppress(OSError):
                self._sock.sendto(frame(EMPTY_STATS_REPLY), self._child)
                on_message("unsolicited stats reply")
        self._thread.start()

    def _handle(self, datagram: bytes, fds: list[int]) -> bool:
        kind = parse_request_kind(datagram)
        if kind == REQUEST_STATS:
            self._sock.sendto(frame(EMPTY_STATS_REPLY), self._child)
            self._on_message("stats")
        elif kind == REQUEST_TERMINATE:
            self._on_message("terminate")
            self.terminated.set()
            return True
        else:
            self._on_message(f"ignored request {kind}")
        return False


class ChildStandIn(_StandIn):
    """Binds the socket of a child we killed while its parent was hung, and swallows the parent's replies.

    A parent that resumes answers the dead child's request (ShutdownAdmin, PassListenSocket); a reply to
    an unbound name fails with ECONNREFUSED, which Envoy retries ten times a second apart on its main
    thread and then aborts on (hot_restarting_base.cc, sendHotRestartMessage). Bound here, the reply is
    read and dropped, and any listen socket passed with it is closed at once.
    """

    def __init__(self, *, base_id: int, epoch: int, on_message: Callable[[str], None]) -> None:
        address = socket_address(socket_name(base_id, epoch, "child"))
        super().__init__(address, thread_name="child-stand-in", on_message=on_message)
        self._thread.start()

    def _handle(self, datagram: bytes, fds: list[int]) -> bool:
        for fd in fds:
            os.close(fd)
        self._on_message(f"swallowed {len(datagram)} bytes, closed {len(fds)} passed fds")
        return False


@dataclass(frozen=True)
class ShmLayout:
    """Size and version of Envoy's `struct SharedMemory`, from `--hot-restart-version`."""

    size: int
    version: int

    @property
    def flags_offset(self) -> int:
        """Byte offset of the flags word: the last 8 bytes of the struct."""
        return self.size - _U64.size


def layout_from_hot_restart_version(hot_restart_version: str) -> ShmLayout:
    """ "11.104" -> version 11, sizeof(SharedMemory) 104 (HotRestartImpl::hotRestartVersion())."""
    version, _, size = hot_restart_version.partition(".")
    return ShmLayout(size=int(size), version=int(version))


def shm_path(shm_dir: Path, base_id: int) -> Path:
    """Envoy's shared memory segment for `base_id` (`envoy_shared_memory_{base_id*10}`)."""
    return shm_dir / f"envoy_shared_memory_{base_id * 10}"


class SharedMemoryMismatchError(RuntimeError):
    """The segment is not laid out as our Envoy's hot-restart version says; do not touch it."""


def read_flags(path: Path, layout: ShmLayout) -> int | None:
    """The flags word, or None if there is no segment; checks size and version first."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        header = os.pread(fd, layout.size, 0)
    finally:
        os.close(fd)
    return _checked_flags(header, layout, path)


def _checked_flags(header: bytes, layout: ShmLayout, path: Path) -> int:
    if len(header) != layout.size:
        raise SharedMemoryMismatchError(f"{path} has {len(header)} bytes, expected {layout.size}")
    size, version = struct.unpack_from("=QQ", header)
    if (size, version) != (layout.size, layout.version):
        raise SharedMemoryMismatchError(f"{path} says size {size} version {version}, expected {layout}")
    (flags,) = _U64.unpack_from(header, layout.flags_offset)
    return int(flags)


def clear_initializing(path: Path, layout: ShmLayout, flag: int) -> int:
    """Clear a stale INITIALIZING bit; returns the flags seen. Only call with the run-dir lock held.

    A plain read-modify-write is safe here: under the lock no Envoy is initialising, and a LIVE Envoy
    never writes the flags word again.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        flags = _checked_flags(os.pread(fd, layout.size, 0), layout, path)
        if flags & flag:
            os.pwrite(fd, _U64.pack(flags & ~flag), layout.flags_offset)
            os.fsync(fd)
        return flags
    finally:
        os.close(fd)
