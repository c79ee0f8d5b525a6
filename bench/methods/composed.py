"""Learned composition of frozen source modules: the shared part of the three methods.

A composed method is an ordinary method (registered, built by `build_cell`, trained by the runner's
loop, saved and reloaded like any other), whose `sources` setting names the records of cells that
kept their delta (`save_delta=true`). `apply` freezes the backbone, loads every source module into it
frozen, and adds the combination parameters; only those and the task head train. The saved delta is
the combination parameters and the head (`delta.safetensors`) plus the settings, which name the
sources, so `bench.predict.load_delta` rebuilds the same model from the same source folders.

`gate` chooses how the sources are weighted:
- `learned`: the method's own mechanism (attention, router), trained on the target task;
- `uniform`: fixed weights 1/n, nothing trained but the head: the *static merge* arm of the
  comparison, on the same seam (for LoRA it is exactly the linear merge of the updates);
- `force_source=i`: all weight on source i (a single frozen source with a fresh head; the tests use
  it to check that the combination reduces to that source's model).

The runner is not told about any of this: it reads `frozen_backbone` (the backbone runs in eval mode;
the sources are frozen, so dropout inside them stays off) and, when nothing inside the backbone
trains (uniform or forced), `trains_on_cached_features`; the record's `composed_from` and
`composition` come from `composition_record()` (bench/recipe/finetune.py adds them when a method has them).
"""
from __future__ import annotations

import json

import torch

from bench.config.schema import Rule, check_value, choice, number
from bench.errors import ConfigError
from bench.methods.base import Method, freeze
from bench.records.results import KeptSource, SourceError, resolve_kept

GATES = ("learned", "uniform")


#: One frozen source: its record, kept delta folder and method settings (method.json).
SourceModule = KeptSource


def read_source(ref: str, accepted: tuple[str, ...], option: str) -> SourceModule:
    """A source (bench.records.results.resolve_kept) of an accepted method; else a ConfigError
    naming the option, the file and what was expected."""
    try:
        kept = resolve_kept(ref)
    except SourceError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    settings = kept.settings
    if settings.get("method") not in accepted:
        raise ConfigError(f"{option}: {kept.path} is a delta of method {settings.get('method')!r}; this combination "
                          f"takes {' or '.join(accepted)} deltas")
    return kept


def load_tensors(src: SourceModule, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    f = src.delta / name
    if not f.is_file():
        raise ConfigError(f"{src.path}: its delta folder {src.delta} has no {name}")
    return load_file(str(f))


class ComposedMethod(Method):
    """Base of the learned combinations: settings, checks, source loading, the record's fields."""

    frozen_backbone = True
    delta_holds = "combination parameters and head (the frozen sources are named, not copied)"
    #: method names whose deltas this combination reads (set by each subclass)
    source_methods: tuple[str, ...] = ()
    kind = "composed"

    def __init__(self, lr: float | None = None, sources=(), gate: str = "learned", temperature: float = 1.0,
                 force_source: int | None = None, **settings):
        self.sources = [str(s) for s in (sources or [])]
        self.gate, self.temperature = str(gate), float(temperature)
        self.force_source = None if force_source is None else int(force_source)
        self._loaded: list[SourceModule] = []
        super().__init__(lr=lr, **settings)

    @property
    def trains_on_cached_features(self) -> bool:
        """Uniform or forced weights leave nothing trainable inside the backbone: only the head trains."""
        return self.gate == "uniform" or self.force_source is not None

    def validate(self, backbone_config, max_seq_len: int) -> None:
        super().validate(backbone_config, max_seq_len)
        if not self.sources:
            raise ConfigError(f"method.sources: method {self.name} needs at least one source record "
                              f"(method.sources=[<sweep>/<run_id>.json,...] of {'/'.join(self.source_methods)} cells)")
        check_value("method.gate", self.gate, choice(*GATES))
        check_value("method.temperature", self.temperature, number(0, lo_open=True))
        n = len(self.sources)
        check_value("method.force_source", self.force_source, Rule(
            f"an index into method.sources (0..{n - 1}) or null", lambda v: v is None or 0 <= v < n))
        self._loaded = [read_source(s, self.source_methods, "method.sources") for s in self.sources]
        names = {json.dumps({k: v for k, v in s.settings.items() if k != "lr"}, sort_keys=True) for s in self._loaded}
        if len(names) > 1:
            raise ConfigError(f"method.sources: the sources have different method settings ({sorted(names)}); "
                              "a combination takes deltas of one method with one set of settings")

    def composition(self) -> dict:
        """A combination's delta names its frozen sources and holds only its own parameters: the
        compose operations (which rebuild a delta on its own) do not apply to it."""
        return {"soup": False, "merge": [], "transfer": False, "learned": []}

    def loaded_sources(self) -> list[SourceModule]:
        if not self._loaded:
            self._loaded = [read_source(s, self.source_methods, "method.sources") for s in self.sources]
        return self._loaded

    def apply(self, model):
        freeze(model.backbone)
        self.attach(model, self.loaded_sources())
        return model

    def attach(self, model, sources: list[SourceModule]) -> None:
        raise NotImplementedError

    def mixing(self, scores: torch.Tensor) -> torch.Tensor:
        """Weights over the last dimension (one per source) from raw scores: softmax(scores / T),
        uniform, or one-hot on `force_source`."""
        if self.force_source is not None:
            w = torch.zeros_like(scores)
            w[..., self.force_source] = 1.0
            return w
        if self.gate == "uniform":
            return torch.full_like(scores, 1.0 / scores.shape[-1])
        return torch.softmax(scores / self.temperature, dim=-1)

    def composition_record(self) -> dict:
        """The record's `composed_from` (every source record, which exists) and `composition`."""
        srcs = self.loaded_sources()
        weights = (f"one-hot on source {self.force_source}" if self.force_source is not None
                   else "uniform 1/n (static)" if self.gate == "uniform" else "learned")
        return {"composed_from": [s.entry() for s in srcs],
                "composition": {"op": "learned" if weights == "learned" else "static", "kind": self.kind,
                                "gate": self.gate, "weights": weights, "temperature": self.temperature,
                                "force_source": self.force_source, "source_tasks": [s.record.get("task") for s in srcs],
                                "source_method": srcs[0].settings.get("method") if srcs else None,
                                "sources_frozen": True}}

    def source_cost(self) -> dict:
        """Parameters the sources add at inference (frozen, not trained): counted from the loaded modules."""
        return {"n_sources": len(self.sources)}
