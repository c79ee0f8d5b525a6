"""`bench.reproduce params`: every published trainable-parameter count next to the harness's count.

For each published configuration with a count (`trainable_params`, or a size in the model name), the
configuration is built with its `harness_overrides` through `bench.params.measure` (meta device, no
weights) and compared at the precision printed: '0.3M' means any count in [0.25M, 0.35M).

Where the harness's own counting (trainable excl. head: the method alone) does not print as the
published number, the other countings papers use are measured on the same model and tried in turn
(head included, RoBERTa's classifier, the BERT pooler, LayerNorms trained, position embeddings
left out, ...); the table says which of them reproduce the number, and which configuration's count
an unexplained number equals, if any. Adapter rows whose bottleneck size is not published get the
range of sizes whose count prints as published (the count is affine in the size, measured at two
sizes). Nothing is asserted: every verdict is computed from measured counts.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bench.reproduce.published import Published, Row, by_config, load, model_size_in_name, parse_counts


@dataclass
class Check:
    config_id: str
    what: str                      # "trainable" | "model size"
    published: str                 # as printed
    value: float | None            # published value (count, or percent)
    kind: str                      # count | percent | none
    measured: int | None           # harness count in the harness's counting (trainable excl. head)
    measured_pct: float | None     # 100 * measured / backbone total
    rel_gap: float | None          # (measured - published) / published, in the published unit
    verdict: str
    why: str
    overrides: str = ""
    details: dict = field(default_factory=dict)


class Measurer:
    """Caches `bench.params.measure` by override string (the same configuration is shared by rows)."""

    def __init__(self, measure=None):
        if measure is None:
            from bench.params import measure
        self._measure = measure
        self._cache: dict[str, dict] = {}

    def __call__(self, overrides: str) -> dict:
        if overrides not in self._cache:
            self._cache[overrides] = self._measure(shlex.split(overrides))
        return self._cache[overrides]

    def backbone_total(self, overrides: str) -> int:
        """Parameters of the pretrained backbone alone: the same model with method=full, minus the head."""
        full = self(_with_method(overrides, "full"))
        return full["params"]["total"] - full["params"]["head"]


def _with_method(overrides: str, method: str) -> str:
    parts = [p for p in shlex.split(overrides) if not p.startswith(("method=", "method."))]
    return " ".join(parts + [f"method={method}"])


def _with_setting(overrides: str, key: str, value) -> str:
    parts = [p for p in shlex.split(overrides) if not p.startswith(f"method.{key}=")]
    return " ".join(parts + [f"method.{key}={value}"])


CASED_VOCAB = 28996  # bert-base-cased / bert-large-cased / distilbert-base-cased vocabulary


def is_cased(model_name: str) -> bool:
    low = model_name.lower()
    return "cased" in low and "uncased" not in low


def variants(m: dict, method_key: str, cased: bool = False) -> list[tuple[str, int]]:
    """(name, count) of the countings tried, the harness's own first."""
    p, ref = m["params"], m["reference"]
    own = p["trainable_excl_head"]
    out = [("harness: trainable excl. head", own), ("incl. the harness head (H*C+C)", p["trainable"])]
    if m["model_type"] == "roberta":
        out.append(("incl. RoBERTa's classifier (dense+out_proj)", own + ref["roberta_classifier"]))
    if method_key == "full":
        if ref["pooler"]:
            out.append(("incl. the pooler (dense H*H+H)", own + ref["pooler"]))
        out.append(("excl. position/token-type embeddings", own - ref["position_and_type_embeddings"]))
        if cased:
            cased_own = own - (ref["vocab_size"] - CASED_VOCAB) * ref["hidden_size"]
            out.append((f"with the cased vocabulary ({CASED_VOCAB:,} tokens)", cased_own))
            if ref["pooler"]:
                out.append(("cased vocabulary, incl. the pooler", cased_own + ref["pooler"]))
    if method_key in ("adapter", "adapter_pfeiffer"):
        ln = ref["backbone_layernorm"]
        trains_ln = bool(m["method_settings"].get("train_layernorm"))
        if trains_ln:
            out.append(("adapters only (LayerNorm not counted)", own - ln))
        else:
            out.append(("adapters + all LayerNorms", own + ln))
    return out


def _rel(measured: float, published: float) -> float | None:
    return (measured - published) / published if published else None


def _fmt(n: float) -> str:
    return f"{round(n):,}"


def check_count(cid: str, what: str, pub: Published, m: dict, method_key: str, base_total: int,
                overrides: str, cased: bool = False) -> Check:
    vs = variants(m, method_key, cased)
    if what == "model size":
        vs = [("harness: backbone parameters (method=full, excl. head)", base_total)] + vs[2:]
    own = vs[0][1]
    if pub.kind == "percent":
        scored = [(name, 100.0 * v / base_total) for name, v in vs]

        def shown(v: float) -> str:
            return f"{v:.2f}%"
    else:
        scored = [(name, float(v)) for name, v in vs]

        def shown(v: float) -> str:
            return f"{_fmt(v)} ({pub.fmt(v)})"
    hits = [name for name, v in scored if pub.contains(v)]
    own_name, own_value = scored[0]
    approx = " (approximate: printed with '~')" if pub.approx else ""
    if hits and hits[0] == own_name:
        verdict = "match" + (" (approx. '~')" if pub.approx else "")
        why = f"{shown(own_value)} prints as {pub.text}{approx}"
        miss = [(n, v) for n, v in scored[1:] if not pub.contains(v)]
        if miss:
            why += "; other countings would not: " + "; ".join(f"{n} {shown(v)}" for n, v in miss)
    elif hits:
        verdict = "match with other counting: " + " / ".join(hits)
        why = (f"the harness counting gives {shown(own_value)}; " +
               "; ".join(f"{n}: {shown(dict(scored)[n])}" for n in hits) + f" print as {pub.text}{approx}")
    else:
        verdict = "no match"
        why = (f"no counting tried prints as {pub.text}{approx}: " +
               "; ".join(f"{n} {shown(v)}" for n, v in scored))
        if pub.kind == "count" and _truncates_to(own_value, pub):
            why += f"; the harness count truncated (not rounded) at the printed precision gives {pub.text}"
    gap = _rel(own_value, pub.value)
    return Check(cid, what, pub.text, pub.value, pub.kind, own, 100.0 * own / base_total if base_total else None,
                 gap, verdict, why, overrides, {"variants": dict(vs), "method_key": method_key})


def infer_size(cid: str, pub: Published, overrides: str, measurer: Measurer, base_total: int) -> Check:
    """Bottleneck size not published: the sizes whose adapter count prints as published."""
    c1 = measurer(_with_setting(overrides, "size", 1))["params"]["trainable_excl_head"]
    c2 = measurer(_with_setting(overrides, "size", 2))["params"]["trainable_excl_head"]
    slope, icpt = c2 - c1, c1 - (c2 - c1)
    lo = max(1, math.ceil((pub.low - icpt) / slope))
    hi = math.floor((pub.high - 1e-9 - icpt) / slope)
    pow2 = [2 ** k for k in range(12) if lo <= 2 ** k <= hi]
    if lo > hi:
        return Check(cid, "trainable", pub.text, pub.value, pub.kind, None, None, None,
                     "config unknown: no size fits",
                     f"bottleneck size not published; count = {slope:,}*m + {icpt:,}: "
                     f"no integer m prints as {pub.text}",
                     overrides)
    pick = pow2[0] if pow2 else lo
    m = measurer(_with_setting(overrides, "size", pick))
    own = m["params"]["trainable_excl_head"]
    sizes = f"m = {lo}..{hi}" if lo != hi else f"m = {lo}"
    why = (f"bottleneck size not published; harness count = {slope:,}*m + {icpt:,} "
           f"({m['method']}); {sizes} print as {pub.text}"
           + (f" (powers of two: {', '.join(map(str, pow2))})" if pow2 else " (no power of two)")
           + f"; e.g. m={pick}: {_fmt(own)}")
    return Check(cid, "trainable", pub.text, pub.value, pub.kind, own, 100.0 * own / base_total, _rel(own, pub.value),
                 f"config unknown; inferred size m={pick}" + ("" if lo == hi else f" ({lo}..{hi} fit)"), why,
                 _with_setting(overrides, "size", pick), {"method_key": m["method"]})


def _truncates_to(x: float, pub: Published) -> bool:
    width = pub.high - pub.low
    return pub.value <= x < pub.value + width


def _multiplier_note(text: str, pct: float | None) -> str:
    """'(1.3x total)': the total for 9 tasks = 1 + 9 * per-task fraction; checked when the percent is measured."""
    import re

    m = re.search(r"(\d+(?:\.\d+)?)x total", text)
    if not m or pct is None:
        return ""
    tasks = 9
    x = 1 + tasks * pct / 100 if pct < 99 else tasks * pct / 100
    printed = m.group(1)
    dec = len(printed.split(".")[1]) if "." in printed else 0
    ok = f"{x:.{dec}f}" == printed
    return f"; '{printed}x total' for {tasks} tasks: measured gives {x:.3f}x ({'consistent' if ok else 'inconsistent'})"


def run_checks(rows: list[Row], measurer: Measurer | None = None) -> list[Check]:
    measurer = measurer or Measurer()
    checks: list[Check] = []
    configs = by_config(rows)
    sizes_done: set[tuple[str, str]] = set()
    for cid, group in configs.items():
        first = group[0]
        pubs = parse_counts(first.trainable_params)
        size = model_size_in_name(first.model)
        if not first.harness_overrides:
            for pub in pubs or [None]:
                checks.append(Check(cid, "trainable", first.trainable_params, pub.value if pub else None,
                                    pub.kind if pub else "none", None, None, None, "not measurable",
                                    f"no harness equivalent: {first.curation or 'no model/method mapping'}"))
            continue
        ov = first.harness_overrides
        base = measurer.backbone_total(ov)
        if not pubs:
            m = measurer(ov)
            own = m["params"]["trainable_excl_head"]
            checks.append(Check(cid, "trainable", first.trainable_params, None, "none", own, 100.0 * own / base, None,
                                "no published count", "the source prints no count; harness count shown for reference",
                                ov))
        for pub in pubs:
            if first.adapter_size == "unknown" and pub.kind == "count":
                checks.append(infer_size(cid, pub, ov, measurer, base))
                continue
            if first.adapter_size and not first.adapter_size.isdigit() and first.adapter_size != "unknown":
                checks.append(Check(cid, "trainable", pub.text, pub.value, pub.kind, None, None, None,
                                    "config varies per task", f"adapter size {first.adapter_size}: one count per task, "
                                    + _per_size_note(ov, measurer, base), ov))
                continue
            c = check_count(cid, "trainable", pub, measurer(ov), first.method_key, base, ov, is_cased(first.model))
            c.why += _multiplier_note(first.trainable_params, c.measured_pct if pub.kind == "percent" else None)
            checks.append(c)
        if size is not None and (first.model, size.text) not in sizes_done:
            sizes_done.add((first.model, size.text))
            checks.append(check_count(cid, "model size", size, measurer(_with_method(ov, "full")), "full", base,
                                      _with_method(ov, "full"), is_cased(first.model)))
    _cross_reference(checks)
    _native_counts(checks, measurer)
    return checks


def _native_counts(checks: list[Check], measurer: Measurer) -> None:
    """Each configuration's count with `model.head=native` (for full fine-tuning: every parameter of
    transformers' *ForSequenceClassification), and for peft methods what peft prints for its own SEQ_CLS
    model (measured by bench.params; equal to the native count where peft trains the whole head).
    A published count that only this counting reproduces gets that verdict."""
    from bench.errors import ConfigError

    for c in checks:
        if not c.overrides or c.what != "trainable":
            continue
        try:
            m = measurer(c.overrides + " model.head=native")
        except ConfigError as exc:
            c.details["native"] = None
            c.details["native_why"] = str(exc)
            continue
        n = m["params"]["trainable"]
        c.details["native"] = n
        c.details["native_head"] = m["head_modules"]
        c.details["peft_seq_cls"] = (m.get("peft_seq_cls") or {}).get("trainable")
        pub = next((p for p in parse_counts(c.published) if p.kind == c.kind), None)
        if pub is not None and c.kind == "count" and pub.contains(n):
            if c.verdict == "no match":
                c.verdict = "match with other counting: incl. the native head"
            c.why += f"; with the native head ({m['head_modules']}) the count is {n:,}, which prints as {pub.text}"


def _per_size_note(ov: str, measurer: Measurer, base: int) -> str:
    parts = []
    for m in (8, 64, 256):
        n = measurer(_with_setting(ov, "size", m))["params"]["trainable_excl_head"]
        parts.append(f"m={m}: {n:,} ({100 * n / base:.2f}%)")
    return "; ".join(parts)


def _cross_reference(checks: list[Check]) -> None:
    """An unexplained published count that equals another configuration's measured count is named."""
    def family(cid: str) -> str:
        return cid.split("/")[0].split("-")[0]

    measured = [(c.config_id, c.measured, c.details.get("method_key")) for c in checks
                if c.measured is not None and c.what == "trainable"]
    for c in checks:
        if c.verdict != "no match" or c.kind != "count" or c.what != "trainable":
            continue
        pub = next(p for p in parse_counts(c.published) if p.kind == "count")
        same = sorted({cid for cid, n, mk in measured if cid != c.config_id and pub.contains(n)
                       and family(cid) == family(c.config_id) and mk == c.details.get("method_key")
                       and cid.split("/")[1] != c.config_id.split("/")[1]})
        if same:
            c.why += f"; {pub.text} is what the harness measures for {', '.join(same)}"


# ----------------------------------------------------------------------------------------- report


def cmd_params(out: Path) -> int:
    """`bench.reproduce params`: the checks as a report under <out>/params/ and a short table."""
    import pandas as pd

    from bench.reproduce.report import table_from_frame, to_text, write_report

    checks = run_checks(load())
    rows = []
    for c in checks:
        rows.append({
            "configuration": c.config_id, "count": c.what, "published": c.published,
            "published value": ("" if c.value is None
                                else f"{c.value:g}%" if c.kind == "percent" else f"{c.value:,.0f}"),
            "harness (excl. head)": "" if c.measured is None else f"{c.measured:,}",
            "with the native head": "" if c.details.get("native") is None else f"{c.details['native']:,}",
            "peft prints (SEQ_CLS)": "" if c.details.get("peft_seq_cls") is None else f"{c.details['peft_seq_cls']:,}",
            "native head": c.details.get("native_head") or c.details.get("native_why", ""),
            "harness % of backbone": "" if c.measured_pct is None else f"{c.measured_pct:.3f}%",
            "rel. gap": "" if c.rel_gap is None else f"{100 * c.rel_gap:+.1f}%",
            "verdict": c.verdict, "why": c.why, "harness overrides": c.overrides,
        })
    frame = pd.DataFrame(rows)
    cap = ("Published trainable-parameter counts (and model sizes printed in model names) next to the harness's "
           "count of the same configuration (bench.params: model built from its shipped config on the meta device, "
           "method applied as in a run). 'harness (excl. head)' = the method alone, as the LoRA/adapter papers "
           "count; 'with the native head' = the same configuration with model.head=native (method + the "
           "architecture's own head; for full fine-tuning every parameter of *ForSequenceClassification); "
           "'peft prints (SEQ_CLS)' = get_nb_trainable_parameters of peft's own SEQ_CLS model of the configuration "
           "(peft methods only; it trains the classifier only, so DeBERTa's ContextPooler stays frozen there); "
           "rel. gap = (harness - published value) / published value. A count matches when it prints as "
           "published: '0.3M' = [0.25M, 0.35M); integer trailing zeros are not significant ('330M' = [325M, 335M)). "
           "Where the harness counting does not match, the other countings tried are listed in 'why'.")
    table = table_from_frame(frame, "Published vs measured trainable parameters", cap, status_col="verdict",
                             columns=[c for c in frame.columns if c != "harness overrides"])
    n = frame["verdict"].str.split(":").str[0].str.split(";").str[0].value_counts()
    intro = [("Every published trainable-parameter count in bench/reproduce/published.csv next to the count the "
             "harness measures for the same configuration (`python -m bench.params`)."),
             "Verdicts: " + ", ".join(f"{v} {k}" for k, v in n.items()) + "."]
    paths = write_report(out / "params", "reproduce-params", intro, [table], {"params": frame})
    short = frame[["configuration", "count", "published", "harness (excl. head)", "with the native head",
                   "peft prints (SEQ_CLS)", "verdict"]]
    print(to_text(table_from_frame(short, "", ""), max_width=60))
    print(f"\nwritten to {paths['md']} (+ params.csv, index.html)")
    return 0
