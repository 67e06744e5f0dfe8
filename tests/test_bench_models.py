"""scripts/bench_models.py: the quick end-to-end run, and its report logic on made-up results."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_models.py"
RESULT_FIELDS = {
    "model", "source", "input_shape", "batch_size", "steps", "dtype", "jit", "jit_compile",
    "params", "train_images_per_sec", "infer_images_per_sec", "peak_rss_mb", "baseline_rss_mb",
    "train_warmup_s", "backend", "others_cpu_pct", "steal_cpu_pct",
}


def load_script():
    spec = importlib.util.spec_from_file_location("bench_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_script()


def fake(model, jit, train, infer, source="zoo"):
    return {"model": model, "source": source, "options": {}, "input_shape": [64, 64, 3],
            "batch_size": 16, "steps": 5, "jit": jit, "params": 1_000_000,
            "train_images_per_sec": train, "infer_images_per_sec": infer, "peak_rss_mb": 900.0,
            "keras_version": "3", "tensorflow_version": "2"}


def test_jit_settings_match_the_training_core():
    from zoo.training.config import JIT_CHOICES

    assert set(bench.JIT_VALUES) == set(JIT_CHOICES)


def test_every_entry_names_a_registered_model_or_a_keras_application():
    import keras

    import zoo

    for entry in bench.ENTRIES.values():
        if entry.source == "zoo":
            assert entry.model in zoo.list_models()
        else:
            assert hasattr(keras.applications, entry.model)
    assert set(bench.DEFAULTS["models"].split(",")) <= set(bench.ENTRIES)
    assert set(bench.QUICK["models"].split(",")) <= set(bench.ENTRIES)


def test_input_shapes_respect_each_models_minimum():
    assert bench.ENTRIES["alexnet"].input_shape(32) == [64, 64, 3]
    assert bench.ENTRIES["googlenet_aux"].input_shape(64) == [80, 80, 3]
    assert bench.ENTRIES["vgg16"].input_shape(64) == [64, 64, 3]
    assert bench.ENTRIES["lenet5"].input_shape(64) == [32, 32, 1]
    assert bench.ENTRIES["resnet20"].input_shape(64) == [32, 32, 3]


def test_report_has_table_ratios_and_fastest_jit():
    results = [
        fake("vgg16", "off", 20.0, 60.0), fake("vgg16", "on", 25.0, 50.0),
        fake("keras_vgg16", "off", 10.0, 60.0, "keras.applications"),
        fake("keras_vgg16", "on", 20.0, 100.0, "keras.applications"),
        {"model": "resnet50", "input_shape": [64, 64, 3], "batch_size": 16, "steps": 5,
         "jit": "off", "error": "exit 1: boom"},
    ]
    ratios = {(q["ours"], q["jit"]): q for q in bench.ratios(results)}
    assert set(ratios) == {("vgg16", "off"), ("vgg16", "on")}
    assert ratios["vgg16", "off"]["train"] == pytest.approx(2.0)
    assert ratios["vgg16", "on"]["infer"] == pytest.approx(0.5)
    fastest = bench.fastest_jit(results)
    assert fastest["vgg16"]["fastest"] == "on"
    assert fastest["vgg16"]["relative"]["off"] == pytest.approx(0.8)

    text = bench.report(results, {"steps": 5}, 12.0)
    assert "| vgg16 | 64x64x3 | 16 | off | 20.0 | 60.0 | 900 | 1.00 |" in text
    assert "ours/keras.applications VGG16 train 2.00 infer 1.00  [jit off;" in text
    assert "ours/keras.applications VGG16 train 1.25 infer 0.50  [jit on;" in text
    assert text.count("SLOWER") == 1
    assert "fastest training jit: vgg16 -> on (relative speed: off 0.80x)" in text
    assert "| resnet50 | 64x64x3 | 16 | off | failed | failed | failed | failed |" in text
    assert "FAILED resnet50 jit off: exit 1: boom" in text


def test_repeats_keep_the_fastest_run_and_disturbed_rows_are_marked():
    slow = {**fake("vgg16", "off", 5.0, 70.0), "others_cpu_pct": 40.0, "steal_cpu_pct": 5.0}
    fast = {**fake("vgg16", "off", 10.0, 60.0), "others_cpu_pct": 1.0, "steal_cpu_pct": 0.0}
    failed = {**fake("vgg16", "on", None, None), "error": "exit 1"}
    fast_but_disturbed = {**fake("vgg16", "on", 20.0, 80.0), "others_cpu_pct": 30.0}
    rows = bench.best_of([slow, failed, fast, fake("vgg16", "on", 8.0, 40.0), fast_but_disturbed,
                          fake("vgg16", "on", 9.0, 30.0)])
    assert [(r["model"], r["jit"]) for r in rows] == [("vgg16", "off"), ("vgg16", "on")]
    # Undisturbed runs win even when a disturbed one happened to be faster.
    assert rows[0]["train_images_per_sec"] == 10.0 and rows[0]["infer_images_per_sec"] == 60.0
    assert rows[0]["train_images_per_sec_runs"] == [5.0, 10.0] and rows[0]["runs"] == 2
    assert rows[1]["train_images_per_sec"] == 9.0 and rows[1]["infer_images_per_sec"] == 40.0
    assert rows[1]["runs"] == 3
    assert bench.disturbed(rows[0]) is None and bench.disturbed(slow) == 45.0

    text = bench.report(bench.best_of([slow]), {"steps": 5, "repeats": 2}, 1.0)
    assert "best of 2 runs" in text
    assert "| vgg16 | 64x64x3 | 16 | off | 5.0 † | 70.0 † |" in text
    assert "vgg16 jit off (45%)" in text


def test_a_disturbed_measurement_runs_again(monkeypatch, tmp_path, capsys):
    answers = iter([
        {**fake("lenet5", "off", 50.0, 90.0), "others_cpu_pct": 60.0, "steal_cpu_pct": 0.0},
        {**fake("lenet5", "off", 100.0, 80.0), "others_cpu_pct": 2.0, "steal_cpu_pct": 0.0},
    ])
    calls = []
    monkeypatch.setattr(bench, "run_one", lambda spec, timeout: calls.append(spec) or next(answers))
    out = tmp_path / "bench.json"
    code = bench.main(["--models", "lenet5", "--jit", "off", "--json", str(out)])
    assert code == 0 and len(calls) == 2
    assert calls[0]["input_shape"] == [32, 32, 1] and calls[0]["batch_size"] == 128
    payload = json.loads(out.read_text())
    assert len(payload["runs"]) == 2
    [row] = payload["results"]
    assert row["train_images_per_sec"] == 100.0 and row["infer_images_per_sec"] == 80.0
    text = capsys.readouterr().out
    assert "| lenet5 | 64x64x3 | 16 | off | 100.0 | 80.0 | 900 | 1.00 |" in text
    assert "†" not in text


def test_bad_flags_stop_at_parsing(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "vgg16,nope"])
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--jit", "maybe"])


def test_quick_defaults_and_explicit_flags_win():
    args = bench.parse_args(["--quick", "--steps", "3"])
    assert args.steps == 3 and args.batch_size == bench.QUICK["batch_size"]
    assert args.models == bench.QUICK["models"].split(",")
    args = bench.parse_args([])
    assert args.jit == ["off", "on"] and args.input_size == bench.DEFAULTS["input_size"]


@pytest.mark.slow
def test_quick_run_prints_table_and_ratios_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    models = ["vgg16", "keras_vgg16"]  # one ratio pair; each model is a subprocess
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--models", ",".join(models),
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "| model | input | batch | jit | train img/s | infer img/s | peak MB |" in text
    for model in models:
        assert f"| {model} " in text
    assert "ours/keras.applications VGG16 train " in text

    payload = json.loads(out.read_text())
    assert [r["model"] for r in payload["results"]] == models
    for r in payload["results"]:
        assert RESULT_FIELDS <= set(r), r
        assert r["train_images_per_sec"] > 0 and r["infer_images_per_sec"] > 0
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0
        assert r["steps"] == bench.QUICK["steps"] and r["jit"] == "off"
    assert {q["ours"] for q in payload["ratios"]} == {"vgg16"}
    assert set(payload["fastest_jit"]) == set(models)
    assert len(payload["runs"]) == len(models) and payload["settings"]["repeats"] == 1
