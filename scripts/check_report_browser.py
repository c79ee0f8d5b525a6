#!/usr/bin/env python3
"""Open a report's index.html in headless Chromium and check that it really renders.

Why a browser: a file can exist and still fail to decode, a script can throw, a relative link can
be right on disk and wrong in a URL (method labels contain `[`, `]`, `=`). Only a browser sees
what a reader sees. Uses the DevTools protocol over a pipe (`--remote-debugging-pipe`), standard
library only, so that every console error, uncaught exception and failed resource load is caught
as DevTools reports it, and the page's own self-check (`data-images-ok` on <body>, set on load by
bench/report/html.py) is read back.

Checks: the page loads; it has at least one table and one image; every <img> is complete with
naturalWidth > 0; no console error, uncaught exception or failed load. Also checks statically that
every relative src/href of the page resolves to an existing file.

Usage: python scripts/check_report_browser.py REPORT_DIR_OR_INDEX [--screenshot out.png]
Exit 0: all good; 1: problems (listed); 2: usage error or Chromium missing / not working.
CI needs: apt-get install -y chromium
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--window-size=1400,1000"]
PAGE_STATE = """JSON.stringify({
  imagesOk: document.body.dataset.imagesOk || null,
  brokenImages: document.body.dataset.brokenImages || "",
  images: document.images.length,
  imagesDecoded: Array.prototype.filter.call(document.images, i => i.complete && i.naturalWidth > 0).length,
  tables: document.querySelectorAll("table").length,
  tableRows: document.querySelectorAll("table tbody tr").length,
  height: document.documentElement.scrollHeight,
  title: document.title
})"""


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append((tag, v))


def local_refs(index: Path) -> tuple[list[Path], list[str]]:
    """(resolved local files, external or odd refs) of every src/href in `index`; anchors skipped."""
    parser = _Refs()
    parser.feed(index.read_text(encoding="utf-8"))
    files, odd = [], []
    for _tag, ref in parser.refs:
        parts = urlsplit(ref)
        if ref.startswith("#"):
            continue
        if parts.scheme or parts.netloc or ref.startswith("/"):
            odd.append(ref)
            continue
        files.append((index.parent / unquote(parts.path)).resolve())
    return files, odd


def _high(fd: int) -> int:
    """Move a descriptor to >= 10 (close-on-exec) so dup2 onto 3/4 in the child cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """Minimal DevTools-protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, chromium: str, user_data_dir: str):
        to_child_r, self._w = (_high(fd) for fd in os.pipe())
        self._r, from_child_w = (_high(fd) for fd in os.pipe())

        def fds():  # runs in the child before exec: the protocol wants the pipes on fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # stderr goes to a file: an unread pipe would fill up and stall Chromium.
        self.log_path = Path(user_data_dir) / "chromium-stderr.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [chromium, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=fds, close_fds=False)  # noqa: PLW1509 (no threads here)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._next:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while time.monotonic() < deadline:
            try:
                m = self._read(deadline)
            except TimeoutError:
                return None
            self.events.append(m)
            if m.get("method") == method:
                return m
        return None

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            pass

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                err = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium closed the pipe (exit {self.proc.poll()}): {err}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass  # already gone: the wait/kill below cleans up
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def _problems_from_events(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"uncaught exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console.{p['type']}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"console error ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
    return out


def check(index: Path, screenshot: Path | None = None, chromium: str = CHROMIUM,
          timeout: float = 60.0) -> tuple[list[str], dict]:
    """Return (problems, page state). Raises FileNotFoundError if Chromium is missing."""
    if not (Path(chromium).is_file() or shutil.which(chromium)):
        raise FileNotFoundError(f"{chromium} not found (apt-get install -y chromium)")
    problems = []
    files, odd = local_refs(index)
    problems += [f"reference to a missing file: {f}" for f in sorted(set(files)) if not f.is_file()]
    problems += [f"non-local reference (report must be self-contained): {r}" for r in odd]
    with tempfile.TemporaryDirectory(prefix="report-browser-") as udd:
        browser = Browser(chromium, udd)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            sid = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.send(f"{domain}.enable", session=sid)
            browser.send("Page.navigate", {"url": index.resolve().as_uri()}, session=sid)
            if browser.wait_event("Page.loadEventFired", timeout) is None:
                problems.append(f"page did not finish loading within {timeout:.0f} s")
            browser.drain(0.5)  # late console messages
            res = browser.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True}, session=sid)
            state = json.loads(res["result"]["value"])
            if screenshot is not None:
                height = min(int(state["height"]), 8000)
                browser.send("Emulation.setDeviceMetricsOverride",
                             {"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
                shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=sid)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            problems += _problems_from_events(browser.events)
        finally:
            browser.close()
    if state["imagesOk"] != "true":
        problems.append(f"page self-check: images not ok ({state['imagesOk']}); broken: {state['brokenImages']}")
    if state["images"] == 0 or state["imagesDecoded"] != state["images"]:
        problems.append(f"{state['imagesDecoded']} of {state['images']} images decoded")
    if state["tables"] == 0 or state["tableRows"] == 0:
        problems.append(f"no table rendered ({state['tables']} tables, {state['tableRows']} rows)")
    return problems, state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="report folder or its index.html")
    ap.add_argument("--screenshot", type=Path, help="write a full-page PNG screenshot here")
    ap.add_argument("--chromium", default=CHROMIUM)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    index = args.report / "index.html" if args.report.is_dir() else args.report
    if not index.is_file():
        print(f"error: {index} does not exist", file=sys.stderr)
        return 2
    try:
        problems, state = check(index, args.screenshot, args.chromium, args.timeout)
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        print(f"error: browser check could not run: {exc}", file=sys.stderr)
        return 2
    print(f"{index}: {state['tables']} tables ({state['tableRows']} rows), "
          f"{state['imagesDecoded']}/{state['images']} images decoded, title {state['title']!r}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
