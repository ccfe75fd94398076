"""The official OpenAI Python SDK, direct to the mock upstream and through tollgate: every call's
parsed objects must be equal (ids and timestamps aside). Driven by tollgate's Rust tests, which
start the mock and the gateway and pass their URLs and keys in the environment.

SDK_PARITY_CALLS picks the calls: unset runs the eight the gateway has always forwarded (responses,
chat, embeddings, models); `all` runs every call, including files, batches, moderations, images,
audio and hosted tools; otherwise a comma-separated list of call names or name prefixes
(`images,batches.create`). To check the mock alone, point both base URLs at it."""
import hashlib
import json
import os
import struct
import sys

from openai import OpenAI

direct = OpenAI(base_url=os.environ["DIRECT_BASE_URL"], api_key=os.environ["DIRECT_KEY"], max_retries=0)
gateway = OpenAI(base_url=os.environ["GATEWAY_BASE_URL"], api_key=os.environ["GATEWAY_KEY"], max_retries=0)

VOLATILE = {"id", "created", "created_at", "completed_at", "system_fingerprint", "item_id", "call_id", "sequence_number"}
# Differ between two calls but must be there (or be null) alike: compared by type only.
SHAPE_ONLY = {"input_file_id", "output_file_id", "error_file_id", "first_id", "last_id", "container_id", "url",
              "expires_at", "in_progress_at", "finalizing_at", "cancelling_at", "cancelled_at", "expired_at", "failed_at"}


def normalise(value):
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, dict):
        return {k: (type(v).__name__ if k in SHAPE_ONLY else normalise(v)) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def wav(ms):
    """A silent 16 kHz mono 16-bit WAV of `ms` milliseconds."""
    data = b"\0" * (ms * 32)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
AUDIO = ("hello.wav", wav(2345), "audio/wav")
IMAGE = ("in.png", PNG, "image/png")
BATCH_INPUT = "".join(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "gpt-5.5", "messages": [{"role": "user", "content": f"hello {i}"}]}}) + "\n"
                      for i in range(3)).encode()
HOSTED_TOOLS = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_mock"]},
                {"type": "code_interpreter", "container": {"type": "auto"}}]


def upload(c):
    return c.files.create(file=("batch.jsonl", BATCH_INPUT, "application/jsonl"), purpose="batch")


def batch(c):
    return c.batches.create(input_file_id=upload(c).id, endpoint="/v1/chat/completions", completion_window="24h",
                            metadata={"suite": "sdk_parity"})


def sse_events(text):
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


CALLS = {
    "responses": lambda c: c.responses.create(model="gpt-5.5", input="Say hello"),
    "responses.stream": lambda c: list(c.responses.create(model="gpt-5.5", input="Say hello", stream=True)),
    "chat": lambda c: c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Say hello"}]),
    "chat.stream": lambda c: list(c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Say hello"}], stream=True)),
    "chat.stream.usage": lambda c: list(c.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Say hello"}], stream=True, stream_options={"include_usage": True})),
    "embeddings": lambda c: c.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"]),
    "embeddings.float": lambda c: c.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float"),
    "models": lambda c: list(c.models.list()),
    "files.upload": upload,
    "files.retrieve": lambda c: c.files.retrieve(upload(c).id),
    "files.content": lambda c: c.files.content(upload(c).id).read(),
    "batches.create": batch,
    "batches.retrieve": lambda c: c.batches.retrieve(batch(c).id),
    "batches.list": lambda c: list(c.batches.list(limit=2)),
    "batches.cancel": lambda c: c.batches.cancel(batch(c).id),
    "moderations": lambda c: c.moderations.create(input=["a kind word", "mock:flag this"]),
    "images.generate": lambda c: c.images.generate(model="gpt-image-1", prompt="a red fox in snow", size="1024x1536", quality="high", n=2),
    "images.generate.dall-e-3": lambda c: c.images.generate(model="dall-e-3", prompt="a red fox in snow"),
    "images.generate.stream": lambda c: list(c.images.generate(model="gpt-image-1", prompt="a red fox", stream=True, partial_images=2)),
    "images.edit": lambda c: c.images.edit(model="gpt-image-1", image=[IMAGE, IMAGE], prompt="add a hat", quality="low"),
    "images.edit.stream": lambda c: list(c.images.edit(model="gpt-image-1", image=IMAGE, prompt="add a hat", stream=True, partial_images=1)),
    "images.variation": lambda c: c.images.create_variation(image=IMAGE, n=2, response_format="b64_json"),
    "speech": lambda c: c.audio.speech.create(model="tts-1", voice="alloy", input="Hello there", response_format="wav").read(),
    "speech.sse": lambda c: c.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hello there", stream_format="sse").text,
    "transcriptions": lambda c: c.audio.transcriptions.create(model="whisper-1", file=AUDIO),
    "transcriptions.tokens": lambda c: c.audio.transcriptions.create(model="gpt-4o-transcribe", file=AUDIO, prompt="names: Ada"),
    "transcriptions.verbose": lambda c: c.audio.transcriptions.create(model="whisper-1", file=AUDIO, response_format="verbose_json"),
    "transcriptions.text": lambda c: c.audio.transcriptions.create(model="whisper-1", file=AUDIO, response_format="text"),
    "transcriptions.stream": lambda c: list(c.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=AUDIO, stream=True)),
    "translations": lambda c: c.audio.translations.create(model="whisper-1", file=AUDIO),
    "responses.hosted_tools": lambda c: c.responses.create(model="gpt-5.5", input="look it up", tools=HOSTED_TOOLS),
    "responses.hosted_tools.stream": lambda c: list(c.responses.create(model="gpt-5.5", input="look it up", tools=HOSTED_TOOLS, stream=True)),
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
    "models": lambda models: any(m.id == "gpt-5.5" for m in models) and any(m.id == "gpt-image-1" for m in models),
    "files.upload": lambda f: f.object == "file" and f.bytes == len(BATCH_INPUT) and f.purpose == "batch",
    "files.retrieve": lambda f: f.filename == "batch.jsonl" and f.bytes == len(BATCH_INPUT),
    "files.content": lambda data: data == BATCH_INPUT,
    "batches.create": lambda b: b.status == "in_progress" and b.request_counts.total == 3 and b.metadata == {"suite": "sdk_parity"},
    "batches.retrieve": lambda b: b.endpoint == "/v1/chat/completions" and b.input_file_id.startswith("file-"),
    "batches.list": lambda batches: len(batches) >= 1 and all(b.object == "batch" for b in batches),
    "batches.cancel": lambda b: b.status == "cancelling" and b.cancelling_at,
    "moderations": lambda r: [m.flagged for m in r.results] == [False, True] and r.results[1].categories.harassment,
    "images.generate": lambda r: len(r.data) == 2 and r.data[0].b64_json and r.usage.output_tokens == 2 * 6240 and r.size == "1024x1536",
    "images.generate.dall-e-3": lambda r: r.data[0].url and r.data[0].revised_prompt and r.usage is None,
    "images.generate.stream": lambda events: [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"] and events[-1].usage.output_tokens > 0,
    "images.edit": lambda r: r.usage.input_tokens_details.image_tokens > 0 and r.usage.output_tokens == 272,
    "images.edit.stream": lambda events: events[-1].type == "image_edit.completed" and events[-1].usage.input_tokens_details.image_tokens > 0,
    "images.variation": lambda r: len(r.data) == 2 and r.data[0].b64_json and r.usage is None,
    "speech": lambda audio: audio.startswith(b"RIFF") and len(audio) > 44,
    "speech.sse": lambda text: sse_events(text)[0]["type"] == "speech.audio.delta" and sse_events(text)[-1]["usage"]["output_tokens"] > 0,
    "transcriptions": lambda t: t.text and t.usage.type == "duration" and t.usage.seconds == 2.345,
    "transcriptions.tokens": lambda t: t.usage.type == "tokens" and t.usage.input_token_details.audio_tokens == 24,
    "transcriptions.verbose": lambda t: t.duration == 2.345 and t.segments and t.usage.seconds == 2.345,
    "transcriptions.text": lambda t: isinstance(t, str) and t.strip(),
    "transcriptions.stream": lambda events: events[0].type == "transcript.text.delta" and events[-1].type == "transcript.text.done" and events[-1].usage.total_tokens > 0,
    "translations": lambda t: t.text,
    "responses.hosted_tools": lambda r: [i.type for i in r.output] == ["web_search_call", "file_search_call", "code_interpreter_call", "message"] and r.output_text,
    "responses.hosted_tools.stream": lambda events: "response.web_search_call.searching" in [e.type for e in events] and "response.code_interpreter_call_code.done" in [e.type for e in events] and len(events[-1].response.output) == 4,
}

CORE = ["responses", "responses.stream", "chat", "chat.stream", "chat.stream.usage", "embeddings", "embeddings.float", "models"]
selection = os.environ.get("SDK_PARITY_CALLS", "")
if selection == "all":
    selected = list(CALLS)
elif selection:
    wanted = [w.strip() for w in selection.split(",") if w.strip()]
    selected = [n for n in CALLS if any(n == w or n.startswith(w + ".") for w in wanted)]
    if not selected:
        sys.exit(f"SDK_PARITY_CALLS={selection!r} names no call; calls: {', '.join(CALLS)}")
else:
    selected = CORE

failures = 0
for name in selected:
    call = CALLS[name]
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
