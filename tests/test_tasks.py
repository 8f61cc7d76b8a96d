"""What every task shares: choosing problems by level."""

from ttc_runtime.tasks import SyntheticTask, SyntheticTaskConfig, per_level


def test_per_level_takes_the_first_problems_of_each_level():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=10, validation_per_level=2, test_per_level=6))
    chosen = per_level(task.problems("test"), 2)
    assert [p.id for p in chosen] == [p.id for p in task.problems("test") if p.id.endswith(("00000", "00001"))]
