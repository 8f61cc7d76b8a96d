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
    """The revision model's prompt: the question, then up to ``max_attempts`` earlier attempts, each
    between markers, then the header after which the revised solution follows. The one place the
    revision format is defined: training data and inference both build prompts with ``format``."""

    question: PromptConfig = PromptConfig()
    attempt_open: str = "<attempt>\n"
    attempt_close: str = "\n</attempt>\n\n"
    revised_header: str = "Revised:\n\n"
    max_attempts: int = Field(4, ge=0, description="Earlier attempts kept in context (the paper's 4: the last ones).")

    def format(self, question: str, attempts: list[str]) -> str:
        """The prompt for revising ``attempts`` (oldest first); only the last ``max_attempts`` are kept."""
        kept = attempts[-self.max_attempts :] if self.max_attempts else []
        body = "".join(self.attempt_open + attempt + self.attempt_close for attempt in kept)
        return self.question.format(question) + body + self.revised_header
