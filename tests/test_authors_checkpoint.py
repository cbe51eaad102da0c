"""The authors' MMHVAE weights in our model: parity with their forward pass, conversion, errors.

The reference outputs (``shared/reference/authors_mmhvae``, beside the repository) were
computed by the authors' own ``MHVAE2D`` from random weights; see its README.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from iusynth.cohorts.datasets.download import DownloadError
from iusynth.model.authors import (
    AUTHORS_MODALITIES,
    AuthorsCheckpointError,
    load_authors_checkpoint,
)
from iusynth.model.network import MMHVAE, parameter_counts
from iusynth.training.mmhvae import load_model
from iusynth.training.pretrained import install_pretrained
from iusynth.training.settings import PretrainedSettings

from .conftest import policy as loopback_policy
from .fake_servers import FakeServer, Reply, start
from .test_model import TINY

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "authors_mmhvae"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(),
    reason=f"{REFERENCE} is absent: the authors' reference outputs ship in the project's "
    "shared folder beside the repository",
)


def source(path=None, url=None, sha256=None, slice_size=(32, 32)) -> PretrainedSettings:
    """Where a pretrained checkpoint comes from, as a variant's settings give it."""
    return PretrainedSettings(
        None if path is None else str(path), url, sha256, slice_size, 0, False
    )


def reference(name: str) -> dict:
    return torch.load(REFERENCE / f"{name}.pt", weights_only=False)


@needs_reference
@pytest.mark.parametrize("name", ["small", "paper"])
def test_our_model_reproduces_the_authors_outputs(name, tmp_path):
    data = reference(name)
    path = tmp_path / "CP_main_1000.pth"
    torch.save(data["state_dict"], path)  # as their training script saves it
    model = load_authors_checkpoint(path)
    built = data["authors_constructor"]
    assert model.config.modalities == ("US", "T2", "ceT1", "FLAIR")
    assert (model.config.base_channels, model.config.max_channels) == (
        built["base_num_features"],
        built["max_features"],
    )
    assert model.config.downsamplings == built["num_pool"]
    assert (model.config.image_size,) * 2 == tuple(built["original_shape"])
    assert model.config.head_channels == built["nfeat_finalblock"]
    assert model.config.head_blocks == built["nb_finalblocks"]
    assert parameter_counts(model)["total"] == sum(v.numel() for v in data["state_dict"].values())
    assert not model.training
    for case in data["cases"]:
        images = {AUTHORS_MODALITIES[m]: data["inputs"][m] for m in case["inputs"]}
        torch.manual_seed(case["seed_before_forward"])
        with torch.inference_mode():
            outputs = model.translate(images, case["temperature"])
        assert set(outputs) == {"US", "T2", "ceT1", "FLAIR"}
        gaps = [
            (outputs[AUTHORS_MODALITIES[m]] - expected).abs()
            for m, expected in case["outputs"].items()
        ]
        difference = max(float(gap.max()) for gap in gaps)
        mean = max(float(gap.mean()) for gap in gaps)
        print(
            f"{name}: inputs {'+'.join(case['inputs'])}, temperature {case['temperature']}: "
            f"max |ours - theirs| = {difference:.2e}, mean {mean:.1e}"
        )
        # float32 rounding alone moves our paper-size output by up to 1.1e-4 from the same
        # forward in float64 (all four inputs): the bound sits above that noise, the mean
        # below any real difference of the computation
        assert difference <= 2.5e-4
        assert mean <= 1e-5


@needs_reference
def test_older_weight_norm_names_load_the_same_weights():
    state = reference("small")["state_dict"]
    older = {
        key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): value
        for key, value in state.items()
    }
    new, old = load_authors_checkpoint(state), load_authors_checkpoint(older)
    for (name, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@needs_reference
def test_the_non_hierarchical_network_maps_onto_l1():
    """Their MVAE2D: no priors, and a (c -> c/2) block after each cell instead of experts."""
    state = {k: v for k, v in reference("small")["state_dict"].items() if not k.startswith("pz.")}
    for i, width in enumerate((32, 32, 16)):
        state[f"qz.{i}.conv_0.weight"] = torch.randn(width, width, 3, 3)
        state[f"qz.{i}.last_conv.parametrizations.weight.original0"] = torch.ones(
            width // 2, 1, 1, 1
        )
        state[f"qz.{i}.last_conv.parametrizations.weight.original1"] = torch.randn(
            width // 2, width, 1, 1
        )
    model = load_authors_checkpoint(state)
    assert model.config.latent_levels == 1 and not model.priors
    out = model.translate({"T2": torch.rand(2, 1, 32, 32) * 2 - 1}, temperature=0.7)
    assert out["US"].shape == (2, 1, 32, 32)


def test_translate_masks_by_the_first_given_modality_and_checks_its_inputs():
    model = MMHVAE(TINY).eval()
    us = torch.full((1, 1, 32, 32), -1.0)
    us[..., 8:24, 8:24] = 0.5
    t2 = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.inference_mode():
        out = model.translate({"T2": t2, "US": us})  # US comes first in the model's order
    inside = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    inside[..., 8:24, 8:24] = True
    for image in out.values():
        assert torch.all(image[~inside] == -1) and torch.all(image[inside] > -1)
    with pytest.raises(ValueError, match="non-empty subset"):
        model.translate({"PD": t2})
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model.translate({"T2": t2[0]})


@needs_reference
def test_bad_checkpoints_are_named_with_what_was_expected(tmp_path):
    state = reference("small")["state_dict"]
    ours = tmp_path / "ours.pth"
    torch.save(MMHVAE(TINY).state_dict(), ours)
    with pytest.raises(AuthorsCheckpointError, match=r"ours\.pth.*first_conv"):
        load_authors_checkpoint(ours)
    wrong = dict(state)
    wrong["qz.1.conv_0.weight"] = torch.zeros(32, 48, 3, 3)
    with pytest.raises(AuthorsCheckpointError, match=r"'qz\.1\.conv_0\.weight'.*\(32, 64, 3, 3\)"):
        load_authors_checkpoint(wrong)
    missing = {k: v for k, v in state.items() if k != "pz.2.parametrizations.weight.original0"}
    with pytest.raises(AuthorsCheckpointError, match=r"priors\.0\.conv"):
        load_authors_checkpoint(missing)
    extra = {**state, "mystery.weight": torch.zeros(3)}
    with pytest.raises(AuthorsCheckpointError, match=r"mystery\.weight"):
        load_authors_checkpoint(extra)
    full = tmp_path / "full.pth"
    torch.save(state, full)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(AuthorsCheckpointError, match=r"truncated\.pth.*download it again"):
        load_authors_checkpoint(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(AuthorsCheckpointError, match=r"notes\.pth"):
        load_authors_checkpoint(text)
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_authors_checkpoint(tmp_path / "absent.pth")


@needs_reference
def test_pretrained_install_verifies_digest_and_size_and_writes_a_workflow_model(tmp_path):
    data = reference("small")
    checkpoint = tmp_path / "CP_main_1000.pth"
    torch.save(data["state_dict"], checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    output, losses = tmp_path / "model.pt", tmp_path / "losses.csv"
    key = "models.variants.authors.pretrained"
    where = (tmp_path, loopback_policy(), output, losses)
    with pytest.raises(ValueError, match=r"CP_main_1000.pth has SHA-256 .*fetch it again"):
        install_pretrained(source(path=checkpoint, sha256="0" * 64), key, *where)
    with pytest.raises(ValueError, match=r"32 x 32 slices.*slice_size is \[96, 96\]"):
        install_pretrained(source(path=checkpoint, slice_size=(96, 96)), key, *where)
    assert not output.exists() and not losses.exists()
    install_pretrained(source(path=checkpoint, sha256=digest), key, *where)
    model = load_model(output, device="cpu")
    assert model.config.poe == "authors" and model.config.image_size == 32
    assert torch.load(output, weights_only=False)["pretrained"]["sha256"] == digest
    assert losses.read_text().startswith("epoch,steps,loss")


@needs_reference
def test_pretrained_from_a_url_is_fetched_once_and_refused_when_its_digest_differs(tmp_path):
    data = reference("small")
    local = tmp_path / "served.pth"
    torch.save(data["state_dict"], local)
    body = local.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    server = FakeServer()
    server.add("/CP_main_1000.pth", Reply(body))
    httpd = start(server)
    try:
        url = f"{server.url}/CP_main_1000.pth"
        cache, policy = tmp_path / "cache", loopback_policy(attempts=2)
        outputs = (tmp_path / "model.pt", tmp_path / "losses.csv")
        with pytest.raises(DownloadError, match="SHA-256"):
            install_pretrained(source(url=url, sha256="1" * 64), "k", cache, policy, *outputs)
        assert not any(cache.iterdir()) and not outputs[0].exists()
        install_pretrained(source(url=url, sha256=digest), "k", cache, policy, *outputs)
        install_pretrained(source(url=url, sha256=digest), "k", cache, policy, *outputs)
        assert server.hits["/CP_main_1000.pth"] == 2 + 1  # two refused, then fetched once
        assert (cache / f"{digest}.pth").read_bytes() == body
    finally:
        httpd.shutdown()
