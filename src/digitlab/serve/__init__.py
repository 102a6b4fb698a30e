"""The web app: a drawing page, the run's report and an HTTP API.

* :mod:`~digitlab.serve.app` - :func:`create_app`, the routes.
* :mod:`~digitlab.serve.requests` - reading uploads and JSON pixels.
* :mod:`~digitlab.serve.middleware` - errors, body limits, headers, admission.
* :mod:`~digitlab.serve.server` - :func:`serve`: binding the port, uvicorn.

Needs the ``digitlab[serve]`` extra (FastAPI, uvicorn, python-multipart).
"""

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (uploads)
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "digitlab serve needs the web extras: pip install 'digitlab[serve]' "
        f"(fastapi, uvicorn, python-multipart). Missing: {error.name}"
    ) from None

from digitlab.serve.app import DEFAULT_MAX_QUEUE, MAX_BODY_BYTES, create_app
from digitlab.serve.server import bind_socket, serve

__all__ = ["DEFAULT_MAX_QUEUE", "MAX_BODY_BYTES", "bind_socket", "create_app", "serve"]
