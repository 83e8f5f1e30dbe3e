import matplotlib
import pytest
import torch

from celebadiff.metrics import psnr
from celebadiff.result_grids import COLUMNS, column_edits, counterfactual_grid, edit_psnr

matplotlib.use("Agg")


def _faces(n=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    truth = torch.randint(0, 256, (n, 5, 3, size, size), generator=g, dtype=torch.uint8)
    exact = truth.float().div(127.5).sub(1)
    return x0, truth, exact


def _caption(fig, row, col):
    return fig.axes[row * len(COLUMNS) + col].get_xlabel()


def test_column_edits_flip_each_attribute_and_turn_hair_blond_or_black():
    names = ["Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Black_Hair", "Blond_Hair"]
    labels = torch.tensor([[1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 0, 1]], dtype=torch.float)
    attrs, values, captions = column_edits(labels, names)
    assert attrs == [["Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Blond_Hair", "Male"],
                     ["Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Black_Hair", "Male"]]
    assert values == [[0, 1, 1, 1, 0], [1, 0, 0, 1, 1]]
    assert captions[0] == ["removed", "added", "added", "to blond", "to female"]
    assert captions[1] == ["added", "removed", "removed", "to black", "to male"]


def test_counterfactual_grid_puts_each_edits_psnr_under_it_and_the_direction_under_the_truth():
    x0, truth, exact = _faces()
    edits = exact + 0.1  # a constant offset: PSNR 10 log10(4 / 0.01) = 26.0 dB
    recon = x0 + 0.2
    captions = [["added", "removed", "added", "to blond", "to male"]] * 2
    fig, scores = counterfactual_grid(x0, recon, edits, truth, captions, ["a", "b"])
    torch.testing.assert_close(scores, edit_psnr(edits, truth))
    assert scores.shape == (2, 5)
    assert abs(scores.mean().item() - 26.02) < 0.05
    assert len(fig.axes) == 4 * len(COLUMNS)  # per face: the edit row and the truth row
    assert _caption(fig, 2, 3) == f"{scores[1, 1]:.1f} dB"  # face 1's edit row is row 2
    assert _caption(fig, 2, 1) == f"{psnr(recon[1:], x0[1:]).item():.1f} dB"
    assert (_caption(fig, 3, 5), _caption(fig, 3, 6)) == ("to blond", "to male")  # its truth row
    assert fig.axes[2 * len(COLUMNS)].get_ylabel().startswith("b\nDDIB")


def test_counterfactual_grid_compares_several_models_on_the_same_faces():
    x0, truth, exact = _faces()
    edits = {"W = 0": exact + 0.2, "W = 1": exact + 0.05}
    recon = {"W = 0": x0, "W = 1": x0}
    fig, scores = counterfactual_grid(x0, recon, edits, truth, [["x"] * 5] * 2, ["a", "b"])
    assert set(scores) == {"W = 0", "W = 1"}
    assert (scores["W = 1"] > scores["W = 0"] + 11).all()  # a quarter of the error: 12 dB closer
    assert len(fig.axes) == 6 * len(COLUMNS)  # per face: two model rows and the truth row
    assert _caption(fig, 4, 2) == f"{scores['W = 1'][1, 0]:.1f} dB"
    assert _caption(fig, 5, 2) == "x"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    matplotlib.pyplot.close("all")
