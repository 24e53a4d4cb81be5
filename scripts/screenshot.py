"""Screenshot a page in headless Chromium after a real-time wait (pages fed over a websocket, such as
`facet3d view`'s exact triangle-splat view, need real seconds, not `--virtual-time-budget`).

    .venv/bin/python scripts/screenshot.py URL OUT.png [--wait 6] [--size 1000x700]

Drives Chromium through its DevTools protocol (the `websockets` package viser already needs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _shoot(ws_url: str, url: str, out: str, wait: float, w: int, h: int) -> None:
    import websockets

    async with websockets.connect(ws_url, max_size=None) as ws:
        n = 0

        async def call(method: str, **params):
            nonlocal n
            n += 1
            await ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == n:
                    return msg.get("result", {})

        await call("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
        await call("Page.enable")
        await call("Page.navigate", url=url)
        await asyncio.sleep(wait)
        shot = await call("Page.captureScreenshot", format="png")
        with open(out, "wb") as fh:
            fh.write(base64.b64decode(shot["data"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("--wait", type=float, default=6.0)
    ap.add_argument("--size", default="1000x700")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    port = _free_port()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--enable-unsafe-swiftshader",
                                 "--use-angle=swiftshader", f"--remote-debugging-port={port}",
                                 f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                    page = next(t for t in targets if t["type"] == "page")
                    break
                except (OSError, StopIteration):
                    if time.time() > deadline:
                        raise
                    time.sleep(0.2)
            asyncio.run(_shoot(page["webSocketDebuggerUrl"], a.url, a.out, a.wait, w, h))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
