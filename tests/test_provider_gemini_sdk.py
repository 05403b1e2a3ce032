"""Our Gemini requests against what Google's official ``google-genai`` SDK sends for the same call, both to the fake.

The two may spell a field differently where the API takes either form (the SDK writes
``thinkingConfig``'s fields in snake_case and schema types in capitals, and names the role of
``systemInstruction``); the comparison normalises those spellings and nothing else.
"""

from __future__ import annotations

import pytest

genai = pytest.importorskip("google.genai")
from google.genai import types  # noqa: E402

import lmgate  # noqa: E402

KEY = "AIza-sdk-0123456789"


@pytest.fixture
def fake_gemini(fake_gemini_session):
    fake_gemini_session.reset()
    return fake_gemini_session


def normalise(value, key=None):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            head, *rest = k.split("_")
            out[head + "".join(w.title() for w in rest)] = normalise(v, k)
        return out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if key == "type" and isinstance(value, str):
        return value.upper()
    return value


@pytest.fixture
def sdk(fake_gemini):
    """The SDK's client, pointed at the fake; kept alive for the test (it closes its transport when collected)."""
    client = genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=fake_gemini.base_url, api_version="v1beta")
    )
    yield client
    client.close()


def test_chat_request_matches_the_sdk(fake_gemini, sdk):
    """System instruction, a turn, tools, tool_config, sampling, stop, candidates and thinking: the same JSON body."""
    sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents=[types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])],
        config=types.GenerateContentConfig(
            system_instruction="Be brief.",
            temperature=0.2,
            top_p=0.8,
            max_output_tokens=100,
            stop_sequences=["END"],
            candidate_count=2,
            tools=[
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name="get_weather",
                            description="Current weather",
                            parameters=types.Schema(
                                type="OBJECT",
                                properties={"city": types.Schema(type="STRING")},
                                required=["city"],
                            ),
                        )
                    ]
                )
            ],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode="ANY", allowed_function_names=["get_weather"]
                )
            ),
            thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True),
        ),
    )
    sent_by_sdk = fake_gemini.requests[-1]
    lmgate.completion(
        model="gemini/gemini-2.5-flash",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        temperature=0.2,
        top_p=0.8,
        max_tokens=100,
        stop=["END"],
        n=2,
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        reasoning_effort="low",
        api_base=fake_gemini.base_url,
        api_key=KEY,
    )
    ours = fake_gemini.requests[-1]
    assert ours.path == sent_by_sdk.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert ours.headers["x-goog-api-key"] == sent_by_sdk.headers["x-goog-api-key"] == KEY
    expected = normalise(sent_by_sdk.json)
    expected["systemInstruction"].pop("role", None)  # optional; the API ignores it
    assert normalise(ours.json) == expected


def test_multi_turn_with_function_call_and_response_matches_the_sdk(fake_gemini, sdk):
    sdk.models.generate_content(
        model="gemini-2.0-flash",
        contents=[
            types.Content(role="user", parts=[types.Part(text="Weather?")]),
            types.Content(
                role="model",
                parts=[
                    types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}))
                ],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(name="get_weather", response={"temp": 18})
                    ),
                    types.Part(inline_data=types.Blob(mime_type="image/png", data=b"\x89PNG")),
                ],
            ),
        ],
    )
    sent_by_sdk = fake_gemini.requests[-1]
    lmgate.completion(
        model="gemini/gemini-2.0-flash",
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 18}'},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}}],
            },
        ],
        api_base=fake_gemini.base_url,
        api_key=KEY,
    )
    assert normalise(fake_gemini.requests[-1].json) == normalise(sent_by_sdk.json)


def test_stream_and_embeddings_use_the_sdk_paths(fake_gemini, sdk):
    """Streams go to :streamGenerateContent?alt=sse; a batch of inputs to :batchEmbedContents with the same body."""
    client = sdk
    list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Hi"))
    sdk_stream = fake_gemini.requests[-1]
    list(lmgate.completion(model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "Hi"}], stream=True,
                           api_base=fake_gemini.base_url, api_key=KEY))  # fmt: skip
    ours = fake_gemini.requests[-1]
    assert (
        (ours.path, ours.query)
        == (sdk_stream.path, sdk_stream.query)
        == (
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
            {"alt": "sse"},
        )
    )
    client.models.embed_content(
        model="gemini-embedding-001",
        contents=["a", "b"],
        config=types.EmbedContentConfig(output_dimensionality=8),
    )
    sdk_embed = fake_gemini.requests[-1]
    lmgate.embedding(
        model="gemini/gemini-embedding-001",
        input=["a", "b"],
        dimensions=8,
        api_base=fake_gemini.base_url,
        api_key=KEY,
    )
    ours = fake_gemini.requests[-1]
    assert ours.path == sdk_embed.path
    expected = normalise(sdk_embed.json)
    for request in expected["requests"]:
        request["content"].pop("role", None)  # optional for embeddings
    assert normalise(ours.json) == expected
