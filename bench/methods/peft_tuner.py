"""Any peft tuner, without code: `method.peft_type` names the tuner, every other setting is a field
of that tuner's peft config class, spelled as peft spells it (`method.r`, `method.n_frequency`,
`method.boft_block_size`).

Why one generic class rather than a class per tuner: peft ships 45 tuner types and adds more each
release; each already has a config dataclass whose fields are its settings and a `get_peft_model`
that applies it. What the harness adds on top is the same for all of them (wrap the backbone only,
so head, pooling and loss stay the same for every method; save peft's own folder plus the head), so
a new tuner is one YAML file in conf/method/. Where a tuner needs the training loop, the YAML
declares it through the settings below, never by the runner testing the method's name:

- `optimizer: loraplus | lorafa` builds peft's optimizer factory (LoRA+ with `loraplus_lr_ratio`,
  LoRA-FA) instead of plain AdamW;
- AdaLoRA's `total_step` comes from the cell's real step count (`before_training`), its
  `update_and_allocate` runs after every optimizer step (`after_optimizer_step`) and its orthogonal
  regulariser is added to the loss (`regularization`): peft adds it only to a model output that
  carries a loss, which the harness's backbone-only wrapper never has;
- data-pass initialisations run on the cell's training rows before the optimizer is built
  (`initialize_from_data`): EVA on the wrapped model; CorDA and LoRA-GA, whose peft preprocessing
  (`preprocess_corda`, `preprocess_loraga`) must see the base before it is wrapped, unwrap the
  untrained placeholder adapter `apply` built, preprocess, and wrap again;
- initialisations that rewrite the base weights (`init_lora_weights: pissa*|olora|corda|lora_ga`) save the delta
  peft converts to a plain LoRA of rank 2r on the *original* base (what a user must publish, so its
  size is the honest storage), and reload it that way.

Identity: the method's name is the YAML's `name` (lower case, as peft names the tuner: `vera`,
`dora`, `pissa`), registered in `bench.methods.REGISTRY` as a subclass of this class the first time
a config of that name is built, so records, labels and deltas name it like any built-in method.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from bench.errors import ConfigError
from bench.methods.base import REGISTRY
from bench.methods.peft_fields import (  # noqa: F401 - the tuner's vocabulary, named here too
    FILE_SETTINGS,
    MANAGED_FIELDS,
    OWN_SETTINGS,
    config_fields,
    peft_config_class,
    unknown_field_message,
)
from bench.methods.peft_methods import PeftMethod

OPTIMIZERS = ("adamw", "loraplus", "lorafa")
#: init_lora_weights values with which peft rewrites the base weights at initialisation
REWRITES_BASE = ("pissa", "olora", "corda", "lora_ga")
#: init_lora_weights values whose peft preprocessing reads the unwrapped base and data (before get_peft_model)
DATA_BEFORE_WRAP = ("corda", "lora_ga")
#: tuners peft implements for nn.Linear (some also Conv2d/Embedding) but not for transformers' Conv1D, the layer
#: of GPT-2's projections: get_peft_model raises on GPT-2 (measured on tiny_gpt2 with peft 0.21.2 and 0.22.0;
#: tests/test_decoders.py checks each entry still fails there, so an entry a peft release fixes shows up). OSF
#: skips a layer it does not implement without a word, so on GPT-2 nothing of the backbone would train.
CONV1D_UNSUPPORTED = ("adamss", "boft", "c3a", "delora", "glora", "hra", "lily", "loha", "lokr", "miss", "oft",
                      "osf", "peanut", "psoft", "road", "shira", "supertuning")
#: init_lora_weights values whose initialisation ignores Conv1D's transposed weight (the forward fails), each with
#: the first peft release that handles Conv1D for it: OLoRA's QR initialisation does from peft 0.22.0 on
#: (measured on tiny_gpt2; tests/test_decoders.py checks both sides of the version line it can see).
CONV1D_INITS_SUPPORTED_FROM = {"olora": "0.22.0"}


def conv1d_unsupported_inits(peft_version: str | None = None) -> tuple[str, ...]:
    """The init_lora_weights values the installed peft (or `peft_version`) cannot apply to Conv1D layers."""
    from importlib.metadata import version

    from packaging.version import Version

    installed = Version(peft_version or version("peft"))
    return tuple(init for init, since in CONV1D_INITS_SUPPORTED_FROM.items() if installed < Version(since))


def _plain(value):
    """OmegaConf containers arrive as lists/dicts already; tuples from defaults become lists (peft
    accepts both, JSON records want lists)."""
    if isinstance(value, tuple):
        return list(value)
    return value


class PeftTuner(PeftMethod):
    """The generic peft method (see the module docstring)."""

    name = "peft"
    #: the method's name comes from its config (`name:`), not from the class (bench.methods.build_method)
    named_by_config = True

    def __init__(self, lr=None, peft_type: str | None = None, optimizer: str = "adamw",
                 loraplus_lr_ratio: float = 16.0, config_file: str | None = None, adapter_config: dict | None = None,
                 **fields):
        self.config_file, self.file_notes, self._adapter_config = config_file, None, adapter_config
        if adapter_config is None and config_file is not None:  # built outside Hydra (tests, the API)
            from bench.config.resolvers import read_adapter_config

            adapter_config = self._adapter_config = read_adapter_config(config_file)
        if adapter_config is not None:  # method=peft: the file's tuner and fields, command-line fields on top
            from bench.methods.peft_file import fields_from_file

            where = f"method.config_file={config_file}" if config_file else "method.adapter_config"
            file_type, file_fields, self.file_notes = fields_from_file(dict(adapter_config), where)
            if peft_type is not None and str(peft_type).lower() != file_type:
                raise ConfigError(f"method.peft_type={peft_type!r}: {where} is a {file_type} config; "
                                  "leave method.peft_type unset (the file names the tuner)")
            peft_type, overrides, fields = file_type, dict(fields), {**file_fields, **fields}
        if peft_type is None:
            hint = " or method.config_file=PATH (a peft adapter_config.json)" if self.name == PeftTuner.name else ""
            raise ConfigError(f"method {self.name}: no method.peft_type (the peft tuner to build, e.g. vera){hint}")
        self.peft_type = str(peft_type).lower()
        valid = config_fields(self.peft_type)
        unknown = [k for k in fields if k not in valid]
        if unknown:
            raise ConfigError(unknown_field_message(self.name, self.peft_type, unknown[0]))
        if adapter_config is not None:
            from bench.methods.peft_file import check_field_types

            for key in overrides:  # the command line's method.<field>= values, named as typed
                check_field_types(self._config_class, {key: fields[key]}, f"method.{key} (an override of the file)")
        self.optimizer, self.loraplus_lr_ratio = str(optimizer), float(loraplus_lr_ratio)
        self.fields = {k: _plain(v) for k, v in fields.items()}
        self._total_step: int | None = None
        self._initial_adapter: tempfile.TemporaryDirectory | None = None
        super().__init__(lr=lr)

    def file_record(self) -> dict | None:
        """The record's `method_file` section (method=peft): where the file was, its sha256, what of it
        was ignored, dropped or replaced (bench.methods.peft_file); None for a YAML-defined tuner."""
        if self.file_notes is None:
            return None
        notes = dict(self.file_notes, path=str(self.config_file) if self.config_file else None)
        if self._total_step is not None and notes["replaced_by_harness"].get("total_step"):
            notes["replaced_by_harness"]["total_step"]["now"] = self._total_step
        return notes

    # -- settings -------------------------------------------------------------------------------
    @classmethod
    def accepted_settings(cls, method_cfg: dict) -> list[str]:
        """What a config may set: the harness's own settings and the chosen tuner's config fields (the
        tuner named by `peft_type`, or by the peft file's content for method=peft)."""
        peft_type = tuner_type(method_cfg)
        if peft_type is None:
            raise ConfigError(f"method {method_cfg.get('name', cls.name)}: no method.peft_type (the peft tuner to "
                              "build, e.g. vera) and no method.config_file (a peft adapter_config.json)")
        return [*OWN_SETTINGS, *FILE_SETTINGS, *config_fields(str(peft_type))]

    def settings(self) -> dict:
        own = {"adapter_config": self._adapter_config} if self.file_notes is not None else {}
        return {"lr": self.lr, "peft_type": self.peft_type, "optimizer": self.optimizer,
                "loraplus_lr_ratio": self.loraplus_lr_ratio, **own, **self.fields}

    @property
    def _config_class(self):
        return peft_config_class(self.peft_type)

    @property
    def is_prompt_learning(self) -> bool:
        from peft import PromptLearningConfig

        return issubclass(self._config_class, PromptLearningConfig)

    @property
    def uses_token_type_ids(self) -> bool:  # peft's prompt learning drops segment ids
        return not self.is_prompt_learning

    @property
    def rewrites_base(self) -> bool:
        init = str(self.fields.get("init_lora_weights", "")).lower()
        return self.peft_type == "lora" and init.startswith(REWRITES_BASE)

    @property
    def peft_type_name(self) -> str:
        return self.peft_type.upper()

    @property
    def is_eva(self) -> bool:
        """EVA (Paischer et al. 2024): LoRA's A from an SVD of the training rows' activations, ranks
        redistributed by explained variance: a data-pass initialisation (bench/training/loop.py)."""
        return self.peft_type == "lora" and str(self.fields.get("init_lora_weights", "")).lower() == "eva"

    @property
    def data_before_wrap(self) -> str | None:
        """CorDA (Yang et al. 2024: LoRA from the weights' SVD under the training rows' input covariance)
        or LoRA-GA (Wang et al. 2024: LoRA from the SVD of the training rows' gradient): peft
        preprocesses the *unwrapped* base with data, then `get_peft_model` reads what it attached."""
        init = str(self.fields.get("init_lora_weights", "")).lower()
        return init if self.peft_type == "lora" and init in DATA_BEFORE_WRAP else None

    def uses_hook(self, hook: str) -> bool:
        if hook == "build_optimizer":
            return self.optimizer != "adamw"
        if hook == "initialize_from_data":
            return self.is_eva or self.data_before_wrap is not None
        return self.peft_type == "adalora"

    # -- protocol -------------------------------------------------------------------------------
    def unsupported_reason(self, backbone_config) -> str | None:
        """GPT-2's Conv1D projections for a tuner peft implements for nn.Linear only (CONV1D_UNSUPPORTED),
        then the default-target rule of every peft method."""
        from bench.methods.architectures import uses_conv1d

        init = str(self.fields.get("init_lora_weights", "")).lower()
        if uses_conv1d(backbone_config) and (self.peft_type in CONV1D_UNSUPPORTED or
                                             (self.peft_type == "lora" and init in conv1d_unsupported_inits())):
            what = f"init_lora_weights={init}" if self.peft_type == "lora" else f"peft's {self.peft_type}"
            return (f"{what} supports nn.Linear layers, not the Conv1D layers of GPT-2's attention and feed-forward "
                    "projections (in the installed peft)")
        return super().unsupported_reason(backbone_config)

    def validate(self, backbone_config, max_seq_len):
        super().validate(backbone_config, max_seq_len)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"method.optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.optimizer != "adamw" and self.peft_type != "lora":
            raise ConfigError(f"method.optimizer={self.optimizer}: peft's {self.optimizer} optimizer is for LoRA "
                              f"(method.peft_type=lora), not {self.peft_type}")
        if self.optimizer == "loraplus" and not self.loraplus_lr_ratio >= 1:
            raise ConfigError(f"method.loraplus_lr_ratio={self.loraplus_lr_ratio}: expected a number >= 1 "
                              "(the ratio of B's learning rate to A's)")
        try:
            self.peft_config(backbone_config)
        except (TypeError, ValueError) as exc:  # peft's own checks in __post_init__, with its message
            raise ConfigError(f"method={self.name} (peft {self.peft_type}): {exc}") from None

    def peft_config(self, backbone_config):
        from peft import TaskType

        extra = {"total_step": self._total_step or 10**9} if self.peft_type == "adalora" else {}
        fields = dict(self.fields)
        if isinstance(fields.get("eva_config"), dict):  # YAML gives a mapping; peft wants its EvaConfig
            from peft import EvaConfig

            fields["eva_config"] = EvaConfig(**fields["eva_config"])
        for key, cls_name in (("corda_config", "CordaConfig"), ("lora_ga_config", "LoraGAConfig")):
            if isinstance(fields.get(key), dict):
                from peft.tuners.lora import config as lora_config

                fields[key] = getattr(lora_config, cls_name)(**fields[key])
        return self._config_class(task_type=TaskType.FEATURE_EXTRACTION, **fields, **extra)

    def wrap_config(self, backbone_config):
        """CorDA/LoRA-GA: a plain LoRA of the same shapes stands in until the data pass replaces it
        (`initialize_from_data`). Its B = 0, so it leaves the base and the outputs as they are, a delta
        loaded onto it later (bench.predict) sees the original base, and it has the real adapter's
        parameter count (tests/test_catalogue.py checks that after the data pass)."""
        cfg = self.peft_config(backbone_config)
        if self.data_before_wrap is not None:
            cfg.init_lora_weights, cfg.corda_config, cfg.lora_ga_config = True, None, None
        return cfg

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)  # CorDA/LoRA-GA: a placeholder until the data pass (wrap_config)
        if self.optimizer == "lorafa":  # A stays at its random init (peft's factory freezes it too): count it so
            for n, p in model.backbone.named_parameters():
                if "lora_A" in n:
                    p.requires_grad_(False)
        if self.rewrites_base and self.data_before_wrap is None:
            self._keep_initial_adapter(model)
        return model

    def _keep_initial_adapter(self, model: nn.Module) -> None:
        """The initialised adapter, for peft's conversion to plain LoRA on the original base at save time."""
        self._initial_adapter = tempfile.TemporaryDirectory(prefix="bench-init-adapter-")
        model.backbone.save_pretrained(self._initial_adapter.name)

    # -- the training loop's hooks (bench/training/loop.py) ---------------------------------------------
    def before_training(self, model: nn.Module, total_steps: int) -> None:
        if self.peft_type == "adalora":
            self._total_step = int(total_steps)
            cfg = model.backbone.peft_config["default"]
            cfg.total_step = int(total_steps)
            if cfg.tinit >= cfg.total_step - cfg.tfinal:
                raise ConfigError(f"method.tinit={cfg.tinit} + method.tfinal={cfg.tfinal} leave no budgeting phase in "
                                  f"this cell's {total_steps} steps; expected tinit + tfinal < {total_steps}")

    def initialize_from_data(self, model: nn.Module, batches) -> None:
        """EVA on the training rows the loop passes (never selection or dev rows); each process
        computes it alone (no gathering across data-parallel ranks: they hold the same rows here)."""
        if self.is_eva:
            from peft import initialize_lora_eva_weights

            initialize_lora_eva_weights(model.backbone, dataloader=batches, gather_distributed_inputs=False,
                                        show_progress_bar=False)
        elif self.data_before_wrap is not None:
            self._initialize_before_wrap(model, batches)

    def _initialize_before_wrap(self, model: nn.Module, batches) -> None:
        """CorDA: one forward pass over the training rows, one unpadded row at a time (its hook reads one
        sequence per call), collects each target layer's input covariance.
        LoRA-GA: the task loss's gradient of each target weight, averaged over the training rows' batches
        (peft's `estimate_gradients`, in train mode, with the cell's head). Then the real adapter."""
        from peft import get_peft_model
        from peft.tuners.lora import LoraModel

        base = model.backbone.unload()  # the placeholder (B = 0) dropped: the original base
        model.backbone = base
        cfg = self.peft_config(base.config)
        if cfg.target_modules is None:  # peft fills its default targets only inside get_peft_model
            cfg.target_modules = set(LoraModel.target_module_mapping[base.config.model_type])
        if self.data_before_wrap == "corda":
            from peft.tuners.lora.corda import preprocess_corda

            def run_model():
                for inputs in batches.single_rows():
                    base(**inputs)

            preprocess_corda(base, cfg, run_model=run_model)
        else:
            from peft.tuners.lora.loraga import preprocess_loraga

            head = [p for p in model.head.parameters() if p.requires_grad]
            for p in head:  # only the target weights' gradients are read; the head's would be left behind
                p.requires_grad_(False)

            def train_step():
                for inputs, labels in batches.labelled():
                    batches.loss(model(**inputs), labels).backward()

            try:
                preprocess_loraga(base, cfg, train_step=train_step)
            finally:
                for p in head:
                    p.requires_grad_(True)
        model.backbone = get_peft_model(base, cfg)
        self._keep_initial_adapter(model)

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        if self.peft_type == "adalora":
            model.backbone.base_model.update_and_allocate(step)

    ADALORA_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")

    def loop_state(self, model: nn.Module) -> dict | None:
        """AdaLoRA: the rank allocator's running importance scores and the rank pattern chosen so far
        (the budget's masks on lora_E are in the weights)."""
        if self.peft_type != "adalora":
            return None
        alloc = model.backbone.base_model.rankallocator
        state = {k: {n: v.detach().cpu().clone() for n, v in getattr(alloc, k).items()}
                 for k in self.ADALORA_STATE}
        pattern = model.backbone.peft_config["default"].rank_pattern
        state["rank_pattern"] = {n: [bool(b) for b in v] for n, v in pattern.items()} if pattern else None
        return state

    def load_loop_state(self, model: nn.Module, state: dict) -> None:
        if self.peft_type != "adalora":
            return
        alloc = model.backbone.base_model.rankallocator
        device = next(model.parameters()).device
        for k in self.ADALORA_STATE:
            setattr(alloc, k, {n: v.to(device) for n, v in state[k].items()})
        model.backbone.peft_config["default"].rank_pattern = state["rank_pattern"]

    def regularization(self, model: nn.Module):
        if self.peft_type != "adalora":
            return None
        weight = float(model.backbone.peft_config["default"].orth_reg_weight)
        terms = []
        for n, p in model.backbone.named_parameters():
            if ("lora_A" in n or "lora_B" in n) and p.requires_grad:
                cov = p @ p.T if "lora_A" in n else p.T @ p
                terms.append(torch.norm(cov - torch.eye(*cov.shape, device=cov.device, dtype=cov.dtype), p="fro"))
        return weight * torch.stack(terms).mean() if terms else None

    def build_optimizer(self, model: nn.Module, named, tcfg):
        """peft's optimizer factories over the whole model (the head trains at the base rate)."""
        if self.optimizer == "adamw":
            return None
        wd = float(tcfg.weight_decay)
        if self.optimizer == "loraplus":
            from peft.optimizers import create_loraplus_optimizer

            opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=self.lr,
                                            loraplus_lr_ratio=self.loraplus_lr_ratio, loraplus_weight_decay=wd)
            return opt, f"LoRA+ AdamW (B at {self.loraplus_lr_ratio:g}x the rate)"
        from peft.optimizers import create_lorafa_optimizer

        # peft's factory reads the PeftModel's adapters, so it gets the backbone; the head joins as a plain group
        opt = create_lorafa_optimizer(model.backbone, r=int(self.fields.get("r", 8)),
                                      lora_alpha=int(self.fields.get("lora_alpha", 8)), lr=self.lr, weight_decay=wd)
        head = [(f"head.{n}", p) for n, p in model.head.named_parameters() if p.requires_grad]
        opt.add_param_group({"params": [p for _, p in head], "names": [n for n, _ in head], "lr": self.lr,
                             "scaling_factors": [None] * len(head), "betas": (0.9, 0.999), "weight_decay": wd})
        return opt, "LoRA-FA (A frozen, B's gradient projected)"

    # -- saving ---------------------------------------------------------------------------------
    def save_delta(self, model: nn.Module, folder: str | Path) -> Path:
        if not self.rewrites_base:
            return super().save_delta(model, folder)
        from safetensors.torch import save_file

        folder = Path(folder)
        model.backbone.save_pretrained(str(folder), path_initial_model_for_weight_conversion=self._initial_adapter.name)
        head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        save_file(head, str(folder / "head.safetensors"))
        (folder / "method.json").write_text(json.dumps({"method": self.name, **self.settings()}, default=str))
        return folder

    def load_delta(self, model: nn.Module, folder: str | Path) -> nn.Module:
        if self.peft_type == "adalora":  # the ranks the budget left: the saved tensors have those shapes
            saved = json.loads((Path(folder) / "adapter_config.json").read_text())
            if saved.get("rank_pattern"):
                model.backbone.base_model.resize_modules_by_rank_pattern(saved["rank_pattern"], "default")
        if not (self.is_eva or self.rewrites_base):
            return super().load_delta(model, folder)
        from peft import PeftModel
        from safetensors.torch import load_file

        # Both reload peft's own saved folder onto the original base. PiSSA/OLoRA: the built cell holds the
        # rewritten base and the initial adapter; merging that untrained adapter back gives the original base
        # (to float rounding), onto which peft's converted plain LoRA loads. EVA: the base is untouched, but the
        # saved ranks (rank_pattern) differ from the built ones, so the built adapter is dropped and rebuilt as saved.
        folder = Path(folder)
        base = model.backbone.merge_and_unload() if self.rewrites_base else model.backbone.unload()
        model.backbone = PeftModel.from_pretrained(base, str(folder), is_trainable=self.is_eva)
        model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
        return model


def tuner_type(method_cfg: dict) -> str | None:
    """The peft type a method config builds: its `peft_type`, else its peft file's (method=peft)."""
    if method_cfg.get("peft_type"):
        return str(method_cfg["peft_type"]).lower()
    content = method_cfg.get("adapter_config")
    if content is None and method_cfg.get("config_file"):
        from bench.config.resolvers import read_adapter_config

        content = read_adapter_config(method_cfg["config_file"])
    if isinstance(content, dict):
        if not isinstance(content.get("peft_type"), str) or not content["peft_type"]:
            where = f"method.config_file={method_cfg.get('config_file')}" if method_cfg.get("config_file") else \
                "method.adapter_config"
            raise ConfigError(f"{where}: field 'peft_type': expected the tuner's name as a string (e.g. \"LORA\"), "
                              f"got {content.get('peft_type')!r}")
        return content["peft_type"].lower()
    return None


def tuner_class(name: str) -> type[PeftTuner]:
    """The registered subclass for a config `name` (created once), so REGISTRY, records and deltas
    know the tuner by its name like any built-in method."""
    cls = REGISTRY.get(name)
    if cls is None:
        cls = type(f"PeftTuner_{name}", (PeftTuner,), {"name": name, "__module__": __name__})
    elif not issubclass(cls, PeftTuner):
        raise ConfigError(f"method.name={name!r}: the name of the built-in method {cls.__module__}.{cls.__qualname__}; "
                          "a generic peft tuner needs a name of its own")
    return cls
