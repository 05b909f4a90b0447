"""The paper's figures as files: what a reader sees of them."""

import matplotlib.image as mpimg
import pandas as pd
import pytest

from yaware.evaluate.captions import describe_umap
from yaware.evaluate.plots import auc_vs_n_target, sigma_effect


@pytest.fixture
def linear() -> pd.DataFrame:
    rows = [
        {"cohort": "adni", "task": "AD vs CTL", "label": label, "method": method,
         "kind": "pretrained", "sigma": sigma, "n_target": n, "repeat": r, "auc": 0.6 + 0.01 * r}
        for label, method, sigma in (("SimCLR", "simclr", 0.0), ("y-Aware", "yaware", 5.0))
        for n in (20, 50)
        for r in range(3)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def _caption_band_edges(path) -> tuple[float, float, float]:
    """Darkness of the left and right edge columns in the bottom tenth (where the caption
    is), and of the whole band."""
    pixels = mpimg.imread(path)[..., :3].mean(-1)
    band = pixels[-len(pixels) // 10 :]
    return 1 - band[:, :3].min(), 1 - band[:, -3:].min(), 1 - band.min()


def test_a_long_caption_on_a_one_panel_figure_is_wrapped_inside_it(tmp_path, linear):
    """A run with one task draws one panel; its caption (the setup and the data files)
    ran off both edges of the figure."""
    caption = "Linear probes of frozen representations; " + ", ".join(
        f"setting{k} value{k}" for k in range(25)
    )
    path = tmp_path / "fig1.png"
    panels = [("adni", "AD vs CTL")]
    auc_vs_n_target(linear, linear.iloc[:0].assign(init_kind=[]), panels, path, caption)
    left, right, band = _caption_band_edges(path)
    assert band > 0.5  # the caption is drawn
    assert left < 0.05 and right < 0.05  # and nothing of it is cut at the edges


def test_the_sigma_figure_wraps_its_caption_too(tmp_path, linear):
    age = pd.DataFrame(
        {"method": ["simclr", "yaware"], "sigma": [0.0, 5.0], "kind": "pretrained",
         "label": ["SimCLR", "y-Aware"], "age_mae": [9.0, 8.0], "age_mae_constant": 12.0}
    )  # fmt: skip
    path = tmp_path / "fig3.png"
    sigma_effect(linear, age, path, "x" * 20 + " long words " * 60)
    left, right, band = _caption_band_edges(path)
    assert band > 0.5 and left < 0.05 and right < 0.05


def test_the_umap_caption_says_what_marker_size_and_settings_mean():
    """Figure 2 draws age as marker size: its caption must say so, with the range, and
    name the UMAP settings and the pretraining (before: the cohort and files only)."""
    pretraining = {
        "methods": {"simclr": {}, "yaware": {}},
        "encoder": "tinycnn",
        "augmentation": "cutout",
        "epochs": 15,
        "seeds": [0, 1],
        "temperature": 0.1,
        "kernel": "gaussian",
        "label": "age",
    }
    caption = describe_umap(
        "adni", pretraining, {"umap_neighbors": 12, "umap_min_dist": 0.25}, [61.4, 80.2, 70]
    )
    assert caption == (
        "UMAP of cohort adni's frozen representations (n_neighbors 12, min_dist 0.25, "
        "seed 0); marker size: age, smallest 61 to largest 80 years; pretraining: tinycnn, "
        "cutout, 15 epochs, seeds [0, 1], temperature 0.1, y-Aware: gaussian kernel on age"
    )
