#!/usr/bin/env python3
"""End-to-end checks of `autoglm serve` as a real process on 127.0.0.1, driven by the official
`openai` Python client and plain HTTP (scripts/e2e/run.sh installs the client into a venv).

1. The openai client: models, chat and completions, one-shot and streaming (greedy stream == one-shot).
2. Overload: 10x more concurrent requests than the queue holds -> only 200s and 429/503 with
   Retry-After, the server's RSS stays flat, and it serves normally afterwards.
3. A client that disconnects mid-stream frees its sequence (running requests back to 0).
4. A second server on the same port exits non-zero naming the port.
5. SIGTERM drains: an in-flight stream finishes all its tokens, new requests are refused, exit 0.
6. HTTPS (server.tls) with a throw-away self-signed certificate made by the openssl command: the
   openai client verifies it and chats; a missing key file stops serve before the model loads.
7. Client certificates (server.tls.client_ca_file): /admin needs one from the configured CA (403 without,
   handshake refused with another CA's), inference routes need none.
8. Tracing (tracing.enabled): spans reach an OTLP/HTTP collector on 127.0.0.1 in the caller's trace, with
   the request's span and its queue, prefill and decode phases.

Every wait is bounded; the script exits non-zero on the first failed check.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import openai

from e2e_common import check, free_port

BINARY = sys.argv[1] if len(sys.argv) > 1 else ".build/release/autoglm"
QUEUE = 4
SEQUENCES = 2


def start_server(port, extra_env=None, ssl_context=None, args=None):
    env = dict(os.environ)
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [BINARY, "serve", "--port", str(port)] + (args or ["--max-sequences", str(SEQUENCES), "--threads", "2"]),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Drain the server's output as it comes: an unread pipe fills (64 KiB of request logs) and then
    # blocks the server's logging, and with it the server.
    proc.log_lines = []
    proc.log_reader = threading.Thread(target=lambda: proc.log_lines.extend(proc.stdout), daemon=True)
    proc.log_reader.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            proc.log_reader.join(timeout=10)
            print("".join(proc.log_lines))
            raise SystemExit(f"FAIL: the server exited early with {proc.returncode}")
        try:
            scheme = "https" if ssl_context else "http"
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/ready", timeout=2, context=ssl_context) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("FAIL: the server did not become ready in 120 s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post(port, path, body, timeout=120):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name):
                return float(line.split()[-1])
    return None


def openai_client_checks(port):
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
    models = client.models.list()
    model = models.data[0].id
    check(model == "smollm2-135m-instruct", f"models.list() -> {model}")

    messages = [{"role": "user", "content": "Name three colors."}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=20, temperature=0)
    text = chat.choices[0].message.content
    check(chat.object == "chat.completion" and text and chat.usage.completion_tokens > 0,
          f"chat one-shot: {text!r}, usage {chat.usage.prompt_tokens}+{chat.usage.completion_tokens}")

    pieces, finish, usage = [], None, None
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    check("".join(pieces) == text, "chat stream text equals the one-shot text (temperature 0)")
    check(finish == chat.choices[0].finish_reason, f"chat stream finish_reason {finish}")
    check(usage is not None and usage.completion_tokens == chat.usage.completion_tokens, "chat stream usage chunk")

    comp = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    check(comp.object == "text_completion" and comp.choices[0].finish_reason == "length" and comp.usage.completion_tokens == 8,
          f"completion one-shot: {comp.choices[0].text!r}")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True) if c.choices)
    check(streamed == comp.choices[0].text, "completion stream text equals the one-shot text")

    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
        check(False, "unknown model must fail")
    except openai.NotFoundError as e:
        check(e.status_code == 404, "unknown model -> openai.NotFoundError (404)")
    try:
        client.chat.completions.create(model=model, messages=messages, max_tokens=100000)
        check(False, "max_tokens beyond the context must fail")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"max_tokens beyond the context -> 400: {e.message[:80]}")
    return model


def gateway_checks(upstream_port, model, upstream="autoglm"):
    """A second autoglm in front of the first (--upstream, no local model): at temperature 0 the openai
    client gets through it exactly what it gets directly, one-shot and streamed. `upstream` names the
    engine behind (autoglm, or llama-server in llama_server_checks)."""
    port = free_port()
    proc = start_server(port, args=["--upstream", f"{model}=http://127.0.0.1:{upstream_port}/v1"])
    try:
        direct = openai.OpenAI(base_url=f"http://127.0.0.1:{upstream_port}/v1", api_key="unused", max_retries=0, timeout=120)
        gateway = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        check([m.id for m in gateway.models.list().data] == [model], "gateway: models.list() names the upstream model")
        messages = [{"role": "user", "content": "Name three colors."}]
        want = direct.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0).choices[0].message.content
        got = gateway.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0).choices[0].message.content
        check(got == want, f"gateway: chat one-shot equals the direct call ({got!r})")
        streamed = "".join(c.choices[0].delta.content or "" for c in gateway.chat.completions.create(
            model=model, messages=messages, max_tokens=16, temperature=0, stream=True) if c.choices)
        check(streamed == want, "gateway: chat stream equals the direct call")
        want = direct.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0).choices[0].text
        streamed = "".join(c.choices[0].text for c in gateway.completions.create(
            model=model, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True) if c.choices)
        check(streamed == want, "gateway: completion stream equals the direct call")
        one_shot = gateway.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0).choices[0].text
        check(one_shot == want, f"gateway to {upstream}: completion one-shot equals the direct call ({one_shot!r})")
        if upstream == "autoglm":
            try:
                gateway.chat.completions.create(model=model, messages=messages, max_tokens=100000)
                check(False, "the upstream's 400 must reach the client")
            except openai.BadRequestError as e:
                check(e.status_code == 400, "gateway: the upstream's 400 reaches the client unchanged")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def wait_for(what, condition, seconds=300):
    """Polls until `condition()` holds; a generous bound (a loaded machine is slow), never a fixed sleep."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    check(False, f"timed out after {seconds} s waiting until {what}")


def hold_stream(port):
    """Opens a long streamed completion on a raw socket and returns the socket (closing it aborts the request)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = json.dumps({"prompt": "Tell a long story:", "max_tokens": 2000, "ignore_eos": True, "stream": True}).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def overload_checks(port, proc):
    # Warm up, then measure RSS around a burst of 10x the queue.
    post(port, "/v1/completions", {"prompt": "Hello", "max_tokens": 4})
    before = rss_kib(proc.pid)
    # Fill every sequence slot and the whole queue with long streams first, and see it in the metrics,
    # so that the burst meets a full server by construction, however slowly this machine sends it.
    running_metric, waiting_metric = 'autoglm_num_requests_running{model_name=', 'autoglm_num_requests_waiting{model_name='
    # The running streams first: requests that arrive together all count as waiting until the scheduler
    # takes them, so six at once would overflow the queue of four.
    holders = [hold_stream(port) for _ in range(SEQUENCES)]
    wait_for(f"{SEQUENCES} running", lambda: metric(port, running_metric) == SEQUENCES and metric(port, waiting_metric) == 0)
    holders += [hold_stream(port) for _ in range(QUEUE)]
    wait_for(f"{SEQUENCES} running and {QUEUE} waiting",
             lambda: metric(port, running_metric) == SEQUENCES and metric(port, waiting_metric) == QUEUE)
    burst = 10 * (QUEUE + SEQUENCES)
    body = {"prompt": "Count from one to twenty:", "max_tokens": 16, "ignore_eos": True}
    with concurrent.futures.ThreadPoolExecutor(max_workers=burst) as pool:
        results = list(pool.map(lambda _: post(port, "/v1/completions", body, timeout=300), range(burst)))
    statuses = [s for s, _, _ in results]
    ok = statuses.count(200)
    refused = [(s, h) for s, h, _ in results if s in (429, 503)]
    other = [s for s in statuses if s not in (200, 429, 503)]
    check(not other, f"burst of {burst} into a full server: {ok} x 200, {len(refused)} x 429/503, no other status ({other})")
    check(len(refused) > 0, "the overflow is refused")
    check(all(int(h.get("Retry-After", h.get("retry-after", "0"))) >= 1 for _, h in refused), "every refusal carries Retry-After")
    for s, _, raw in results:
        if s != 200:
            err = json.loads(raw)["error"]
            check(err["code"] in ("queue_full", "unavailable", "too_many_concurrent_requests"),
                  f"refusal body is OpenAI's error shape ({err['code']})")
            break
    for sock in holders:
        sock.close()
    wait_for("the held streams are released",
             lambda: metric(port, running_metric) == 0 and metric(port, waiting_metric) == 0)
    after = rss_kib(proc.pid)
    check(after - before < 64 * 1024, f"RSS flat across the burst: {before // 1024} -> {after // 1024} MiB")
    status, _, raw = post(port, "/v1/completions", {"prompt": "Hello", "max_tokens": 4})
    check(status == 200 and json.loads(raw)["usage"]["completion_tokens"] == 4, "serves normally after the burst")


def disconnect_check(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = json.dumps({"prompt": "Tell a long story:", "max_tokens": 2000, "ignore_eos": True, "stream": True}).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while received.count(b"data: ") < 3:
        received += sock.recv(4096)
    sock.close()
    deadline = time.time() + 30
    running = None
    while time.time() < deadline:
        running = metric(port, 'autoglm_num_requests_running{model_name=')
        if running == 0:
            break
        time.sleep(0.2)
    check(running == 0, "a client that disconnects mid-stream frees its sequence")


def port_in_use_check(port):
    proc = subprocess.run([BINARY, "serve", "--port", str(port)], capture_output=True, text=True, timeout=120)
    check(proc.returncode != 0 and str(port) in proc.stderr and "in use" in proc.stderr,
          f"a second server on port {port} exits {proc.returncode}: {proc.stderr.strip().splitlines()[0][:120]}")


def drain_check(port, proc):
    results = {}

    def stream_long():
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                     data=json.dumps({"prompt": "Once upon a time", "max_tokens": 96, "ignore_eos": True,
                                                      "stream": True, "stream_options": {"include_usage": True}}).encode(),
                                     headers={"Content-Type": "application/json"})
        events = []
        with urllib.request.urlopen(req, timeout=600) as r:
            for line in r:
                line = line.decode().strip()
                if line.startswith("data: "):
                    events.append(line[6:])
                    if len(events) == 2:
                        results["started"] = True
        results["events"] = events

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(stream_long)
        wait_for("the stream has started", lambda: "started" in results)
        proc.send_signal(signal.SIGTERM)
        future.result(timeout=600)
    events = results["events"]
    usage = json.loads(events[-2]).get("usage", {})
    check(events[-1] == "[DONE]" and usage.get("completion_tokens") == 96,
          f"SIGTERM: the in-flight stream finished all 96 tokens ({usage})")
    code = proc.wait(timeout=60)
    check(code == 0, f"the server exits 0 after draining (got {code})")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
        check(False, "no listener after shutdown")
    except (urllib.error.URLError, ConnectionError, OSError):
        check(True, "no listener after shutdown")


def mtls_checks():
    """server.tls.client_ca_file: the /admin routes need a client certificate from that CA; inference needs none."""
    openssl = shutil.which("openssl")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)
        def run(*args):
            subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("server.key"), "-out", p("server.pem"), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
        # The clients' CA, a client it signs, and a client of a CA the server does not trust.
        for ca in ("ca", "other-ca"):
            run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p(f"{ca}.key"),
                "-out", p(f"{ca}.pem"), "-days", "1", "-subj", f"/CN=autoglm test {ca}")
        for client, ca in (("admin", "ca"), ("stranger", "other-ca")):
            run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p(f"{client}.key"),
                "-out", p(f"{client}.csr"), "-subj", f"/CN={client}")
            run("x509", "-req", "-in", p(f"{client}.csr"), "-CA", p(f"{ca}.pem"), "-CAkey", p(f"{ca}.key"), "-CAcreateserial",
                "-out", p(f"{client}.pem"), "-days", "1")
        env = {"AUTOGLM_SERVER_TLS_CERT_FILE": p("server.pem"), "AUTOGLM_SERVER_TLS_KEY_FILE": p("server.key"),
               "AUTOGLM_SERVER_TLS_CLIENT_CA_FILE": p("ca.pem"), "AUTOGLM_SERVER_ADMIN_API_KEYS": "adm-secret"}
        plain = ssl.create_default_context(cafile=p("server.pem"))
        proc = start_server(port, env, ssl_context=plain)
        try:
            def context(client=None):
                c = ssl.create_default_context(cafile=p("server.pem"))
                if client:
                    c.load_cert_chain(p(f"{client}.pem"), p(f"{client}.key"))
                return c
            def get(path, ctx, token="adm-secret"):
                request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
                try:
                    with urllib.request.urlopen(request, timeout=30, context=ctx) as r:
                        return r.status, json.loads(r.read())
                except urllib.error.HTTPError as e:
                    return e.code, json.loads(e.read())
            status, body = get("/admin/models", context())
            check(status == 403 and body["error"]["code"] == "client_certificate_required",
                  f"mTLS: /admin without a client certificate is 403 client_certificate_required ({status})")
            status, body = get("/admin/models", context(), token="wrong")
            check(status == 403 and body["error"]["code"] == "client_certificate_required",
                  "mTLS: without a certificate, a wrong admin key learns nothing (the same 403)")
            status, body = get("/admin/models", context("admin"))
            check(status == 200 and body.get("data"), f"mTLS: /admin with the CA's client certificate and the admin key: {status}")
            status, body = get("/admin/models", context("admin"), token="wrong")
            check(status == 401, f"mTLS: the certificate alone is not enough; a wrong admin key is 401 ({status})")
            try:
                get("/admin/models", context("stranger"))
                check(False, "mTLS: a client certificate from another CA is refused at the handshake")
            except (urllib.error.URLError, ssl.SSLError, ConnectionError, OSError):
                check(True, "mTLS: a client certificate from another CA is refused at the handshake")
            status, body = get("/v1/models", context())
            check(status == 200 and body["data"], "mTLS: inference routes need no client certificate")
            for odd in ("//admin/models", "/admin//models", "/admin/models/", "/./admin/models", "/ADMIN/models"):
                status, body = get(odd, context())
                check(status in (403, 404), f"mTLS: {odd} without a certificate is not served ({status})")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def tracing_checks():
    """tracing.enabled: the request's spans go by OTLP/HTTP to a collector (a stand-in on 127.0.0.1 that keeps the
    protobuf bodies; the trace id and span names are found in their bytes), in the caller's trace."""
    import http.server
    received = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, self.headers.get("Content-Type"), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    port = free_port()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    proc = start_server(port, {"AUTOGLM_TRACING_ENABLED": "true",
                               "AUTOGLM_TRACING_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
                               "AUTOGLM_TRACING_SERVICE_NAME": "autoglm-e2e"})
    try:
        body = json.dumps({"model": "smollm2-135m-instruct", "max_tokens": 4, "temperature": 0,
                           "messages": [{"role": "user", "content": "Hi"}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={
            "Content-Type": "application/json", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        with urllib.request.urlopen(request, timeout=120) as r:
            check(r.status == 200, "tracing: a chat request with a traceparent is served")
    finally:
        # SIGTERM: the exporter stops last and sends what it holds.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    collector.shutdown()
    traces = [b for path, kind, b in received if path == "/v1/traces"]
    check(traces and all(kind == "application/x-protobuf" for path, kind, _ in received if path == "/v1/traces"),
          f"tracing: OTLP/HTTP protobuf bodies reached the collector's /v1/traces ({len(traces)})")
    everything = b"".join(traces)
    check(bytes.fromhex(trace_id) in everything, "tracing: the spans are in the caller's trace (its trace id)")
    for name in (b"/v1/chat/completions", b"autoglm.queue", b"autoglm.prefill", b"autoglm.decode", b"autoglm-e2e"):
        check(name in everything, f"tracing: the export holds {name.decode()}")


def tls_checks():
    openssl = shutil.which("openssl")
    check(openssl is not None, "the openssl command is installed (it makes the test certificate)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
        missing = os.path.join(tmp, "missing-key.pem")
        bad = subprocess.run([BINARY, "serve", "--port", str(port)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "AUTOGLM_SERVER_TLS_CERT_FILE": cert, "AUTOGLM_SERVER_TLS_KEY_FILE": missing})
        check(bad.returncode != 0 and "missing-key.pem" in bad.stderr,
              f"a missing TLS key file stops serve with exit {bad.returncode}: {bad.stderr.strip().splitlines()[0][:120]}")
        context = ssl.create_default_context(cafile=cert)
        proc = start_server(port, {"AUTOGLM_SERVER_TLS_CERT_FILE": cert, "AUTOGLM_SERVER_TLS_KEY_FILE": key}, ssl_context=context)
        try:
            client = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="unused", http_client=openai.DefaultHttpx2Client(verify=context))
            chat = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=4, temperature=0,
                                                  messages=[{"role": "user", "content": "Hi"}])
            check(chat.usage.completion_tokens > 0, "HTTPS: the openai client verifies the certificate and chats")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                check(False, "plain HTTP to the HTTPS port is refused")
            except (urllib.error.URLError, ConnectionError, OSError, http_client_errors()):
                check(True, "plain HTTP to the HTTPS port is refused")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def http_client_errors():
    import http.client
    return http.client.HTTPException


def llama_server_checks(llama_server, model_path):
    """The same gateway checks with llama.cpp's llama-server as the upstream (run by hand:
    scripts/e2e/through-llama-server.sh; the binary is not part of this project)."""
    port = free_port()
    model = "smollm2-135m-instruct"
    proc = subprocess.Popen([llama_server, "-m", model_path, "--alias", model, "--host", "127.0.0.1", "--port", str(port),
                             "-c", "4096", "-t", "2", "--jinja"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("llama-server is up", lambda: post_ok(port), seconds=120)
        gateway_checks(port, model, upstream="llama-server")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def post_ok(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def phone_agent_checks():
    """The Open-AutoGLM phone agent's requests (phone_agent/model/client.py) with the official SDK against the tiny
    random GLM-4.1V served from its Hugging Face directory: a 1080x2400 PNG screenshot in the last user turn,
    temperature 0, top_p 0.85, frequency_penalty 0.2, max_tokens 3000, streamed and not."""
    import base64
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fixture = os.path.join(root, "Tests", "Fixtures", "glm4v-tiny")
    port = free_port()
    proc = start_server(port, args=["--model", fixture, "--served-model-name", "autoglm-phone-9b", "--threads", "2"])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=0, timeout=600)
        with open(os.path.join(fixture, "images", "screen1080x2400.png"), "rb") as f:
            screenshot = "data:image/png;base64," + base64.b64encode(f.read()).decode()
        messages = [
            {"role": "system", "content": "You are a phone operation agent. Answer as <think>...</think><answer>do(action=...)</answer>."},
            {"role": "user", "content": [{"type": "text", "text": "Open Settings"}]},
            {"role": "assistant", "content": "<think>Launch it.</think><answer>do(action=\"Launch\", app=\"Settings\")</answer>"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": screenshot}},
                                         {"type": "text", "text": "** Screen Info **"}]},
        ]
        fields = dict(model="autoglm-phone-9b", messages=messages, max_tokens=3000, temperature=0.0, top_p=0.85,
                      frequency_penalty=0.2, extra_body={})
        content = ""
        for chunk in client.chat.completions.create(stream=True, **fields):
            if chunk.choices:
                content += chunk.choices[0].delta.content or ""
        check("<|" not in content and "[gMASK]" not in content, f"phone agent stream: {len(content)} characters, no special tokens")
        one = client.chat.completions.create(**fields)
        check(one.choices and one.choices[0].message.content is not None and "<|" not in one.choices[0].message.content,
              f"phone agent deployment check (not streamed): usage {one.usage.prompt_tokens}+{one.usage.completion_tokens}")
        try:
            bad = [dict(messages[-1], content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}])]
            client.chat.completions.create(model="autoglm-phone-9b", messages=bad, max_tokens=4)
            check(False, "a non-image data URI must fail")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and "messages[0].content[0]" in e.message, f"a bad image -> 400 naming its part: {e.message[:90]}")
        check(client.chat.completions.create(**dict(fields, max_tokens=4)).choices, "the server keeps serving after a bad image")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    if len(sys.argv) > 3 and sys.argv[2] == "--llama-server":
        llama_server_checks(sys.argv[3], sys.argv[4])
        print("all llama-server gateway checks passed")
        return
    port = free_port()
    # A drain long enough for the 96-token stream of drain_check on a loaded machine (default 30 s).
    proc = start_server(port, {"AUTOGLM_LIMITS_MAX_QUEUE": str(QUEUE), "AUTOGLM_LOGGING_FORMAT": "json",
                               "AUTOGLM_SERVER_DRAIN": "600"})
    try:
        model = openai_client_checks(port)
        gateway_checks(port, model)
        overload_checks(port, proc)
        disconnect_check(port)
        port_in_use_check(port)
        drain_check(port, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.wait(timeout=60)
    proc.log_reader.join(timeout=60)
    lines = [l.strip() for l in proc.log_lines if l.startswith("{")]
    check(lines and all(json.loads(l).get("level") for l in lines), f"logs are JSON lines ({len(lines)} lines)")
    check(any("request_id" in json.loads(l) for l in lines), "request logs carry request_id")
    tls_checks()
    mtls_checks()
    tracing_checks()
    phone_agent_checks()
    print("all end-to-end checks passed")


if __name__ == "__main__":
    main()
