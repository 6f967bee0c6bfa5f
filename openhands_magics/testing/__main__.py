"""``python -m openhands_magics.testing``: run the local OpenHands-compatible server until Ctrl-C."""

from __future__ import annotations

import argparse
import time

from .server import DEMO_API_KEY, LocalOpenHandsServer, Timeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openhands_magics.testing", description=__doc__)
    parser.add_argument("--api", choices=("v1", "v0"), default="v1", help="OpenHands API to speak (default: v1)")
    parser.add_argument(
        "--auth",
        choices=("bearer", "session-key", "none"),
        default="bearer",
        help="bearer: Cloud's Authorization header; session-key: X-Session-API-Key; none: no auth",
    )
    parser.add_argument(
        "--max-running",
        type=int,
        default=10,
        help="conversations running at once before a start is refused (Cloud: 3 personal, 10 team; default 10)",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--key", default=DEMO_API_KEY, help="the API key the server accepts")
    parser.add_argument("--starting", type=float, default=2.0, help="seconds a conversation takes to start")
    parser.add_argument("--running", type=float, default=20.0, help="seconds the agent then works")
    parser.add_argument(
        "--step", action="append", default=[], help="a shell command the agent runs (again for more; 'edit:PATH')"
    )
    args = parser.parse_args(argv)
    timeline = Timeline(starting=args.starting, running=args.running, steps=tuple(args.step))
    with LocalOpenHandsServer(
        args.key, api=args.api, auth=args.auth, timeline=timeline, port=args.port, max_running=args.max_running
    ) as server:
        print(f"Local OpenHands server ({args.api}) at {server.base_url} (demo key: {server.api_key})")
        print(f"  export OPENHANDS_BASE_URL={server.base_url}")
        print(f"  export OPENHANDS_API_KEY={server.api_key}")
        if args.api == "v1":
            print(f"  agent server (WebSocket /sockets/events/ID) at {server.agent_url}")
        print("Ctrl-C stops it.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
