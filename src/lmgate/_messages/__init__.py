"""The Anthropic Messages API over any model: requests and answers translated to and from
chat completions (``translate.py``), streams re-framed as Anthropic's events (``events.py``),
and the library's entry points ``anthropic_messages`` / ``aanthropic_messages`` (``api.py``).

The translation tables of ``providers/anthropic.py`` (which speaks the other direction, to an
Anthropic upstream) are read here in reverse, so the two directions cannot drift apart.
"""

from __future__ import annotations
