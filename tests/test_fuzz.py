"""Property: any valid combination of choices ends as completed or diverged, with a summary.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.paths import config_dir
from layerscope.train.group import run


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(activation=st.sampled_from(choices("activation")), init=st.sampled_from(choices("init")),
       optimizer=st.sampled_from(choices("optimizer")), bn=st.sampled_from(choices("bn")),
       scheduler=st.sampled_from(choices("scheduler")), loss=st.sampled_from(choices("loss")),
       data=st.sampled_from(["gaussian", "spirals", "digits"]), depth=st.integers(1, 4), width=st.integers(2, 24),
       batch=st.integers(2, 48), steps=st.integers(0, 4), lr=st.floats(1e-4, 10.0), seed=st.integers(0, 2**16))
def test_any_valid_setting_completes_or_diverges(tmp_path_factory, activation, init, optimizer, bn, scheduler, loss,
                                                 data, depth, width, batch, steps, lr, seed):
    logging.getLogger("layerscope").setLevel(logging.ERROR)
    overrides = [f"activation={activation}", f"init={init}", f"optimizer={optimizer}", f"bn={bn}",
                 f"scheduler={scheduler}", f"loss={loss}", f"data={data}", f"model.depth={depth}",
                 f"model.width={width}", f"trainer.batch_size={batch}", f"trainer.max_steps={steps}",
                 f"optimizer.lr={lr}", f"trainer.seed={seed}", "probe.every=1", "probe.figures=false",
                 "trainer.progress=false"]
    run_dir = tmp_path_factory.mktemp("fuzz")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        summary = run(compose("train", overrides=overrides), run_dir)
    assert summary["status"] in ("completed", "diverged"), overrides
    assert json.loads((run_dir / "summary.json").read_text())["status"] == summary["status"]
