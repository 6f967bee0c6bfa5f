"""``python -m openhands_magics.testing``: run the local OpenHands-compatible server until Ctrl-C."""

from __future__ import annotations

import argparse
import time

from .server import DEMO_API_KEY, LocalOpenHandsServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openhands_magics.testing", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--key", default=DEMO_API_KEY, help="the API key the server accepts")
    parser.add_argument("--starting", type=float, default=2.0, help="seconds a conversation stays STARTING")
    parser.add_argument("--running", type=float, default=20.0, help="seconds a conversation stays RUNNING")
    args = parser.parse_args(argv)
    schedule = (("STARTING", args.starting), ("RUNNING", args.running), ("STOPPED", None))
    with LocalOpenHandsServer(args.key, schedule=schedule, port=args.port) as server:
        print(f"Local OpenHands server at {server.base_url} (demo key: {server.api_key})")
        print(f"  export OPENHANDS_BASE_URL={server.base_url}")
        print(f"  export OPENHANDS_API_KEY={server.api_key}")
        print("Ctrl-C stops it.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
