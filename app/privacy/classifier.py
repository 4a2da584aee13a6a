"""Optional: ask a small local model whether text no rule matched is sensitive, within a time budget.

The caller provides `run(prompt) -> answer`: an async function that runs one prompt on the local tier
(`privacy.classifier.tier`, e.g. gemma3:4b on Ollama) and returns the model's text. Nothing here talks to
the network. The verdict fails closed: a timeout, an error, or an answer that is not clearly "PUBLIC"
counts as sensitive.

Only the most recent `max_chars` of text are shown to the model (the newest turns are what changes from
one request to the next; older turns were classified when they were new). That is a heuristic, not a
guarantee: the rules are the guarantee, the classifier a net for what no rule names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

PROMPT = """You are a privacy filter. Decide whether the text below contains sensitive personal or \
confidential information that must not leave the user's computer: health or medical details, financial \
records, legal matters, passwords or credentials, private conversations, or identifying details about a \
private person. Ordinary source code, logs, documentation and general questions are not sensitive.

Answer with exactly one word: SENSITIVE or PUBLIC.

<text>
{text}
</text>"""


@dataclass(frozen=True, slots=True)
class Verdict:
    sensitive: bool
    rule: str  # "classifier" | "classifier_timeout" | "classifier_error" | "classifier_unclear" | ""


class Classifier:
    def __init__(self, run: Callable[[str], Awaitable[str]], *, timeout: float = 2.0, max_chars: int = 6000):
        self.run = run
        self.timeout = timeout
        self.max_chars = max_chars

    def prompt(self, texts: Iterable[str]) -> str:
        """The prompt for these texts: the most recent `max_chars` characters."""
        parts: list[str] = []
        size = 0
        for text in reversed(list(texts)):
            if size >= self.max_chars:
                break
            take = text[-(self.max_chars - size):]
            parts.append(take)
            size += len(take) + 2
        body = "\n\n".join(reversed(parts)).replace("</text>", "</ text>")
        return PROMPT.format(text=body)

    async def classify(self, texts: Iterable[str]) -> Verdict:
        prompt = self.prompt(texts)
        try:
            answer = await asyncio.wait_for(self.run(prompt), self.timeout)
        except asyncio.TimeoutError:
            return Verdict(True, "classifier_timeout")
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - any failure of the local model: fail closed
            return Verdict(True, "classifier_error")
        return parse_answer(answer)


def parse_answer(answer: object) -> Verdict:
    if not isinstance(answer, str):
        return Verdict(True, "classifier_unclear")
    words = answer.strip().strip("*`\"'.").upper().split()
    first = words[0].strip("*`\"'.:,") if words else ""
    if first == "PUBLIC" and "SENSITIVE" not in answer.upper():
        return Verdict(False, "")
    if first == "SENSITIVE":
        return Verdict(True, "classifier")
    return Verdict(True, "classifier_unclear")
