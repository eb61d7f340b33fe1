"""`landsentry evaluate-change` (models/cli/evaluate_change.py over models/evaluation/change.py) on the real LEVIR-CD / SZTAKI folders and generated ones."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from landsentry.models.data.change_layouts import find_pairs
from landsentry.models.data.metrics import binary_scores as scores
from landsentry.models.vocabulary.errors import InputError

FAST = ["--tile", "256", "--overlap", "32"]


def test_scores():
    s = scores(tp=30, fp=10, fn=20)
    assert s["precision"] == pytest.approx(0.75) and s["recall"] == pytest.approx(0.6)
    assert s["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35) and s["iou"] == pytest.approx(0.5)
    assert scores(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}


def test_find_pairs_in_both_layouts(shared_file):
    levir = shared_file("levir_cd/test/A/test_2_0000_0000.png").parents[2]
    assert len(find_pairs(levir, "test")) == 7
    assert len(find_pairs(levir, "all")) == 11
    assert len(find_pairs(levir / "val", "test")) == 1, "a folder with A/ itself ignores --split"
    sztaki = shared_file("sztaki_airchange/Szada_1/A.png").parents[1]
    assert [p[0] for p in find_pairs(sztaki, sites=["Szada"])] == ["Szada_1", "Szada_2", "Szada_3", "Szada_4"]
    assert len(find_pairs(sztaki / "Szada_1")) == 1
    with pytest.raises(InputError, match="no split 'nope'"):
        find_pairs(levir, "nope")


def test_levir_test_split_through_the_cli(shared_file, tiny_checkpoint, cli, tmp_path):
    levir = shared_file("levir_cd/test/A/test_2_0000_0000.png").parents[2]
    report = tmp_path / "scores.json"
    code, out, err = cli(["evaluate-change", levir, "--split", "test", "--checkpoint", tiny_checkpoint, "--gsd", "0.5",
                          "--no-change-model", "--json", report, *FAST])
    assert code == 0, err
    assert "7 pair(s)" in out and "precision" in out
    line = next(l for l in out.splitlines() if l.startswith("class comparison"))
    values = [float(v) for v in re.findall(r"\d\.\d{3}", line)]
    assert len(values) == 4 and all(0 <= v <= 1 for v in values)
    data = json.loads(report.read_text())
    s = data["scores"]["class"]
    assert len(data["pairs"]) == 7
    assert s["precision"] == pytest.approx(s["tp"] / max(1, s["tp"] + s["fp"]))
    assert s["tp"] + s["fn"] == pytest.approx(0.183 * 7 * 256 * 256, rel=0.02), "the LEVIR-CD test crops are 18.3% changed"


def test_egy_spec_reads_egy_bcd_with_its_ground_resolution(shared_file, tiny_checkpoint, cli, tmp_path):
    """`egy:PATH` names the layout: its 0.25 m is the default --gsd, and the two test crops are 35.8% changed."""
    egy = shared_file("egy_bcd/test/A/test_1.png").parents[2]
    report = tmp_path / "egy.json"
    code, out, err = cli(["evaluate-change", f"egy:{egy}", "--split", "test", "--checkpoint", tiny_checkpoint,
                          "--no-change-model", "--json", report, *FAST])
    assert code == 0, err
    assert "2 pair(s)" in out and "35.8% changed" in out and "m² at 0.25 m/px" in out
    data = json.loads(report.read_text())
    assert data["gsd"] == 0.25 and data["pairs"] == ["test/test_1", "test/test_2"]
    s = data["scores"]["class"]
    assert s["tp"] + s["fn"] == 46872, "labelled change pixels of test_1 and test_2"


def test_identical_dates_have_no_false_alarms(shared_file, tiny_checkpoint, cli, tmp_path):
    """A generated LEVIR-layout folder whose after image is the before image: whatever the model, nothing is new."""
    src = shared_file("levir_cd/test/A/test_2_0000_0000.png")
    for d in ("A", "B", "label"):
        (tmp_path / "set" / d).mkdir(parents=True)
    shutil.copy(src, tmp_path / "set" / "A" / "x.png")
    shutil.copy(src, tmp_path / "set" / "B" / "x.png")
    label = np.zeros((256, 256), np.uint8)
    label[100:150, 100:150] = 255  # labelled change that the identical images cannot show
    Image.fromarray(label).save(tmp_path / "set" / "label" / "x.png")
    report = tmp_path / "s.json"
    code, out, err = cli(["evaluate-change", tmp_path / "set", "--checkpoint", tiny_checkpoint, "--json", report,
                          "--no-change-model", "--min-after-prob", "0.0", "--max-before-prob", "0.5", *FAST])
    assert code == 0, err
    s = json.loads(report.read_text())["scores"]["class"]
    assert s["fp"] == 0 and s["tp"] == 0 and s["fn"] == 2500


def test_errors(tmp_path, tiny_checkpoint, cli):
    code, _, err = cli(["evaluate-change", tmp_path, "--checkpoint", tiny_checkpoint])
    assert code == 2 and "no change pairs found" in err and "Traceback" not in err
    code, _, err = cli(["evaluate-change", tmp_path / "missing", "--checkpoint", tiny_checkpoint])
    assert code == 2 and "not a folder" in err
