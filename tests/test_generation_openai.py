"""The openai backend against a local HTTP server the test controls (logprobs, retries, Retry-After,
timeouts, errors) and against a real `transformers serve` process on the tiny model (generation).
Only loopback addresses; every loop is bounded."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from humpback.config import GenerationConfig, load_config, to_dict
from humpback.errors import ConfigError
from humpback.generation import Generator, SamplingParams, Usage, load_generator
from humpback.generation.openai import OpenAIGenerator, ServerError, retry_after_s

SCORES = ["1", "2", "3", "4", "5"]


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 whose answers a test scripts with ``respond``.

    ``respond(body, n)`` gets the JSON body and the 0-based request number and returns
    ``(status, payload, headers, delay_s)``."""

    def __init__(self, respond):
        self.respond = respond
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload, headers, delay = server.respond(body, n)
                    if delay:
                        time.sleep(delay)
                    data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                finally:
                    # Done before the answer is written: once the client has it, it may send the next
                    # request, which must not find this one still counted in flight.
                    with server._lock:
                        server.in_flight -= 1
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        s = FakeServer(respond)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def _completion(text="", top=None, shape="legacy"):
    choice = {"index": 0, "text": text, "finish_reason": "length"}
    if top is not None and shape == "legacy":
        choice["logprobs"] = {"tokens": [next(iter(top))], "token_logprobs": [max(top.values())],
                              "top_logprobs": [top], "text_offset": [0]}
    elif top is not None:
        choice["logprobs"] = {"content": [{"token": next(iter(top)), "logprob": max(top.values()),
                                           "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}]}
    return {"id": "x", "object": "text_completion", "choices": [choice]}


def _gen(url, **kw):
    kw = {"retry_backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 5.0, **kw}
    return OpenAIGenerator(url, "tiny", **kw)


# --------------------------------------------------------------------------- generate


def test_generate_keeps_order_bounds_concurrency_and_sends_the_params(serve):
    together = threading.Barrier(2, timeout=60)  # the first two requests are answered only once both are in flight

    def respond(body, n):
        if n < 2:
            together.wait()
        return 200, _completion(text=f"<{body['prompt']}>"), None, 0.05 * (1 + n % 3)

    server = serve(respond)
    gen = _gen(server.url, concurrency=3)
    assert isinstance(gen, Generator)
    prompts = [f"p{i}" for i in range(9)]
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=17, seed=3)
    assert gen.generate(prompts, params) == [f"<{p}>" for p in prompts]
    assert 2 <= server.max_in_flight <= 3
    first = {r["prompt"]: r for r in server.requests}
    sent = {(r["model"], r["max_tokens"], r["temperature"], r["top_p"]) for r in server.requests}
    assert sent == {("tiny", 17, 0.7, 0.9)}
    # A seed per prompt, the same whatever the batch around it.
    gen.generate(["p4", "other"], params)
    assert server.requests[-2]["seed"] == first["p4"]["seed"] or server.requests[-1]["seed"] == first["p4"]["seed"]
    assert len({r["seed"] for r in server.requests[:9]}) == 9
    assert gen.generate([], params) == []


def test_generate_says_which_completions_ran_out_of_tokens(serve):
    def respond(body, n):
        answer = _completion(text=body["prompt"].upper())
        answer["choices"][0]["finish_reason"] = "length" if body["prompt"] == "long" else "stop"
        return 200, answer, None, 0

    got = _gen(serve(respond).url).generate(["long", "short"], SamplingParams(max_new_tokens=4))
    assert got == ["LONG", "SHORT"] and [c.finish_reason for c in got] == ["length", "stop"]


def test_no_score_digit_in_the_top_logprobs_is_no_probabilities(serve):
    top = {" the": math.log(0.6), " a": math.log(0.3)}
    server = serve(lambda body, n: (200, _completion(text=" the", top=top), None, 0))
    got = _gen(server.url).choice_probs(["Score:"], SCORES)[0]
    assert got.probs is None and got.mass == 0.0


def test_greedy_sends_top_p_one(serve):
    server = serve(lambda body, n: (200, _completion(text="ok"), None, 0))
    _gen(server.url).generate(["a"], SamplingParams(temperature=0.0, top_p=0.5, max_new_tokens=4))
    assert server.requests[0]["temperature"] == 0.0 and server.requests[0]["top_p"] == 1.0


# --------------------------------------------------------------------------- retries and errors


def test_429_and_500_are_retried(serve):
    def respond(body, n):
        if n == 0:
            return 429, {"error": "slow down"}, None, 0
        if n == 1:
            return 500, {"error": "boom"}, None, 0
        return 200, _completion(text="fine"), None, 0

    server = serve(respond)
    assert _gen(server.url, max_retries=3).generate(["a"], SamplingParams(max_new_tokens=4)) == ["fine"]
    assert len(server.requests) == 3


def test_gives_up_after_max_retries_naming_url_and_status(serve):
    server = serve(lambda body, n: (503, {"error": "overloaded"}, None, 0))
    with pytest.raises(ServerError) as e:
        _gen(server.url, max_retries=2).generate(["a"], SamplingParams(max_new_tokens=4))
    message = str(e.value)
    assert server.url + "/completions" in message and "HTTP 503" in message and "3 attempts" in message
    assert "overloaded" in message
    assert len(server.requests) == 3


def test_client_errors_are_not_retried(serve):
    server = serve(lambda body, n: (400, {"error": "bad model"}, None, 0))
    with pytest.raises(ServerError, match=r"HTTP 400.*bad model"):
        _gen(server.url, max_retries=4).generate(["a"], SamplingParams(max_new_tokens=4))
    assert len(server.requests) == 1


def test_retry_after_is_honoured(serve):
    def respond(body, n):
        if n == 0:
            return 429, {"error": "rate limited"}, {"Retry-After": "1"}, 0
        return 200, _completion(text="ok"), None, 0

    server = serve(respond)
    start = time.monotonic()
    assert _gen(server.url).generate(["a"], SamplingParams(max_new_tokens=4)) == ["ok"]
    assert time.monotonic() - start >= 0.9  # the backoff alone would be ~1 ms
    assert len(server.requests) == 2


def test_retry_after_parsing():
    assert retry_after_s("3") == 3.0
    assert retry_after_s("1e9") == 300.0  # capped
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)


def test_timeouts_are_retried_then_reported(serve):
    # A late answer waits for the end of the test, not for a time: the client's timeout alone ends it; the
    # timeout leaves a quick answer a whole second, however loaded the machine.
    release = threading.Event()

    def respond(late):
        def answer(body, n):
            if late(n):
                release.wait(60)
            return 200, _completion(text="late" if late(n) else "quick"), None, 0
        return answer

    try:
        server = serve(respond(lambda n: n == 0))
        gen = _gen(server.url, timeout_s=1.0, max_retries=2)
        assert gen.generate(["a"], SamplingParams(max_new_tokens=4)) == ["quick"]
        assert len(server.requests) == 2

        slow = serve(respond(lambda n: True))
        with pytest.raises(ServerError, match=r"giving up after 2 attempts.*timed out"):
            _gen(slow.url, timeout_s=0.5, max_retries=1).generate(["a"], SamplingParams(max_new_tokens=4))
        assert len(slow.requests) == 2
    finally:
        release.set()


def test_connection_refused_is_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServerError, match=r"127\.0\.0\.1.*giving up after 2 attempts.*connection failed"):
        _gen(url, max_retries=1).generate(["a"], SamplingParams(max_new_tokens=4))


def test_first_failure_stops_the_rest(serve):
    server = serve(lambda body, n: (400, {"error": "nope"}, None, 0.05))
    with pytest.raises(ServerError):
        _gen(server.url, concurrency=2).generate([f"p{i}" for i in range(50)], SamplingParams(max_new_tokens=4))
    time.sleep(0.2)
    assert len(server.requests) <= 4  # the pool was not drained request by request


def test_api_key_comes_from_the_named_env_var(serve, monkeypatch):
    server = serve(lambda body, n: (200, _completion(text="ok"), None, 0))
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-123")
    _gen(server.url, api_key_env="MY_TEST_KEY").generate(["a"], SamplingParams(max_new_tokens=2))
    monkeypatch.delenv("MY_TEST_KEY")
    _gen(server.url, api_key_env="MY_TEST_KEY").generate(["a"], SamplingParams(max_new_tokens=2))
    auth = [h.get("Authorization") for h in server.headers]
    assert auth == ["Bearer sk-test-123", None]


# --------------------------------------------------------------------------- logits curation


@pytest.mark.parametrize("shape", ["legacy", "chat"])
def test_choice_probs_from_top_logprobs(serve, shape):
    top = {" 5": math.log(0.5), " 4": math.log(0.2), "4": math.log(0.05), " the": math.log(0.2), "1": math.log(0.05)}
    server = serve(lambda body, n: (200, _completion(text=" 5", top=top, shape=shape), None, 0))
    got = _gen(server.url).choice_probs(["... Score:", "other Score:"], SCORES)
    assert len(got) == 2
    assert got[0].mass == pytest.approx(0.8)
    assert got[0].probs == pytest.approx((0.05 / 0.8, 0, 0, 0.25 / 0.8, 0.5 / 0.8))
    body = server.requests[0]
    assert (body["max_tokens"], body["logprobs"], body["temperature"]) == (1, 20, 0.0)
    assert {r["prompt"] for r in server.requests} == {"... Score:", "other Score:"}


def test_choice_probs_reads_the_digit_after_a_lone_space_token(serve):
    def respond(body, n):
        if body["prompt"].endswith(" "):
            return 200, _completion(text="3", top={"3": math.log(0.6), "2": math.log(0.3),
                                                   "x": math.log(0.1)}), None, 0
        return 200, _completion(text="▁", top={"▁": math.log(0.9), "\n": math.log(0.1)}), None, 0

    server = serve(respond)
    got = _gen(server.url).choice_probs(["Score:"], SCORES)[0]
    assert got.probs == pytest.approx((0, 1 / 3, 2 / 3, 0, 0)) and got.mass == pytest.approx(0.9)
    assert [r["prompt"] for r in server.requests] == ["Score:", "Score: "]


def test_rubric_answers_from_top_logprobs(serve):
    """The rubric judge's yes/no: variants summed, a missing answer bounded by the least returned."""
    tops = {"a": {" Yes": math.log(0.5), "yes": math.log(0.1), "ĠNo": math.log(0.2), "x": math.log(0.2)},
            "b": {" YES": math.log(0.7), "x": math.log(0.05)}, "c": {"x": math.log(0.9)}}
    server = serve(lambda body, n: (200, _completion(text="x", top=tops[body["prompt"]]), None, 0))
    from humpback.judges.rubric import ANSWERS, answer_log_odds

    a, b, c = _gen(server.url).answer_logprobs(["a", "b", "c"], ANSWERS)
    assert answer_log_odds(*a.logprobs, a.floor) == pytest.approx(math.log(0.6 / 0.2))
    assert b.logprobs[1] is None and answer_log_odds(*b.logprobs, b.floor) == pytest.approx(math.log(0.7 / 0.05))
    assert answer_log_odds(*c.logprobs, c.floor) is None  # a counted failure, not a guess
    assert {(r["max_tokens"], r["logprobs"]) for r in server.requests} == {(1, 20)}


def test_no_logprobs_is_a_clear_error(serve):
    server = serve(lambda body, n: (200, _completion(text=" 5"), None, 0))
    with pytest.raises(ConfigError, match=r"does not provide logprobs.*curate\.mode=generate") as e:
        _gen(server.url).choice_probs(["Score:"], SCORES)
    assert server.url in str(e.value)


# --------------------------------------------------------------------------- log-likelihood


def _echo(text: str, pieces: list[tuple[str, float | None]]):
    """A completions answer echoing ``text`` cut into ``pieces`` (token, logprob), plus one generated token."""
    offsets, at = [], 0
    for token, _ in pieces:
        offsets.append(at)
        at += len(token)
    assert at == len(text)
    lp = {"tokens": [t for t, _ in pieces] + ["!"], "token_logprobs": [v for _, v in pieces] + [-9.0],
          "text_offset": offsets + [at], "top_logprobs": None}
    return {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": text + "!", "logprobs": lp}]}


def test_loglik_sums_the_echoed_continuation(serve):
    pieces = {"Q: hi\nA:": [("Q", None), (":", -1.0), (" hi", -2.0), ("\n", -0.5), ("A", -0.1), (":", -0.2),
                            (" yes", -0.7), ("</s>", -0.3)]}
    server = serve(lambda body, n: (200, _echo(body["prompt"], pieces[body["prompt"][:8]]), None, 0))
    [got] = _gen(server.url).loglik(["Q: hi\nA:"], [" yes</s>"])
    assert (got.logprob, got.tokens) == (pytest.approx(-1.0), 2)  # " yes" and "</s>", not the generated "!"
    body = server.requests[0]
    assert (body["prompt"], body["echo"], body["logprobs"], body["max_tokens"]) == ("Q: hi\nA: yes</s>", True, 1, 1)


def test_loglik_without_echoed_logprobs_is_a_clear_error(serve):
    server = serve(lambda body, n: (200, _completion(text="x"), None, 0))
    with pytest.raises(ConfigError, match="cannot score likelihoods"):
        _gen(server.url).loglik(["a"], ["b"])


# --------------------------------------------------------------------------- usage


def _with_usage(answer: dict, prompt_tokens, completion_tokens) -> dict:
    return {**answer, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                "total_tokens": prompt_tokens + completion_tokens}}


def test_usage_is_the_servers_own_count(serve):
    # The fake server counts a prompt's characters as its tokens and answers with n + 1 tokens.
    server = serve(lambda body, n: (200, _with_usage(_completion(text="ok"), len(body["prompt"]), 1 + n), None, 0))
    gen = _gen(server.url, concurrency=3)
    assert gen.usage == Usage()
    prompts = ["a", "bb", "ccc", "dddd"]
    gen.generate(prompts, SamplingParams(max_new_tokens=8))
    assert gen.usage == Usage(calls=1, prompts=4, prompt_tokens=10, generated_tokens=1 + 2 + 3 + 4)
    assert gen.usage.exact
    before = gen.usage
    gen.generate([], SamplingParams(max_new_tokens=8))
    assert gen.usage - before == Usage(calls=1)


def test_usage_sums_both_answers_of_a_lone_space_prompt(serve):
    def respond(body, n):
        if body["prompt"].endswith(" "):
            return 200, _with_usage(_completion(text="3", top={"3": math.log(0.6)}), 7, 1), None, 0
        return 200, _with_usage(_completion(text="▁", top={"▁": math.log(0.9)}), 6, 1), None, 0

    gen = _gen(serve(respond).url)
    gen.choice_probs(["Score:"], SCORES)
    assert gen.usage == Usage(calls=1, prompts=1, prompt_tokens=13, generated_tokens=2)


def test_an_answer_without_usage_leaves_its_prompt_uncounted(serve):
    def respond(body, n):
        answer = _completion(text="ok")
        if body["prompt"] == "counted":
            return 200, _with_usage(answer, 5, 2), None, 0
        if body["prompt"] == "broken":
            return 200, {**answer, "usage": {"prompt_tokens": "5", "completion_tokens": None}}, None, 0
        return 200, answer, None, 0

    gen = _gen(serve(respond).url)
    gen.generate(["counted", "bare", "broken"], SamplingParams(max_new_tokens=4))
    assert gen.usage == Usage(calls=1, prompts=3, prompt_tokens=5, generated_tokens=2, uncounted=2)
    assert not gen.usage.exact


# --------------------------------------------------------------------------- config and factory


def test_config_fields_and_factory(serve, monkeypatch):
    server = serve(lambda body, n: (200, _completion(text="ok"), None, 0))
    data = {"base_model": "m", "seed": {"path": "s.jsonl"}, "corpus": {"path": "c.jsonl"}}
    with pytest.raises(ConfigError, match="needs 'generation.api_base'"):
        load_config(data=data, overrides=["generation.backend=openai"])
    with pytest.raises(ConfigError, match="must start with http"):
        load_config(data=data, overrides=["generation.backend=openai", "generation.api_base=localhost:8000"])
    for bad in ("generation.concurrency=0", "generation.timeout_s=0", "generation.max_retries=-1",
                "generation.gpu_memory_utilization=1.5", "generation.tensor_parallel_size=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0].replace(".", r"\.")):
            load_config(data=data, overrides=[bad])
    cfg = load_config(data=data, overrides=["generation.backend=openai", f"generation.api_base={server.url}",
                                            "generation.concurrency=2", "generation.api_key_env=HB_KEY"])
    monkeypatch.setenv("HB_KEY", "secret-value")
    assert "secret-value" not in json.dumps(to_dict(cfg))
    gen = load_generator(cfg.generation, "base/model", adapter="/runs/x/backward")
    assert isinstance(gen, OpenAIGenerator) and gen.concurrency == 2
    # The record names what really serves the requests: the adapter path, at the server's address.
    assert gen.model == "/runs/x/backward" and gen.name == f"/runs/x/backward@{server.url}"
    named_cfg = GenerationConfig(backend="openai", api_base=server.url, served_model_name="judge")
    named = load_generator(named_cfg, "base/model")
    assert named.generate(["a"], SamplingParams(max_new_tokens=2)) == ["ok"]
    assert server.requests[-1]["model"] == "judge" and named.name == f"judge@{server.url}"


# --------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def transformers_server(tiny_model_dir, tmp_path_factory):
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="`transformers serve` needs transformers[serving] (pip install -e "
                                           "'.[serve]')")
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        pytest.skip("the `transformers` command is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "serve", str(tiny_model_dir), "--device", "cpu", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a failure limit only: a loaded machine imports slowly
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not come up in 600 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_generates_against_transformers_serve(transformers_server, tiny_model_dir):
    cfg = GenerationConfig(backend="openai", api_base=transformers_server, concurrency=2, timeout_s=120, max_retries=1)
    gen = load_generator(cfg, str(tiny_model_dir))
    prompts = ["The with statement is used to", "Return the JSON encoding of", "import json\n\n"]
    out = gen.generate(prompts, SamplingParams(max_new_tokens=6))
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    # The server's token counts: each prompt as its tokenizer encodes it, and the same counts the
    # hf backend keeps for the same greedy decode of the same model.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    usage = gen.usage
    assert usage.exact and (usage.calls, usage.prompts) == (1, 3)
    assert usage.prompt_tokens == sum(len(tok(p)["input_ids"]) for p in prompts)
    hf = load_generator(GenerationConfig(device="cpu"), str(tiny_model_dir))
    hf.generate(prompts, SamplingParams(max_new_tokens=6))
    hf.close()
    assert usage == hf.usage
    assert gen.generate(prompts[:1], SamplingParams(max_new_tokens=6)) == out[:1]  # greedy is deterministic
    # transformers serve ignores `logprobs`: logits curation must say so, not return made-up numbers.
    with pytest.raises(ConfigError, match="does not provide logprobs"):
        gen.choice_probs(["A pair. Score:"], SCORES)
    gen.close()


def test_a_constraint_is_sent_as_structured_outputs_and_a_server_that_ignores_it_is_caught(serve):
    from humpback.generation.constraints import parse_constraint
    from humpback.generation.rejection import generate_checked

    server = serve(lambda body, n: (200, _completion(text="I think it is fine." if n % 2 else "Score: 4"), None, 0))
    gen = _gen(server.url, concurrency=1)
    c = parse_constraint("builtin:score", 64)
    out = generate_checked(gen.generate, ["a", "b", "c", "d"], SamplingParams(max_new_tokens=64, constraint=c))
    assert [r["structured_outputs"] for r in server.requests] == [{"regex": c.value}] * 4
    assert out.stats["violations"] == 2 and out.passed.count(False) == 2
