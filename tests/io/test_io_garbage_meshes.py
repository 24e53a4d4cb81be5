"""Text that is not a mesh, saved with a mesh extension, is refused; valid empty files load as 0 points."""

from __future__ import annotations

import pytest

from facet3d.core.errors import FormatError
from facet3d.core.io import api

GARBAGE = "hello world\nnot a mesh\n"


@pytest.mark.parametrize("ext", ["obj", "off", "stl", "ply", "gltf", "glb"])
def test_garbage_text_is_a_format_error(tmp_path, ext):
    path = tmp_path / f"g.{ext}"
    path.write_text(GARBAGE)
    with pytest.raises(FormatError) as info:
        api.read(path)
    msg = str(info.value)
    assert f"not a valid {ext} file" in msg and str(path) in msg and "\n" not in msg


@pytest.mark.parametrize("ext", ["obj", "off"])
def test_garbage_names_the_first_line(tmp_path, ext):
    (tmp_path / f"g.{ext}").write_text("# a comment first\n" + GARBAGE)
    with pytest.raises(FormatError, match="first line 'hello world'"):
        api.read(tmp_path / f"g.{ext}")


def test_garbage_with_obj_statements_but_no_geometry(tmp_path):
    (tmp_path / "g.obj").write_text("o thing\nhello world\n")
    with pytest.raises(FormatError, match="not a valid obj file"):
        api.read(tmp_path / "g.obj")


@pytest.mark.parametrize("name, text", [
    ("comments.obj", "# exported by nothing\n# really\n"),
    ("groups.obj", "# empty groups\nmtllib none.mtl\no thing\ng part\ns off\n"),
    ("zero.off", "OFF\n0 0 0\n"),
    ("commented.off", "# header comment\nOFF\n0 0 0\n"),
    ("empty.stl", "solid empty\nendsolid empty\n"),
])
def test_valid_empty_files_load_as_zero_points(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    g = api.read(tmp_path / name)
    assert g.num_points == 0 and g.num_faces == 0


def test_binary_stl_with_zero_triangles(tmp_path):
    (tmp_path / "zero.stl").write_bytes(b"\0" * 80 + (0).to_bytes(4, "little"))
    assert api.read(tmp_path / "zero.stl").num_points == 0


def test_off_after_a_comment_still_reads(tmp_path):
    (tmp_path / "a.off").write_text("# made by hand\nOFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    assert api.read(tmp_path / "a.off").num_faces == 1
