"""A small OpenAI-compatible completions server for the tests: it serves a base model and LoRA adapters
under names, the way `vllm serve BASE --enable-lora --lora-modules NAME=PATH` does, on the CPU.

Adapters are loaded when first asked for (so a run can train them after the server starts), and
``POST /v1/load_lora_adapter`` registers more at run time, as vLLM's runtime LoRA loading does.
Answers ``/v1/completions`` with generated text, or with the top logprobs of the next token."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoraServer:
    def __init__(self, base_model: str, modules: dict[str, str], base_name: str = "base"):
        self.base_model, self.modules, self.base_name = base_model, dict(modules), base_name
        self.requests: list[dict] = []
        self._models: dict = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = server.handle(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        with self._lock:  # one request at a time: the models are not thread-safe
            self.requests.append({"path": path, **body})
            if path.endswith("/load_lora_adapter"):
                if body["lora_name"] in self.modules:
                    return 400, {"error": {"message": f"The lora adapter '{body['lora_name']}' "
                                                      "has already been loaded."}}
                self.modules[body["lora_name"]] = body["lora_path"]
                return 200, {}
            name = body.get("model")
            if name != self.base_name and name not in self.modules:
                return 404, {"error": {"message": f"The model `{name}` does not exist."}}
            gen = self._generator(name)
            if body.get("logprobs"):
                return 200, {"choices": [{"text": "", "logprobs": {"top_logprobs": [self._top(gen, body)]}}]}
            from humpback.generation import SamplingParams

            params = SamplingParams(temperature=body.get("temperature", 0.0), top_p=body.get("top_p", 1.0) or 1.0,
                                    max_new_tokens=body["max_tokens"], seed=body.get("seed", 0))
            return 200, {"choices": [{"text": gen.generate([body["prompt"]], params)[0]}]}

    def _generator(self, name: str):
        if name not in self._models:
            from humpback.generation.hf import HFGenerator

            self._models[name] = HFGenerator(self.base_model, adapter=self.modules.get(name), device="cpu")
        return self._models[name]

    @staticmethod
    def _top(gen, body: dict) -> dict:
        import torch

        ids = gen.tokenizer(body["prompt"], return_tensors="pt").input_ids
        with torch.no_grad():
            logits = gen.model(input_ids=ids).logits[0, -1].float()
        logp = torch.log_softmax(logits, -1)
        top = torch.topk(logp, int(body["logprobs"]))
        return {gen.tokenizer.decode([int(i)]): float(v) for v, i in zip(top.values, top.indices)}
