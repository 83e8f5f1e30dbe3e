"""The campaign's stopping point: the model is replaced only when it edits better, and every stop is logged."""

import pytest

from celebadiff import campaign
from celebadiff.config import preset
from celebadiff.models import default_strength, load_model
from celebadiff.train import train

CARD = ("# card\n\n| date | steps | hours | CPU | success | preservation | reconstruction | committed |\n"
        f"|---|---|---|---|---|---|---|---|\n{campaign.LOG_END}\n")


def _metrics(success, preservation=0.90, unchanged=0.91, psnr=30.5):
    return {"edit_success": success, "preservation": preservation, "baseline": {"preservation": unchanged},
            "psnr_reconstruction": psnr, "ssim_reconstruction": 0.92}


OLD = {1.5: (0.30, 0.90, 0.91, 30.5, 0.92), 2.0: (0.40, 0.90, 0.91, 30.5, 0.92)}


@pytest.mark.parametrize("new, expected", [
    ((0.50, 0.90, 0.91, 30.5), True),
    ((0.30, 0.90, 0.91, 30.5), False),   # less success
    ((0.50, 0.88, 0.91, 30.5), False),   # the other attributes drift past the slack
    ((0.50, 0.90, 0.91, 29.0), False),   # no longer reconstructs
])
def test_improves_needs_success_preservation_and_reconstruction(new, expected):
    assert campaign.improves({1.5: (0.2, 0.9, 0.91, 30.5, 0.92), 2.0: new + (0.92,)}, OLD) is expected


def test_each_model_is_judged_at_its_best_strength_within_the_targets():
    new = {1.5: (0.45, 0.90, 0.91, 30.5, 0.92), 2.0: (0.70, 0.87, 0.91, 30.5, 0.92)}  # s=2 drifts too far
    assert campaign.best_strength(new) == (1.5, new[1.5])
    assert campaign.improves(new, OLD)  # 0.45 at 1.5 beats the old model's 0.40 at 2
    assert campaign.best_strength({2.0: new[2.0]}) is None


@pytest.mark.parametrize("success, kept", [(0.7, True), (0.2, False)])
def test_a_stop_logs_a_row_and_replaces_the_model_only_when_better(tiny_celeba, tmp_path, monkeypatch, success, kept):
    run = train(preset("smoke", steps=10), tiny_celeba, tmp_path / "run", progress=False)
    committed, card = tmp_path / "celeba64.safetensors", tmp_path / "card.md"
    committed.write_bytes(b"the old model")
    card.write_text(CARD)
    monkeypatch.setattr(campaign, "score", lambda checkpoint, strength, n=64, out=None:
                        _metrics(0.4) if "committed" in str(out) else _metrics(success))
    better, scores = campaign.stop(run, n=8, strengths=(1.0, 2.0), card=card, committed=committed)
    assert better is kept and scores[2.0][1][0] == 0.4
    assert (committed.read_bytes() != b"the old model") is kept
    if kept:  # the new file loads, and carries its chosen strength as the model's default
        assert default_strength(committed) == 1.0 and load_model(committed)[2] == 10
    row = card.read_text().splitlines()[-2]
    assert row.split(" | ")[1:3] == ["10", f"{campaign.run_facts(run)[0]:.2f}"]  # steps, hours with stage 1's
    assert f"s=1: {success:.3f}; s=2: {success:.3f}" in row
    assert row.endswith("| yes, strength 1 |" if kept else "| no |")
    assert "fp32" in row or "bf16" in row  # the precision the run trained at


def test_a_card_without_a_training_log_is_refused(tmp_path):
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    with pytest.raises(ValueError, match="no training log"):
        campaign.log_row(card, ["a"])
