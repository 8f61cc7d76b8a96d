"""The proposer's pass@1 by difficulty level."""

from ttc_runtime.compute import Usage
from ttc_runtime.evaluation.levels import pass_at_1_by_level
from ttc_runtime.generation.base import Completion, GenerationOutput, SamplingParams
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import SyntheticTask, SyntheticTaskConfig, per_level


class ScriptedGenerator:
    """Answers correctly on sample j of a problem when j < level's quota; wrong otherwise."""

    flop_params = 10

    def __init__(self, task, correct_per_level):
        self.by_prompt = {PromptConfig().format(p.question): p for p in task.problems("test")}
        self.correct_per_level = correct_per_level
        self.seeds = []

    def generate(self, prompts, n=1, params=SamplingParams(), seed=0):
        self.seeds.extend(seed)
        rows = []
        for prompt in prompts:
            problem = self.by_prompt[prompt]
            quota = self.correct_per_level[problem.level]
            rows.append([Completion(problem.solution if j < quota else "\\boxed{-1}", 3, "eos") for j in range(n)])
        return GenerationOutput(rows, [Usage.inference(self.flop_params, 1, 3 * n)] * len(prompts))


def test_pass_at_1_is_the_mean_fraction_of_correct_samples_per_level():
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=10, validation_per_level=2, test_per_level=6))
    problems = per_level(task.problems("test"), 5)
    assert len(problems) == 25
    generator = ScriptedGenerator(task, {1: 4, 2: 3, 3: 2, 4: 1, 5: 0})
    levels, usage = pass_at_1_by_level(
        generator, task, problems, PromptConfig(), SamplingParams(), samples_per_problem=4, batch_prompts=7
    )
    assert [(lv.level, lv.problems, lv.samples) for lv in levels] == [(lv, 5, 20) for lv in range(1, 6)]
    assert [lv.pass_at_1 for lv in levels] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert usage.generated_tokens == 25 * 4 * 3 and usage.prompt_tokens == 25
    assert len(set(generator.seeds)) == 25  # one seed per problem, independent of the batching
