"""Progress display (bench/training/progress.py): a bar on a terminal, periodic plain lines otherwise, a sweep
line from what is on disk; and settings that never touch a cell's identity."""
from __future__ import annotations

import io
import json

import pytest
from clitools import TINY, run_bench
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from bench.config.confdir import conf_dir
from bench.errors import ConfigError
from bench.recipe.validate import check
from bench.records import schema as R
from bench.training.progress import CellProgress, fmt_duration, sweep_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _train(progress: CellProgress, clock: Clock, steps: int = 100, seconds_per_step: float = 1.0) -> None:
    progress.start(steps, epochs=2)
    for i in range(steps):
        clock.t += seconds_per_step
        progress.step(32, 0.5, epoch=1 + i * 2 // steps)
    progress.close()


def test_not_a_terminal_gives_plain_lines_at_most_every_interval_and_at_the_end():
    out, lines, clock = io.StringIO(), [], Clock()
    p = CellProgress("sst2 lora s0", "auto", interval_s=30, stream=out, clock=clock, emit=lines.append)
    assert p.mode == "log"
    _train(p, clock)
    assert out.getvalue() == ""  # no bar, no carriage returns
    assert len(lines) == 3 + 1  # at 30, 60, 90 s of 100, and the end
    assert lines[0] == "sst2 lora s0: step 30/100, epoch 1/2, loss 0.5000, 32.0 samples/s, 1m10s left"
    assert lines[-1].startswith("sst2 lora s0: trained 100/100 steps in 1m40s, epoch 2/2")


def test_a_terminal_gets_a_bar_and_no_lines():
    out, lines, clock = Terminal(), [], Clock()
    p = CellProgress("sst2 lora s0", "auto", stream=out, clock=clock, emit=lines.append)
    assert p.mode == "bar"
    _train(p, clock)
    text = out.getvalue()
    assert lines == [] and "\r" in text and "100/100" in text and "loss 0.5000" in text and "samples/s" in text


def test_parallel_cells_and_off():
    assert CellProgress("x", "auto", stream=Terminal(), parallel=2).mode == "log"  # bars would overwrite each other
    out, lines, clock = Terminal(), [], Clock()
    _train(CellProgress("x", "off", stream=out, clock=clock, emit=lines.append), clock)
    assert out.getvalue() == "" and lines == []
    out, lines, clock = io.StringIO(), [], Clock()
    _train(CellProgress("x", "bar", stream=out, clock=clock, emit=lines.append), clock)  # asked for: a bar anyway
    assert "100/100" in out.getvalue() and lines == []


def test_sweep_line_counts_from_the_progress_file(tmp_path):
    path = tmp_path / "inv.jsonl"
    rows = [("ok", 60), ("skipped", 0), ("ok", 120), ("failed", 30)]
    path.write_text("".join(json.dumps({"status": s, "seconds": t, "cell": "c"}) + "\n" for s, t in rows))
    # time left = mean of the cells that ran (70 s) x 6 cells left / 1 cell at a time
    assert sweep_line(path, total=10, parallel=1) == \
        "sweep: 4/10 cells (2 ok, 1 failed, 1 skipped), ~7m00s left at 1m10s per cell"
    assert sweep_line(path, total=10, parallel=2).endswith("~3m30s left at 1m10s per cell")
    assert sweep_line(path, total=4, parallel=1) == "sweep: 4/4 cells (2 ok, 1 failed, 1 skipped)"
    assert fmt_duration(3725) == "1h02m" and fmt_duration(None) == "?"


@pytest.fixture(scope="module")
def composed():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield lambda overrides=(): compose(config_name="config", overrides=list(overrides))
    GlobalHydra.instance().clear()


def test_progress_settings_are_checked_and_never_in_the_config_hash(composed):
    cfg = composed()
    config = OmegaConf.to_container(cfg, resolve=True)
    assert config["progress"] == {"mode": "auto", "interval_s": 30}
    without = {k: v for k, v in config.items() if k != "progress"}  # a config from before the key existed
    assert R.config_hash(config) == R.config_hash(without)
    louder = OmegaConf.to_container(composed(["progress.mode=log", "progress.interval_s=5"]), resolve=True)
    assert R.config_hash(louder) == R.config_hash(config)
    # the study's first-rung key is absent unless a pruned study sets it, so no existing hash moved
    assert "stop_after_epochs" not in config["train"]
    with pytest.raises(ConfigError, match=r"progress\.mode='blink': expected auto, bar, log or off"):
        check(composed(["progress.mode=blink"]))
    with pytest.raises(ConfigError, match=r"progress\.interval_s=0: expected a number > 0"):
        check(composed(["progress.interval_s=0"]))


@pytest.mark.slow
def test_a_piped_sweep_prints_lines_not_bars(tmp_path, glue_dir):
    """Output captured through pipes (as in CI or under nohup): no bar, a line when each cell's
    training ends, and the sweep line counting the cells done of those the CLI planned."""
    proc = run_bench(["-m", *TINY, "task=sst2", "method=lora,bitfit", "inference.enabled=false"], glue_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "\r" not in text and "step/s" not in text  # tqdm draws with carriage returns and its own rate
    assert text.count("sst2 lora s0: trained 4/4 steps") == 1 and text.count("sst2 bitfit s0: trained 4/4 steps") == 1
    assert "sweep: 1/2 cells (1 ok, 0 failed, 0 skipped), ~" in text and "sweep: 2/2 cells (2 ok, 0 failed, 0 skipped)" in text
    again = run_bench(["-m", *TINY, "task=sst2", "method=lora,bitfit", "inference.enabled=false",
                       "progress.mode=off"], glue_dir, tmp_path)
    assert again.returncode == 0 and "sweep:" not in again.stdout + again.stderr  # off: and still resumed
    assert "0 ok, 0 failed, 2 skipped" in again.stdout
