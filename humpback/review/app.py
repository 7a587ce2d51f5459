"""The review page's web application: Starlette (the ASGI toolkit FastAPI is built on), one HTML page,
its script and style, and a small JSON API. Nothing to build: the page is plain HTML and JavaScript
shipped in the package (``humpback/review/static``).

    GET    /                      the page
    GET    /static/...            its script and style
    GET    /api/state             the sample, every decision about it, progress and agreement
    POST   /api/decisions         {"id", "verdict": accept|reject|edit, "instruction"?}: written at once
    DELETE /api/decisions/{id}    withdraw this reviewer's decision about a pair
"""

from __future__ import annotations

from pathlib import Path

from .session import ReviewSession

STATIC = Path(__file__).parent / "static"


def create_app(session: ReviewSession):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def page(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def state(request: Request):
        return JSONResponse(session.state())

    async def decide(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        try:
            progress = await run_in_threadpool(session.decide, str(body.get("id")), str(body.get("verdict")),
                                               body.get("instruction"))
        except KeyError as e:
            return JSONResponse({"error": e.args[0]}, status_code=404)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(progress)

    def undo(request: Request):
        try:
            return JSONResponse(session.undo(request.path_params["candidate_id"]))
        except KeyError as e:
            return JSONResponse({"error": e.args[0]}, status_code=404)

    routes = [Route("/", page), Route("/api/state", state), Route("/api/decisions", decide, methods=["POST"]),
              Route("/api/decisions/{candidate_id:path}", undo, methods=["DELETE"]),
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes)
