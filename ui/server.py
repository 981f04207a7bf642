"""What the app's web server adds to Gradio's (``launch(app_kwargs=app_kwargs())``): plotly.js
under a route of its own, so that the page never names a path on the server's disk (Gradio's
``/gradio_api/file=<absolute path>`` would), and the page itself gzipped where the browser accepts
it (Gradio compresses by file extension only, and the page's path has none: 176 KB sent as is).
"""

from __future__ import annotations

import os
from typing import Any

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


def app_kwargs() -> dict[str, Any]:
    """The FastAPI app's extra routes and middleware, for ``Blocks.launch(app_kwargs=...)``."""
    return {"routes": [Route(PLOTLY_ROUTE, _plotly)], "middleware": [Middleware(GzipPages)]}
