"""Which method runs on which architecture: the methods declare it, the harness refuses before any work.

A method that cannot run on a backbone (BitFit on a Llama, which has no bias terms; a peft tuner
written for `nn.Linear` on GPT-2, whose projections are `Conv1D`) would otherwise fail somewhere
inside peft, after the model was built, with peft's words. Each method class declares instead why it
cannot run (`bench.methods.Method.unsupported_reason(backbone_config)`, None when it can), and the
harness asks before any work: `bench.recipe.validate.check` (every job of a sweep, before the first one
starts; `python -m bench` exits 2) and again in `bench.models.build.build_cell` (every other caller). The
error (bench.errors.UnsupportedError) names the method and the architecture. The runner never tests
a method's name.

The backbone config is read here the way bench.models.backbones.build_model reads it (shipped configs, local
folders, hub ids when online); when it cannot be read (a hub id offline with pretrained weights
asked for), the check is left to the cell's build, which reports that problem itself.
"""
from __future__ import annotations

from bench.errors import UnsupportedError


def architecture_name(config) -> str:
    """`llama (LlamaForCausalLM)`: the model type and, when the config names it, the checkpoint's class."""
    arch = (getattr(config, "architectures", None) or [None])[0]
    kind = str(getattr(config, "model_type", "") or "unknown")
    return f"{kind} ({arch})" if arch else kind


def refuse_unsupported(method, config) -> None:
    """Raise UnsupportedError when `method` declares that it cannot run on `config`'s architecture."""
    reason = method.unsupported_reason(config)
    if reason:
        raise UnsupportedError(f"method={method.name} cannot run on {architecture_name(config)}: {reason}")


_BIASES: dict[str, int] = {}


def bias_count(config) -> int:
    """Bias parameters of the backbone `config` describes, counted on a build on the meta device
    (shapes only: milliseconds for the tiny models, about a second for 0.5B), once per config."""
    key = config.to_json_string()
    if key not in _BIASES:
        from accelerate import init_empty_weights
        from transformers import AutoModel

        with init_empty_weights(include_buffers=False):
            model = AutoModel.from_config(config)
        _BIASES[key] = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    return _BIASES[key]
