"""Per-subject resumability of the per-set synthesis and metric jobs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from iusynth.cli import main
from iusynth.core.resumable import content_digest, make_resumably
from iusynth.core.settings import to_json
from iusynth.model import MMHVAE

from .test_model import TINY
from .test_synthesis import SETTINGS, write_stack


class Killed(RuntimeError):
    """Stands for the job being killed while it makes a subject."""


def writer(calls: list[str], die_on: str | None = None):
    """A make function that records its calls and writes the subject's name."""

    def make(subject: str, path: Path) -> None:
        calls.append(subject)
        if subject == die_on:
            raise Killed(subject)
        path.write_text(subject)

    return make


def test_a_killed_job_keeps_its_finished_subjects_and_reuses_them(tmp_path):
    outputs = {s: tmp_path / "out" / f"{s}.csv" for s in ("a", "b", "c")}
    keys = {s: f"key-{s}" for s in outputs}
    cache = tmp_path / ".resume"
    calls: list[str] = []
    with pytest.raises(Killed):
        make_resumably(outputs, keys, cache, writer(calls, die_on="b"))
    assert calls == ["a", "b"] and (cache / "a.csv").read_text() == "a"
    assert not any(path.exists() for path in outputs.values())  # nothing looks finished
    calls.clear()
    reused = make_resumably(outputs, keys, cache, writer(calls))
    assert reused == ["a"] and calls == ["b", "c"]
    assert {s: p.read_text() for s, p in outputs.items()} == {"a": "a", "b": "b", "c": "c"}
    assert not cache.exists()


def test_a_subject_whose_inputs_changed_is_made_again(tmp_path):
    outputs = {s: tmp_path / "out" / s for s in ("a", "b")}
    cache = tmp_path / ".resume"
    calls: list[str] = []
    with pytest.raises(Killed):
        make_resumably(outputs, {"a": "1", "b": "1"}, cache, writer(calls, die_on="b"))
    calls.clear()
    reused = make_resumably(outputs, {"a": "2", "b": "1"}, cache, writer(calls))
    assert reused == [] and calls == ["a", "b"]


def test_without_a_cache_outputs_are_made_in_place(tmp_path):
    outputs = {"a": tmp_path / "a.txt"}
    calls: list[str] = []
    assert make_resumably(outputs, {"a": "k"}, None, writer(calls)) == []
    assert outputs["a"].read_text() == "a"


def test_content_digest_follows_file_content_and_names(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    (folder / "images.npy").write_bytes(b"1")
    first = content_digest([folder], "settings")
    assert content_digest([folder], "settings") == first
    assert content_digest([folder], "other settings") != first
    (folder / "images.npy").write_bytes(b"2")
    assert content_digest([folder], "settings") != first


def test_the_synthesis_stage_does_a_set_of_subjects_with_one_model_and_resumes(tmp_path, caplog):
    """`iusynth synthesise` over two subjects; a re-run after a kill makes only the missing one."""
    stacks = [write_stack(tmp_path / "slices" / f"ReMIND-{i}", seed=i) for i in (1, 2)]
    model = tmp_path / "model.pt"
    torch.save(
        {"model_config": dataclasses.asdict(TINY), "model": MMHVAE(TINY).state_dict()}, model
    )
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"folds": [{"train": ["ReMIND-9"], "val": []}]}))
    settings = to_json(dataclasses.replace(SETTINGS, device="cpu"))
    outputs = [tmp_path / "synthesis" / s.name for s in stacks]
    cache = tmp_path / ".resume"
    argv = [
        "synthesise", "--method", "mmhvae", "--models", str(model),
        "--slices", *map(str, stacks), "--splits", str(splits), "--fold", "0",
        "--settings", settings, "--output", *map(str, outputs), "--resume-cache", str(cache),
    ]  # fmt: skip
    main(argv)
    first = {p.name: sorted(f.name for f in p.iterdir()) for p in outputs}
    assert all(files for files in first.values()) and not cache.exists()
    index = json.loads((outputs[1] / "synthesis.json").read_text())
    assert index["subject"] == "ReMIND-2"
    # a killed run left subject 1 in the cache: the re-run keeps it and makes subject 2
    cache.mkdir()
    outputs[0].rename(cache / "ReMIND-1")
    stamp = content_digest(
        [stacks[0]], content_digest([model], "mmhvae", settings)
    )  # the key the stage gives subject 1
    (cache / "ReMIND-1.key").write_text(stamp)
    marker = cache / "ReMIND-1" / "kept.txt"
    marker.write_text("from the killed run")
    main(argv)
    assert (outputs[0] / "kept.txt").is_file()  # reused, not made again
    assert sorted(f.name for f in outputs[1].iterdir()) == first["ReMIND-2"]
    with pytest.raises(SystemExit):
        main([*argv[: argv.index("--output") + 1], str(outputs[0])])
    assert "2 --slices for 1 --output folders" in caplog.text
