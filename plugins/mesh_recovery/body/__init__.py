"""Parametric human body models for mesh recovery (SMPL format; see ../../../docs/mesh_recovery.md).

* `model_files` - SMPL-format model files (.pkl through a restricted unpickler, no chumpy needed;
  .npz with the same keys) -> `BodyModelData` (numpy arrays, validated);
* `lbs`         - linear blend skinning written from the SMPL equations (torch, batched, differentiable);
* `smpl`        - `SMPLBody`: a torch module (shape and pose parameters, global rotation and
  translation -> vertices, joints, faces);
* `metrics`     - MPJPE, PA-MPJPE (similarity Procrustes), PVE, per-joint errors, in millimetres.

Imported lazily: nothing here loads at plugin registration.
"""
