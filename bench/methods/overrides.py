"""`method.FIELD=V` on the command line for methods whose settings are a peft config's fields.

Every peft-based method takes its peft config's fields as peft spells them, listed in its YAML or not:
the generic tuners (conf/method/<tuner>.yaml, `peft_type`), `method=peft` (the tuner its
`method.config_file` names) and the shipped LoRA and IA3. Hydra would refuse a field the YAML does not
list ("not in struct") and exit 1, so such an override gets the `+` Hydra needs; a name that is no
field exits 2, naming the valid ones; an old name of a renamed setting (`method.alpha` of LoRA) becomes
peft's name with a deprecation message. Only a single `method=` choice (or the default) is judged;
sweeps over several methods are left to the per-job check. Used by every front end that composes a
config from overrides (`python -m bench`, bench.params, bench.plan).
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.errors import ConfigError


def _peft_type(node: dict, argv: list[str]) -> tuple[str | None, dict, object]:
    """(the peft type whose fields the method takes, the old -> new names it still accepts, the class's own
    message for an unknown name or None)."""
    from bench.methods import resolve_class
    from bench.methods.peft_tuner import tuner_type

    target = str(node.get("_target_", ""))
    if target.endswith("PeftTuner"):
        files = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("method.config_file=")]
        cfg = dict(node, config_file=files[-1]) if files else node
        cfg.pop("adapter_config", None)
        return tuner_type(cfg), {}, None
    try:
        cls = resolve_class(target)
    except ConfigError:
        return None, {}, None
    return ((getattr(cls, "peft_fields_of", None) or None), dict(getattr(cls, "DEPRECATED", {})),
            getattr(cls, "unknown_setting_message", None))


def method_field_overrides(argv: list[str], root) -> tuple[list[str], str | None]:
    """(argv with `+` added / old names replaced, an error message or None); see the module docstring."""
    from omegaconf import OmegaConf

    from bench.methods.peft_tuner import FILE_SETTINGS, OWN_SETTINGS, config_fields, unknown_field_message

    choices = [a.split("=", 1)[1] for a in argv if a.startswith("method=")]
    choice = choices[-1] if choices else "lora"
    path = Path(root) / "method" / f"{choice}.yaml"
    if "," in choice or not path.is_file():
        return argv, None
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(node, dict):
        return argv, None
    try:
        peft_type, renamed, message = _peft_type(node, argv)
        if peft_type is None:
            return argv, None
        valid = set(OWN_SETTINGS) | set(FILE_SETTINGS) | set(config_fields(peft_type))
    except ConfigError as exc:
        return argv, f"{path.name}: {exc}"
    out = []
    for arg in argv:
        key = arg.split("=", 1)[0]
        if key.startswith("method.") and "=" in arg and key.count(".") == 1:
            field = key.split(".", 1)[1]
            if field in renamed:
                new = renamed[field]
                print(f"method.{field} is deprecated for method {node.get('name', choice)}: use peft's name "
                      f"method.{new} (taken as method.{new}={arg.split('=', 1)[1]})", file=sys.stderr)
                field, arg = new, f"method.{new}={arg.split('=', 1)[1]}"
            if field not in node and field not in ("lr", "name", "_target_"):
                if field not in valid or (message is not None and field in (*OWN_SETTINGS, *FILE_SETTINGS)):
                    if message is not None:  # a shipped peft method (LoRA, IA3): its own settings and its peft fields
                        return argv, message(field)
                    return argv, unknown_field_message(str(node.get("name", choice)), peft_type, field)
                arg = "+" + arg
        out.append(arg)
    return out, None
