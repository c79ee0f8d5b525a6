"""Methods provided by peft: LoRA, IA3, prompt tuning, prefix tuning.

peft wraps the *backbone* only (task type FEATURE_EXTRACTION), so the head, pooling and loss stay
the same for every method. For prompt learning, peft prepends virtual tokens to the inputs and
drops `token_type_ids` (sentence-pair segment ids); `SequenceClassifier.pool` accounts for the
extra positions.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from torch import nn

from bench.config.renamed import RENAMED
from bench.config.schema import TEXT, Rule, check_value, choice, integer, list_of, number
from bench.errors import ConfigError
from bench.methods.base import Method


class PeftMethod(Method):
    """Common part: build a peft config, wrap the backbone, save/load with peft's own format."""

    delta_format = "peft"

    @property
    def peft_type_name(self) -> str | None:
        cfg = self.peft_config(None) if type(self).peft_config is not PeftMethod.peft_config else None
        return str(cfg.peft_type.value) if cfg is not None and cfg.peft_type is not None else None

    def peft_config(self, backbone_config):
        raise NotImplementedError

    def wrap_config(self, backbone_config):
        """The config `apply` wraps the backbone with, and parameters are counted from: the method's own,
        except where its initialisation needs data first (PeftTuner: CorDA, LoRA-GA)."""
        return self.peft_config(backbone_config)

    def unsupported_reason(self, backbone_config) -> str | None:
        """A tuner left at peft's default targets on an architecture peft has no default for (BEFT on
        GPT-2): peft would stop with "Please specify `target_modules`"."""
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

        try:
            cfg = self.peft_config(backbone_config)
        except (TypeError, ValueError):  # impossible settings: validate() says which
            return None
        if cfg is None or getattr(cfg, "target_modules", "n/a") is not None:
            return None
        mapping = getattr(PEFT_TYPE_TO_TUNER_MAPPING.get(cfg.peft_type), "target_module_mapping", None)
        model_type = str(getattr(backbone_config, "model_type", ""))
        if mapping is not None and model_type not in mapping:
            return (f"peft has no default target modules of {cfg.peft_type.value} for {model_type!r}; name them with "
                    "method.target_modules=[...]")
        return None

    def apply(self, model: nn.Module) -> nn.Module:
        from peft import get_peft_model

        from bench.errors import UnsupportedError
        from bench.methods.support import architecture_name

        config = self.wrap_config(model.backbone.config)
        try:
            model.backbone = get_peft_model(model.backbone, config)
        except ValueError as exc:  # peft names missing target modules in its message
            raise ConfigError(f"method={self.name}: peft could not apply {type(config).__name__}: {exc}") from None
        except (TypeError, NotImplementedError) as exc:  # a layer type the tuner does not implement
            if any(p.is_meta for p in model.backbone.parameters()):
                raise  # an initialisation that reads weights, on the meta device (bench.params retries on real ones)
            raise UnsupportedError(f"method={self.name} cannot run on {architecture_name(model.backbone.config)}: "
                                   f"peft's {type(config).__name__} does not support its layers: {exc}") from None
        if not any(p.requires_grad for p in model.backbone.parameters()):  # a tuner that skipped every target
            raise UnsupportedError(f"method={self.name} cannot run on {architecture_name(model.backbone.config)}: "
                                   f"peft's {type(config).__name__} made no parameter of the backbone trainable "
                                   "(it skips layer types it does not implement)")
        return model

    def delta_state_dict(self, model: nn.Module):
        from peft import get_peft_model_state_dict

        state = {f"backbone.{k}": v.detach().cpu().contiguous()
                 for k, v in get_peft_model_state_dict(model.backbone).items()}
        state.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()})
        return state

    def save_weights(self, model: nn.Module, folder: Path) -> None:
        """peft's own adapter folder (what a peft user would publish) plus the head."""
        from safetensors.torch import save_file

        model.backbone.save_pretrained(str(folder), **self.save_options())
        head = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        save_file(head, str(folder / "head.safetensors"))

    def save_options(self) -> dict:
        """Keyword arguments of peft's `save_pretrained` (PeftTuner: a base-rewriting initialisation's)."""
        return {}

    def load_delta(self, model: nn.Module, folder: str | Path) -> nn.Module:
        from safetensors.torch import load_file

        folder = Path(folder)
        self.load_backbone(model, folder)
        model.head.load_state_dict(load_file(str(folder / "head.safetensors")))
        cfg = getattr(model.backbone, "active_peft_config", None)
        if cfg is not None and cfg.is_prompt_learning and (str(cfg.peft_type.value) == "P_TUNING"
                                                           or getattr(cfg, "prefix_projection", False)):
            # peft saves a prompt encoder's *output* (the virtual tokens), not the encoder: only its
            # inference mode uses the saved tokens as they are instead of running them through the MLP
            cfg.inference_mode = True
        return model

    def load_backbone(self, model: nn.Module, folder: Path) -> None:
        """The saved adapter's tensors into the wrapped backbone as built."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model.backbone, load_file(str(folder / "adapter_model.safetensors")))


def _check_targets(option: str, targets, backbone_config) -> None:
    if targets is None:
        return
    check_value(option, targets, list_of(TEXT, "a non-empty list of module names, e.g. [query, value]"))


#: peft's `add_weighted_adapter` combination types, which bench.compose offers for LoRA deltas
LORA_COMBINATIONS = ("linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
                     "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")


class _PeftFields:
    """Shipped peft methods take their peft config's fields as peft spells them (`method.lora_alpha`,
    `method.layers_to_transform`): the named settings below, and any other field of `peft_fields_of`'s config
    class, passed through to it (checked against the class: unknown names and wrong types exit 2)."""

    peft_fields_of: str = ""
    #: old setting names -> peft's (bench.config.renamed: accepted with a deprecation message, hashed in the
    #: old spelling, so earlier records keep their run ids)
    DEPRECATED: ClassVar[dict[str, str]] = {}

    @classmethod
    def accepted_settings(cls, method_cfg: dict) -> list[str]:
        from bench.methods.peft_fields import config_fields

        return [*[k for k in cls.setting_names() if k != "lr"], *config_fields(cls.peft_fields_of)]

    @classmethod
    def unknown_setting_message(cls, key: str) -> str:
        from bench.methods.peft_fields import unknown_field_message

        own = [k for k in cls.setting_names() if k != "lr" and k not in cls.DEPRECATED]
        return unknown_field_message(cls.name, cls.peft_fields_of, key, own=own)

    def _take_extra(self, extra: dict) -> dict:
        """The other peft fields (not named in the constructor), checked against peft's config class."""
        from bench.methods.peft_fields import config_fields, peft_config_class
        from bench.methods.peft_file import check_field_types

        valid = config_fields(self.peft_fields_of)
        for key in extra:
            if key not in valid:
                raise ConfigError(self.unknown_setting_message(key))
        check_field_types(peft_config_class(self.peft_fields_of), extra, f"method {self.name}")
        return dict(extra)


def deprecated_name(method: str, old: str, new: str, value) -> None:
    import logging

    logging.getLogger(__name__).warning("method.%s is deprecated for method %s: use peft's name method.%s "
                                        "(method.%s=%s used)", old, method, new, new, value)


class LoRA(_PeftFields, PeftMethod):
    """Low-rank updates (Hu et al. 2021) on the named linear layers; default query and value as in
    the paper's GLUE experiments. Closed form on q,v: L * 2 * 2 * r * H. Settings as peft's LoraConfig
    names them (`lora_alpha`, `lora_dropout`, and any other LoraConfig field); `alpha` and `dropout`,
    the names before, still work with a deprecation message."""

    name = "lora"
    peft_fields_of = "lora"
    DEPRECATED: ClassVar[dict[str, str]] = RENAMED["bench.methods.LoRA"]

    def __init__(self, lr=None, r: int = 8, lora_alpha: float = 16, lora_dropout: float = 0.1,
                 target_modules=("query", "value"), bias: str = "none", use_rslora: bool = False,
                 use_dora: bool = False, alpha=None, dropout=None, **fields):
        if alpha is not None:
            deprecated_name(self.name, "alpha", "lora_alpha", alpha)
            lora_alpha = alpha
        if dropout is not None:
            deprecated_name(self.name, "dropout", "lora_dropout", dropout)
            lora_dropout = dropout
        self.r, self.lora_alpha, self.lora_dropout = r, lora_alpha, lora_dropout
        self.target_modules = list(target_modules) if target_modules is not None else None
        self.bias, self.use_rslora, self.use_dora = bias, bool(use_rslora), bool(use_dora)
        self.fields = self._take_extra(fields)
        super().__init__(lr=lr)

    def settings(self) -> dict:
        return {**super().settings(), **self.fields}

    def validate(self, backbone_config, max_seq_len):
        super().validate(backbone_config, max_seq_len)
        check_value("method.r", self.r, integer(1))
        check_value("method.lora_alpha", self.lora_alpha, number(0, lo_open=True))
        check_value("method.lora_dropout", self.lora_dropout, number(0, 1))
        _check_targets("method.target_modules", self.target_modules, backbone_config)
        check_value("method.bias", self.bias, choice("none", "all", "lora_only"))

    adds_as_lora = True

    def combine_refusal(self) -> str | None:
        """rsLoRA, DoRA and trained biases: a merged adapter add_weighted_adapter cannot express."""
        if self.use_rslora or self.use_dora:
            return ("LoRA with use_rslora or use_dora: peft's add_weighted_adapter gives the merged adapter "
                    "alpha = r, which changes rsLoRA's scaling and has no DoRA magnitude; not supported")
        if self.bias != "none":
            return "LoRA with method.bias != none: the biases are not LoRA matrices and peft does not merge them"
        return None

    def composition(self) -> dict:
        """peft's combinations for plain LoRA; none where `combine_refusal` says why (bench.compose refuses)."""
        out = super().composition()
        if self.combine_refusal():
            return dict(out, soup=False, merge=[])
        return dict(out, merge=list(LORA_COMBINATIONS))

    def peft_config(self, backbone_config):
        from peft import LoraConfig, TaskType

        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.target_modules, bias=self.bias, use_rslora=self.use_rslora,
                          use_dora=self.use_dora, task_type=TaskType.FEATURE_EXTRACTION, **self.fields)


class IA3(_PeftFields, PeftMethod):
    """(IA)^3 (Liu et al. 2022): learned rescaling vectors. Targets default to peft's mapping for
    the architecture (BERT/RoBERTa: key, value, output.dense; feed-forward: output.dense). Any other
    field of peft's IA3Config is accepted as peft names it."""

    name = "ia3"
    peft_fields_of = "ia3"

    def __init__(self, lr=None, target_modules=None, feedforward_modules=None, **fields):
        self.target_modules = list(target_modules) if target_modules is not None else None
        self.feedforward_modules = list(feedforward_modules) if feedforward_modules is not None else None
        self.fields = self._take_extra(fields)
        super().__init__(lr=lr)

    def settings(self) -> dict:
        return {**super().settings(), **self.fields}

    def validate(self, backbone_config, max_seq_len):
        super().validate(backbone_config, max_seq_len)
        _check_targets("method.target_modules", self.target_modules, backbone_config)

    def peft_config(self, backbone_config):
        from peft import IA3Config, TaskType

        return IA3Config(target_modules=self.target_modules, feedforward_modules=self.feedforward_modules,
                         task_type=TaskType.FEATURE_EXTRACTION, **self.fields)


class _PromptLearning(PeftMethod):
    uses_token_type_ids = False

    def __init__(self, lr=None, num_virtual_tokens: int = 20, **settings):
        self.num_virtual_tokens = num_virtual_tokens
        super().__init__(lr=lr, **settings)

    def validate(self, backbone_config, max_seq_len):
        super().validate(backbone_config, max_seq_len)
        check_value("method.num_virtual_tokens", self.num_virtual_tokens, integer(1))
        limit = int(getattr(backbone_config, "max_position_embeddings", 512))
        if self.prepends_tokens:
            check_value("method.num_virtual_tokens", self.num_virtual_tokens, Rule(
                f"an integer <= {limit - max_seq_len} (with train.max_seq_len={max_seq_len}, the model's {limit} "
                "positions hold the virtual tokens and the text)", lambda v: v + max_seq_len <= limit))

    prepends_tokens = True


class PromptTuning(_PromptLearning):
    """Soft prompt tokens prepended to the input embeddings (Lester et al. 2021). Trainable: n * H.
    `init`: random, sample_vocab (embeddings of random vocabulary tokens) or text (`init_text`)."""

    name = "prompt_tuning"

    def __init__(self, lr=None, num_virtual_tokens: int = 20, init: str = "sample_vocab",
                 init_text: str | None = None, tokenizer_path: str | None = None, **settings):
        self.init, self.init_text, self.tokenizer_path = init, init_text, tokenizer_path
        super().__init__(lr=lr, num_virtual_tokens=num_virtual_tokens, **settings)

    def validate(self, backbone_config, max_seq_len):
        super().validate(backbone_config, max_seq_len)
        check_value("method.init", self.init, choice("random", "sample_vocab", "text"))
        if self.init == "text" and not self.init_text:
            raise ConfigError("method.init=text needs method.init_text (the words to initialise the prompt with)")

    def peft_config(self, backbone_config):
        from peft import PromptTuningConfig, PromptTuningInit, TaskType

        kwargs = {}
        if self.init == "text":
            kwargs = {"prompt_tuning_init_text": self.init_text, "tokenizer_name_or_path": self.tokenizer_path}
        return PromptTuningConfig(num_virtual_tokens=self.num_virtual_tokens,
                                  prompt_tuning_init=PromptTuningInit[self.init.upper()],
                                  task_type=TaskType.FEATURE_EXTRACTION, **kwargs)


class PrefixTuning(_PromptLearning):
    """Trainable key/value prefixes in every layer (Li & Liang 2021). Without reparametrisation:
    L * 2 * n * H; with `prefix_projection`, an MLP of width `encoder_hidden_size` generates them."""

    name = "prefix_tuning"
    prepends_tokens = False

    def __init__(self, lr=None, num_virtual_tokens: int = 20, prefix_projection: bool = False,
                 encoder_hidden_size: int | None = None, **settings):
        self.prefix_projection = bool(prefix_projection)
        self.encoder_hidden_size = encoder_hidden_size
        super().__init__(lr=lr, num_virtual_tokens=num_virtual_tokens, **settings)

    def peft_config(self, backbone_config):
        from peft import PrefixTuningConfig, TaskType

        kwargs = {"encoder_hidden_size": self.encoder_hidden_size} if self.encoder_hidden_size else {}
        return PrefixTuningConfig(num_virtual_tokens=self.num_virtual_tokens, prefix_projection=self.prefix_projection,
                                  task_type=TaskType.FEATURE_EXTRACTION, **kwargs)
