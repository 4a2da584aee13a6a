"""In-process fake upstreams (OpenAI, Anthropic, Ollama) for end-to-end and benchmark tests.

    from tests.fakes import FakeOpenAI, FakeAnthropic, Reply, Fault
"""

from tests.fakes.anthropic_server import DEFAULT_ANTHROPIC_KEY, FakeAnthropic
from tests.fakes.base import Fault, FakeServer, RecordedRequest
from tests.fakes.openai_server import DEFAULT_OPENAI_KEY, FakeOpenAI
from tests.fakes.scripts import DEFAULT_TEXT, Reply, ToolCall, Turn, count_tokens, prompt_tokens

__all__ = [
    "DEFAULT_ANTHROPIC_KEY", "DEFAULT_OPENAI_KEY", "DEFAULT_TEXT", "FakeAnthropic", "FakeOpenAI", "FakeServer",
    "Fault", "RecordedRequest", "Reply", "ToolCall", "Turn", "count_tokens", "prompt_tokens",
]
