#!/usr/bin/env python3
"""End-to-end checks of the gRPC API (server.grpc.port) of `autoglm serve` as a real process on 127.0.0.1, driven
by the published clients from PyPI (scripts/e2e/grpc.sh installs them, pinned, into venv-grpc/):

1. grpcio-health-checking: SERVING; an unknown service is NOT_FOUND. grpcio-reflection: the services are listed and
   the SGLang protocol's file is found by a symbol.
2. smg-grpc-proto's SglangScheduler stubs: a streamed generation at temperature 0 gives the token ids the HTTP API
   gives for the same prompt (position by position); chunks add up to the completion; not streamed and n=2 agree;
   Abort ends a request; a client that disconnects frees its sequence within an engine step or two; GetModelInfo,
   GetServerInfo, GetLoads.
3. tritonclient[grpc]: ModelInfer gives the HTTP API's text; ModelStreamInfer streams it token by token, the last
   response marked final; readiness and metadata.
4. Errors as status codes: INVALID_ARGUMENT naming the field, NOT_FOUND for an unknown model, RESOURCE_EXHAUSTED
   when the queue is full, UNAUTHENTICATED without a key (each call in the audit log), UNAVAILABLE while draining.
5. gRPC over TLS with a throw-away certificate (openssl), gRPC series in /metrics by method and code, and
   `autoglm bench --grpc` timing requests over ModelStreamInfer.

Every wait is bounded; the script exits non-zero on the first failed check.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from smg_grpc_proto.generated import sglang_scheduler_pb2 as sgl
from smg_grpc_proto.generated import sglang_scheduler_pb2_grpc as sgl_grpc
from tritonclient.utils import InferenceServerException

from e2e_common import check, free_port

BINARY = sys.argv[1] if len(sys.argv) > 1 else ".build/release/autoglm"
MODEL = "smollm2-135m-instruct"
QUEUE = 3
SEQUENCES = 2


def start_server(env=None):
    """A server with HTTP and gRPC ports; returns (process, http port, grpc port) once /ready answers."""
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [BINARY, "serve", "--port", str(http_port), "--grpc-port", str(grpc_port), "--max-sequences", str(SEQUENCES), "--threads", "2"],
        env={**os.environ, "AUTOGLM_LIMITS_MAX_QUEUE": str(QUEUE), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.log_lines = []
    threading.Thread(target=lambda: proc.log_lines.extend(proc.stdout), daemon=True).start()
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            print("".join(proc.log_lines))
            raise SystemExit(f"FAIL: the server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=2) as r:
                if r.status == 200 and any("listening for gRPC" in line for line in proc.log_lines):
                    return proc, http_port, grpc_port
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("FAIL: the server did not start in 120 s")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def post(port, path, body, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode().splitlines()


def metric(port, prefix):
    for line in metrics(port):
        if line.startswith(prefix):
            return float(line.split()[-1])
    return None


def generate_request(ids, request_id="r", max_new_tokens=24, stream=True, **sampling):
    params = sgl.SamplingParams(temperature=sampling.pop("temperature", 0.0), max_new_tokens=max_new_tokens, **sampling)
    return sgl.GenerateRequest(request_id=request_id, tokenized=sgl.TokenizedInput(input_ids=ids), sampling_params=params, stream=stream)


def rpc_error(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return None, None


def health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    check(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING,
          "grpc.health.v1: the server is SERVING")
    check(health.Check(health_pb2.HealthCheckRequest(service="sglang.grpc.scheduler.SglangScheduler"), timeout=10).status
          == health_pb2.HealthCheckResponse.SERVING, "grpc.health.v1: the SGLang service is SERVING")
    code, _ = rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10))
    check(code == grpc.StatusCode.NOT_FOUND, f"grpc.health.v1: an unknown service is NOT_FOUND ({code})")
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    wanted = {"sglang.grpc.scheduler.SglangScheduler", "inference.GRPCInferenceService", "grpc.health.v1.Health"}
    check(wanted <= services, f"reflection lists the services ({sorted(services)})")
    file = database.FindFileContainingSymbol("sglang.grpc.scheduler.SglangScheduler")
    methods = [m.name for s in file.service for m in s.method]
    check("Generate" in methods and "GetLoads" in methods, f"reflection gives the SGLang protocol's file by a symbol ({file.name})")


def sglang_checks(channel, http_port):
    stub = sgl_grpc.SglangSchedulerStub(channel)
    prompt = post(http_port, "/tokenize", {"model": MODEL, "prompt": "The three primary colors are"})["tokens"]
    # The HTTP API's greedy tokens for the same prompt, as per-token text with log-probabilities.
    http = post(http_port, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 24, "temperature": 0,
                                               "ignore_eos": True, "logprobs": 0})
    http_tokens = http["choices"][0]["logprobs"]["tokens"]
    chunks, complete = [], None
    for response in stub.Generate(generate_request(prompt, "same-as-http", ignore_eos=True), timeout=300):
        if response.HasField("chunk"):
            chunks.extend(response.chunk.token_ids)
        else:
            complete = response.complete
    check(complete is not None and list(complete.output_ids) == chunks and len(chunks) == 24 and complete.finish_reason == "length",
          f"Generate streams 24 token ids in chunks that add up to its completion ({complete.finish_reason if complete else None})")
    pieces = [post(http_port, "/detokenize", {"model": MODEL, "tokens": [t]})["prompt"] for t in chunks]
    check(pieces == http_tokens, f"temperature 0: the token ids are the HTTP API's, position by position ({len(pieces)} tokens)")
    check(complete.prompt_tokens == len(prompt) and complete.completion_tokens == 24, "the completion counts the prompt and output tokens")
    one = list(stub.Generate(generate_request(prompt, "one-shot", stream=False, ignore_eos=True), timeout=300))
    check(len(one) == 1 and list(one[0].complete.output_ids) == chunks, "not streamed: one completion with the same ids")
    two = [r.complete for r in stub.Generate(generate_request(prompt, "two", stream=False, n=2, max_new_tokens=8), timeout=300)]
    check(sorted(c.index for c in two) == [0, 1] and all(list(c.output_ids) == chunks[:len(c.output_ids)] for c in two),
          "n=2: two completions, indexed 0 and 1, each the greedy ids")

    info = stub.GetModelInfo(sgl.GetModelInfoRequest(), timeout=30)
    check(info.served_model_name == MODEL and info.vocab_size > 0 and info.max_context_length > 0 and info.is_generation,
          f"GetModelInfo: {info.served_model_name}, vocabulary {info.vocab_size}, context {info.max_context_length}")
    server = stub.GetServerInfo(sgl.GetServerInfoRequest(), timeout=30)
    check(server.server_type == "grpc" and server.uptime_seconds > 0, "GetServerInfo: type and uptime")
    check(stub.HealthCheck(sgl.HealthCheckRequest(), timeout=30).healthy, "SGLang HealthCheck: healthy")

    # Abort by request id, from another call.
    long = generate_request(prompt, "abort-me", max_new_tokens=2000, ignore_eos=True)
    stream = stub.Generate(long, timeout=300)
    seen = 0
    for response in stream:
        if response.HasField("chunk"):
            seen += 1
            if seen == 3:
                aborted = stub.Abort(sgl.AbortRequest(request_id="abort-me"), timeout=30)
                check(aborted.success, f"Abort finds the request ({aborted.message})")
        else:
            check(response.complete.finish_reason == "abort" and response.complete.completion_tokens < 2000,
                  f"the aborted request ends with finish_reason 'abort' after {response.complete.completion_tokens} tokens")
    check(not stub.Abort(sgl.AbortRequest(request_id="abort-me"), timeout=30).success, "Abort of a finished request says so")

    # A client that goes away: its sequence is freed at the engine's next step.
    steps_name = f'autoglm_iteration_tokens_count{{model_name="{MODEL}"}}'
    stream = stub.Generate(generate_request(prompt, "leaves", max_new_tokens=2000, ignore_eos=True), timeout=300)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.cancel()
    steps_at_cancel = metric(http_port, steps_name)
    deadline = time.time() + 30
    running = None
    while time.time() < deadline:
        running = metric(http_port, f'autoglm_num_requests_running{{model_name="{MODEL}"}}')
        steps = metric(http_port, steps_name)
        if running == 0:
            break
    check(running == 0, "a client that disconnects mid-stream frees its sequence")
    check(steps - steps_at_cancel <= 2,
          f"... within {int(steps - steps_at_cancel)} engine step(s) of the cancel being read back (at most the step in flight and the next)")
    loads = stub.GetLoads(sgl.GetLoadsRequest(), timeout=30)
    check(loads.dp_rank_count == 1 and loads.loads[0].num_running_reqs == 0, "GetLoads: one rank, nothing running")

    # Errors.
    code, details = rpc_error(lambda: list(stub.Generate(generate_request(prompt, temperature=5.0), timeout=30)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in details, f"INVALID_ARGUMENT naming the field: {details}")
    code, details = rpc_error(lambda: list(stub.Generate(generate_request([]), timeout=30)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "input_ids" in details, f"an empty prompt: INVALID_ARGUMENT ({details})")
    code, details = rpc_error(lambda: list(stub.Generate(generate_request([10 ** 9]), timeout=30)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "prompt" in details, f"a token outside the vocabulary: INVALID_ARGUMENT ({details})")
    code, details = rpc_error(lambda: list(stub.Generate(generate_request(prompt, regex="a+"), timeout=30)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "regex" in details, f"constrained decoding: INVALID_ARGUMENT ({details})")
    code, details = rpc_error(lambda: list(stub.Generate(generate_request(prompt * 2000), timeout=30)))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "context" in details, f"a prompt longer than the context: INVALID_ARGUMENT ({details[:90]})")
    return prompt


def queue_full_check(channel, prompt):
    stub = sgl_grpc.SglangSchedulerStub(channel)
    calls = [stub.Generate(generate_request(prompt, f"q{i}", max_new_tokens=400, ignore_eos=True), timeout=300)
             for i in range(SEQUENCES + QUEUE + 4)]
    codes = []
    for call in calls:
        try:
            next(iter(call))
            codes.append("started")
        except grpc.RpcError as e:
            codes.append(e.code())
    for call in calls:
        call.cancel()
    exhausted = [c for c in codes if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    check(len(exhausted) >= 1 and all(c in ("started", grpc.StatusCode.RESOURCE_EXHAUSTED) for c in codes),
          f"a full queue: RESOURCE_EXHAUSTED ({len(exhausted)} of {len(codes)}), the others served")


def triton_checks(grpc_port, http_port):
    client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    check(client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL), "KServe: live, ready, model ready")
    metadata = client.get_model_metadata(MODEL)
    check(metadata.name == MODEL and [i.name for i in metadata.inputs][0] == "text_input", "KServe: the model's metadata")
    prompt = "The capital of France is"
    http = post(http_port, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 12, "temperature": 0})
    text_input = triton.InferInput("text_input", [1], "BYTES")
    text_input.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    result = client.infer(MODEL, [text_input], parameters={"max_tokens": 12, "temperature": 0})
    text = result.as_numpy("text_output")[0].decode()
    check(text == http["choices"][0]["text"], f"ModelInfer gives the HTTP API's text ({text!r})")
    received = []
    done = threading.Event()

    def callback(result, error):
        received.append((result, error))
        if error is not None or result.get_response().parameters["triton_final_response"].bool_param:
            done.set()

    client.start_stream(callback=callback)
    client.async_stream_infer(MODEL, [text_input], parameters={"max_tokens": 12, "temperature": 0, "stream": True}, request_id="s1")
    check(done.wait(300), "ModelStreamInfer: the final response arrives")
    errors = [e for _, e in received if e is not None]
    pieces = [r.as_numpy("text_output")[0].decode() for r, e in received if e is None]
    check(not errors and "".join(pieces) == text and len(pieces) > 3,
          f"ModelStreamInfer streams the same text in {len(pieces)} responses, the last marked final")
    done.clear()
    client.async_stream_infer("no-such-model", [text_input], parameters={"max_tokens": 4})
    check(done.wait(60), "an error arrives on the stream")
    error = received[-1][1]
    check(error is not None and "NOT_FOUND" in str(error), f"ModelStreamInfer: an unknown model is an in-stream error ({error})")
    client.stop_stream()
    try:
        client.infer("no-such-model", [text_input])
        check(False, "ModelInfer: an unknown model is NOT_FOUND")
    except InferenceServerException as e:
        check(e.status() == "StatusCode.NOT_FOUND", f"ModelInfer: an unknown model is NOT_FOUND ({e.message()[:60]})")
    try:
        client.infer(MODEL, [text_input], parameters={"max_tokens": 4, "top_p": 7})
        check(False, "ModelInfer: a bad parameter is INVALID_ARGUMENT")
    except InferenceServerException as e:
        check(e.status() == "StatusCode.INVALID_ARGUMENT" and "top_p" in e.message(), f"ModelInfer: INVALID_ARGUMENT ({e.message()})")


def bench_check(http_port, grpc_port):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        run = subprocess.run([BINARY, "bench", "--base-url", f"http://127.0.0.1:{http_port}", "--grpc", f"127.0.0.1:{grpc_port}",
                              "--endpoint", "completions", "--concurrency", "2", "--num-prompts", "4", "--input-len", "16",
                              "--output-len", "8", "--output", out], capture_output=True, text=True, timeout=300)
        check(run.returncode == 0, f"autoglm bench --grpc runs ({run.stderr.strip()[-200:]})")
        level = json.load(open(out))["levels"][0]
        check(level["completed"] == 4 and level["failed"] == 0 and level["total_output_tokens"] == 32,
              f"autoglm bench --grpc: 4 requests over ModelStreamInfer, 32 tokens, timed ({level['output_token_throughput']:.0f} tok/s)")


def metrics_check(http_port):
    lines = [l for l in metrics(http_port) if l.startswith("autoglm_grpc_requests_total")]
    ok = [l for l in lines if 'method="Generate"' in l and 'code="OK"' in l]
    bad = [l for l in lines if 'method="Generate"' in l and 'code="INVALID_ARGUMENT"' in l]
    check(ok and bad and float(ok[0].split()[-1]) >= 4, f"/metrics counts gRPC calls by method and code ({len(lines)} series)")


def auth_checks():
    tmp = tempfile.mkdtemp()
    audit_log = os.path.join(tmp, "audit.jsonl")
    proc, http_port, grpc_port = start_server({"AUTOGLM_SERVER_API_KEYS": "grpc-test-key", "AUTOGLM_AUTH_AUDIT_LOG": audit_log})
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = sgl_grpc.SglangSchedulerStub(channel)
        request = generate_request([1, 2, 3], max_new_tokens=2, ignore_eos=True)
        code, details = rpc_error(lambda: list(stub.Generate(request, timeout=30)))
        check(code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details, f"no key: UNAUTHENTICATED ({details[:70]})")
        code, _ = rpc_error(lambda: list(stub.Generate(request, timeout=30, metadata=[("authorization", "Bearer wrong")])))
        check(code == grpc.StatusCode.UNAUTHENTICATED, "a wrong key: UNAUTHENTICATED")
        out = list(stub.Generate(request, timeout=60, metadata=[("authorization", "Bearer grpc-test-key")]))
        check(out[-1].complete.completion_tokens == 2, "the key in the authorization metadata: served")
        health = health_pb2_grpc.HealthStub(channel)
        check(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING,
              "health needs no key (a probe)")
    finally:
        stop(proc)
    lines = [json.loads(line) for line in open(audit_log)]
    generate = [l for l in lines if l["route"] == "/sglang.grpc.scheduler.SglangScheduler/Generate"]
    check([l["decision"] for l in generate] == ["unauthenticated", "unauthenticated", "allow"]
          and generate[-1]["completion_tokens"] == 2 and generate[-1]["prompt_tokens"] == 3 and generate[-1]["principal"]
          and not any("Health" in l["route"] for l in lines),
          f"the audit log has a line per gRPC call (method, decision, principal, tokens), none for health ({len(lines)} lines)")
    verify = subprocess.run([BINARY, "audit", "verify", audit_log], capture_output=True, text=True, timeout=60)
    check(verify.returncode == 0, f"the audit log's chain verifies ({verify.stdout.strip()[:80]})")
    shutil.rmtree(tmp, ignore_errors=True)


def tls_checks():
    openssl = shutil.which("openssl")
    check(openssl is not None, "the openssl command is installed (it makes the test certificate)")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
        http_port, grpc_port = free_port(), free_port()
        proc = subprocess.Popen([BINARY, "serve", "--port", str(http_port), "--grpc-port", str(grpc_port), "--threads", "2"],
                                env={**os.environ, "AUTOGLM_SERVER_TLS_CERT_FILE": cert, "AUTOGLM_SERVER_TLS_KEY_FILE": key},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with open(cert, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            channel = grpc.secure_channel(f"127.0.0.1:{grpc_port}", credentials)
            grpc.channel_ready_future(channel).result(timeout=120)
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.time() + 120
            while health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != health_pb2.HealthCheckResponse.SERVING:
                check(time.time() < deadline, "TLS: the server becomes ready")
                time.sleep(0.5)
            out = list(sgl_grpc.SglangSchedulerStub(channel).Generate(generate_request([1, 2, 3], max_new_tokens=2, ignore_eos=True), timeout=60))
            check(out[-1].complete.completion_tokens == 2, "gRPC over TLS: the certificate verifies and Generate answers")
            code, _ = rpc_error(lambda: health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}")).Check(
                health_pb2.HealthCheckRequest(), timeout=5))
            check(code is not None, f"plaintext gRPC to the TLS port is refused ({code})")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)


def drain_check(proc, grpc_port, prompt):
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = sgl_grpc.SglangSchedulerStub(channel)
    results = {}

    def long_stream():
        complete = None
        for response in stub.Generate(generate_request(prompt, "draining", max_new_tokens=96, ignore_eos=True), timeout=600):
            results.setdefault("started", True)
            if response.HasField("complete"):
                complete = response.complete
        results["complete"] = complete

    # An idle ModelStreamInfer stream and a health Watch, open across the shutdown: neither may hold it.
    idle = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    idle.start_stream(callback=lambda result, error: None)
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=600)
    statuses = []
    watcher = threading.Thread(target=lambda: statuses.extend(m.status for m in watch), daemon=True)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(long_stream)
        deadline = time.time() + 120
        while ("started" not in results or not statuses) and time.time() < deadline:
            time.sleep(0.05)
        stopping = time.time()
        proc.send_signal(signal.SIGTERM)
        code = None
        deadline = time.time() + 30
        while code is None and time.time() < deadline:
            code, details = rpc_error(lambda: list(stub.Generate(generate_request(prompt, "late", max_new_tokens=2), timeout=30)))
            if code is None:
                time.sleep(0.05)
        check(code == grpc.StatusCode.UNAVAILABLE, f"while draining, a new Generate is UNAVAILABLE ({code}: {details})")
        future.result(timeout=600)
    complete = results["complete"]
    check(complete is not None and complete.completion_tokens == 96, "the in-flight gRPC stream finished all 96 tokens")
    code = proc.wait(timeout=120)
    check(code == 0, f"the server exits 0 after draining, an idle ModelStreamInfer stream and a Watch open "
                     f"({time.time() - stopping:.1f} s after SIGTERM; server.drain is 30 s)")
    watcher.join(timeout=30)
    check(statuses[:1] == [health_pb2.HealthCheckResponse.SERVING] and statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING,
          f"grpc.health.v1 Watch: SERVING, then NOT_SERVING as the server drains, then the call ends ({statuses})")
    idle.stop_stream()


def main():
    proc, http_port, grpc_port = start_server()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        health_and_reflection(channel)
        prompt = sglang_checks(channel, http_port)
        triton_checks(grpc_port, http_port)
        queue_full_check(channel, prompt)
        bench_check(http_port, grpc_port)
        metrics_check(http_port)
        drain_check(proc, grpc_port, prompt)
    finally:
        if proc.poll() is None:
            proc.kill()
    auth_checks()
    tls_checks()
    print("gRPC end-to-end: all checks passed", flush=True)


if __name__ == "__main__":
    main()
