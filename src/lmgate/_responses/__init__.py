"""The OpenAI Responses API over any model: requests and answers translated to and from chat
completions (``translate.py``), streams re-framed as the Responses API's semantic events
(``events.py``), stored responses for ``previous_response_id`` and ``GET /v1/responses/{id}``
(``store.py``), and the library's entry points ``responses`` / ``aresponses`` (``api.py``).

A deployment that speaks the Responses API itself (OpenAI's) gets the request as it was sent
(``openai_passthrough``, see ``providers/openai_apis.py``); the translation here is for every
other one, and for the call's record (callbacks see a chat call of call type ``responses``).
"""

from __future__ import annotations
