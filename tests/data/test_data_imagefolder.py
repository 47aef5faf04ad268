"""Your own images (data.name=imagefolder): a folder of PNG files this test writes, through training, analysis and
figures, and the statistics and errors of the reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixcollapse.cli import main
from mixcollapse.config import DataConfig, load_config
from mixcollapse.data.datasets import build_datasets
from mixcollapse.data.locate import DataError

CLASSES = ("apple", "banana", "cherry", "damson")
COLOURS = {"apple": (200, 40, 40), "banana": (230, 220, 60), "cherry": (120, 10, 60), "damson": (60, 40, 140)}


def write_images(root: Path, per_class: dict[str, int], size=(12, 12), seed: int = 0) -> Path:
    """root/<part>/<class>/<i>.png: a class colour plus noise, so that classes can be learnt."""
    rng = np.random.default_rng(seed)
    for part, n in per_class.items():
        for name in CLASSES:
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = rng.integers(-40, 41, (size[1], size[0], 3))
                pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / part / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("fruit"), {"train": 24, "test": 6})


def test_classes_from_folders_statistics_from_the_training_pixels(folder):
    bundle = build_datasets(DataConfig(name="imagefolder", root=str(folder), augment=False))
    assert bundle.class_names == list(CLASSES) and bundle.num_classes == 4
    assert (bundle.in_channels, bundle.image_size, len(bundle.train), len(bundle.test)) == (3, 12, 96, 24)
    pixels = np.stack(
        [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255 for p in sorted(folder.glob("train/*/*.png"))]
    )  # every training image, by hand
    assert bundle.mean == pytest.approx(pixels.mean(axis=(0, 1, 2)), abs=1e-6)  # ToTensor: float32
    assert bundle.std == pytest.approx(pixels.std(axis=(0, 1, 2)), abs=1e-6)
    x, y = bundle.train[0]
    assert x.shape == (3, 12, 12) and y == 0
    raw = torch.from_numpy(np.asarray(Image.open(folder / "train" / "apple" / "0.png"), dtype=np.float32) / 255)
    want = (raw.permute(2, 0, 1) - torch.tensor(bundle.mean).view(3, 1, 1)) / torch.tensor(bundle.std).view(3, 1, 1)
    torch.testing.assert_close(x, want.float(), atol=1e-6, rtol=0)


def test_given_size_statistics_and_class_subset(folder):
    cfg = DataConfig(
        name="imagefolder",
        root=str(folder),
        image_size=8,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        classes=[3, 1],
        augment=True,
    )
    bundle = build_datasets(cfg)
    assert bundle.class_names == ["damson", "banana"] and bundle.mean == (0.5, 0.5, 0.5) and bundle.image_size == 8
    assert bundle.crop_padding == 4 and bundle.flip and bundle.train[0][0].shape == (3, 8, 8)


def test_missing_parts_non_square_images_and_other_test_classes_are_one_line_errors(folder, tmp_path):
    with pytest.raises(DataError, match="test does not exist"):
        build_datasets(DataConfig(name="imagefolder", root=str(write_images(tmp_path / "a", {"train": 1}))))
    wide = write_images(tmp_path / "b", {"train": 1, "test": 1}, size=(16, 12))
    with pytest.raises(DataError, match="16x12, not square: set data.image_size"):
        build_datasets(DataConfig(name="imagefolder", root=str(wide)))
    assert build_datasets(DataConfig(name="imagefolder", root=str(wide), image_size=10)).image_size == 10
    other = write_images(tmp_path / "c", {"train": 1, "test": 1})
    (other / "test" / "damson").rename(other / "test" / "plum")
    with pytest.raises(DataError, match="give both the same class folders"):
        build_datasets(DataConfig(name="imagefolder", root=str(other)))
    with pytest.raises(ValueError, match="data.mean and data.std together"):
        load_config("digits", ["data.name=imagefolder", "data.mean=[0.5,0.5,0.5]"])


@pytest.mark.slow  # a training and an analysis: about 5 s
def test_train_analyze_end_to_end_on_a_folder_of_images(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "data.name=imagefolder",
                f"data.root={folder}",
                "train.epochs=3",
                "train.batch_size=32",
                "train.lr=0.05",
                "model.hidden=16",
                "train.progress=false",
            ]
        )
        == 0
    )
    assert main(["analyze", str(run), "analysis.pairs_per_class_pair=10", "analysis.test_pairs=40"]) == 0
    summary = json.loads((run / "analysis" / "last" / "analysis.json").read_text())
    assert set(summary["class_names"]) <= set(CLASSES) and len(summary["class_names"]) == 3
    assert summary["dataset"] == "imagefolder" and summary["test_accuracy"] > 0.5  # the colours are learnt
    assert all(Path(p).is_file() for p in summary["figures"])
    printed = capsys.readouterr().out
    assert all(f"({name})" in printed for name in summary["class_names"])  # the classes, by folder name
