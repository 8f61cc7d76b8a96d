"""What every task shares: choosing problems by level."""

from ttc_runtime.tasks import SyntheticTask, SyntheticTaskConfig, per_level


def test_per_level_takes_the_first_problems_of_each_level():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=10, validation_per_level=2, test_per_level=6))
    chosen = per_level(task.problems("test"), 2)
    assert [p.id for p in chosen] == [p.id for p in task.problems("test") if p.id.endswith(("00000", "00001"))]


def test_per_level_distinct_passes_over_a_question_already_taken():
    from ttc_runtime.tasks import Problem

    problems = [
        Problem("a", "1+1", "2", 1),
        Problem("b", "1+1", "2", 1),
        Problem("c", "2+2", "4", 1),
        Problem("d", "1+1", "2", 2),
        Problem("e", "3+4", "7", 2),
        Problem("f", "5+5", "10", 1),
    ]
    assert [p.id for p in per_level(problems, 2)] == ["a", "b", "d", "e"]
    assert [p.id for p in per_level(problems, 2, distinct=True)] == ["a", "c", "e"]
    assert [p.id for p in per_level(problems, 3, distinct=True)] == ["a", "c", "e", "f"]
    task = SyntheticTask(SyntheticTaskConfig())
    level_one = [p for p in per_level(task.problems("test"), 40, distinct=True) if p.level == 1]
    assert len({p.question for p in level_one}) == len(level_one) == 40
