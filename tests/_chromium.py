"""Headless Chromium for the tests: load a page, ask its DOM questions through the Chrome
DevTools protocol (over ``--remote-debugging-pipe``: JSON messages ended by NUL on file
descriptors 3 and 4, no library needed) and take a screenshot with ``--screenshot``.

Debian's ``chromium`` package (``apt-get install -y chromium``); :func:`executable` is
``None`` where it is absent.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio"]


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe:
    """The browser end of a ``--remote-debugging-pipe`` session."""

    def __init__(self, proc, write_fd: int, read_fd: int):
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer, self.events, self.next_id = b"", [], 0

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for k, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(k)
            self.events.append(self._message(deadline))


def _launch(args: list[str], user_dir: str):
    """Start chromium with the DevTools pipe on its descriptors 3 (commands) and 4 (replies).

    The pipe ends are moved to descriptors >= 10 and put onto 3 and 4 by the bash that
    execs chromium: no Python code runs between fork and exec (JAX's threads make that
    unsafe, and Python then warns)."""
    to_browser, from_browser = os.pipe(), os.pipe()
    r = fcntl.fcntl(to_browser[0], fcntl.F_DUPFD_CLOEXEC, 10)
    w = fcntl.fcntl(from_browser[1], fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(to_browser[0])
    os.close(from_browser[1])
    command = [executable(), *FLAGS, f"--user-data-dir={user_dir}", "--remote-debugging-pipe", *args]
    try:
        proc = subprocess.Popen([shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', *command],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                pass_fds=(r, w))
    finally:
        os.close(r)
        os.close(w)
    return proc, _Pipe(proc, to_browser[1], from_browser[0])


def inspect(url: str, expression: str, *, width: int = 1280, height: int = 900, timeout: float = 90.0):
    """Load ``url`` in a fresh headless browser; after its load event, the value of the
    JavaScript ``expression`` and the URLs of every network request the page made."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as user_dir:
        proc, pipe = _launch([f"--window-size={width},{height}", "about:blank"], user_dir)
        try:
            targets = pipe.call("Target.getTargets", timeout=timeout)["targetInfos"]
            page = next(t["targetId"] for t in targets if t["type"] == "page")
            session = pipe.call("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
            pipe.call("Page.enable", session=session)
            pipe.call("Network.enable", session=session)
            pipe.call("Page.navigate", {"url": url}, session=session)
            pipe.wait_event("Page.loadEventFired", session, timeout=timeout)
            value = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, session=session)["result"]["value"]
            requests = [e["params"]["request"]["url"] for e in pipe.events
                        if e.get("method") == "Network.requestWillBeSent"]
            pipe.call("Browser.close")
        finally:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(pipe.write_fd)
            os.close(pipe.read_fd)
    return value, requests


def screenshot(url: str, path: str, *, width: int, height: int, timeout: float = 120.0) -> None:
    """``chromium --headless --screenshot=path`` of ``url`` in a ``width`` × ``height`` window."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as user_dir:
        subprocess.run([executable(), *FLAGS, f"--user-data-dir={user_dir}", f"--window-size={width},{height}",
                        f"--screenshot={path}", url], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       check=True)
