"""``orster4d-view ASSET``: open a 4D asset folder in the web viewer.

Writes the viewer into the folder when it is missing (or with ``--rewrite``), serves the folder on
``127.0.0.1`` with the standard library's ``http.server`` and opens the default browser; where no
browser can be started (or with ``--no-browser``) it prints the URL to open. ``--demo`` first
writes a procedural asset (a moving object's own Gaussians, no training) into ASSET. Ctrl-C stops
the server.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
import webbrowser
from pathlib import Path

from orster4d.cli.args import HelpFormatter, description, integer

__all__ = ["main", "build_parser", "serve"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the terminal for the URL and errors
        pass


def serve(folder: Path, port: int = 8000, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """Starts serving ``folder`` in a background thread; returns the server (``server_address`` has the port)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orster4d-view", description=description(__doc__), formatter_class=HelpFormatter)
    p.add_argument("asset", type=Path, help="asset folder written by orster4d-construct")
    p.add_argument("--port", type=integer(0, 65535), default=8000, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--no-browser", action="store_true", help="print the URL instead of opening a browser")
    p.add_argument("--rewrite", action="store_true", help="rewrite the viewer files even when present")
    p.add_argument("--demo", action="store_true", help="first write a procedural asset (hopper, 8 frames) into ASSET")
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    from orster4d.data.procedural_asset import write_procedural_asset
    from orster4d.viewer import write_viewer

    folder = args.asset
    if args.demo:
        write_procedural_asset(folder)
    if not folder.is_dir():
        p.error(f"{folder}: no such asset folder")
    if args.rewrite or not (folder / "viewer.html").is_file() or not (folder / "viewer_data.js").is_file():
        try:
            write_viewer(folder)
        except ValueError as e:
            p.error(str(e))
    try:
        server = serve(folder, args.port)
    except OSError as e:
        p.error(f"cannot serve on 127.0.0.1:{args.port} ({e}); pick another --port (0: any free one)")
    url = f"http://127.0.0.1:{server.server_address[1]}/viewer.html"
    opened = False
    if not args.no_browser:
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
    print(f"viewer: {url}" + ("" if opened else "  (open this URL in a browser)"), flush=True)
    print("serving; Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
