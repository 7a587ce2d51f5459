"""The ``openai`` backend: any OpenAI-compatible server (vLLM serve, TGI, SGLang, ``transformers serve``,
llama.cpp) through ``POST {api_base}/completions`` with the rendered prompt strings.

Requests run on a bounded thread pool (``concurrency`` in flight); each has a socket timeout and is
retried with exponential backoff and jitter on 429, 5xx, timeouts and connection errors, honouring
``Retry-After``. Only the standard library is used. The API key is read from an environment variable
and never stored in the config.

Choice probabilities ask for one token with the top ``TOP_LOGPROBS`` logprobs after the prompt
(which ends at "Score:") and read "1".."5" from them; a server that returns no logprobs (for example
``transformers serve``) gets a clear error pointing to ``curate.mode=generate``.

Token counts (``usage``) are the server's own, from each answer's ``usage`` field; a prompt whose
answer has none is counted as ``uncounted``, never guessed.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from ..errors import ConfigError, HumpbackError
from .base import AnswerLogprobs, ChoiceProbs, Completion, LogLik, SamplingParams, Usage, cut_at_stop, prompt_seed
from .constraints import openai_structured_outputs
from .logprobs import (TOP_LOGPROBS, answer_logprobs_from_top, choice_probs_from_top, loglik_from_echo, token_text,
                       top_logprobs_from_completion)

T = TypeVar("T")
R = TypeVar("R")

MAX_RETRY_AFTER_S = 300.0  # a Retry-After longer than this is cut (the loop stays bounded)


class ServerError(HumpbackError):
    """A request to the generation server failed (after its retries, or with a non-retryable status)."""


def is_retryable(status: int) -> bool:
    """429 (rate limited), 408 (request timeout) and every 5xx are worth another try."""
    return status in (408, 429) or 500 <= status <= 599


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def completion_body(model: str, prompt: str, params: SamplingParams) -> dict:
    """The JSON body of one ``/completions`` request; a constraint adds the server's structured-output
    field (:func:`humpback.generation.constraints.openai_structured_outputs`)."""
    greedy = params.temperature == 0
    body = {"model": model, "prompt": prompt, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": 1.0 if greedy else params.top_p,
            "seed": prompt_seed(params.seed, prompt) & 0x7FFFFFFF, "n": 1, "stream": False}
    if params.presence_penalty:
        body["presence_penalty"] = params.presence_penalty
    # No "stop" is sent: servers drop the stop string from the text, which then no longer tells
    # whether the answer stopped; the text is cut here instead.
    if params.constraint is not None:
        body.update(openai_structured_outputs(params.constraint))
    return body


class OpenAIGenerator:
    """A :class:`~humpback.generation.base.Generator` that calls an OpenAI-compatible completions endpoint."""

    def __init__(
        self,
        api_base: str,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        served_model_name: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        retry_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        progress: bool = False,
        register_adapter: bool = False,
    ) -> None:
        if not api_base or not api_base.startswith(("http://", "https://")):
            raise ConfigError(f"openai backend: api_base must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                              f"got {api_base!r}")
        if concurrency <= 0 or timeout_s <= 0 or max_retries < 0 or retry_backoff_s < 0:
            raise ConfigError("openai backend: concurrency and timeout_s must be > 0, max_retries and "
                              f"retry_backoff_s >= 0 (got {concurrency}, {timeout_s}, {max_retries}, "
                              f"{retry_backoff_s})")
        self.api_base = api_base.rstrip("/")
        self.url = self.api_base + "/completions"
        # What the server knows the model as: set explicitly, else the adapter (a server started with
        # e.g. `vllm serve BASE --enable-lora --lora-modules PATH=PATH`), else the base model.
        self.model = served_model_name or adapter or model
        # Provenance: the name really served, where, and (for an adapter) what it stands for.
        self.name = f"{self.model}@{self.api_base}" + (f" (adapter {adapter})"
                                                       if adapter and self.model != adapter else "")
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.max_backoff_s = max_backoff_s
        self.progress = progress
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._stop = threading.Event()
        self._rng = random.Random()
        self._lock = threading.Lock()  # requests finish on the pool's threads
        self.usage = Usage()
        if register_adapter and adapter:
            self.register_adapter(self.model, adapter)

    # ----------------------------------------------------------------------- public

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        self._count(Usage(calls=1))

        def one(prompt: str) -> Completion:
            answer = self._post(completion_body(self.model, prompt, params))
            choice = self._first_choice(answer)
            text = choice.get("text")
            if not isinstance(text, str):
                raise ServerError(f"{self.url}: the answer has no completion text: {_excerpt(text)}")
            self._count(usage_of([answer]))
            cut = cut_at_stop(text, params.stop)
            stopped = len(cut) < len(text) or any(cut.endswith(s) for s in params.stop)
            return Completion(cut, "stop" if stopped or choice.get("finish_reason") != "length" else "length")

        return self._map(one, prompts, "generate")

    def choice_probs(self, prompts: Sequence[str], choices: Sequence[str]) -> list[ChoiceProbs]:
        if not choices:
            raise ConfigError("choice_probs needs at least one choice")
        self._count(Usage(calls=1))

        def one(prompt: str) -> ChoiceProbs:
            top, answer = self._top_logprobs(prompt)
            answers = [answer]
            probs = choice_probs_from_top(top, choices)
            if probs.probs is None and top and token_text(max(top, key=lambda t: t[1])[0]) == "":
                # The likeliest next token is a lone space (a SentencePiece "▁" before the digit):
                # read the digit after it instead.
                top, answer = self._top_logprobs(prompt + " ")
                answers.append(answer)
                probs = choice_probs_from_top(top, choices)
            self._count(usage_of(answers))
            return probs

        return self._map(one, prompts, "score")

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[LogLik]:
        """One request per pair: the prompt and its continuation echoed back with the logprob of every
        token (``echo=true``, ``logprobs=1``, ``max_tokens=1``; vLLM serves this). The server tokenises
        the text itself; the continuation is the tokens that start at or after the prompt's end."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        self._count(Usage(calls=1))

        def one(pair: tuple[str, str]) -> LogLik:
            prompt, continuation = pair
            body = {"model": self.model, "prompt": prompt + continuation, "max_tokens": 1, "temperature": 0.0,
                    "echo": True, "logprobs": 1, "n": 1, "stream": False}
            answer = self._post(body)
            self._count(usage_of([answer]))
            got = loglik_from_echo(self._first_choice(answer), len(prompt), len(prompt) + len(continuation))
            if got is None:
                raise ConfigError(
                    f"{self.url} did not echo the prompt with per-token logprobs (asked echo=true, logprobs=1): this "
                    f"server cannot score likelihoods, so curate.judge_kind=likelihood cannot run on it; use a server "
                    f"that does (vLLM), or generation.backend=hf")
            return got

        return self._map(one, list(zip(prompts, continuations)), "loglik")

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> list[AnswerLogprobs]:
        self._count(Usage(calls=1))

        def one(prompt: str) -> AnswerLogprobs:
            top, answer = self._top_logprobs(prompt)
            replies = [answer]
            found = answer_logprobs_from_top(top, answers)
            if all(x is None for x in found.logprobs) and top and token_text(max(top, key=lambda t: t[1])[0]) == "":
                top, answer = self._top_logprobs(prompt + " ")  # a lone "▁" first: read the word after it
                replies.append(answer)
                found = answer_logprobs_from_top(top, answers)
            self._count(usage_of(replies))
            return found

        return self._map(one, prompts, "judge")

    def close(self) -> None:
        self._stop.set()

    def register_adapter(self, name: str, path: str) -> None:
        """Ask the server to serve the LoRA adapter at ``path`` as ``name`` (vLLM's runtime LoRA loading:
        ``POST /v1/load_lora_adapter``); a name it already serves is kept."""
        body = json.dumps({"lora_name": name, "lora_path": str(path)}).encode()
        request = urllib.request.Request(self.api_base + "/load_lora_adapter", data=body, headers=self._headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s):
                return
        except urllib.error.HTTPError as e:
            detail = _read_error(e)
            if e.code == 400 and "already" in detail.lower():
                return
            raise ServerError(f"{self.api_base}/load_lora_adapter: HTTP {e.code} loading adapter {path} as "
                              f"{name!r}: {detail} (is the server started with --enable-lora and "
                              f"VLLM_ALLOW_RUNTIME_LORA_UPDATING=True?)") from None
        except (urllib.error.URLError, OSError) as e:
            raise ServerError(f"{self.api_base}/load_lora_adapter: cannot reach the server to load adapter "
                              f"{name!r}: {e}") from None

    # ----------------------------------------------------------------------- requests

    def _count(self, usage: Usage) -> None:
        with self._lock:
            self.usage += usage

    def _top_logprobs(self, prompt: str) -> tuple[list[tuple[str, float]], dict]:
        """The top logprobs of the next token, and the whole answer."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                "logprobs": TOP_LOGPROBS, "n": 1, "stream": False}
        answer = self._post(body)
        top = top_logprobs_from_completion(self._first_choice(answer))
        if top is None:
            raise ConfigError(
                f"{self.url} returned no logprobs for a completion asked with logprobs={TOP_LOGPROBS}: this "
                f"server does not provide logprobs, so logits curation cannot run on it; use curate.mode=generate "
                f"(or a server that returns them, such as vLLM)"
            )
        return top, answer

    def _first_choice(self, answer: object) -> dict:
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ServerError(f"{self.url}: not a completions answer (no 'choices'): {_excerpt(answer)}")
        return choices[0]

    def _post(self, body: dict) -> dict:
        """One request with retries; the parsed JSON answer."""
        data = json.dumps(body).encode("utf-8")
        last = "no attempt"
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if self._stop.is_set():
                raise ServerError(f"{self.url}: cancelled (the generator was closed or another request failed)")
            request = urllib.request.Request(self.url, data=data, headers=self._headers, method="POST")
            wait_s = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as e:
                detail = _read_error(e)
                if not is_retryable(e.code):
                    hint = ""
                    if e.code in (400, 422) and "logprob" in detail.lower():
                        hint = f" (this server may not allow logprobs={TOP_LOGPROBS}: use curate.mode=generate)"
                    raise ServerError(f"{self.url}: HTTP {e.code} for model {self.model!r}: {detail}{hint}") from None
                last = f"HTTP {e.code}: {detail}"
                wait_s = retry_after_s(e.headers.get("Retry-After") if e.headers else None)
            except (TimeoutError, socket.timeout):
                last = f"timed out after {self.timeout_s:g} s"
            except urllib.error.URLError as e:
                reason = e.reason
                last = f"timed out after {self.timeout_s:g} s" if isinstance(reason, (TimeoutError, socket.timeout)) \
                    else f"connection failed: {reason}"
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                last = f"connection failed: {type(e).__name__}: {e}"
            else:
                try:
                    return json.loads(raw)
                except ValueError:
                    raise ServerError(f"{self.url}: the answer is not JSON: {_excerpt(raw)}") from None
            if attempt + 1 < attempts:
                self._stop.wait(wait_s if wait_s is not None else self._backoff(attempt))
        raise ServerError(f"{self.url}: giving up after {attempts} attempt{'s' * (attempts > 1)} (model "
                          f"{self.model!r}); last error: {last}")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half the step fixed, half random."""
        step = min(self.max_backoff_s, self.retry_backoff_s * (2 ** attempt))
        return step / 2 + self._rng.uniform(0, step / 2)

    def _map(self, fn: Callable[[T], R], items: Sequence[T], what: str) -> list[R]:
        """``fn`` over ``items`` with at most ``concurrency`` requests in flight, results in input order.

        Work is submitted as earlier requests finish, so memory does not grow with the number of
        prompts; the first failure cancels what has not started and stops the retries of the rest."""
        out: list = [None] * len(items)
        if not items:
            return out
        self._stop.clear()
        from ..progress import task

        todo = iter(enumerate(items))
        pending: dict[Future, int] = {}
        # The stage's bar when one is open; else, with progress on, one of its own.
        with task(len(items), "requests", f"{what} ({self.model})", show=self.progress) as bar, \
                ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            def submit() -> None:
                for i, item in todo:
                    pending[pool.submit(fn, item)] = i
                    return

            for _ in range(self.concurrency):
                submit()
            try:
                while pending:
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for future in done:
                        out[pending.pop(future)] = future.result()
                        bar.update(1)
                        submit()
            except BaseException:
                self._stop.set()
                for future in pending:
                    future.cancel()
                raise
        return out


def usage_of(answers: Sequence[dict]) -> Usage:
    """One prompt's usage from the server's answers to it: the ``usage`` field's ``prompt_tokens`` and
    ``completion_tokens`` summed, or the prompt marked uncounted when an answer lacks them."""
    prompt_tokens = generated = 0
    for answer in answers:
        usage = answer.get("usage") if isinstance(answer, dict) else None
        counts = [usage.get(k) if isinstance(usage, dict) else None for k in ("prompt_tokens", "completion_tokens")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            return Usage(prompts=1, uncounted=1)
        prompt_tokens += counts[0]
        generated += counts[1]
    return Usage(prompts=1, prompt_tokens=prompt_tokens, generated_tokens=generated)


def _read_error(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read()
    except Exception:  # noqa: BLE001 - the status alone still says enough
        raw = b""
    return _excerpt(raw) or (e.reason if isinstance(e.reason, str) else "")


def _excerpt(value: object, limit: int = 300) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_endpoint(api_base: str, key: str, what: str = "the server", timeout_s: float = 10.0) -> None:
    """Any HTTP answer from ``GET {api_base}/models`` (even 401 or 404) shows the server is there; else a
    ConfigError that names the recipe ``key`` that set ``api_base``."""
    url = api_base.rstrip("/") + "/models"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConfigError(f"'{key}': cannot reach {what} at {api_base} ({url}: {reason})") from None
