"""Chat formatting: the messages of one example, and the text a model is prompted with.

Every stage goes through the tokenizer's own chat template. A base model often has none, so
``ensure_chat_template`` installs ``FALLBACK_CHAT_TEMPLATE``; training saves the tokenizer with the
template it used, so generation later renders prompts exactly as the model was trained on them.
"""

from __future__ import annotations

from typing import Any

# Role markers on their own line; an assistant turn ends with the eos token and nothing after it,
# so the trained completion is exactly ``content + eos``. The assistant content sits inside
# ``{% generation %}`` so ``return_assistant_tokens_mask`` (assistant-only loss) works too.
FALLBACK_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}"
    "{%- generation -%}{{ message['content'] + eos_token }}{%- endgeneration -%}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


def ensure_chat_template(tokenizer: Any) -> bool:
    """Install ``FALLBACK_CHAT_TEMPLATE`` when the tokenizer has no chat template; True if it did."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def messages_for(instruction: str, output: str | None = None, system: str | None = None) -> list[dict]:
    """The chat of one example: system (if any), user, and assistant (if ``output`` is not None)."""
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": instruction})
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages


def render_prompt(tokenizer: Any, messages: list[dict], prefill: str = "") -> str:
    """The text a model continues: the chat with the assistant header appended, then ``prefill``."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + prefill


def load_chat_tokenizer(model: str, revision: str | None = None, adapter: Any = None) -> Any:
    """The tokenizer whose chat template renders a model's prompts: the one saved with the adapter
    (it carries the template used in training) wins, else the model's; the fallback template when
    neither has one. Every backend gets its tokenizer from here."""
    from pathlib import Path

    from transformers import AutoTokenizer

    if adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(adapter))
    else:
        tok = AutoTokenizer.from_pretrained(model, **({"revision": revision} if revision else {}))
    ensure_chat_template(tok)
    return tok
