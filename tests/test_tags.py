"""MNI tag files: round trip, real-world formatting, and RAS <-> LPS."""

from __future__ import annotations

import numpy as np
import pytest

from iusynth.core.tags import LandmarkPairs, ras_to_lps, read_tag_file, write_tag_file

RESECT_STYLE = """MNI Tag Point File
Volumes = 2;
% Volume 1: Case1-FLAIR.nii.gz
% Volume 2: Case1-US-before.nii.gz

Points =
 -24.1 37.25 58.5 -23.9 36.93 57.9 "1"
 -15 42.5 49 -14.7 42.2 48.6 "2"
 3.5e1 -1.25e0 .5 35.2 -1.1 0.4 "3";
"""


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pairs = LandmarkPairs(
        rng.normal(0, 50, (7, 3)), rng.normal(0, 50, (7, 3)), tuple(f"P{i}" for i in range(7))
    )
    path = tmp_path / "case.tag"
    write_tag_file(path, pairs, comment="two lines\nof comment")
    back = read_tag_file(path)
    np.testing.assert_allclose(back.first, pairs.first, atol=1e-4)
    np.testing.assert_allclose(back.second, pairs.second, atol=1e-4)
    assert back.labels == pairs.labels


def test_reads_resect_style_file(tmp_path):
    path = tmp_path / "Case1-MRI-beforeUS.tag"
    path.write_text(RESECT_STYLE)
    pairs = read_tag_file(path)
    assert pairs.first.shape == (3, 3)
    np.testing.assert_allclose(pairs.first[2], [35.0, -1.25, 0.5])
    np.testing.assert_allclose(pairs.second[0], [-23.9, 36.93, 57.9])
    assert pairs.labels == ("1", "2", "3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a tag file\n", "not an MNI tag file"),
        ("MNI Tag Point File\nVolumes = 1;\nPoints =\n 1 2 3;\n", "Volumes = 2"),
        ("MNI Tag Point File\nVolumes = 2;\n", "no 'Points ='"),
        ("MNI Tag Point File\nVolumes = 2;\nPoints =\n 1 2 3 4 5;\n", "cannot parse"),
        ("MNI Tag Point File\nVolumes = 2;\nPoints =\n;\n", "no landmark pairs"),
    ],
)
def test_malformed_files_are_refused_with_the_file_named(tmp_path, text, message):
    path = tmp_path / "bad.tag"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_tag_file(path)
    assert "bad.tag" in str(error.value)


def test_ras_lps_conversion_flips_x_and_y_and_is_an_involution():
    points = np.array([[10.0, -20.0, 30.0]])
    np.testing.assert_array_equal(ras_to_lps(points), [[-10.0, 20.0, 30.0]])
    np.testing.assert_array_equal(ras_to_lps(ras_to_lps(points)), points)
