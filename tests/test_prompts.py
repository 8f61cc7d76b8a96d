"""The prompts: the revision prompt's window of earlier attempts before the question."""

from ttc_runtime.prompts import PromptConfig, RevisionPromptConfig

PROMPT, REVISION = PromptConfig(), RevisionPromptConfig()


def test_the_revision_prompt_keeps_the_last_attempts_then_asks_the_question():
    text = RevisionPromptConfig().format(PromptConfig(), "Q", [f"attempt {i}" for i in range(1, 7)])
    assert text.endswith("</attempt>\n\n" + PromptConfig().format("Q"))
    assert "attempt 1\n" not in text and "attempt 2\n" not in text
    assert [f"attempt {i}" in text for i in range(3, 7)] == [True] * 4
    assert text.index("attempt 3") < text.index("attempt 6")
    assert RevisionPromptConfig(max_attempts=0).format(PromptConfig(), "Q", ["a"]) == PromptConfig().format("Q")


def test_fewer_attempts_than_the_window_are_all_kept():
    text = REVISION.format(PROMPT, "Q", ["first", "second", "third"])
    assert text.count("<attempt>") == 3 and text.index("first") < text.index("third")
