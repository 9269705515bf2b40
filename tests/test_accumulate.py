"""One read of the canvas for every probe: the accumulator driver and the streamed canvas.

* every registered probe is an accumulator;
* :func:`accumulate` reads each block once per pass for all tasks and gives each the scores of
  the task run on its own, on the canvas and on its shuffled control;
* a probe that refuses the canvas stops alone;
* a canvas traced on demand (:func:`traced_canvas`, never written) gives the records of the same
  canvas written to a file, for every task, with the canvas traced once per pass; every task's
  shuffled control (faithfulness's sharing the canvas's ground truth) equals the task run alone
  on the shuffled canvas; its window keeps only the layers not read yet, so a pass leaves no
  window behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import weakref
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch

from xinc_bench.canvas import Canvas, compute_canvas
from xinc_bench.canvas.streamed import traced_canvas
from xinc_bench.data import load_signal, parse_frames
from xinc_bench.errors import XincError
from xinc_bench.inrs.base import create_inr
from xinc_bench.probes.accumulator import AccumulatorGroup, ProbeAccumulator, ProbeResult, accumulate
from xinc_bench.probes.base import load_task
from xinc_bench.probes.controls import shuffle_canvas
from xinc_bench.registry import PROBES
from xinc_bench.runs.stages import applicable_tasks, probe_tasks

SIZE = (16, 32)
DRAWS = 3


def test_every_registered_probe_is_an_accumulator() -> None:
    for name in PROBES.names():
        assert issubclass(PROBES.get(name), ProbeAccumulator), name


class CountingLayer:
    """A layer source that counts its reads (and serves them from a tensor)."""

    def __init__(self, values: torch.Tensor, reads: list[tuple[int, int]]) -> None:
        self.values = values
        self.shape = tuple(values.shape)
        self.reads = reads

    def read(self, start: int, stop: int) -> torch.Tensor:
        self.reads.append((start, stop))
        return self.values[:, start:stop]


@pytest.fixture(scope="module")
def signal() -> Any:
    return load_signal("synthetic-moving", SIZE, parse_frames("0:4"))


def small_video_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_inr("ffn-video", mapping_size=16, hidden_width=12).eval()


def test_each_block_is_read_once_per_pass_for_every_task_on_the_canvas_and_its_control(signal: Any) -> None:
    canvas = compute_canvas(small_video_model(0), signal, "mlp")
    reads: list[tuple[int, int]] = []
    counted = Canvas(layers={name: CountingLayer(canvas.layer(name), reads) for name in canvas.layer_names},
                     frames=canvas.frames, masks=canvas.masks, flow=canvas.flow, metadata=canvas.metadata,
                     chunk_bytes=1)  # one frame per block
    tasks = [load_task(name) for name in ("color", "edges", "partitions", "motion", "distribution", "clustering")]
    group = AccumulatorGroup([task.accumulator(counted, DRAWS) for task in tasks])
    [observed] = accumulate(counted, [group])
    passes = max(acc.passes for acc in group.accumulators)
    assert passes > 1  # clustering needs a second pass, distribution streams large layers
    assert len(reads) == passes * canvas.shape[0] * len(canvas.layer_names)
    reads.clear()
    controls = AccumulatorGroup([acc.for_control(shuffle_canvas(counted)) for acc in group.accumulators])
    [shuffled] = accumulate(shuffle_canvas(counted), [controls])
    plt.close("all")
    control_passes = max(acc.passes for acc in controls.accumulators)
    # one: distribution's control takes the canvas's thresholds, clustering's its extrema (and finds S > 0
    # at every pixel of the control, so its pixel sample needs no pass of its own)
    assert control_passes == 1
    assert len(reads) == control_passes * canvas.shape[0] * len(canvas.layer_names)
    for task, alone, control in zip(tasks, observed, shuffled):
        assert alone.error is None and control.error is None
        assert alone.result.scores == pytest.approx(task.run(canvas, DRAWS).scores, rel=1e-9, nan_ok=True)
        on_its_own = task.run(shuffle_canvas(canvas), 0).scores
        assert control.result.scores == pytest.approx(on_its_own, rel=1e-9, nan_ok=True), task.name
        assert control.result.scores != pytest.approx(alone.result.scores, nan_ok=True)


class Refusing(ProbeAccumulator):
    """A probe that refuses the canvas at its second block."""

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        self.blocks = 0

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        self.blocks += 1
        if self.blocks == 2:
            raise XincError("this canvas is refused")

    def compute(self) -> ProbeResult:
        raise AssertionError("a stopped accumulator is not asked for its result")


def test_a_probe_that_refuses_the_canvas_stops_alone(signal: Any) -> None:
    canvas = Canvas(layers={"layer": torch.rand(3, 4, *SIZE)}, frames=signal.frames, masks=signal.masks,
                    flow=signal.flow, chunk_bytes=1)
    refusing, edges = Refusing(canvas, {}), load_task("edges").accumulator(canvas, 0)
    [[stopped, scored]] = accumulate(canvas, [AccumulatorGroup([refusing, edges])], isolate_errors=True)
    assert refusing.blocks == 2 and "refused" in str(stopped.error) and stopped.result is None
    assert scored.error is None and scored.result.scores == load_task("edges").run(canvas, 0).scores
    with pytest.raises(XincError, match="refused"):
        accumulate(canvas, [AccumulatorGroup([Refusing(canvas, {})])])


def test_a_streamed_canvas_gives_the_records_of_its_file(tmp_path: Path, signal: Any) -> None:
    model, twin = small_video_model(0), small_video_model(1)
    tasks = applicable_tasks(compute_canvas(model, signal, "mlp"))
    assert {"clustering", "faithfulness", "motion", "objects"} <= set(tasks)
    filed = compute_canvas(model, signal, "mlp", out=tmp_path / "canvas.safetensors")
    filed_twin = compute_canvas(twin, signal, "mlp", out=tmp_path / "init.safetensors")
    one_frame = 4 * sum(filed.layer_shape(name)[0] for name in filed.layer_names) * SIZE[0] * SIZE[1]
    streamed = traced_canvas(model, signal, "mlp", memory_budget=2 * one_frame, metadata=filed.metadata)
    streamed_twin = traced_canvas(twin, signal, "mlp", memory_budget=one_frame, metadata=filed_twin.metadata)
    outs = {kind: {task: tmp_path / kind / f"{task}.json" for task in tasks} for kind in ("file", "stream")}
    common = {"null_draws": DRAWS, "model": model, "twin": twin}
    from_file = probe_tasks(tmp_path / "canvas.safetensors", tasks, outs=outs["file"],
                            control_canvas=tmp_path / "init.safetensors", **common)
    from_stream = probe_tasks(streamed, tasks, outs=outs["stream"], control_canvas=streamed_twin, **common)
    passes = max(load_task(task).accumulator(streamed, DRAWS, model=model).passes for task in tasks)
    assert passes == 3  # distribution's streamed thresholds: a layer does not fit one block
    windows = streamed.layers[streamed.layer_names[0]].windows  # type: ignore[union-attr]
    # traced once per pass, windows of 2 frames: the canvas's 3 passes, then the shuffled control's one
    # (distribution's and clustering's controls take the canvas's thresholds and extrema)
    assert windows.frames_traced == (passes + 1) * signal.num_frames
    assert streamed_twin.layers[streamed.layer_names[0]].windows.frames_traced == passes * signal.num_frames  # type: ignore[union-attr]
    for task in tasks:
        assert not isinstance(from_file[task], XincError), from_file[task]
        filed_record, streamed_record = (json.loads(outs[kind][task].read_text()) for kind in ("file", "stream"))
        assert streamed_record == from_stream[task]
        alone = load_task(task).run(shuffle_canvas(filed), 0, **({"model": model} if task == "faithfulness" else {}))
        expected = {name: value for name, value in alone.scores.items() if math.isfinite(value)}
        assert filed_record["controls"]["shuffled"] == pytest.approx(expected, rel=1e-9), task
        plt.close("all")
        for key in ("scores", "nulls", "controls", "absent"):
            streamed_leaves, filed_leaves = _leaves(streamed_record[key]), _leaves(filed_record[key])
            assert streamed_leaves.keys() == filed_leaves.keys(), (task, key)
            numbers = [path for path, leaf in filed_leaves.items() if isinstance(leaf, float)]
            assert [streamed_leaves[path] for path in numbers] == pytest.approx(
                [filed_leaves[path] for path in numbers], rel=1e-6, abs=1e-9), (task, key)
            others = {path: leaf for path, leaf in filed_leaves.items() if path not in numbers}
            assert {path: streamed_leaves[path] for path in others} == others, (task, key)


def test_a_streamed_window_keeps_only_the_layers_not_read_yet(signal: Any) -> None:
    model = small_video_model(0)
    streamed = traced_canvas(model, signal, "mlp", memory_budget=1)  # one frame per window
    windows = streamed.layers[streamed.layer_names[0]].windows  # type: ignore[union-attr]
    first, *others = streamed.layer_names
    block = streamed.layer_frames(first, 0, 1)
    freed = weakref.ref(block)
    del block
    assert freed() is None  # handed out once: the window does not keep a layer that was read
    kept = [weakref.ref(streamed.layer_frames(name, 0, 1)) for name in others]
    assert windows.frames_traced == 1 and all(ref() is None for ref in kept)  # one trace, nothing left behind
    again = streamed.layer_frames(first, 0, 1)  # read again: traced again, the same values
    assert windows.frames_traced == 2
    assert torch.equal(again, compute_canvas(model, signal, "mlp").layer_frames(first, 0, 1))


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A record section flattened to ``path -> leaf`` (NaN as the text ``nan``)."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_leaves(item, f"{prefix}/{key}"))
        return flat
    if isinstance(value, list):
        return _leaves(dict(enumerate(value)), prefix)
    if isinstance(value, float) and math.isnan(value):
        return {prefix: "nan"}
    return {prefix: value}


def test_the_readme_probe_example_registers_a_working_probe(tmp_path: Path, signal: Any) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("A probe is a `ProbeAccumulator`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    if "mean-magnitude" not in PROBES:
        exec(compile(example, "README.md", "exec"), {})
    task = tmp_path / "mean.yaml"
    task.write_text("name: mean\nversion: 1\nprobe: mean-magnitude\nheadline: mean_magnitude\n"
                    "metrics: {mean_magnitude: {higher_is_better: null}}\n")
    canvas = compute_canvas(small_video_model(0), signal, "mlp")
    scores = load_task(str(task)).run(dataclasses.replace(canvas, chunk_bytes=1)).scores
    expected = {name: float(canvas.layer(name).abs().double().mean()) for name in canvas.layer_names}
    assert scores == pytest.approx({**{f"{n}/mean_magnitude": v for n, v in expected.items()},
                                    "mean_magnitude": sum(expected.values()) / len(expected)}, rel=1e-9)


def test_a_probe_that_is_not_an_accumulator_is_refused_with_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def old_style(canvas, params):  # the function probes of earlier versions
        return ProbeResult({})

    monkeypatch.setattr(PROBES, "_entries", dict(PROBES._entries))  # registered for this test only
    PROBES.add("test-function-probe", old_style)
    task = tmp_path / "old.yaml"
    task.write_text("name: old\nversion: 1\nprobe: test-function-probe\nmetrics: {score: {higher_is_better: null}}\n")
    with pytest.raises(XincError, match="is not a ProbeAccumulator subclass; a probe implements update"):
        load_task(str(task))


class Witness(ProbeAccumulator):
    """Records, at each update, which canvases' witnesses are alive: the canvas's must be gone before
    its controls are read."""

    alive: "weakref.WeakSet[Witness]" = weakref.WeakSet()
    seen: list[tuple[str, set[str]]] = []

    def __init__(self, canvas: Canvas, params: dict[str, Any]) -> None:
        super().__init__(canvas, params)
        self.kind = canvas.metadata.get("control", "canvas" if params.get("null_draws") else "twin")
        Witness.alive.add(self)

    def update(self, layer: str, start: int, chunk: torch.Tensor, pass_index: int = 0) -> None:
        Witness.seen.append((self.kind, {other.kind for other in Witness.alive}))

    def compute(self) -> ProbeResult:
        return ProbeResult(scores={"score": 1.0})


def test_one_canvas_s_accumulators_are_alive_at_a_time(tmp_path: Path, signal: Any) -> None:
    if "test-witness" not in PROBES:
        PROBES.add("test-witness", Witness)
    task = tmp_path / "witness.yaml"
    task.write_text("name: witness\nversion: 1\nprobe: test-witness\nsignal_kinds: [video]\n"
                    "nulls: {draws: 2}\nmetrics: {score: {higher_is_better: true}}\n")
    canvas = compute_canvas(small_video_model(0), signal, "mlp")
    twin = compute_canvas(small_video_model(1), signal, "mlp")
    Witness.seen.clear()
    outcome = probe_tasks(canvas, [str(task)], outs={str(task): tmp_path / "witness.json"}, control_canvas=twin)
    assert not isinstance(outcome[str(task)], XincError), outcome[str(task)]
    kinds = [kind for kind, _ in Witness.seen]
    assert kinds.index("spatial_shuffle") > kinds.index("canvas") and kinds.index("twin") > kinds.index("spatial_shuffle")
    assert all(alive == {kind} for kind, alive in Witness.seen), Witness.seen
