"""How a question becomes the proposer's prompt: the one place the prompt format is defined."""

from __future__ import annotations

from pydantic import Field, field_validator

from .config import StrictModel
from .tasks.grading import STEP_SEPARATOR


class PromptConfig(StrictModel):
    """The proposer's prompt format.

    The default suits the embedded model: the question, then a blank line, after which the first
    step follows. For an instruction-tuned model write its chat markup into ``template``, e.g. for
    Qwen2.5-Math: ``"<|im_start|>system\\nPlease reason step by step, and put your final answer
    within \\\\boxed{}.<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n"``.
    """

    template: str = Field("{question}" + STEP_SEPARATOR, description="Must contain '{question}' once.")

    @field_validator("template")
    @classmethod
    def _has_question(cls, template: str) -> str:
        if template.count("{question}") != 1:
            raise ValueError("template must contain '{question}' exactly once")
        return template

    def format(self, question: str) -> str:
        """The prompt for ``question``; a blank question is an error, not an empty prompt."""
        if not question.strip():
            raise ValueError("the question is empty")
        return self.template.replace("{question}", question)

    def with_steps(self, question: str, steps: list[str]) -> str:
        """The prompt followed by finished steps, ready for the next step to be sampled."""
        return self.format(question) + "".join(step + STEP_SEPARATOR for step in steps)


class RevisionPromptConfig(StrictModel):
    """The revision model's prompt: up to ``max_attempts`` earlier attempts, oldest first, each
    between markers, then the proposer's own prompt for the question, after which the revised
    solution follows. The one place the revision format is defined: training data and inference
    both build prompts with ``format``.

    Attempts come first so that the revised solution stands where the proposer's solution stands
    relative to its question: the revision model, fine-tuned from the proposer, starts from the
    proposer's behaviour, and a model that reads the question at fixed offsets (the embedded one
    does) is not thrown off by attempts of varying length. With no attempt the prompt is the
    proposer's.
    """

    attempt_open: str = "<attempt>\n"
    attempt_close: str = "\n</attempt>\n\n"
    max_attempts: int = Field(4, ge=0, description="Earlier attempts kept in context (the paper's 4: the last ones).")

    def format(self, prompt: PromptConfig, question: str, attempts: list[str]) -> str:
        """The prompt for revising ``attempts`` (oldest first) of ``question``, whose own prompt
        ``prompt`` formats; only the last ``max_attempts`` attempts are kept."""
        kept = attempts[-self.max_attempts :] if self.max_attempts else []
        body = "".join(self.attempt_open + attempt + self.attempt_close for attempt in kept)
        return body + prompt.format(question)
