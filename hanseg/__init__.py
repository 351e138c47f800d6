"""hanseg: head-and-neck OAR segmentation for the HaN-Seg challenge.

Subpackages by stage: labels (the OAR table), io (images, axis contract), plans and model_dir
(the model folder contract), geometry (crop/resample and their inverses), registration,
preprocess (shared by training and inference), inference (Segmenter), postprocess,
challenge (Grand-Challenge adapter), phantom (synthetic cases).
"""

__version__ = "0.1.0"
