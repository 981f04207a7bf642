"""What the app's web server adds to Gradio's (``launch(app_kwargs=app_kwargs())``): plotly.js
under a route of its own, so that the page never names a path on the server's disk (Gradio's
``/gradio_api/file=<absolute path>`` would), the page itself gzipped where the browser accepts
it (Gradio compresses by file extension only, and the page's path has none: 176 KB sent as is),
and the page's configuration changed for the link it was asked by (``PagePatch``: a link to a tab
drawn into the page opens on that tab, no round trip first). ``warm_up`` does before serving what
Gradio's first event would do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import FileResponse
from starlette.routing import Route

# plotly.js's basic bundle (scatter, bar, pie: every trace ``sweep.analysis.charts`` draws), MIT,
# from npm's plotly.js-basic-dist-min (version in ui/static/README.md): 1.2 MB that starts in
# about 0.3 s in the browser, where the full bundle inside Gradio's gr.Plot takes 1.2 s.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PLOTLY_JS = os.path.join(STATIC, "plotly-basic.min.js")
PLOTLY_ROUTE = "/tsweep-static/plotly-basic.min.js"
# Relative to the page: it also works where a proxy serves the app under a path of its own.
PLOTLY_URL = PLOTLY_ROUTE.lstrip("/")
# The page and its configuration: compressed here; Gradio's own middleware does the files.
GZIPPED_PATHS = ("/", "/config")


async def _plotly(request: Any) -> FileResponse:
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )


class GzipPages:
    """ASGI middleware: Starlette's gzip for ``GZIPPED_PATHS`` only (a client that does not send
    ``Accept-Encoding: gzip`` gets the page as is); every other request passes untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") in GZIPPED_PATHS:
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# The page's configuration as Gradio's page template embeds it (``toorjson``: orjson, then the
# characters that could close the script escaped).
CONFIG_START, CONFIG_END = b"window.gradio_config = ", b";</script>"
HTML_SAFE = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"), (b"'", b"\\u0027"))
# The query of a page request -> {component id: {property: value}} to set in its configuration
Patch = Callable[[dict[str, str]], dict[int, dict[str, Any]]]


def patch_config(html: bytes, props: dict[int, dict[str, Any]]) -> bytes:
    """``html`` (Gradio's page) with the embedded configuration's components' ``props`` set; the
    page unchanged where it holds no configuration or none of those components."""
    start = html.find(CONFIG_START)
    end = html.find(CONFIG_END, start)
    if start < 0 or end < 0:
        return html
    start += len(CONFIG_START)
    config = orjson.loads(html[start:end])
    changed = False
    for component in config.get("components", []):
        if component.get("id") in props:
            component.setdefault("props", {}).update(props[component["id"]])
            changed = True
    if not changed:
        return html
    text = orjson.dumps(config)
    for char, escaped in HTML_SAFE:
        text = text.replace(char, escaped)
    return html[:start] + text + html[end:]


class PagePatch:
    """ASGI middleware: the page (``GET /``) with its configuration patched for its query
    (``patch``: which components' properties; nothing for most links, which pass untouched)."""

    def __init__(self, app: Any, patch: Patch) -> None:
        self.app = app
        self.patch = patch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("path") != "/":
            await self.app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        props = self.patch(query)
        if not props:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def buffered(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                html = b"".join(body)
                if start.get("status") == 200:
                    html = patch_config(html, props)
                headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                headers.append((b"content-length", str(len(html)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": html})
            else:
                await send(message)

        await self.app(scope, receive, buffered)


def warm_up() -> None:
    """What Gradio's first event would do, done before serving: Gradio wraps every event in a
    look at matplotlib's backend (``gradio.utils.MatplotlibBackendMananger``), and the first one
    imports matplotlib and resolves the backend (0.2-0.5 s on the 2-core VM, in the server's
    event loop, while the first page waits for its first event)."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.get_backend()


def app_kwargs(patch: Patch | None = None) -> dict[str, Any]:
    """The FastAPI app's extra routes and middleware, for ``Blocks.launch(app_kwargs=...)``;
    ``patch``: the page's configuration for a request's query (``PagePatch``)."""
    middleware = [Middleware(GzipPages)]  # outermost: it compresses the patched page
    if patch is not None:
        middleware.append(Middleware(PagePatch, patch=patch))
    return {"routes": [Route(PLOTLY_ROUTE, _plotly)], "middleware": middleware}
