"""The attribute classifier: it learns the built-in faces, its report's arithmetic, saving, the CLI."""

import json

import numpy as np
import pytest
import torch
from conftest import write_celeba
from safetensors.torch import save_file

from celebadiff import synthfaces
from celebadiff.__main__ import main
from celebadiff.classifier import (
    FILE,
    AttributeClassifier,
    accuracy_report,
    augment,
    counterfactual_accuracy,
    evaluate_classifier,
    independent_faces,
    load_classifier,
    positive_weights,
    predict,
    render_faces,
    save_classifier,
    train_classifier,
)
from celebadiff.data import CelebADataset, to_model_range

CHECKED = ("Eyeglasses", "Wearing_Hat", "Blond_Hair")


@pytest.fixture(scope="module")
def learned():
    """A classifier trained on 400 independent 32 px faces for 150 steps of 32 (a few seconds)."""
    images, labels = independent_faces(400, seed=1)
    return train_classifier(None, attributes=synthfaces.DRAWN, image_size=32, steps=150, batch_size=32,
                            images=images, labels=labels, progress=False)


def test_learns_the_built_in_faces_from_a_few_hundred_images(learned):
    images, labels = independent_faces(300, seed=2)  # held out: other identities, other attributes
    report = accuracy_report(predict(learned, images), labels, synthfaces.DRAWN)
    balanced = [report[name]["balanced_accuracy"] for name in CHECKED]
    assert np.mean(balanced) > 0.75 and min(balanced) > 0.6, report
    assert learned.features(to_model_range(images[:5])).shape == (5, 256)


def test_reads_exact_counterfactuals(learned):
    # each pair differs in one attribute only, so only reading that attribute's pixels gets both right
    result = counterfactual_accuracy(learned, n=40, seed=3)
    assert set(result) == set(synthfaces.DRAWN)
    assert np.mean([result[name] for name in CHECKED]) > 0.7, result


def test_accuracy_report_on_known_rates():
    # attribute 0: 4 positives (3 found, TPR .75), 6 negatives (3 rejected, TNR .5)
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0.0])
    probs = torch.tensor([.9, .8, .7, .2, .6, .6, .6, .1, .1, .1])
    # attribute 1: no positives; 8 of 10 negatives rejected
    labels = torch.stack([labels, torch.zeros(10)], 1)
    probs = torch.stack([probs, torch.tensor([.9, .9, 0, 0, 0, 0, 0, 0, 0, 0])], 1)
    report = accuracy_report(probs, labels, ["a", "b"])
    assert report["a"] == {"accuracy": pytest.approx(0.6), "balanced_accuracy": pytest.approx(0.625),
                           "positives": 4, "n": 10}
    assert report["b"]["balanced_accuracy"] == pytest.approx(0.8)  # the TNR alone
    assert report["b"]["positives"] == 0


def test_positive_weights_balance_the_classes_up_to_the_cap():
    labels = torch.zeros(100, 3)
    labels[:25, 0] = 1  # 25%: 3 negatives per positive
    labels[:1, 1] = 1  # 1%: capped at 20
    labels[:, 2] = 1  # always present: 1/20
    torch.testing.assert_close(positive_weights(labels), torch.tensor([3.0, 20.0, 0.05]))


def test_augment_flips_and_shifts_whole_images():
    x = torch.zeros(64, 3, 8, 8)
    x[:, :, 3, 3] = 1.0
    out = augment(x, torch.Generator().manual_seed(0), shift=2)
    assert out.shape == x.shape
    rows, cols = out[:, 0].flatten(1).argmax(1).div(8, rounding_mode="floor"), out[:, 0].flatten(1).argmax(1) % 8
    assert torch.all(out.sum((1, 2, 3)) == 3)  # the dot moved, intact
    assert set(rows.tolist()) == {1, 2, 3, 4, 5}  # shifted by -2..2 rows
    assert set(cols.tolist()) == {1, 2, 3, 4, 5, 6}  # shifted, and mirrored (column 4 before shifting)


def test_predict_resizes_accepts_uint8_and_batches(learned):
    images = independent_faces(6, seed=4, size=64)[0]
    small = independent_faces(6, seed=4, size=32)[0]
    torch.testing.assert_close(predict(learned, images, batch_size=4), predict(learned, small), atol=2e-2, rtol=0)
    torch.testing.assert_close(predict(learned, small, batch_size=4), predict(learned, to_model_range(small)))


def test_oracle_images_are_framed_as_the_loader_frames_the_written_set(tmp_path):
    root = synthfaces.write_dataset(tmp_path / "faces", n=6, size=64, seed=5, progress=False)
    identity, attributes = synthfaces.load_identities(root)
    loaded = CelebADataset(root, "all", size=32, cache_dir=tmp_path / "cache").images
    assert torch.equal(render_faces(identity, attributes, 32), loaded)


def test_save_and_load_give_identical_predictions(learned, tmp_path):
    path = save_classifier(learned, tmp_path / "run")
    assert path == tmp_path / "run" / FILE
    for where in (tmp_path / "run", path):
        loaded = load_classifier(where)
        assert loaded.attribute_names == synthfaces.DRAWN and loaded.image_size == 32 and not loaded.training
        x = to_model_range(independent_faces(8, seed=6)[0])
        assert torch.equal(predict(loaded, x), predict(learned, x))


def test_training_is_deterministic(tiny_celeba):
    a = train_classifier(tiny_celeba, attributes=["Smiling"], image_size=16, steps=3, progress=False)
    b = train_classifier(tiny_celeba, attributes=["Smiling"], image_size=16, steps=3, progress=False)
    for (name, u), v in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(u, v), name


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="classify train"):
        load_classifier(tmp_path / "nothing")
    (tmp_path / "junk.safetensors").write_text("not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_classifier(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors", metadata={"config": "{}"})
    with pytest.raises(ValueError, match="not an attribute classifier"):
        load_classifier(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="pass attributes"):
        train_classifier(None, images=torch.zeros(2, 3, 32, 32), labels=torch.zeros(2, 1), steps=1)


def test_classify_train_and_evaluate_commands(tmp_path, capsys):
    data = write_celeba(tmp_path / "celeba", n=16, partition=[0] * 12 + [1] * 4)
    run, metrics = tmp_path / "clf", tmp_path / "out" / "metrics.json"
    assert main(["classify", "train", "--data", str(data), "--out", str(run), "--attributes", "Smiling,Male",
                 "--image-size", "16", "--steps", "4"]) == 0
    assert (run / FILE).is_file()
    assert main(["classify", "evaluate", "--checkpoint", str(run), "--data", str(data), "--split", "valid",
                 "--out", str(metrics)]) == 0
    report = json.loads(metrics.read_text())
    assert list(report) == ["Smiling", "Male"]
    for row in report.values():
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["balanced_accuracy"] <= 1 and row["n"] == 4
    assert report == evaluate_classifier(run, data, "valid")
    assert "balanced" in capsys.readouterr().out
    assert main(["classify", "train", "--data", str(data), "--out", str(run), "--attributes", "Smile"]) == 2
    assert "did you mean 'Smiling'" in capsys.readouterr().err
    assert main(["classify", "evaluate", "--checkpoint", str(run), "--data", str(data), "--split", "test",
                 "--out", str(metrics)]) == 2


def test_architecture_matches_its_saved_config():
    clf = AttributeClassifier(["Smiling", "Male"], image_size=64, widths=(8, 16))
    assert clf(torch.zeros(3, 3, 64, 64)).shape == (3, 2)
    assert clf.config() == {"attribute_names": ["Smiling", "Male"], "image_size": 64, "widths": [8, 16]}
