"""The edit scorecard: image metrics with known answers, feature distances cross-checked against
torchmetrics' own formulas, and the scorecard and `evaluate` command end to end on a tiny model."""

import copy
import json
import math

import numpy as np
import pytest
import torch
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.kid import poly_mmd

from celebadiff import edit_sets, evaluation, metrics, plotting, scorecard, synthfaces
from celebadiff.__main__ import main
from celebadiff.classifier import save_classifier, train_classifier, train_oracle
from celebadiff.config import preset
from celebadiff.data import CelebADataset
from celebadiff.diffusion import NoiseSchedule
from celebadiff.models import build_model
from celebadiff.train import save_checkpoint

TOP_KEYS = ("edit_success", "preservation", "psnr_counterfactual", "psnr_source_baseline", "psnr_reconstruction",
            "ssim_reconstruction", "seconds_per_64_edits", "oracle_accuracy", "oracle_counterfactual_accuracy",
            "frechet_classifier_distance", "kernel_classifier_distance")


def test_psnr_and_ssim_of_identical_images_are_the_cap_and_one():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.equal(metrics.psnr(x, x), torch.full((3,), metrics.PSNR_CAP))
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(3))


def test_psnr_of_a_constant_offset():
    x = torch.rand(2, 3, 16, 16) * 1.6 - 0.8
    # MSE = 0.1^2 over a range of 2: PSNR = 10 log10(2^2 / 0.1^2) = 20 log10(2 / 0.1)
    expected = torch.full((2,), 20 * math.log10(2 / 0.1))
    torch.testing.assert_close(metrics.psnr(x + 0.1, x), expected, rtol=1e-4, atol=1e-3)
    assert (metrics.ssim(x + 0.1, x) < 1).all()


def test_frechet_distance_of_a_set_to_itself_and_of_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 4, generator=g)
    assert abs(metrics.frechet_distance(a, a)) < 1e-6
    m = torch.tensor([1.0, -2.0, 0.5, 0.0])
    # same covariance (I), means m apart: d^2 = |m|^2 = 5.25 up to sampling noise
    b = torch.randn(4000, 4, generator=g) + m
    assert metrics.frechet_distance(a, b) == pytest.approx(5.25, abs=0.1)


def test_frechet_distance_matches_torchmetrics_formula():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g)
    b = torch.randn(200, 6, generator=g) * 2 + 1
    a64, b64 = a.double(), b.double()
    expected = _compute_fid(a64.mean(0), torch.cov(a64.T), b64.mean(0), torch.cov(b64.T))
    assert metrics.frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-6)


def test_kernel_distance_matches_torchmetrics_and_is_zero_for_one_distribution():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g) + 0.5
    # one subset holding every row: the MMD of the whole sets (it does not depend on row order)
    expected = poly_mmd(a.double(), b.double())
    assert metrics.kernel_distance(a, b, subset_size=64, n_subsets=1) == pytest.approx(float(expected), rel=1e-9)
    c = torch.randn(2000, 8, generator=g)
    assert abs(metrics.kernel_distance(c, c, subset_size=500, n_subsets=20)) < 0.01
    assert metrics.kernel_distance(c, c + 1, subset_size=500, n_subsets=20) > 0.5


def test_choose_edits_spreads_edits_over_attributes_and_directions():
    labels = torch.from_numpy(np.random.default_rng(0).random((200, 3)) < 0.3).float()
    rows, attrs, values = edit_sets.choose_edits(labels, ["A", "B", "C"], ["A", "C"], 20)
    assert len(rows) == 20 and len(set(rows.tolist())) == 20  # enough faces: all distinct
    for name, col in (("A", 0), ("C", 2)):
        for value in (0, 1):
            picked = [r for r, a, v in zip(rows, attrs, values) if a == name and v == value]
            assert len(picked) == 5
            assert (labels[picked, col] == 1 - value).all()  # each edit flips the face's current value
    again = edit_sets.choose_edits(labels, ["A", "B", "C"], ["A", "C"], 20)
    assert np.array_equal(again[0], rows)


def test_target_labels_clear_other_hair_colours():
    names = ["Black_Hair", "Blond_Hair", "Smiling", "Gray_Hair"]
    source = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    target = edit_sets.target_labels(source, names, ["Blond_Hair", "Smiling", "Black_Hair"], [1, 1, 1])
    assert target.tolist() == [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]


def test_run_edits_names_the_methods_it_knows():
    with pytest.raises(ValueError, match="choose one of ddib, ddib-mask, sdedit"):
        scorecard.run_edits(None, None, torch.zeros(1, 3, 8, 8), None, None, method="diffedit")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 40-face built-in set (16 test faces), an untrained smoke model and an oracle trained 2 steps."""
    root = synthfaces.write_dataset(tmp_path_factory.mktemp("faces"), n=40, size=32, fractions=(0.5, 0.1, 0.4),
                                    progress=False)
    config = preset("smoke")
    torch.manual_seed(0)
    model = build_model(config).eval()
    oracle = train_oracle(n=10, steps=2, progress=False)
    return root, config, model, oracle


def test_counterfactual_without_a_change_is_the_loaded_image(tiny):
    root, config, _, _ = tiny
    data = CelebADataset(root, "test", attributes=list(synthfaces.DRAWN), size=16)
    files = data.files[:4]
    same = edit_sets.counterfactual_images(root, files, ["Smiling"] * 4, data.labels[:4, 0].long().tolist(), 16)
    assert torch.equal(same, torch.stack([data.image_uint8(i) for i in range(4)]))
    flipped_values = (1 - data.labels[:4, 0]).long().tolist()
    flipped = edit_sets.counterfactual_images(root, files, ["Smiling"] * 4, flipped_values, 16)
    assert (flipped != same).any((1, 2, 3)).all()


def test_edit_scorecard_on_a_tiny_model(tiny):
    root, config, model, oracle = tiny
    schedule = NoiseSchedule.named(config.schedule, config.T)
    m = scorecard.edit_scorecard(model, schedule, config, root, n=10, steps=2, oracle=oracle, progress=False)
    for key in TOP_KEYS:
        assert math.isfinite(m[key]), key
    assert 1 <= m["n"] <= 10
    for key in ("edit_success", "preservation", "oracle_accuracy", "oracle_counterfactual_accuracy"):
        assert 0 <= m[key] <= 1
    assert 0 < m["psnr_reconstruction"] <= metrics.PSNR_CAP and -1 <= m["ssim_reconstruction"] <= 1
    assert m["methods"]["sdedit"]["psnr_counterfactual"] > 0 and m["seconds_per_64_edits"] > 0
    assert set(m["methods"]["ddib"]["success_by_attribute"]) == set(edit_sets.EDITED)
    # the top level repeats the first method, DDIB with DiffEdit's mask (edit's default)
    assert list(m["methods"]) == ["ddib-mask", "ddib", "sdedit"] and m["method"] == "ddib-mask"
    assert m["psnr_counterfactual"] == m["methods"]["ddib-mask"]["psnr_counterfactual"]
    # the unchanged source differs from the counterfactual only inside the edited region
    assert m["baseline"]["change_outside_edit"] == 0
    assert m["note"] == metrics.DISTANCE_NOTE
    table = evaluation.markdown_table(m)
    assert "| DDIB + DiffEdit mask | DDIB | SDEdit | source unchanged |" in table and "PSNR vs counterfactual" in table
    recon = next(line for line in table.splitlines() if line.startswith("| DDIB reconstruction PSNR"))
    assert recon.count(f"{m['psnr_reconstruction']:.2f}") == 2  # both DDIB columns: at s = 0 the mask is empty
    assert "Top-level numbers and targets: DDIB + DiffEdit mask." in table
    json.loads(evaluation.to_json(m))


def test_strength_curve_and_its_figures(tiny):
    root, config, model, oracle = tiny
    schedule = NoiseSchedule.named(config.schedule, config.T)
    curve = scorecard.strength_curve(model, schedule, config, root, strengths=(0, 1), t0_fractions=(0.3, 0.6), n=6,
                              steps=2, oracle=oracle, progress=False)
    assert list(curve) == ["ddib-mask", "sdedit"]  # DDIB as `edit` runs it by default, with the mask
    assert [p["value"] for p in curve["ddib-mask"]["points"]] == [0, 1] and curve["sdedit"]["knob"] == "t0_fraction"
    assert all(0 <= p["edit_success"] <= 1 and 0 <= p["preservation"] <= 1
               for entry in curve.values() for p in entry["points"])
    assert len(plotting.plot_strength_curve(curve).axes[0].lines) == 2


def test_strength_curve_labels_of_coinciding_points_do_not_overlap():
    point = lambda value, pres, succ: {"value": value, "preservation": pres, "edit_success": succ}
    curve = {"ddib-mask": {"knob": "strength", "points": [point(2, 0.873, 0.60), point(3, 0.872, 0.60),
                                                           point(1, 0.90, 0.30)]},
             "sdedit": {"knob": "t0_fraction", "points": [point(0.8, 0.873, 0.61)]}}
    fig = plotting.plot_strength_curve(curve)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in fig.axes[0].texts]
    assert [t.get_text() for t in fig.axes[0].texts] == ["s=2", "s=3", "s=1", "t0=0.8"]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_to_json_turns_nan_and_inf_into_null():
    text = evaluation.to_json({"a": float("nan"), "b": [float("inf"), np.float32(1.5)], "c": torch.tensor(2.0)})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 2.0}


def test_evaluate_command_writes_json_with_every_field(tiny, tmp_path, capsys):
    root, config, model, oracle = tiny
    save_checkpoint(tmp_path / "model.safetensors", config, 7, model, copy.deepcopy(model))
    save_classifier(oracle, tmp_path / "judge")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model.safetensors"), "--data", str(root), "--out",
                 str(out), "--classifier", str(tmp_path / "judge"), "--n", "6", "--steps", "2"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["step"] == 7 and metrics["n"] >= 1
    for key in TOP_KEYS:
        assert isinstance(metrics[key], float), key
    assert "| edit success (judge) |" in capsys.readouterr().out


def test_scorecard_on_real_faces_has_no_counterfactual_metrics(tiny_celeba, tmp_path, capsys):
    config = preset("smoke")
    torch.manual_seed(0)
    model = build_model(config).eval()
    judge = train_classifier(tiny_celeba, attributes=list(synthfaces.DRAWN), image_size=16, steps=2, progress=False)
    schedule = NoiseSchedule.named(config.schedule, config.T)
    m = scorecard.edit_scorecard(model, schedule, config, tiny_celeba, split="train", n=6, steps=2, oracle=judge,
                          progress=False)
    assert m["psnr_counterfactual"] is None and m["oracle_counterfactual_accuracy"] is None
    assert 0 <= m["edit_success"] <= 1 and math.isfinite(m["frechet_classifier_distance"])
    assert "PSNR vs counterfactual" not in evaluation.markdown_table(m)
    # "the same person": dlib's distance to the source, per method and for the reconstruction
    for entry in (m["methods"]["ddib-mask"], m["methods"]["sdedit"], m["reconstruction"]):
        assert entry["identity_distance"] >= 0 and 0 <= entry["identity_same"] <= 1
    table = evaluation.markdown_table(m)
    assert "same person (dlib distance < 0.6)" in table
    # real faces' targets: preservation at most 0.02 below the unchanged photos', reconstruction 30 dB
    floor = round(m["baseline"]["preservation"] - 0.02, 3)
    preservation = next(line for line in table.splitlines() if line.startswith("| preservation"))
    assert preservation.endswith(f"| >= {floor:g} |") and ">= 30 |" in table and ">= 0.93 |" in table
    # without a judge, the command says how to make one
    save_checkpoint(tmp_path / "model.safetensors", config, 1, model, copy.deepcopy(model))
    assert main(["evaluate", "--checkpoint", str(tmp_path / "model.safetensors"), "--data", str(tiny_celeba),
                 "--out", str(tmp_path / "m.json")]) == 2
    assert "--classifier" in capsys.readouterr().err
