"""The CelebA loader: parsing, splits, labels, framing, the cache, every error, and the real sample."""

import shutil

import numpy as np
import pytest
import torch
from conftest import write_celeba
from PIL import Image

from celebadiff import data
from celebadiff.data import CELEBA_ATTRIBUTES, CelebADataset, crop_side, load_image, to_model_range, to_uint8

SAMPLE_POSITIVES = {  # (train, valid), as listed in the sample's README
    "Smiling": (2139, 338), "Mouth_Slightly_Open": (2210, 325), "Male": (1351, 219),
    "Eyeglasses": (241, 24), "Blond_Hair": (962, 88), "Black_Hair": (1055, 165),
}


def expected_labels(indices, attributes=CELEBA_ATTRIBUTES):
    """write_celeba's rule: attribute a of image i is present iff (i + a) % 3 == 0."""
    columns = [CELEBA_ATTRIBUTES.index(a) for a in attributes]
    return torch.tensor([[float((i + a) % 3 == 0) for a in columns] for i in indices])


def write_rows(path, rows):
    """Replace the rows of `path` (after its header lines) with `rows`, keeping the header."""
    lines = path.read_text().splitlines()
    header = 2 if path.name == data.ATTR_FILE else 0
    path.write_text("\n".join(lines[:header] + rows) + "\n")


def two_colour_image(width, height, inner, fill=(0, 0, 255), outside=(255, 0, 0)):
    """(H, W, 3) uint8: `fill` inside the box inner = (top, left, side), `outside` elsewhere."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = outside
    top, left, side = inner
    image[top:top + side, left:left + side] = fill
    return image


# ----------------------------------------------------------------------------- parsing and splits
@pytest.mark.parametrize("split, rows", [("train", range(8)), ("valid", [8, 9]), ("test", [10, 11]),
                                         ("all", range(12))])
def test_splits_and_labels(tiny_celeba, split, rows):
    ds = CelebADataset(tiny_celeba, split)
    assert len(ds) == len(rows)
    assert ds.files == [f"{i + 1:06d}.jpg" for i in rows]
    assert ds.attribute_names == list(CELEBA_ATTRIBUTES)
    assert ds.labels.dtype == torch.float32 and ds.labels.shape == (len(rows), 40)
    torch.testing.assert_close(ds.labels, expected_labels(rows), rtol=0, atol=0)
    image, labels = ds[1]
    torch.testing.assert_close(labels, expected_labels([rows[1]])[0], rtol=0, atol=0)


def test_split_sizes_follow_the_partition_file(tmp_path):
    root = write_celeba(tmp_path / "c", n=9, partition=[2, 0, 1, 0, 2, 2, 0, 1, 2], size=(40, 50))
    assert {s: len(CelebADataset(root, s)) for s in ("train", "valid", "test", "all")} == \
        {"train": 3, "valid": 2, "test": 4, "all": 9}
    assert CelebADataset(root, "test").files == ["000001.jpg", "000005.jpg", "000006.jpg", "000009.jpg"]


def test_attributes_come_back_in_the_asked_order(tiny_celeba):
    asked = ["Young", "Smiling", "5_o_Clock_Shadow", "Male"]
    ds = CelebADataset(tiny_celeba, "all", attributes=asked)
    assert ds.attribute_names == asked
    torch.testing.assert_close(ds.labels, expected_labels(range(12), asked), rtol=0, atol=0)
    # file columns: Young 39, Smiling 31, 5_o_Clock_Shadow 0, Male 20; present iff (i + column) % 3 == 0
    assert ds.labels[:3].tolist() == [[1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]]
    one = CelebADataset(tiny_celeba, "all", attributes="Smiling")  # a single name as a string
    assert one.attribute_names == ["Smiling"] and one.labels.shape == (12, 1)


def test_read_attribute_file_returns_signs(tiny_celeba):
    names, files, labels = data.read_attribute_file(tiny_celeba / data.ATTR_FILE)
    assert names == list(CELEBA_ATTRIBUTES) and len(files) == 12 and labels.dtype == torch.int8
    assert set(labels.unique().tolist()) == {-1, 1}
    torch.testing.assert_close(labels.float(), expected_labels(range(12)) * 2 - 1, rtol=0, atol=0)
    assert data.read_partition_file(tiny_celeba / data.PARTITION_FILE) == {
        f"{i + 1:06d}.jpg": p for i, p in enumerate([0] * 8 + [1, 1, 2, 2])}


# ----------------------------------------------------------------------------- images and framing
@pytest.mark.parametrize("size", [32, 64])
def test_items_are_images_in_model_range(tiny_celeba, size):
    ds = CelebADataset(tiny_celeba, "train", size=size)
    image, labels = ds[3]
    assert image.shape == (3, size, size) and image.dtype == torch.float32 and labels.shape == (40,)
    assert image.min() >= -1 and image.max() <= 1 and image.std() > 0.05  # a real picture, not flat
    uint8 = load_image(ds.paths[3], size, 140)
    torch.testing.assert_close(image, to_model_range(uint8), rtol=0, atol=0)
    torch.testing.assert_close(to_uint8(image), uint8, rtol=0, atol=0)  # the round trip is exact
    assert to_model_range(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_framing_is_the_centre_140_square(tmp_path):
    # 178x218 like aligned CelebA: the centre 140 square starts at row (218-140)/2 = 39, column 19
    image = two_colour_image(178, 218, (39, 19, 140))
    image[39:179, 19 + 70:159] = (0, 255, 0)  # right half green: catches a transposed or mirrored crop
    Image.fromarray(image).save(tmp_path / "a.png")
    exact = load_image(tmp_path / "a.png", size=140, crop=140)
    assert exact.shape == (3, 140, 140) and exact.dtype == torch.uint8
    assert (exact[:, :, :70] == torch.tensor([0, 0, 255], dtype=torch.uint8)[:, None, None]).all()
    assert (exact[:, :, 70:] == torch.tensor([0, 255, 0], dtype=torch.uint8)[:, None, None]).all()
    small = load_image(tmp_path / "a.png", size=64, crop=140)
    assert small.shape == (3, 64, 64)
    assert small[0].max() == 0  # no red from outside the crop leaks in
    assert (small[2, :, :31] == 255).all() and (small[1, :, 33:] == 255).all()
    wider = load_image(tmp_path / "a.png", size=144, crop=144)  # 2 px of red border on each side
    assert (wider[0, :2] == 255).all() and (wider[0, :, :2] == 255).all() and wider[0, 2:-2, 2:-2].max() == 0


def test_an_image_smaller_than_the_crop_is_used_whole(tmp_path):
    # 100x120: the crop is the centre 100x100 (rows 10..110), never padded
    Image.fromarray(two_colour_image(100, 120, (10, 0, 100))).save(tmp_path / "b.png")
    framed = load_image(tmp_path / "b.png", size=50, crop=140)
    assert framed.shape == (3, 50, 50) and framed[0].max() == 0 and (framed[2] == 255).all()
    square = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(square).save(tmp_path / "c.png")
    whole = load_image(tmp_path / "c.png", size=64, crop=140)  # whole image, same size: unchanged
    torch.testing.assert_close(whole, torch.from_numpy(square).permute(2, 0, 1), rtol=0, atol=0)


def test_small_images_in_a_dataset(tmp_path):
    root = write_celeba(tmp_path / "c", n=5, partition=[0, 0, 0, 1, 2], size=(48, 60))
    image, _ = CelebADataset(root, "train", size=64)[0]
    assert image.shape == (3, 64, 64) and image.min() >= -1 and image.max() <= 1


# ----------------------------------------------------------------------------- the cache
def test_cache_is_written_once_and_read_back(tiny_celeba, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    decoded = CelebADataset(tiny_celeba, "train", size=32)
    built = CelebADataset(tiny_celeba, "train", size=32, cache_dir=cache)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("train_32px_crop140_")
    assert not list(cache.glob("*.tmp"))
    assert built.images.shape == (8, 3, 32, 32) and built.images.dtype == torch.uint8
    for i in range(len(decoded)):  # the cache holds what decoding gives
        torch.testing.assert_close(built[i][0], decoded[i][0], rtol=0, atol=0)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second construction decoded an image instead of reading the cache")

    monkeypatch.setattr(data, "load_image", no_decoding)
    again = CelebADataset(tiny_celeba, "train", size=32, cache_dir=cache)
    torch.testing.assert_close(again.images, built.images, rtol=0, atol=0)
    for i in range(len(again)):
        for a, b in zip(again[i], built[i]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cache_files_differ_by_split_size_and_crop(tiny_celeba, tmp_path):
    cache = tmp_path / "cache"
    for split, size, crop in [("train", 32, 140), ("valid", 32, 140), ("train", 16, 140), ("train", 32, 100)]:
        CelebADataset(tiny_celeba, split, size=size, crop=crop, cache_dir=cache)
    assert len(list(cache.glob("*.safetensors"))) == 4
    small = CelebADataset(tiny_celeba, "train", size=16, cache_dir=cache)
    assert small.images.shape == (8, 3, 16, 16)


# ----------------------------------------------------------------------------- errors
def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Getting CelebA") as err:
        CelebADataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


@pytest.mark.parametrize("name", [data.ATTR_FILE, data.PARTITION_FILE, data.IMAGE_DIR])
def test_each_missing_file(tiny_celeba, name):
    path = tiny_celeba / name
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match="Getting CelebA") as err:
        CelebADataset(tiny_celeba)
    assert str(path) in str(err.value)


def test_unknown_attribute_suggests_the_name(tiny_celeba):
    with pytest.raises(ValueError, match="did you mean 'Smiling'") as err:
        CelebADataset(tiny_celeba, attributes=["Male", "Smile"])
    assert "'Smile'" in str(err.value)
    assert all(name in str(err.value) for name in CELEBA_ATTRIBUTES)  # lists the valid names


def test_unknown_split(tiny_celeba):
    with pytest.raises(ValueError, match="unknown split 'validation'.*train, valid, test, all"):
        CelebADataset(tiny_celeba, "validation")


def test_empty_split_names_the_problem(tmp_path):
    root = write_celeba(tmp_path / "celeba", n=6, partition=[0, 0, 0, 0, 1, 1])  # no test images
    with pytest.raises(ValueError, match="'test' split .* is empty.*choose a split it has"):
        CelebADataset(root, "test", cache_dir=tmp_path / "cache")


def test_missing_image_raises_or_is_skipped(tiny_celeba):
    (tiny_celeba / data.IMAGE_DIR / "000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000003.jpg.*skip_bad_images=True"):
        CelebADataset(tiny_celeba, "train")
    with pytest.warns(UserWarning, match=r"skipping 1 rows.*000003\.jpg"):
        ds = CelebADataset(tiny_celeba, "train", skip_bad_images=True)
    kept = [0, 1, 3, 4, 5, 6, 7]
    assert len(ds) == 7 and ds.files == [f"{i + 1:06d}.jpg" for i in kept]
    torch.testing.assert_close(ds.labels, expected_labels(kept), rtol=0, atol=0)  # rows stay aligned
    assert len(CelebADataset(tiny_celeba, "valid")) == 2  # other splits do not miss it


def test_corrupt_image_raises_on_access_or_is_skipped(tiny_celeba, tmp_path):
    bad = tiny_celeba / data.IMAGE_DIR / "000002.jpg"
    bad.write_bytes(b"this is not a JPEG" * 10)
    ds = CelebADataset(tiny_celeba, "train")  # files are only decoded when read
    ds[0]
    with pytest.raises(ValueError, match="000002.jpg.*skip_bad_images=True"):
        ds[1]
    with pytest.raises(ValueError, match="000002.jpg"):  # building a cache reads every file
        CelebADataset(tiny_celeba, "train", cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match=r"000002\.jpg"):
        ds = CelebADataset(tiny_celeba, "train", skip_bad_images=True)
    assert len(ds) == 7 and "000002.jpg" not in ds.files
    torch.testing.assert_close(ds[1][1], expected_labels([2])[0], rtol=0, atol=0)


@pytest.mark.parametrize("row", ["000003.jpg " + " ".join(["1"] * 39),   # one value short
                                 "000003.jpg " + " ".join(["1"] * 41),   # one too many
                                 "000003.jpg 2 " + " ".join(["-1"] * 39),  # a value that is not +-1
                                 "000003.jpg"])
def test_malformed_attribute_row_names_its_line(tiny_celeba, row):
    path = tiny_celeba / data.ATTR_FILE
    rows = path.read_text().splitlines()[2:]
    rows[2] = row  # the third image row is line 5 of the file
    write_rows(path, rows)
    with pytest.raises(ValueError, match=r"list_attr_celeba\.txt, line 5: malformed attribute row"):
        CelebADataset(tiny_celeba)


def test_attribute_file_without_header(tiny_celeba):
    (tiny_celeba / data.ATTR_FILE).write_text("12\n")
    with pytest.raises(ValueError, match="malformed attribute file"):
        CelebADataset(tiny_celeba)


@pytest.mark.parametrize("row", ["000004.jpg 3", "000004.jpg", "000004.jpg 0 1", "000004.jpg train"])
def test_malformed_partition_row_names_its_line(tiny_celeba, row):
    path = tiny_celeba / data.PARTITION_FILE
    rows = path.read_text().splitlines()
    rows[3] = row
    write_rows(path, rows)
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt, line 4: malformed partition row"):
        CelebADataset(tiny_celeba)


def test_blank_lines_are_ignored(tiny_celeba):
    for name in (data.ATTR_FILE, data.PARTITION_FILE):
        path = tiny_celeba / name
        path.write_text(path.read_text() + "\n\n")
    assert len(CelebADataset(tiny_celeba, "all")) == 12


# ----------------------------------------------------------------------------- the real sample
@pytest.mark.parametrize("split, n", [("all", 5340), ("train", 4560), ("valid", 780)])
def test_real_sample_split_sizes(celeba_sample, split, n):
    ds = CelebADataset(celeba_sample, split, attributes=["Smiling"])
    assert len(ds) == n and ds.labels.shape == (n, 1)


def test_real_sample_has_no_test_split(celeba_sample):
    with pytest.raises(ValueError, match="'test' split .* is empty"):
        CelebADataset(celeba_sample, "test", attributes=["Smiling"])


def test_real_sample_attributes_and_positive_counts(celeba_sample):
    names = list(SAMPLE_POSITIVES)
    train = CelebADataset(celeba_sample, "train", attributes=names)
    valid = CelebADataset(celeba_sample, "valid", attributes=names)
    counts = {a: (int(train.labels[:, i].sum()), int(valid.labels[:, i].sum())) for i, a in enumerate(names)}
    assert counts == SAMPLE_POSITIVES
    assert data.read_attribute_file(celeba_sample / data.ATTR_FILE)[0] == list(CELEBA_ATTRIBUTES)


def test_real_sample_image(celeba_sample):
    ds = CelebADataset(celeba_sample, "valid")
    image, labels = ds[0]
    assert image.shape == (3, 64, 64) and labels.shape == (40,)
    assert image.min() >= -1 and image.max() <= 1 and image.std() > 0.1
    with Image.open(ds.paths[0]) as im:
        assert im.size == (178, 218)  # aligned CelebA, so the standard 140 crop applies


# ----------------------------------------------------------------------------- framing at any scale, several roots
@pytest.mark.parametrize("height, width, crop, side", [
    (218, 178, 140, 140), (109, 89, 140, 70), (436, 356, 140, 280),  # CelebA's aspect: the crop scales with width
    (64, 64, 140, 64), (120, 100, 140, 100), (60, 48, 140, 48),  # other shapes: at most the shorter side
    (218, 178, None, 178)])
def test_crop_side_scales_with_the_width_of_a_celeba_frame(height, width, crop, side):
    assert crop_side(height, width, crop) == side


def test_a_half_size_celeba_image_frames_like_the_full_one(tmp_path):
    # the halfres set's case: the 70 px centre of an 89x109 image is the 140 px centre of its 178x218 original
    rng = np.random.default_rng(1)
    full = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).resize((178, 218), Image.BICUBIC)
    full.save(tmp_path / "full.png")
    full.resize((89, 109), Image.BICUBIC, reducing_gap=None).save(tmp_path / "half.png")
    a, b = load_image(tmp_path / "full.png", 64), load_image(tmp_path / "half.png", 64)
    assert psnr(a, b) >= 30


def test_real_image_and_its_2x_downscale_frame_to_the_same_face(celeba_sample, tmp_path):
    path = sorted((celeba_sample / "img_align_celeba").glob("*.jpg"))[0]
    with Image.open(path) as im:
        im.resize((89, 109), Image.BICUBIC).save(tmp_path / "half.png")
    assert psnr(load_image(path, 64), load_image(tmp_path / "half.png", 64)) >= 30


def test_several_roots_read_as_one_data_set(tmp_path):
    a = write_celeba(tmp_path / "a", n=6, partition=[0, 0, 0, 0, 1, 1])
    b = write_celeba(tmp_path / "b", n=5, partition=[0] * 5, size=(89, 109), seed=1)
    both = CelebADataset([a, b], "train", attributes=["Smiling", "Male"], size=16, cache_dir=tmp_path / "cache")
    assert len(both) == 4 + 5 and both.images.shape == (9, 3, 16, 16)
    assert both.paths[0].parent.parent == a and both.paths[-1].parent.parent == b  # each row keeps its root
    alone = CelebADataset(b, "train", attributes=["Smiling", "Male"], size=16)
    torch.testing.assert_close(both.labels[4:], alone.labels)
    torch.testing.assert_close(both.image_uint8(8), alone.image_uint8(4))
    assert len(CelebADataset([a, b], "valid", size=16)) == 2  # b has no valid rows: only a's


def test_several_roots_with_no_row_in_the_split(tmp_path):
    a = write_celeba(tmp_path / "a", n=5, partition=[0] * 5)
    b = write_celeba(tmp_path / "b", n=5, partition=[0] * 5)
    with pytest.raises(ValueError, match="'valid' split of .*a and .*b is empty"):
        CelebADataset([a, b], "valid")


def psnr(a, b):
    mse = (a.float() - b.float()).pow(2).mean()
    return float(10 * torch.log10(255**2 / mse))
