"""Helpers shared by the Python end-to-end scripts in this folder (serve_e2e.py, grpc_e2e.py)."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(condition, message):
    """Prints `ok: message`, or `FAIL: message` and exits 1."""
    if not condition:
        print(f"FAIL: {message}", flush=True)
        raise SystemExit(1)
    print(f"ok: {message}", flush=True)
