"""The fixed sample a retention measurement reads: sentence pairs with a similarity score or label,
none of which the cell trained or selected on.

Which set: STS-B dev (gold similarity 0-5) for every task but STS-B; for STS-B, whose dev split the
cell is scored on and whose train file it samples from, MRPC dev (paraphrase 0/1: a rank
correlation with a binary label) stands in (docs/decisions.md). The rows are a seeded sample with a
fixed seed (not train.seed), so every cell of a backbone reads the same rows and the "before" side
is measured once per backbone (bench/retention/cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from bench.config.confdir import conf_dir
from bench.data import sampling
from bench.data import tasks as T
from bench.data.loading import load_split

#: the similarity set per trained task: (task config, split); the first entry unless the task is it
SOURCES = (("stsb", "dev"), ("mrpc", "dev"))
#: the sample's seed: fixed, so the rows do not vary with train.seed
SAMPLE_SEED = 0


@dataclass
class Sample:
    """Sentence pairs and their gold scores, with where they came from."""

    text_a: list[str]
    text_b: list[str]
    gold: list[float]
    info: dict

    @property
    def sentences(self) -> list[str]:
        """Every sentence of the sample once per occurrence: all first sentences, then all second ones."""
        return self.text_a + self.text_b


def source_for(task_name: str) -> tuple[str, str]:
    """(task, split) of the similarity set for a cell of `task_name`: never the cell's own task."""
    for name, split in SOURCES:
        if name != task_name:
            return name, split
    raise AssertionError("SOURCES holds two tasks")  # pragma: no cover - two distinct names above


def load_sample(cfg, pairs: int) -> Sample:
    """`pairs` rows of the similarity set for this cell's task (all rows when it has fewer)."""
    name, split = source_for(str(cfg.task.name))
    node = OmegaConf.load(conf_dir() / "task" / f"{name}.yaml")
    node.root = OmegaConf.select(cfg, "data.glue_dir", default=None)
    spec = T.task_spec(node)
    rows = load_split(spec, split)
    ids = sorted(sampling.eval_subsample(len(rows), pairs, SAMPLE_SEED))
    chosen = [rows[i] for i in ids]
    where = (
        f"{spec.root}/{spec.splits[split]['path']}" if spec.root else f"hub:{(spec.hub or {}).get('path')}"
    )
    info = {
        "task": name,
        "split": split,
        "file": where,
        "rows": len(ids),
        "rows_in_split": len(rows),
        "fingerprint": sampling.fingerprint(ids),
        "sample_seed": SAMPLE_SEED,
        "gold": "similarity score 0-5" if spec.kind == "regression" else "paraphrase label 0/1",
        "why": f"the cell trains and selects on {cfg.task.name}'s train file and is scored on its own "
        f"eval split; {name} {split} is neither",
    }
    return Sample(
        [e.text_a for e in chosen], [e.text_b or "" for e in chosen], [float(e.label) for e in chosen], info
    )
