"""Small, generic I/O helpers shared by the processes and the capabilities: retry with backoff,
ports (free, chosen, remembered across restarts), TCP/HTTP probes, child processes in their own
process group, and atomic JSON files.

It sits between the capabilities (``feature_store``, ``models``) and ``core`` in the import layers:
it may import ``core`` (for :class:`core.errors.StartupError`) and the standard library, nothing of
streamrec above it (``iokit.dead_letters``, not imported here, also uses aiokafka's record-size
estimate).
"""

from iokit.backoff import backoff_delay, retry
from iokit.files import FileLock, read_json, write_json_atomic
from iokit.net import LOOPBACK, choose_port, free_port, http_ok, port_is_free, tcp_open, wait_for_tcp
from iokit.portbook import PortBook
from iokit.process import ChildProcess, log_tail, spawn

__all__ = ["LOOPBACK", "ChildProcess", "FileLock", "PortBook", "backoff_delay", "choose_port", "free_port",
           "http_ok", "log_tail", "port_is_free", "read_json", "retry", "spawn", "tcp_open", "wait_for_tcp",
           "write_json_atomic"]
