"""The official OpenAI Python SDK, direct to the mock upstream and through tollgate: every call's
parsed objects must be equal (ids and timestamps aside). Driven by tollgate's Rust tests, which
start the mock and the gateway and pass their URLs and keys in the environment."""
import json
import os
import sys

from openai import OpenAI

direct = OpenAI(base_url=os.environ["DIRECT_BASE_URL"], api_key=os.environ["DIRECT_KEY"], max_retries=0)
gateway = OpenAI(base_url=os.environ["GATEWAY_BASE_URL"], api_key=os.environ["GATEWAY_KEY"], max_retries=0)

VOLATILE = {"id", "created", "created_at", "completed_at", "system_fingerprint", "item_id", "call_id", "sequence_number"}


def normalise(value):
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


CALLS = {
    "responses": lambda c: c.responses.create(model="gpt-5.5", input="Say hello"),
    "responses.stream": lambda c: list(c.responses.create(model="gpt-5.5", input="Say hello", stream=True)),
    "chat": lambda c: c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Say hello"}]),
    "chat.stream": lambda c: list(c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Say hello"}], stream=True)),
    "chat.stream.usage": lambda c: list(c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Say hello"}], stream=True, stream_options={"include_usage": True})),
    "embeddings": lambda c: c.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"]),
    "embeddings.float": lambda c: c.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float"),
    "models": lambda c: list(c.models.list()),
}

# What a user would check on top of equality: the results are real, not two equal empties.
CHECKS = {
    "responses": lambda r: r.output_text and r.usage.input_tokens > 0,
    "responses.stream": lambda events: events[0].type == "response.created" and events[-1].type == "response.completed" and events[-1].response.usage.output_tokens > 0,
    "chat": lambda r: r.choices[0].message.content and r.usage.total_tokens > 0,
    "chat.stream": lambda chunks: len(chunks) > 2 and all(c.usage is None for c in chunks),
    "chat.stream.usage": lambda chunks: chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0,
    "embeddings": lambda r: len(r.data) == 2 and len(r.data[0].embedding) > 0,
    "embeddings.float": lambda r: len(r.data[0].embedding) > 0,
    "models": lambda models: any(m.id == "gpt-5.5" for m in models),
}

failures = 0
for name, call in CALLS.items():
    want, got = call(direct), call(gateway)
    if normalise(want) != normalise(got):
        failures += 1
        a, b = normalise(want), normalise(got)
        if isinstance(a, list) and isinstance(b, list):
            diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            print(f"MISMATCH {name}: {len(a)} vs {len(b)} items, first difference at {diff}")
            a, b = a[diff:diff + 1], b[diff:diff + 1]
        print(f"MISMATCH {name}\n direct:  {json.dumps(a)[:3000]}\n gateway: {json.dumps(b)[:3000]}")
    elif not CHECKS[name](got):
        failures += 1
        print(f"EMPTY {name}: {json.dumps(normalise(got))[:2000]}")
    else:
        print(f"ok {name}")
sys.exit(1 if failures else 0)
