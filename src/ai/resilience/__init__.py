"""Keeping a call alive when a provider fails: retries, circuit breakers and per-call
fallback chains that implement the same protocols as the providers they wrap.

- `FallbackSTT`: if a stream fails to open or dies mid-call, the next provider takes over
  for the rest of the call; audio since the last finished utterance is replayed to it.
- `FallbackTTS`: no first byte in time, or an error mid-stream, and the next provider
  synthesises what is left of the text (estimated from the audio already produced).
- `FallbackPolicy`: an LLM timeout or error hands the call to the next policy (usually the
  scripted playbook) for the rest of the call; a filler line covers a slow first reply.

Every switch is logged (provider names only) and counted in `ai.metrics`.
"""


from ai.resilience.policy import FallbackPolicy, FallbackPolicyFactory
from ai.resilience.retry import (
    CircuitBreaker,
    ProviderUnavailable,
    backoff_delay,
    is_transient,
    retry_async,
)
from ai.resilience.stt import FallbackSTT
from ai.resilience.tts import FallbackTTS

__all__ = [
    "CircuitBreaker",
    "FallbackPolicy",
    "FallbackPolicyFactory",
    "FallbackSTT",
    "FallbackTTS",
    "ProviderUnavailable",
    "backoff_delay",
    "is_transient",
    "retry_async",
]
