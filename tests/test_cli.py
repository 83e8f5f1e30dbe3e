"""The command line's own checks: start-up without torch, config options' errors, and edit's refusals of bad
arguments and inputs (one line, status 2, nothing written), `--skip-bad`, animations."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from celebadiff.__main__ import _config_from, build_parser, main
from celebadiff.edit_command import parse_strengths

ASTRONAUT = Path(__file__).parents[1] / "notebooks" / "photos" / "astronaut.jpg"  # NASA, public domain


def _edit(ckpt, image, out, *extra):
    return main(["edit", "--checkpoint", str(ckpt), "--image", str(image), "--out", str(out), "--steps", "3", *extra])


def _fails(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def test_help_starts_without_torch_or_face_detection():
    done = subprocess.run([sys.executable, "-m", "celebadiff", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "edit" in done.stdout and "train" in done.stdout
    script = ("import sys\n"
              "from celebadiff.__main__ import build_parser, main\n"
              "build_parser()\n"
              "for argv in (['--help'], ['edit', '--help'], ['align', '--help']):\n"
              "    try:\n"
              "        main(argv)\n"
              "    except SystemExit as stop:\n"
              "        assert stop.code == 0\n"
              "print(sorted(m for m in ('torch', 'facenet_pytorch', 'dlib') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"  # none of them imported


def test_train_help_lists_the_config_fields(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "--batch-size" in out and "--preset" in out and "celeba64" in out


@pytest.mark.parametrize("flag, value, says", [
    ("--steps", "abc", "expected an integer, got 'abc'"),
    ("--lr", "fast", "expected a number, got 'fast'"),
    ("--hflip", "yes", "expected true or false, got 'yes'"),
    ("--channels", "8,x", "each an integer, e.g. '32,64,128'"),
    ("--attention", "true,maybe", "each true or false"),
])
def test_a_bad_config_value_names_the_field_and_its_type(tmp_path, capsys, flag, value, says):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), flag, value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: argument {flag}: expected ") and says in err and "<lambda>" not in err, err
    assert not (tmp_path / "run").exists()


def test_config_values_parse_to_their_fields_types(tmp_path):
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--preset", "smoke", "--steps", "7",
                                      "--channels", "8,16", "--attention", "[false, true]", "--hflip", "0"])
    config = _config_from(args)
    assert (config.steps, config.channels, config.attention, config.hflip) == (7, (8, 16), (False, True), False)


def test_a_negative_global_strength_is_refused_pointing_to_set_zero(ckpt, celeba, tmp_path, capsys):
    out = tmp_path / "new" / "o.png"
    image = celeba / "img_align_celeba" / "000001.jpg"
    _fails(capsys, _edit(ckpt, image, out, "--set", "Smiling=1", "--strength", "-5"),
           "--strength -5", "0 or more", "--set Eyeglasses=0")
    assert not (tmp_path / "new").exists()
    # signed strengths of single attributes stay: "less glasses"
    assert parse_strengths(["Eyeglasses=-1", "0.5"], {"Eyeglasses": 0}) == (0.5, {"Eyeglasses": -1.0})


@pytest.mark.parametrize("steps", ["5000", "0"])
def test_steps_out_of_range_name_the_flag_and_create_nothing(ckpt, celeba, tmp_path, capsys, steps):
    out = tmp_path / "new"
    _fails(capsys, _edit(ckpt, celeba / "img_align_celeba", out, "--set", "Smiling=1", "--steps", steps),
           f"--steps {steps}", "between 1 and 100")  # the smoke model's T
    assert not out.exists()


def _spoil(celeba, *names):
    for name in names:
        (celeba / "img_align_celeba" / name).write_bytes(b"not a jpeg at all")


def test_every_bad_image_of_a_folder_is_named_and_nothing_is_written(ckpt, celeba, tmp_path, capsys):
    _spoil(celeba, "000002.jpg", "000005.jpg")
    out = tmp_path / "out"
    _fails(capsys, _edit(ckpt, celeba / "img_align_celeba", out, "--set", "Smiling=1"),
           "2 of 6 images cannot be edited", "000002.jpg", "000005.jpg", "--skip-bad to edit the other 4")
    assert not out.exists()


def test_skip_bad_edits_the_readable_images_and_lists_the_others(ckpt, celeba, tmp_path, capsys):
    _spoil(celeba, "000002.jpg", "000005.jpg")
    out = tmp_path / "out"
    assert _edit(ckpt, celeba / "img_align_celeba", out, "--set", "Smiling=1", "--method", "sdedit",
                 "--skip-bad") == 0
    assert sorted(p.name for p in out.iterdir()) == ["000001.png", "000003.png", "000004.png", "000006.png"]
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "2 of 6 images" in skipped[0], captured.err
    assert "000002.jpg" in skipped[0] and "000005.jpg" in skipped[0]
    assert "wrote 4 images" in captured.out


def test_skip_bad_with_nothing_readable_is_still_an_error(ckpt, celeba, tmp_path, capsys):
    image = celeba / "img_align_celeba" / "000001.jpg"
    _spoil(celeba, image.name)
    _fails(capsys, _edit(ckpt, image, tmp_path / "o.png", "--set", "Smiling=1", "--skip-bad"),
           "cannot read image 000001.jpg")
    assert not (tmp_path / "o.png").exists()


def test_align_skip_bad_aligns_the_faces_it_finds(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "aligned"
    _fails(capsys, main(["align", "--image", str(folder), "--out", str(out)]), "cannot read image broken.jpg",
           "--skip-bad to align the other 1")
    assert not out.exists()
    assert main(["align", "--image", str(folder), "--out", str(out), "--skip-bad"]) == 0
    assert [p.name for p in out.iterdir()] == ["astronaut.jpg"]
    assert "skipped 1 of 2 images (cannot read image broken.jpg)" in capsys.readouterr().err


def test_an_animation_is_edited_on_its_first_frame_and_says_so(ckpt, tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((178, 218)) for _ in range(3)]
    gif = tmp_path / "wink.gif"  # CelebA's aligned frame: edited without detection
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "still.png"
    assert _edit(ckpt, gif, out, "--set", "Smiling=1") == 0
    assert "wink.gif has 3 frames: edited its first frame only" in capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (178, 218) and getattr(im, "n_frames", 1) == 1
