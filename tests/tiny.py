"""The tiny models every fast test builds, read from the shipped configs (conf/model/tiny_*.yaml), so
a test's model is the one `model=tiny_bert` gives a user and no test writes the settings out again.

Also provided as fixtures by conftest.py (`tiny_bert_cfg`); this module is for module-level tables
(parametrize lists) that a fixture cannot feed."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def model_node(name: str = "tiny_bert", **over) -> dict:
    """conf/model/<name>.yaml as a plain dict, with `over` applied (e.g. head_dropout=0.0)."""
    node = OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{name}.yaml"), resolve=True)
    node.update(over)
    return node


TINY_BERT = model_node("tiny_bert")
TINY_ROBERTA = model_node("tiny_roberta")
ARCHS = {"tiny-bert": TINY_BERT, "tiny-roberta": TINY_ROBERTA}
