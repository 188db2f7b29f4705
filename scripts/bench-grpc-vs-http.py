#!/usr/bin/env python3
"""Output throughput at N concurrent streams through the gRPC API and through the HTTP API of one `autoglm serve`,
side by side: rounds alternate HTTP (streamed /v1/completions), gRPC SGLang Generate (streamed) and gRPC KServe
ModelStreamInfer (streamed), each round N client threads sending the same greedy requests (token-id prompt,
ignore_eos, so every request generates exactly max_tokens). Prints each round and the medians.

    venv-grpc/bin/python scripts/bench-grpc-vs-http.py [--streams 8] [--rounds 5] [--requests 2] [--max-tokens 128]

(scripts/e2e/grpc.sh creates venv-grpc with the clients.) Only 127.0.0.1; every wait is bounded.
"""
import argparse
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as triton
from smg_grpc_proto.generated import sglang_scheduler_pb2 as sgl
from smg_grpc_proto.generated import sglang_scheduler_pb2_grpc as sgl_grpc

MODEL = "smollm2-135m-instruct"
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, ids, max_tokens):
    body = json.dumps({"model": MODEL, "prompt": ids, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    tokens = 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if line.startswith(b"data: {"):
                event = json.loads(line[6:])
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
    return tokens


def sglang_request(stub, ids, max_tokens):
    request = sgl.GenerateRequest(request_id="bench", tokenized=sgl.TokenizedInput(input_ids=ids), stream=True,
                                  sampling_params=sgl.SamplingParams(temperature=0, max_new_tokens=max_tokens, ignore_eos=True))
    tokens = 0
    for response in stub.Generate(request, timeout=600):
        if response.HasField("complete"):
            tokens = response.complete.completion_tokens
    return tokens


def sglang_aio_round(port, ids, max_tokens, streams, requests):
    """The same requests from grpcio's asyncio API: one event loop for all streams (less client CPU per message than
    the blocking iterators' threads)."""
    import asyncio

    async def run():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sgl_grpc.SglangSchedulerStub(channel)

            async def stream():
                total = 0
                for _ in range(requests):
                    request = sgl.GenerateRequest(request_id="bench", tokenized=sgl.TokenizedInput(input_ids=ids), stream=True,
                                                  sampling_params=sgl.SamplingParams(temperature=0, max_new_tokens=max_tokens, ignore_eos=True))
                    async for response in stub.Generate(request, timeout=600):
                        if response.HasField("complete"):
                            total += response.complete.completion_tokens
                return total

            start = time.perf_counter()
            totals = await asyncio.gather(*[stream() for _ in range(streams)])
            return sum(totals) / (time.perf_counter() - start), sum(totals)

    return asyncio.run(run())


def kserve_request(port, max_tokens):
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    done = queue.Queue()

    def callback(result, error):
        if error is not None:
            done.put(("error", str(error)))
        elif result.get_response().parameters["triton_final_response"].bool_param:
            done.put(("ok", result.get_response().parameters["completion_tokens"].int64_param))

    text = triton.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([PROMPT.encode()], dtype=object))
    client.start_stream(callback=callback)
    try:
        client.async_stream_infer(MODEL, [text], parameters={"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True})
        status, value = done.get(timeout=600)
    finally:
        client.stop_stream()
        client.close()
    if status != "ok":
        raise SystemExit(f"KServe error: {value}")
    return value


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_(streams, requests, one):
    """N threads, each `requests` requests in turn; returns output tokens per second of the whole round."""
    totals = [0] * streams
    errors = []

    def worker(i):
        try:
            for _ in range(requests):
                totals[i] += one()
        except Exception as e:  # reported below, the round does not count
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1200)
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"a request failed: {errors[0]}")
    return sum(totals) / elapsed, sum(totals)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/autoglm")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen([args.binary, "serve", "--port", str(http_port), "--grpc-port", str(grpc_port),
                             "--max-sequences", str(args.streams), "--threads", str(args.threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ready", timeout=2):
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.25)
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{http_port}/tokenize", data=json.dumps({"model": MODEL, "prompt": PROMPT}).encode(),
                headers={"Content-Type": "application/json"}), timeout=30) as r:
            ids = json.loads(r.read())["tokens"]
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = sgl_grpc.SglangSchedulerStub(channel)
        paths = {
            "http": lambda: http_request(http_port, ids, args.max_tokens),
            "grpc-sglang": lambda: sglang_request(stub, ids, args.max_tokens),
            "grpc-kserve": lambda: kserve_request(grpc_port, args.max_tokens),
            "grpc-sglang-aio": None,
        }
        # One warm-up round each (connections, the prefix cache), not counted.
        def run_round(name, requests):
            if name == "grpc-sglang-aio":
                return sglang_aio_round(grpc_port, ids, args.max_tokens, args.streams, requests)
            return round_(args.streams, requests, paths[name])

        for name in paths:
            run_round(name, 1)
        results = {name: [] for name in paths}
        cpu = {name: [] for name in paths}
        for r in range(args.rounds):
            order = list(paths) if r % 2 == 0 else list(reversed(list(paths)))
            for name in order:
                server0, client0 = cpu_seconds(proc.pid), time.process_time()
                rate, tokens = run_round(name, args.requests)
                server, client = cpu_seconds(proc.pid) - server0, time.process_time() - client0
                results[name].append(rate)
                cpu[name].append((server * 1000 / tokens, client * 1000 / tokens))
                print(f"round {r + 1} {name:12s} {tokens} tokens  {rate:8.1f} tok/s   CPU s per 1000 tokens: "
                      f"server {server * 1000 / tokens:.2f}, client {client * 1000 / tokens:.2f}", flush=True)
        http = statistics.median(results["http"])
        print(f"\n{args.streams} streams, {args.requests} x {args.max_tokens} tokens each, medians of {args.rounds} alternating rounds:")
        for name, rates in results.items():
            median = statistics.median(rates)
            server = statistics.median(c[0] for c in cpu[name])
            client = statistics.median(c[1] for c in cpu[name])
            print(f"  {name:12s} {median:8.1f} tok/s  ({median / http:.3f} of HTTP)   CPU s per 1000 tokens: server {server:.2f}, client {client:.2f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
