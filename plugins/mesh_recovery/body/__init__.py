"""Parametric human bodies for mesh recovery: models, posing, fitting scans (../../../docs/mesh_recovery.md).

* `models`      - the `BodyModel` interface and `load_body_model` ("anny" or an SMPL-format path);
* `anny_body`   - Anny (the redistributable default; optional package) behind that interface;
* `model_files` - SMPL-format model files (.pkl through a restricted unpickler, no chumpy needed;
  .npz with the same keys) -> `BodyModelData` (numpy arrays, validated);
* `lbs`         - linear blend skinning written from the SMPL equations (torch, batched, differentiable);
* `smpl`        - `SMPLBody`: a torch module (shape and pose parameters, global rotation and
  translation -> vertices, joints, faces);
* `metrics`     - MPJPE, PA-MPJPE (similarity Procrustes), PVE, per-joint errors, in millimetres;
* `skeleton`    - joint roles, hinge axes, pose priors, random plausible poses;
* `scans`       - synthetic scans of known bodies (whole surface or one depth view);
* `fit`         - the SMPLify-style 3D fit (`limb_search` re-seeds misplaced limbs); `fit_outputs`,
  `picture` - what `body fit` writes;
* `romp`        - ROMP-style centre / parameter maps: encoding known bodies, decoding people;
* `coordformer` - the CoordFormer-style network; `detector` - it + its map layout + checkpoints;
* `people_data` - rendered people (images and clips) with ground truth; `net_train` - training and
  evaluation; `pw3d` - 3DPW as data; `detect` - what `body detect` runs on images and frame folders;
* `pose`, `api` - what the commands and the pipeline step call on files.

Imported lazily: nothing here loads at plugin registration.
"""
