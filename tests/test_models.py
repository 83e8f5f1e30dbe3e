"""Named models: finding, loading and refusing them, and the committed files' recorded predictions."""

import copy

import pytest
import torch

from celebadiff import models
from celebadiff.classifier import load_classifier
from celebadiff.config import preset
from celebadiff.models import build_model, judge_for, load_model, resolve
from celebadiff.unet import UNet


def test_committed_models_are_found_by_name():
    assert resolve("demo") == models.CHECKPOINTS / "demo.safetensors"
    assert {"demo", "demo-judge", "celeba64", "celeba64-judge"} <= set(models.committed_names())
    assert judge_for("demo") == models.CHECKPOINTS / "demo-judge.safetensors"
    assert judge_for("celeba64") == models.CHECKPOINTS / "celeba64-judge.safetensors"


def test_the_committed_demo_is_demo_base_trained_on_with_the_contrastive_term():
    # make train-demo: the demo preset from scratch (demo-base), then the demo-contrastive preset warm-started from it
    base, base_config, base_steps = load_model("demo-base")
    demo, config, steps = load_model("demo")
    assert base_config == preset("demo") and base_config.contrastive_weight == 0
    assert config == preset("demo-contrastive") and config.contrastive_weight == 1.0
    assert (base_steps, steps, models.read_checkpoint("demo")[2]) == (6000, 6200, 200)
    preset("demo").check_compatible(config)  # one network: the second stage loads the first's weights
    moved = [(a - b).abs().max().item() for a, b in zip(base.state_dict().values(), demo.state_dict().values())]
    assert max(moved) > 1e-3  # the stage changed the weights


def test_real_faces_edit_at_the_strength_stored_with_the_model(tmp_path):
    # chosen on valid faces by the campaign's stop (celebadiff.campaign) and stored in the file's metadata
    assert models.default_strength("celeba64") == 1.5
    assert models.default_strength("demo") == 1.0
    copied = tmp_path / "copy.safetensors"  # the stored strength travels with the file
    copied.write_bytes(models.resolve("celeba64").read_bytes())
    assert models.default_strength(copied) == 1.5
    from conftest import edit_checkpoint
    named = edit_checkpoint(tmp_path / "celeba64.safetensors")  # no stored strength; the name counts in checkpoints/
    assert models.default_strength(named) == 1.0


def test_an_unknown_name_lists_the_committed_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model 'celeba128'.*celeba64, celeba64-judge, demo"):
        resolve("celeba128")
    with pytest.raises(FileNotFoundError, match="run folder"):
        resolve(tmp_path)


def test_a_judge_passed_as_a_diffusion_model_names_the_fix():
    with pytest.raises(ValueError, match="attribute classifier: pass it as --classifier"):
        load_model("celeba64-judge")


def test_celeba64_into_the_demo_config_is_refused_with_the_differing_fields():
    fields = r"image_size: 64 \(here 32\).*channels: \(64, 128, 256\).*patch: 2 \(here 1\)"
    with pytest.raises(ValueError, match=fields):
        load_model("celeba64", expect=preset("demo"))


def test_space_to_depth_stem_works_at_half_the_resolution():
    # patch 2: a 64 px image enters the first Block as 12 channels at 32 px, and leaves as 3 channels at 64 px
    net = UNet((8, 16), attention=(False, True), n_attributes=3, patch=2)
    assert net.conv_in.in_channels == 12 and net.conv_out.out_channels == 12
    seen = []
    net.downs[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    x = torch.randn(2, 3, 64, 64)
    assert net(x, torch.tensor([0, 9]), torch.zeros(2, 3, dtype=torch.long)).shape == x.shape
    assert seen[0] == (2, 8, 32, 32)
    # the output is a pixel shuffle: pixel (2i + a, 2j + b) of channel c is conv_out channel 4c + 2a + b at (i, j)
    torch.nn.init.normal_(net.conv_out.weight)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 9]), torch.zeros(2, 3, dtype=torch.long))
        feat = net.conv_out(torch.nn.functional.silu(net.norm_out(_last_features(net, x))))
    torch.testing.assert_close(out[:, 1, 1::2, 0::2], feat[:, 4 * 1 + 2 * 1 + 0])


def _last_features(net, x):
    got = []
    handle = net.norm_out.register_forward_hook(lambda module, args, out: got.append(args[0]))
    net(x, torch.tensor([0, 9]), torch.zeros(2, 3, dtype=torch.long))
    handle.remove()
    return got[0]


def test_export_writes_fp16_ema_weights_and_the_config_beside_them(tmp_path):
    from celebadiff.train import save_checkpoint
    config = preset("smoke")
    model = build_model(config)
    save_checkpoint(tmp_path / "run.safetensors", config, 7, model, copy.deepcopy(model))
    out = models.export_ema(tmp_path / "run.safetensors", tmp_path / "small.safetensors")
    tensors, loaded, step, _ = models.read_checkpoint(out)
    assert step == 7 and loaded == config and (tmp_path / "small.json").is_file()
    assert all(k.startswith("ema.") and v.dtype == torch.float16 for k, v in tensors.items() if v.is_floating_point())


def test_committed_celeba64_gives_its_recorded_predictions():
    # Recorded from checkpoints/celeba64.safetensors when it was committed (step 7387, the campaign's first stop;
    # update them with each committed stop): a change to the U-Net or to the stem must keep the state-dict names
    # and shapes and the function the committed weights compute.
    model, config, step = load_model("celeba64")
    assert (config.image_size, config.patch, len(config.attributes), step) == (64, 2, 40, 7387)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 64, 64, generator=g)
    t = torch.tensor([0, 500, 999])
    y = torch.randint(0, 3, (3, 40), generator=g)
    with torch.no_grad():
        eps_hat = model(x, t, y)
    close = {"atol": 2e-4, "rtol": 0}
    torch.testing.assert_close(eps_hat.mean((1, 2, 3)), torch.tensor([0.030102002, -0.002028705, -0.006172817]),
                               **close)
    torch.testing.assert_close(eps_hat.std((1, 2, 3)), torch.tensor([2.148566723, 1.027215004, 0.999239922]), **close)
    torch.testing.assert_close(eps_hat[:, :, 32, 32], torch.tensor(
        [[0.12648352, -0.14113343, 1.21893323], [-0.27123529, -1.01552320, 1.12810683],
         [1.62167978, 0.20115885, 1.26538694]]), **close)


def test_committed_demo_judge_reads_fresh_renders_and_gives_its_recorded_logits():
    from celebadiff.classifier import independent_faces, predict
    judge = load_classifier("demo-judge")
    images, labels = independent_faces(8, seed=999, size=32)  # renders it never saw (trained on seed 123)
    assert ((predict(judge, images) > 0.5).float() == labels).all()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        logits = judge(x)
    torch.testing.assert_close(logits[:, :4], torch.tensor([[-3.31860, -0.58393, 7.18823, -5.93685],
                                                            [-1.23289, 0.75095, 7.30479, -4.27782]]),
                               atol=2e-3, rtol=0)


def test_committed_celeba64_judge_gives_its_recorded_logits():
    judge = load_classifier("celeba64-judge")
    assert judge.image_size == 64 and len(judge.attribute_names) == 40
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        logits = judge(x)[:, [judge.attribute_names.index(n) for n in ("Smiling", "Male", "Eyeglasses", "Young")]]
    torch.testing.assert_close(logits, torch.tensor([[-4.31580, -0.41224, -3.07059, 1.07936],
                                                     [-4.08777, 0.15630, -3.35854, 1.25270]]), atol=2e-3, rtol=0)


def test_celeba64_judge_reads_real_faces_it_never_saw(celeba_sample):
    from celebadiff.classifier import accuracy_report, predict
    from celebadiff.data import CelebADataset
    judge = load_classifier("celeba64-judge")
    names = ["Smiling", "Male", "Mouth_Slightly_Open"]
    valid = CelebADataset(celeba_sample, "valid", attributes=names, size=64)
    x = torch.stack([valid[i][0] for i in range(100)])
    columns = [judge.attribute_names.index(n) for n in names]
    report = accuracy_report(predict(judge, x)[:, columns], valid.labels[:100], names)
    assert all(r["balanced_accuracy"] >= 0.88 for r in report.values()), report
