"""``lmgate demo``: the library on the mock provider, with no key and no server."""

from __future__ import annotations

import asyncio
from typing import Any

import lmgate
from lmgate.testing import CapturingLogger

MESSAGES = [{"role": "user", "content": "Say hello to lmgate"}]


def run_demo() -> int:
    capture = CapturingLogger()
    lmgate.callbacks = [capture]

    lines: list[str] = []

    def cost_line(kwargs: dict[str, Any], response: Any, start: Any, end: Any) -> None:
        # runs on lmgate's callback thread, off the caller's path; print after flushing
        slo = kwargs["standard_logging_object"]
        cost = "unknown" if slo["response_cost"] is None else f"${slo['response_cost']:.7f}"
        lines.append(
            f"    [success_callback] {slo['call_type']:<12} {slo['model']:<26} tokens={slo['total_tokens']:<3} "
            f"cost={cost} stream={slo['stream']} metadata={slo['metadata']['requester_metadata']}"
        )

    def show_callbacks() -> None:
        lmgate.flush_callbacks(5)
        print("\n".join(lines))
        lines.clear()

    lmgate.success_callback = [cost_line]

    print("1. completion (mock provider, no key, no server)")
    r = lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="Hello from lmgate!", metadata={"demo": "plain"}
    )
    print(f"    {r.choices[0].message.content!r}  usage={r.usage.total_tokens} tokens  cost=${r._hidden_params['response_cost']:.7f}")
    show_callbacks()

    print("2. streamed completion (anthropic model name, mock answer)")
    print("    ", end="")
    for chunk in lmgate.completion(
        model="claude-3-5-haiku-20241022",
        messages=MESSAGES,
        mock_response="Streaming, three characters at a time.",
        stream=True,
        metadata={"demo": "stream"},
    ):
        print(chunk.choices[0].delta.content or "", end="|", flush=True)
    print()
    show_callbacks()

    async def async_part() -> None:
        print("3. async completion and async embedding")
        r = await lmgate.acompletion(
            model="azure/my-deployment",
            messages=MESSAGES,
            mock_response="Hi from async",
            metadata={"demo": "async"},
            base_model="gpt-4o-mini",  # prices an Azure deployment by its underlying model
        )
        print(f"    {r.choices[0].message.content!r}")
        e = await lmgate.aembedding(model="text-embedding-3-small", input=["a", "b"], mock_response=True)
        print(f"    {len(e.data)} embeddings of {len(e.data[0].embedding)} dimensions")
        await lmgate.aflush_callbacks(5)

    asyncio.run(async_part())
    show_callbacks()

    print("4. a failing call reaches the failure hook")
    try:
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=lmgate.RateLimitError("slow down"))
    except lmgate.RateLimitError as error:
        print(f"    raised {type(error).__name__}: {error.message}")
    show_callbacks()

    print("\nhooks seen by the CustomLogger, in order (repeats folded):")
    rows = [(e.hook, e.kwargs.get("call_type", ""), e.kwargs.get("model", "")) for e in capture.events]
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1] == rows[i]:
            j += 1
        hook, call_type, model = rows[i]
        times = f" × {j - i + 1}" if j > i else ""
        print(f"    {hook + times:<26} {call_type:<12} {model}")
        i = j + 1
    print(f"\ncallback stats: {lmgate.callback_stats()}")
    lmgate.callbacks, lmgate.success_callback = [], []
    return 0
