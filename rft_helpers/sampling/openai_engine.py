"""openai engine: any OpenAI-compatible chat endpoint, for distillation from a bigger model or your own `vllm serve`.

Requests go out concurrently from an asyncio loop (at most `max_concurrency` in flight), one request per prompt with
`n` choices. The `openai` client retries 408/409/429/5xx answers, timeouts and dropped connections with exponential
backoff (`max_retries`); a prompt that still fails stops the stage, and the samples written so far are kept (the
sample stage writes them in chunks and skips finished questions when it runs again). The API key is read from the
environment variable named in the parameters and is never written anywhere. Token usage is counted for the cost
accounting in metrics.json.

The loop runs in its own thread, so the engine works the same from a script and from a notebook cell (where an
event loop is already running).
"""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from ..config import OpenAIConfig
from ..exceptions import ConfigError, EndpointError
from ..progress import progress as progress_bar
from .base import Completion, SamplingEngine, SamplingParams, continuation


def api_key(base_url: str, env_var: str) -> str:
    """The key from `env_var`; a local server needs none (the client still wants a string)."""
    key = os.environ.get(env_var)
    if key:
        return key
    if urlparse(base_url).hostname in ("localhost", "127.0.0.1", "::1"):
        return "EMPTY"
    raise ConfigError(f"openai.api_key_env: the environment variable {env_var} is not set (the key for {base_url}); "
                      f"export {env_var}=<your key> before rft run")


class OpenAIEngine(SamplingEngine):
    name = "openai"
    Options = OpenAIConfig

    def __init__(self, settings: OpenAIConfig, model: str, key: str):
        super().__init__(model)
        self.settings = settings
        self._client_options = dict(base_url=settings.base_url, api_key=key, max_retries=settings.max_retries,
                                    timeout=settings.timeout_s)

    @classmethod
    def from_options(cls, model_path, options: OpenAIConfig) -> "OpenAIEngine":
        """`options.model` names the served model; by default the checkpoint path (what `vllm serve <path>` serves)."""
        return cls(options, options.model or str(model_path), api_key(options.base_url, options.api_key_env))

    @property
    def usage(self) -> dict:
        """Requests and tokens as the endpoint counted them, and what they cost at the configured prices."""
        return super().usage | self.settings.cost(super().usage)

    def _generate(self, prompts: list[list[dict]], params: SamplingParams, progress: bool) -> list[list[Completion]]:
        with ThreadPoolExecutor(1) as pool:  # a fresh event loop, even inside Jupyter's
            return pool.submit(asyncio.run, self._generate_all(prompts, params, progress)).result()

    async def _generate_all(self, prompts, params: SamplingParams, progress: bool) -> list[list[Completion]]:
        from openai import AsyncOpenAI

        semaphore = asyncio.Semaphore(self.settings.max_concurrency)
        async with AsyncOpenAI(**self._client_options) as client:
            with progress_bar(total=len(prompts), desc="requests", disable=not progress) as bar:
                async def one(index: int, messages: list[dict]) -> list[Completion]:
                    async with semaphore:
                        completions = await self._request(client, messages, params, index)
                    bar.update(1)
                    return completions

                return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    async def _request(self, client, messages: list[dict], params: SamplingParams, index: int) -> list[Completion]:
        import openai

        url, tries = self.settings.base_url, self.settings.max_retries + 1
        resume = "the chunks already written are kept: run the same command again to resume"
        try:
            return await self._create(client, messages, params, index)
        except openai.APITimeoutError:
            raise EndpointError(f"{url}: no answer within openai.timeout_s={self.settings.timeout_s:g} s, {tries} "
                                f"tries; is the server overloaded? {resume}") from None
        except openai.APIConnectionError:
            raise EndpointError(f"{url}: cannot connect ({tries} tries); is the server running (vLLM's OpenAI "
                                f"server, rft serve) and is openai.base_url right? {resume}") from None
        except openai.AuthenticationError:
            raise EndpointError(f"{url}: the key in ${self.settings.api_key_env} was refused (401); set the right "
                                "key in that variable") from None
        except openai.RateLimitError as e:
            wait = e.response.headers.get("retry-after") if e.response is not None else None
            asked = f", asking to wait {wait} s (Retry-After; waits up to 120 s are honoured)" if wait else ""
            raise EndpointError(f"{url}: rate limited (429) after {tries} tries{asked}; lower "
                                f"openai.max_concurrency or try later; {resume}") from None
        except openai.APIStatusError as e:
            raise EndpointError(f"{url}: the endpoint answered {e.status_code} ({_first_line(e.message)}) for model "
                                f"{self.model_name!r}; {resume}") from None

    async def _create(self, client, messages: list[dict], params: SamplingParams, index: int) -> list[Completion]:
        response = await client.chat.completions.create(
            model=self.model_name, messages=messages, n=params.n, temperature=params.temperature,
            top_p=params.top_p, max_tokens=params.max_new_tokens, seed=params.seed * 1_000_003 + index,
            stop=list(params.stop) or None,
            extra_body=extra_body(messages, params) or None,
        )
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        total = usage.completion_tokens if usage else 0
        choices = sorted(response.choices, key=lambda c: c.index)
        # The API counts completion tokens per request: each choice gets its share.
        shares = [total // len(choices) + (i < total % len(choices)) for i in range(len(choices))]
        completions = [
            Completion(text=with_reasoning(c.message, self.settings.reasoning), prompt_tokens=prompt_tokens,
                       completion_tokens=share,
                       finish_reason="length" if c.finish_reason == "length" else "stop",
                       stop_string=matched_stop(c))
            for c, share in zip(choices, shares)
        ]
        return completions


def extra_body(messages: list[dict], params: SamplingParams) -> dict:
    """Request fields beyond the OpenAI schema, sent only when used: `top_k` and `min_p` (vLLM's server takes them;
    an endpoint that does not answers 400, which stops the stage with one line instead of sampling otherwise than
    asked), and for an answer begun (a rollout from a step's prefix) vLLM's continuation of the final message."""
    body: dict = {}
    if params.top_k:
        body["top_k"] = params.top_k
    if params.min_p:
        body["min_p"] = params.min_p
    if messages[-1]["role"] == "assistant":
        body |= {"add_generation_prompt": False, **continuation(messages)}
    return body


THINK = re.compile(r"<think>(.*?)</think>\s*", re.S)


def with_reasoning(message, mode: str) -> str:
    """The completion text from a chat message, with a reasoning model's thinking kept, dropped or wrapped.

    The thinking comes as a separate field (`reasoning_content`, or `reasoning` in newer vLLM, when the server runs
    a reasoning parser) or inline as `<think>...</think>` blocks. keep: one `<think>` block before the answer (as
    the model wrote it); drop: the answer alone; wrap: `<think>...</think><answer>...</answer>`.
    """
    content = message.content or ""
    separate = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    inline = [m.strip() for m in THINK.findall(content)]
    answer = THINK.sub("", content).strip() if inline else content
    thinking = "\n\n".join(([separate.strip()] if isinstance(separate, str) and separate.strip() else []) + inline)
    if mode == "drop":
        return answer
    if mode == "wrap":
        return f"<think>\n{thinking}\n</think>\n<answer>\n{answer.strip()}\n</answer>"
    if inline or not thinking:  # keep: inline thinking stays where the model wrote it
        return content
    return f"<think>\n{thinking}\n</think>\n\n{content}"


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else "no message"


def matched_stop(choice) -> str | None:
    """The stop string that ended a choice: vLLM's server reports it as `stop_reason`, beyond the OpenAI schema
    (None there for an end of turn, and from servers that do not report it)."""
    reason = getattr(choice, "stop_reason", None)
    return reason if isinstance(reason, str) else None
