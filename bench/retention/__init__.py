"""Retention: what a finetuned cell lost of what its pretrained backbone could do (docs/retention.md).

`settings_from(cfg)` reads `retention.*`; `Retention` is made before training (it keeps the adapted
matrices as they were) and `measure` after the chosen weights are in place, returning the record's
`retention` section: the skill before and after (zero-shot similarity for encoders, language-model
loss for decoders) and the forgetting between them, the representation drift (linear CKA of pooled
features) and the intruder dimensions of the adapted matrices, with the sample it read and where the
"before" side came from (measured now, or the per-backbone cache).
"""

from __future__ import annotations

import dataclasses
import time

from bench.config.schema import RetentionSettings, check_section, model_setting

DEFAULTS = dataclasses.asdict(RetentionSettings())


def wanted(cfg) -> bool:
    """`retention.enabled`: true, false, or auto (on where the backbone is pretrained: a random-weight
    build has no pretrained skill to lose, and the measurement would only cost the tiny test cells time)."""
    enabled = (cfg.get("retention") or {}).get("enabled", False)
    return enabled is True or (enabled == "auto" and bool(model_setting(cfg.model, "pretrained")))


def settings_from(cfg) -> dict:
    from omegaconf import OmegaConf

    node = cfg.get("retention")
    given = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    check_section("retention", given, RetentionSettings)
    return {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}


class Retention:
    """One cell's retention measurement: `snapshot` before training, `measure` after."""

    def __init__(self, cfg, model, tokenizer, backbone_config, seed: int, device, precision: str):
        self.cfg, self.model, self.tokenizer, self.config = cfg, model, tokenizer, backbone_config
        self.seed, self.device, self.precision = seed, device, precision
        self.s = settings_from(cfg)
        self.before_weights: dict = {}

    def snapshot(self) -> None:
        """Keep the adapted matrices as they are before training; a failure (weights that are not plain
        float matrices, e.g. 4-bit) leaves the intruder view unmeasured, never fails the cell."""
        from bench.retention.weights import snapshot

        self.snapshot_error = None
        try:
            self.before_weights = snapshot(self.model.backbone, self.s["intruder_modules"])
        except Exception as exc:  # noqa: BLE001 - an extra measurement must not cost the cell
            self.before_weights, self.snapshot_error = {}, f"{type(exc).__name__}: {exc}"

    def _decoder(self) -> tuple[bool, bool]:
        from bench.methods.architectures import is_decoder

        dec = is_decoder(self.config)
        return dec, dec and bool(getattr(self.config, "tie_word_embeddings", True))

    def _forward(self, model, ids: list) -> dict:
        from bench.retention.measure import forward_sample

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return forward_sample(
            model, ids, pad, self.device, self.precision, int(self.s["batch_size"]), lm=self._decoder()[1]
        )

    def _skill(self, measured: dict, gold: list) -> float | None:
        from bench.retention.measure import similarity_skill

        decoder, _ = self._decoder()
        return measured["lm_loss"] if decoder else similarity_skill(measured["mean"], gold)

    def _before(self, ids: list, sample, run_id: str | None) -> tuple[dict, float | None, dict]:
        """(base features, base skill, where they came from): the cache, or a fresh base build now."""
        from bench.retention import cache

        blob = cache.key_blob(
            self.cfg, sample.info, self.seed, self.precision, self.device.type, self.model.pooling
        )
        key = cache.key_of(blob)
        path = cache.entry_path(self.cfg, key)
        if self.s["cache"]:
            entry = cache.load(path, blob)
            if entry is not None:
                return (
                    entry,
                    entry["meta"]["values"]["skill"],
                    {"cached": True, "key": key, "measured_by": entry["meta"]["measured_by"]},
                )
        from datetime import UTC, datetime

        from bench.models.backbones import build_model

        base = build_model(self.cfg.model, 2, self.seed).model.to(self.device)
        measured = self._forward(base, ids)
        del base
        skill = self._skill(measured, sample.gold)
        who = {
            "sweep": str(self.cfg.get("sweep_name")),
            "task": str(self.cfg.task.name),
            "seed": self.seed,
            "run_id": run_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self.s["cache"]:
            cache.store(path, blob, measured, {"skill": skill}, who)
        return measured, skill, {"cached": False, "key": key, "measured_by": who}

    def measure(self, run_id: str | None = None) -> dict:
        from bench.retention.data import load_sample
        from bench.retention.measure import encode_sentences, linear_cka
        from bench.retention.weights import intruders

        t0 = time.perf_counter()
        sample = load_sample(self.cfg, int(self.s["pairs"]))
        ids = encode_sentences(self.tokenizer, sample.sentences, int(self.cfg.train.max_seq_len))
        before, skill_before, reference = self._before(ids, sample, run_id)
        after = self._forward(self.model, ids)
        skill_after = self._skill(after, sample.gold)
        decoder, tied = self._decoder()
        skill = {
            "kind": "lm_loss" if decoder else "zero_shot_similarity",
            "before": skill_before,
            "after": skill_after,
            "forgetting": None,
        }
        if decoder:
            skill["metric"] = "mean next-token cross-entropy (nats), input embedding as output layer"
            if not tied:
                skill["why_none"] = "untied output layer: the backbone is loaded without it"
            elif skill_after is not None and skill_before is not None:
                skill["forgetting"] = skill_after - skill_before  # loss up = forgot
        else:
            skill["metric"] = "Spearman of cosine similarities of mean-pooled embeddings with the gold scores"
            skill["forgetting"] = skill_before - skill_after  # similarity skill down = forgot
        drift = {
            "kind": "linear_cka",
            "cka": linear_cka(before["pooled"], after["pooled"]),
            "features": f"pooled ({self.model.pooling}), the head's input",
            "sentences": len(ids),
        }
        weights = intruders(
            self.model.backbone,
            self.before_weights,
            self.s["intruder_modules"],
            int(self.s["intruder_k"]),
            float(self.s["intruder_epsilon"]),
        )
        if getattr(self, "snapshot_error", None):
            weights = dict(weights, status="not_measured", why=f"snapshot failed: {self.snapshot_error}")
        return {
            "skill": skill,
            "drift": drift,
            "intruders": weights,
            "data": dict(sample.info, sentences=len(ids)),
            "reference": reference,
            "settings": dict(self.s),
            "seconds": time.perf_counter() - t0,
        }
