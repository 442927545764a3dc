"""A throwaway ``redis-server`` for fault tests: its own port and directory, and the means to
kill, freeze, thaw and restart it.

It runs Debian's binary (``redis-server`` on PATH, else ``/usr/bin/redis-server``), bound to
127.0.0.1 with RDB snapshots off. With ``appendonly`` it keeps an AOF (fsync every second) in
its directory, so ``restart()`` after ``kill()`` reloads what had reached the disk; without
it, a restarted server comes back empty.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise FileNotFoundError(
            "redis-server is not installed: `apt-get install redis-server` "
            "(scripts/services does it when run as root)"
        )
    return found


class RedisServer:
    """One ``redis-server`` process on a free port, with ``directory`` as its working dir."""

    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        self.directory = Path(directory)
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis-server.log"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING (at most ~10 s)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.directory),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", "everysec"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start: {self._log_tail()}")
                try:
                    if client.ping():
                        return self
                except redis.BusyLoadingError:
                    pass  # still loading its AOF
                except redis.ConnectionError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not answer PING within "
                        f"{START_TIMEOUT:.0f} s: {self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as in a crash: no shutdown, no final fsync. Waits for the exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: a frozen server carries on as if nothing happened."""
        self._signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        """Start again on the same port (and directory), stopping first if still running."""
        self.stop()
        return self.start()

    def stop(self) -> None:
        """SIGTERM (a clean shutdown) and wait; safe to call at any time, and again."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        process.send_signal(signal.SIGCONT)  # a frozen server could not act on SIGTERM
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _signal(self, signum: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} is not running")
        self.process.send_signal(signum)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"RedisServer({self.url}, appendonly={self.appendonly})"
