"""The named tiny runs that test modules share (conftest's ``tiny_run(name)`` fixture): a recipe (RECIPES,
the tiny recipe unless named there) with these overrides. A module that runs a loop of its own (killed midway,
a console read from a subprocess, a wandb log, a fake server) takes its overrides from here too and says why."""

TINY_RUNS = {
    # Threshold selection on the expected score, which test_run changes (a random tiny judge gives every pair the
    # same argmax score, but expected scores differ from pair to pair).
    "expected": ["curate.select=threshold", "curate.select_on=expected", "curate.threshold=1",
                 "corpus.max_segments=12", "train.max_steps=2", "train.logging_steps=1", "train.max_length=256",
                 "augment.max_new_tokens=12", "generation.batch_size=8", "tracking.progress=false"],
    # 12 segments in shards of 4 (three shards per generation stage; the 8 held-out prompts in two eval shards),
    # threshold selection on the argmax score (replay changes it), two iterations, every model evaluated:
    # test_resume (kills, workers, replay, export) and test_evaluation (the eval stages, `humpback eval`);
    # test_constraint_stages copies it and reruns its augment stage under a constraint and a validator.
    "sharded": ["curate.select=threshold", "curate.select_on=argmax", "curate.threshold=3",
                "corpus.max_segments=12", "shard_size=4", "train.max_steps=2", "train.logging_steps=1",
                "train.max_length=256", "augment.max_new_tokens=12", "eval.max_new_tokens=12",
                "generation.batch_size=4", "tracking.progress=false"],
    # test_dpo_run: train.objective=dpo, no evaluation. 12 segments in shards of 4; every candidate is curated
    # (the tiny judge gives them all a 5), so the prompt bank (the curated instructions) is 12 prompts: three
    # shards of answers per iteration, which its kill test needs. A random model never ends an answer, so the
    # cut-off answers are paired (preferences.keep_truncated).
    "dpo": ["curate.select=threshold", "curate.select_on=argmax", "curate.threshold=3", "corpus.max_segments=12",
            "shard_size=4", "train.max_steps=2", "train.logging_steps=1", "train.max_length=256",
            "augment.max_new_tokens=12", "generation.batch_size=4", "tracking.progress=false", "eval.enabled=false",
            "train.objective=dpo", "preferences.n=2", "preferences.max_new_tokens=8",
            "preferences.keep_truncated=true", "dpo.max_steps=2", "dpo.per_device_train_batch_size=4",
            "dpo.gradient_accumulation_steps=1"],
    # The smallest whole loop, which modules that run a loop of their own start from: 8 segments in two shards of
    # 4 (a kill after the first shard leaves one to do), threshold 1 on the argmax score (every pair kept, so the
    # curated sets are never empty). test_console (its console, read from a subprocess, with the bars on),
    # test_tracking (logged to wandb, then resumed) and test_run_folder (killed; fake servers; one iteration).
    "small": ["corpus.max_segments=8", "shard_size=4", "train.max_steps=2", "train.logging_steps=1",
              "train.max_length=256", "augment.max_new_tokens=8", "generation.batch_size=4",
              "curate.select=threshold", "curate.select_on=argmax", "curate.threshold=1", "tracking.progress=false"],
    # One iteration with 12 segments, the demo's selection (the top half) unless a judge test says otherwise:
    # test_curation_judges, whose runs each add a judge and a dev set it writes itself.
    "judges": ["iterations=1", "corpus.max_segments=12", "train.max_steps=2", "train.logging_steps=1",
               "train.max_length=256", "augment.max_new_tokens=12", "generation.batch_size=8",
               "tracking.progress=false"],
    # The self-instruct recipe (RECIPES), one iteration, 12 tasks in rounds of 4: test_self_instruct kills its
    # generation between two rounds and resumes it.
    "self-instruct": ["augment.target_tasks=12", "augment.prompts_per_round=4", "augment.task_max_new_tokens=12",
                      "augment.instance_max_new_tokens=12", "augment.classification_max_new_tokens=12",
                      "shard_size=6", "generation.max_prompt_tokens=192", "generation.batch_size=4",
                      "train.max_steps=1", "train.max_length=128", "iterations=1", "tracking.progress=false"],
}

# The recipe (under recipes/) of a run that is not on the tiny recipe.
RECIPES = {"self-instruct": "self-instruct-tiny.yaml"}


def recipe_of(name: str) -> str:
    """The recipe file name of TINY_RUNS[name]."""
    return RECIPES.get(name, "tiny-cpu.yaml")
