"""mixcollapse: see, measure and reproduce how mixup shapes last-layer features.

Implements "Pushing Boundaries: Mixup's Influence on Neural Collapse" (Fisher, Meng, Papyan,
ICLR 2024): training with mixup, mixup-pair feature extraction, the projection of Appendix B.2,
figures, geometry and calibration measurements, and the unconstrained features model.
"""

__version__ = "0.1.0"
