"""``python -m ui [--db results.db] [--data FILE ...] [--host 127.0.0.1] [--port N] [--auth U:P]``.

Serves the comparison app on the loopback address by default. A non-loopback address needs a
user and password (``--auth`` or the TSWEEP_UI_AUTH environment variable, both ``user:password``):
the app shows a cluster's results, and the mission's rule is that nothing is exposed without a
password. Analytics and share links are off; fonts are the system's (nothing from the internet).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import sys

AUTH_ENV = "TSWEEP_UI_AUTH"
EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line problem: one message, exit code 2."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and "localhost" are loopback; any other name may resolve outwards."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(text: str | None, where: str) -> tuple[str, str] | None:
    if text is None or text == "":
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UsageError(f"{where}: expected user:password (both non-empty)")
    return user, password


def resolve_auth(args: argparse.Namespace, environ: dict[str, str]) -> tuple[str, str] | None:
    """The credentials to ask for, or None; refuses a public address without them."""
    auth = parse_auth(args.auth, "--auth") or parse_auth(environ.get(AUTH_ENV), AUTH_ENV)
    if auth is None and not is_loopback(args.host):
        raise UsageError(
            f"refusing to serve on {args.host} without a password: anyone who can "
            f"reach it would see the results. Pass --auth user:password or set "
            f"{AUTH_ENV}=user:password (or use --host 127.0.0.1)."
        )
    return auth


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ui", description=__doc__.split("\n")[0])
    p.add_argument(
        "--db",
        default="results.db",
        help="results database written by python -m sweep (default: results.db; "
        "a missing file shows the reference rows only)",
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FILE",
        help="a results file (JSONL, as `python -m sweep export --format jsonl` writes), shown "
        "as a data set of its own; repeatable (a file that does not read is named and left out)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any other needs --auth)",
    )
    p.add_argument(
        "--port", type=int, default=None, help="port (default: the first free one from 7860)"
    )
    p.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASSWORD",
        help=f"ask for this user and password (or set {AUTH_ENV})",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often sweep progress is re-read (default 5)",
    )
    return p


def serve(demo, host: str | None, port: int | None, auth=None) -> str:
    """Launch the built app (``ui.app.build_app``) as ``python -m ui`` serves it, without
    blocking: its theme, styles and fonts, plotly.js's route, the page gzipped, links opened on
    their tab (``ui.server.app_kwargs``). Returns its local URL. The tests serve it this way too."""
    from ui.app import CSS, HEAD, THEME
    from ui.server import app_kwargs

    _app, local_url, _share = demo.queue().launch(
        server_name=host,
        server_port=port,
        auth=auth,
        share=False,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=THEME,
        css=CSS,
        footer_links=["api", "settings"],
        head=None if auth else HEAD,  # the login page cannot fetch the app's files
        app_kwargs=app_kwargs(demo.page_patch),  # plotly.js's route, the page gzipped, links
    )
    return local_url


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = dict(os.environ) if environ is None else environ
    try:
        auth = resolve_auth(args, environ)
        if args.port is not None and not 0 < args.port < 65536:
            raise UsageError(f"--port: {args.port} is not a port number (1-65535)")
        if not math.isfinite(args.refresh) or args.refresh <= 0:  # nan compares false
            raise UsageError(f"--refresh: must be a positive number of seconds, got {args.refresh}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # gradio is imported only once args are good
    from ui.app import Holder, build_app
    from ui.server import warm_up

    holder = Holder(args.db, data_files=args.data)
    for msg in holder.data.messages:
        print(f"note: {msg}", file=sys.stderr)
    demo = build_app(holder, refresh_s=args.refresh, private=auth is not None)
    warm_up()
    local_url = serve(demo, args.host, args.port, auth)
    print(
        f"transformers-sweep UI: {local_url}" + (" (password required)" if auth else ""), flush=True
    )
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
