"""The method protocol: everything the runner needs from a finetuning method.

A method is a small class. The runner never special-cases a method: it calls `validate`, `apply`,
`finalize`, trains the parameters that require grad and calls `save_delta` to measure storage, and
where a method differs it reads the method's *declarations* (class attributes / properties below,
with defaults), never its name:

- `frozen_backbone`: the backbone is frozen and unchanged, so it runs in eval mode (no dropout);
- `trains_on_cached_features`: the head trains on pooled features computed once (needs a frozen backbone);
- `trains_base_weights`: the method trains the backbone's own weights (full, BitFit), so it cannot
  train a 4-bit base (`train.weights_dtype=nf4`, bench/models/levers.py);
- `uses_token_type_ids`: whether the (possibly wrapped) backbone takes segment ids;
- `unsupported_reason(backbone_config)`: why the method cannot run on an architecture (a decoder
  without biases for BitFit, GPT-2's Conv1D layers for a tuner peft implements for nn.Linear only), or
  None; read before any work (bench.recipe.validate.check, bench.models.build.build_cell), so a refused cell names
  the method and the architecture instead of failing inside peft;
- `delta_holds`: what `save_delta` writes, in words (the record's `storage.what`);
- `delta_format`: "peft" (a peft adapter folder: `adapter_model.safetensors`, the backbone wrapped by
  peft) or "tensors" (`delta.safetensors` of the trainable tensors); readers that load part of a delta
  (init_from without the head) or ask peft for its own counts (bench.params) branch on this.

Identity, one source: a method's name is its class's `name`. A class that sets `name` in its body
registers itself in `REGISTRY` under that name when it is defined (built-ins on import of
bench.methods, external methods when their module is imported through `_target_`), and two
different classes may not claim one name. A method config's `_target_` names the class (dotted path
or registered name); its `name:` must equal the class's `name` (bench.methods.build_method raises a
ConfigError naming the config otherwise), so records, labels and REGISTRY all agree. A variant of a
method is named with `label=...`, not by renaming the method.

Learning rate, one source: the method config's `lr` (conf/method/<name>.yaml), replaced by
`train.lr` when the user sets it. There is no class default: a method built without `lr` can be
applied and loaded, but `validate` (which the cell builder always runs) rejects it before training.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

from bench.errors import ConfigError

#: name -> class, filled by `Method.__init_subclass__` (see the module docstring).
REGISTRY: dict[str, type[Method]] = {}


#: the training loop's hooks a method may override (bench/training/loop.py calls them)
LOOP_HOOKS = ("initialize_from_data", "build_optimizer", "before_training", "after_optimizer_step", "regularization")

class Method:
    """Base class and protocol.

    Subclasses set `name`, take their settings as keyword arguments, and override `apply` (freeze
    what stays frozen, add what is new). The task head (`model.head`) trains in every method:
    `apply` must leave it trainable; `finalize` enforces that.
    """

    name: str = "method"
    #: True when the backbone is frozen and unchanged: it runs in eval mode during training.
    frozen_backbone: bool = False
    #: True when the method trains the backbone's own weights (not added ones): no 4-bit base for it.
    trains_base_weights: bool = False
    #: False for methods whose wrapper cannot take token_type_ids (peft prompt learning drops them).
    uses_token_type_ids: bool = True
    #: What the saved delta holds, in words (the record's storage.what).
    delta_holds: str = "delta: trainable tensors incl. head"
    #: "peft" (peft adapter folder, backbone wrapped by peft) or "tensors" (delta.safetensors).
    delta_format: str = "tensors"
    #: True when initialising the method rewrites the base weights (PiSSA, OLoRA: W - BA stays in the
    #: base), so its delta is meaningful only on the rewritten base it was trained on.
    rewrites_base: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract intermediate (PeftMethod) or a subclass that keeps its parent's identity
        other = REGISTRY.get(cls.name)
        if other is not None and _qualname(other) != _qualname(cls):
            raise ConfigError(f"method name {cls.name!r}: claimed by both {_qualname(other)} and {_qualname(cls)}; "
                              "a method has one name: give the new class its own `name`")
        REGISTRY[cls.name] = cls  # the same class defined again (a module reloaded) replaces itself

    def __init__(self, lr: float | None = None, **settings):
        self.lr = float(lr) if lr is not None else None
        if settings:
            raise ConfigError(
                f"method {self.name}: unknown setting(s) {', '.join('method.' + k for k in settings)}; "
                f"accepted: {', '.join('method.' + k for k in self.setting_names())}"
            )

    # -- declarations the runner reads ----------------------------------------------------------
    @property
    def trains_on_cached_features(self) -> bool:
        """True when the runner may compute the pooled backbone features once and train the head on
        them: exact only for a frozen backbone in eval mode (`frozen_backbone`)."""
        return False

    def unsupported_reason(self, backbone_config) -> str | None:
        """Why this method cannot run on the architecture of `backbone_config` (a transformers config),
        in words, or None (the default: it runs on every backbone the harness builds). Read before any
        work; bench.models.build.refuse_unsupported turns a reason into the user's error."""
        return None

    # -- settings -------------------------------------------------------------------------------
    @classmethod
    def setting_names(cls) -> list[str]:
        names: list[str] = []
        for klass in cls.__mro__:
            if klass is object:
                continue
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                    names.append(p.name)
        return names

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in self.setting_names() if hasattr(self, k)}

    # -- protocol -------------------------------------------------------------------------------
    def validate(self, backbone_config, max_seq_len: int) -> None:
        """Raise ConfigError for impossible settings before any training starts."""
        if self.lr is None:
            raise ConfigError(f"method {self.name}: no learning rate: give method.lr (`lr:` in its config, "
                              f"method/{self.name}.yaml) or train.lr; there is no built-in default")
        if not self.lr > 0:
            raise ConfigError(f"method.lr / train.lr = {self.lr}: the learning rate must be > 0")
        if self.trains_on_cached_features and not self.frozen_backbone:
            raise TypeError(f"{_qualname(type(self))}: trains_on_cached_features needs frozen_backbone = True")

    def apply(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def finalize(self, model: nn.Module) -> nn.Module:
        for p in model.head.parameters():
            p.requires_grad_(True)
        return model

    # -- the training loop's hooks: what a method needs from the loop, declared (defaults: nothing) --
    def build_optimizer(self, model: nn.Module, named, tcfg):
        """`(optimizer, description)` when the method brings its own optimizer (LoRA+, LoRA-FA), else
        None: the loop's AdamW over `named`."""
        return

    def before_training(self, model: nn.Module, total_steps: int) -> None:
        """Called once the cell's optimizer-step count is known, before the first step (AdaLoRA's
        budget schedule needs it)."""

    def initialize_from_data(self, model: nn.Module, batches) -> None:
        """A data-pass initialisation (EVA): called once before the optimizer is built, with an
        iterable of model-input dicts over the cell's **training rows only** (never selection or dev
        rows), in their order, without labels. The loop times it apart from training
        (`train.data_pass_s`). Default: nothing."""

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimizer step, before the gradients are cleared (AdaLoRA's rank allocation)."""

    def regularization(self, model: nn.Module):
        """A term added to each micro-batch's loss, or None (AdaLoRA's orthogonality penalty)."""
        return

    def loop_state(self, model: nn.Module) -> dict | None:
        """What the method's loop hooks carry from step to step outside the trainable weights (AdaLoRA's
        importance scores and rank pattern), as tensors and plain containers, for a cell's checkpoint
        (bench/training/checkpoint.py); None: nothing (the default)."""
        return None

    def load_loop_state(self, model: nn.Module, state: dict) -> None:
        """Restore what `loop_state` returned, into a freshly built cell after `before_training`."""

    def capabilities(self) -> dict:
        """What a record says the method can do (the record's `capabilities`): its delta format, its
        peft type where peft provides it, which training-loop hooks it uses, whether it rewrites the
        base weights. Whether it merges is measured, not declared: the inference section's merge check
        (bench/inference/cost.py) fills `mergeable` beside this."""
        hooks = [h for h in LOOP_HOOKS if self.has_hook(h)]
        return {"delta_format": self.delta_format, "peft_type": getattr(self, "peft_type_name", None),
                "loop_hooks": hooks, "rewrites_base": bool(self.rewrites_base),
                "frozen_backbone": bool(self.frozen_backbone), "composition": self.composition()}

    #: the multi-task merges bench.compose offers for this method's deltas: a weighted parameter
    #: average ("linear") for any delta that changes the backbone; LoRA adds peft's combination types
    merge_combinations: tuple[str, ...] = ("linear",)
    #: whether the delta changes the backbone (head_only's does not: nothing shared to merge)
    changes_backbone = True
    #: whether the saved delta is a LoRA adapter (peft's `lora_A`/`lora_B`) whose scaled updates peft's
    #: add_weighted_adapter adds: bench.compose combines such deltas with peft's combination types, any
    #: other by a weighted average of the saved tensors
    adds_as_lora = False

    def combine_refusal(self) -> str | None:
        """Why bench.compose cannot combine deltas of this method with these settings, or None (it can)."""
        return None

    def composition(self) -> dict:
        """Which composition operations apply to this method's deltas (the record's
        `capabilities.composition`, docs/compose.md): `soup` (a seed soup, bench.compose soup),
        `merge` (the multi-task combinations bench.compose merge offers), `transfer` (train.init_from
        from a delta of this method) and `learned` (the learned combinations over frozen modules of
        this method, from each composed method's declared `source_methods`). Declared here, so that
        the compose front end and the records read one rule."""
        learned = sorted(c.name for c in REGISTRY.values() if self.name in getattr(c, "source_methods", ()))
        return {"soup": True, "merge": list(self.merge_combinations) if self.changes_backbone else [],
                "transfer": True, "learned": learned}

    def composition_record(self) -> dict | None:
        """`{"composed_from": [...], "composition": {...}}` for a method that combines frozen source
        modules (bench/methods/composed.py): the runner adds both to the record; None here."""
        return None

    def has_hook(self, hook: str) -> bool:
        """Whether this method overrides a loop hook and uses it in this configuration."""
        return getattr(type(self), hook) is not getattr(Method, hook) and self.uses_hook(hook)

    def uses_hook(self, hook: str) -> bool:
        """Whether an overridden loop hook does anything for this instance (a generic class may
        override a hook for some configurations only)."""
        return True

    def trainable_named_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def delta_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What must be stored, besides the public pretrained backbone, to rebuild the finetuned model."""
        return {n: p.detach().cpu().contiguous() for n, p in self.trainable_named_parameters(model)}

    def save_delta(self, model: nn.Module, folder: str | Path) -> Path:
        """The delta folder: the method's weights (`save_weights`) and its settings (`method.json`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_weights(model, folder)
        (folder / "method.json").write_text(json.dumps({"method": self.name, **self.settings()}, default=str))
        return folder

    def save_weights(self, model: nn.Module, folder: Path) -> None:
        """The tensors of the delta, written into `folder` (default: `delta_state_dict` as delta.safetensors;
        peft methods: peft's adapter folder plus the head)."""
        from safetensors.torch import save_file

        save_file(self.delta_state_dict(model), str(folder / "delta.safetensors"))

    def load_delta(self, model: nn.Module, folder: str | Path) -> nn.Module:
        from safetensors.torch import load_file

        state = load_file(str(Path(folder) / "delta.safetensors"))
        missing = set(state) - set(dict(model.named_parameters()))
        if missing:
            raise ValueError(f"{folder}: delta has tensors the model lacks: {sorted(missing)[:5]}")
        model.load_state_dict(state, strict=False)
        return model


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)

