"""How the head pools: mean over real tokens only, [CLS] as the first real token even after
prompt tuning's virtual tokens, and the pooler only when asked for."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tiny import TINY_BERT

from bench.errors import ConfigError
from bench.models.backbones import build_model, pool


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))


def test_cls_is_first_real_token_after_virtual_tokens():
    hidden = torch.arange(5 * 2, dtype=torch.float32).view(1, 5, 2)  # 2 virtual + 3 real positions
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 2])
    # virtual tokens count as attended in the mean; padding does not
    expected = hidden[0, :4].mean(0, keepdim=True)
    assert torch.allclose(pool(hidden, mask, "mean"), expected)


def test_pooler_only_built_when_asked():
    base = TINY_BERT
    mean = build_model(OmegaConf.create({**base, "pooling": "mean"}), 2, 0).model
    pooler = build_model(OmegaConf.create({**base, "pooling": "pooler"}), 2, 0).model
    assert getattr(mean.backbone, "pooler", None) is None
    assert pooler.backbone.pooler is not None
    H = 64
    extra = sum(p.numel() for p in pooler.parameters()) - sum(p.numel() for p in mean.parameters())
    assert extra == H * H + H
    with pytest.raises(ConfigError, match="model.pooling"):
        build_model(OmegaConf.create({**base, "pooling": "max"}), 2, 0)


def test_bundled_model_pooling_default_is_mean():
    from pathlib import Path

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/model/minilm.yaml")
    assert cfg.pooling == "mean" and cfg.source == "bundled:minilm"
