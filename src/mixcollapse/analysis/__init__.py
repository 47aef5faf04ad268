"""Analysis of trained networks: mixup-pair features, projection, geometry, calibration."""
