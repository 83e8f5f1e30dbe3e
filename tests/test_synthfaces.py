"""The built-in face set: deterministic files, exact and local counterfactuals, CelebA-format output."""

import numpy as np
import pytest
import torch

from celebadiff import synth_drawing
from celebadiff import synthfaces as sf
from celebadiff.data import CELEBA_ATTRIBUTES, CelebADataset


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return sf.write_dataset(tmp_path_factory.mktemp("synth") / "faces", n=40, size=32, seed=0, progress=False)


@pytest.fixture(scope="module")
def faces():
    """32 identities with independent attributes, so every flip starts from varied faces."""
    return sf.sample_identities(32, seed=1), sf.sample_attributes(32, seed=1, independent=True)


def _changed(identity, attributes, name, value, size=64):
    """(N, size, size) bool: pixels that differ between the render and its counterfactual."""
    before = sf.render(identity, sf.counterfactual(attributes, name, not value), size).astype(int)
    after = sf.render(identity, sf.counterfactual(attributes, name, value), size).astype(int)
    return np.abs(after - before).max(-1) > 0


def test_write_dataset_is_deterministic(written, tmp_path):
    again = sf.write_dataset(tmp_path / "again", n=40, size=32, seed=0, progress=False)
    files = sorted(p.relative_to(written) for p in written.rglob("*") if p.is_file())
    assert len(files) == 40 + 4  # images; attributes, partition, identities, README
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (written / f).read_bytes() == (again / f).read_bytes(), f


def test_render_is_a_pure_function_of_each_face(faces, monkeypatch):
    identity, attributes = faces
    batch = sf.render(identity, attributes, 64)
    np.testing.assert_array_equal(batch, sf.render(identity, attributes, 64))
    for i in (0, 7, 31):  # a face alone renders as it does inside the batch
        alone = sf.render({k: v[i:i + 1] for k, v in identity.items()},
                          {k: v[i:i + 1] for k, v in attributes.items()}, 64)
        np.testing.assert_array_equal(alone[0], batch[i])
    # painting each part on all rows instead of its band changes nothing: bands never cut a shape
    monkeypatch.setattr(synth_drawing._Canvas, "band", lambda self, y0, y1: (self.x, self.y, self.img))
    np.testing.assert_array_equal(sf.render(identity, attributes, 64), batch)


@pytest.mark.parametrize("name, rows, cols", [
    ("Eyeglasses", (0.30, 0.75), (0.0, 1.0)),    # an eye band across the face
    ("Smiling", (0.55, 0.95), (0.20, 0.80)),     # lower middle
    ("Mouth_Slightly_Open", (0.55, 0.95), (0.20, 0.80)),
    ("Wearing_Lipstick", (0.55, 0.95), (0.20, 0.80)),
    ("Wearing_Hat", (0.0, 0.45), (0.0, 1.0)),    # top of the head
    ("Bangs", (0.15, 0.55), (0.10, 0.90)),       # forehead
])
def test_counterfactual_changes_only_its_region(faces, name, rows, cols):
    changed = _changed(*faces, name, True)
    inside = np.zeros(changed.shape[1:], bool)
    inside[round(rows[0] * 64):round(rows[1] * 64), round(cols[0] * 64):round(cols[1] * 64)] = True
    assert not changed[:, ~inside].any(), f"{name} changed pixels outside its region"
    per_face = changed.sum((1, 2))
    assert per_face.min() >= 8, f"{name} is hardly visible on some face: {per_face.min()} pixels"


@pytest.mark.parametrize("name", sf.DRAWN)
def test_every_flip_changes_every_face(faces, name):
    for size in (32, 64):
        assert _changed(*faces, name, True, size).any((1, 2)).all(), f"{name} invisible at {size} px"


def test_hair_colour_and_skin_change_only_their_pixels(faces):
    identity, attributes = faces
    hair = _changed(identity, attributes, "Blond_Hair", True)
    pale = _changed(identity, attributes, "Pale_Skin", True)
    glasses = _changed(identity, sf.counterfactual(attributes, "Wearing_Hat", False), "Eyeglasses", True)
    # hair and skin pixels are disjoint apart from their anti-aliased shared edge
    assert (hair & pale).sum() < 0.15 * pale.sum()
    assert pale.sum() > 300 * len(pale) and glasses.sum() > 100 * len(glasses)


def test_celeba_dataset_reads_a_written_folder(written):
    splits = {s: CelebADataset(written, split=s, size=32) for s in ("train", "valid", "test")}
    assert [len(d) for d in splits.values()] == [32, 4, 4]
    _, attributes = sf.load_identities(written)
    drawn = [CELEBA_ATTRIBUTES.index(a) for a in sf.DRAWN]
    labels = torch.cat([d.labels for d in splits.values()])  # rows in file order: train, valid, test
    assert labels.shape == (40, 40)
    assert labels[:, [i for i in range(40) if i not in drawn]].eq(0).all()
    expected = torch.tensor(np.stack([attributes[a] for a in sf.DRAWN], 1), dtype=torch.float32)
    torch.testing.assert_close(labels[:, drawn], expected)
    image, label = splits["valid"][0]
    assert image.shape == (3, 32, 32) and label.shape == (40,)
    assert image.min() >= -1 and image.max() <= 1 and image.std() > 0.1


def test_load_identities_re_renders_the_written_images(written):
    identity, attributes = sf.load_identities(written)
    image = np.asarray(CelebADataset(written, split="test", size=32).image_uint8(3).permute(1, 2, 0))
    np.testing.assert_array_equal(sf.render(identity, attributes, 32)[39], image)


def test_default_attributes_have_celeba_like_correlations():
    a = sf.sample_attributes(20000, seed=0)
    male, smiling, open_ = a["Male"], a["Smiling"], a["Mouth_Slightly_Open"]
    assert abs(male.mean() - 0.42) < 0.02 and abs(smiling.mean() - 0.48) < 0.02
    assert a["Wearing_Lipstick"][male].mean() < 0.05 < 0.6 < a["Wearing_Lipstick"][~male].mean()
    assert open_[smiling].mean() > 0.7 and open_[~smiling].mean() < 0.2
    assert a["Blond_Hair"][male].mean() < a["Blond_Hair"][~male].mean()
    hair = np.stack([a[h] for h in sf.HAIR_COLOURS])
    assert hair.sum(0).max() == 1  # at most one hair colour per face
    assert abs(hair.any(0).mean() - 0.8) < 0.02  # 20% "other" shade


def test_independent_attributes_are_fair_uncorrelated_coins():
    a = sf.sample_attributes(20000, seed=0, independent=True)
    for name in sf.DRAWN:
        expected = 0.25 if name in sf.HAIR_COLOURS else 0.5
        assert abs(a[name].mean() - expected) < 0.02, name
    coins = np.stack([a[n] for n in sf.DRAWN if n not in sf.HAIR_COLOURS]).astype(float)
    corr = np.corrcoef(coins)
    assert np.abs(corr - np.eye(len(coins))).max() < 0.05


def test_counterfactual_keeps_hair_exclusive_and_names_valid_attributes():
    a = {"Black_Hair": np.array([True, False]), "Brown_Hair": np.array([False, True]),
         "Smiling": np.array([True, False])}
    b = sf.counterfactual(a, "Blond_Hair", True)
    assert b["Blond_Hair"].all() and not b["Black_Hair"].any() and not b["Brown_Hair"].any()
    assert a["Black_Hair"][0]  # the input is not modified
    c = sf.counterfactual(a, "Smiling", np.array([False, True]))
    assert c["Smiling"].tolist() == [False, True] and c["Black_Hair"].tolist() == [True, False]
    with pytest.raises(ValueError, match="did you mean 'Smiling'"):
        sf.counterfactual(a, "Smile", True)
    with pytest.raises(ValueError, match="more than one"):
        sf.render(sf.sample_identities(2, 0), {"Black_Hair": True, "Blond_Hair": True}, 32)
