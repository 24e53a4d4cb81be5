"""Built-in file formats (entry point ``formats`` in facet3d's pyproject).

Readers, writers and sniffers are ``"module:attr"`` strings: registering this plugin imports
nothing heavy (no numpy, trimesh or laspy) until a file of that format is touched.
Order matters for content detection: strict signatures (PLY, PCD, LAS, NPY, ...) come before
the loose text ones (OBJ, XYZ), because `detect_format` asks sniffers in this order.
"""

from __future__ import annotations

from facet3d.core.hookspecs import hookimpl
from facet3d.core.specs import FormatSpec

_IO = "facet3d.core.io"
_TM = f"{_IO}.trimesh_formats"
POINTS = frozenset({"point_cloud"})
MESH = frozenset({"mesh"})
BOTH = frozenset({"point_cloud", "mesh"})


@hookimpl
def facet3d_formats() -> list[FormatSpec]:
    return [
        FormatSpec("ply", (".ply",), "Stanford PLY (ascii / binary), points or meshes",
                   read=f"{_IO}.ply:read", write=f"{_IO}.ply:write", sniff=f"{_IO}.ply:sniff", kinds=BOTH),
        FormatSpec("pcd", (".pcd",), "PCL point cloud (ascii / binary / binary_compressed)",
                   read=f"{_IO}.pcd:read", write=f"{_IO}.pcd:write", sniff=f"{_IO}.pcd:sniff", kinds=POINTS),
        FormatSpec("las", (".las", ".laz"), "ASPRS LAS / LAZ lidar (laspy)",
                   read=f"{_IO}.las:read", write=f"{_IO}.las:write", sniff=f"{_IO}.las:sniff", kinds=POINTS,
                   imports=("laspy", "lazrs")),
        FormatSpec("npy", (".npy",), "numpy array [N, 3] or [N, >=3]",
                   read=f"{_IO}.arrays:read_npy", write=f"{_IO}.arrays:write_npy", sniff=f"{_IO}.arrays:sniff_npy",
                   kinds=POINTS),
        FormatSpec("npz", (".npz",), "numpy archive (vertices, faces, normals, colors, attributes)",
                   read=f"{_IO}.arrays:read_npz", write=f"{_IO}.arrays:write_npz", sniff=f"{_IO}.arrays:sniff_npz",
                   kinds=BOTH),
        FormatSpec("glb", (".glb",), "binary glTF 2.0 (trimesh)", read=f"{_TM}:read_glb", write=f"{_TM}:write_glb",
                   sniff=f"{_TM}:sniff_glb", kinds=MESH, imports=("trimesh",)),
        FormatSpec("gltf", (".gltf",), "glTF 2.0 JSON (trimesh; writes embedded buffers)", read=f"{_TM}:read_gltf",
                   write=f"{_TM}:write_gltf", sniff=f"{_TM}:sniff_gltf", kinds=MESH, imports=("trimesh",)),
        FormatSpec("off", (".off",), "Object File Format (trimesh)", read=f"{_TM}:read_off", write=f"{_TM}:write_off",
                   sniff=f"{_TM}:sniff_off", kinds=BOTH, imports=("trimesh",)),
        FormatSpec("stl", (".stl",), "STL ascii / binary (trimesh)", read=f"{_TM}:read_stl", write=f"{_TM}:write_stl",
                   sniff=f"{_TM}:sniff_stl", kinds=MESH, imports=("trimesh",)),
        FormatSpec("obj", (".obj",), "Wavefront OBJ (trimesh), textured or not", read=f"{_TM}:read_obj",
                   write=f"{_TM}:write_obj", sniff=f"{_TM}:sniff_obj", kinds=BOTH, imports=("trimesh",)),
        FormatSpec("xyz", (".xyz", ".txt", ".csv", ".xyzn", ".xyzrgb"), "text columns: x y z [normals] [rgb] ...",
                   read=f"{_IO}.xyz:read", write=f"{_IO}.xyz:write", sniff=f"{_IO}.xyz:sniff", kinds=POINTS),
        FormatSpec("kitti-bin", (".bin",), "KITTI velodyne float32 x y z intensity (use --format)",
                   read=f"{_IO}.lidar_bin:read_kitti", write=f"{_IO}.lidar_bin:write_kitti", kinds=POINTS,
                   explicit_only=True),
        FormatSpec("bin", (".bin",), "headerless binary records laid out by --fields x,y,z,... (name:f8, name:u1 ...)",
                   read=f"{_IO}.lidar_bin:read_bin", write=f"{_IO}.lidar_bin:write_bin", kinds=POINTS,
                   explicit_only=True),
        FormatSpec("nuscenes-bin", (".pcd.bin",), "nuScenes lidar float32 x y z intensity ring (use --format)",
                   read=f"{_IO}.lidar_bin:read_nuscenes", write=f"{_IO}.lidar_bin:write_nuscenes", kinds=POINTS,
                   explicit_only=True),
    ]
