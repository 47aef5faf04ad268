"""Measuring a trained network: mixup-pair features and the configuration they form (sections 2 and 4).

measure        measure_model (any model with features(x) and a linear classifier), in named steps
run            analyze_run: a run directory's checkpoint through measure_model
extract        pairs (a, b, lambda) into features on disk, batch norm handled as recorded
configuration  the configuration in numbers (Theorem 3.1's predictions checked on features)
ufm            the distance of the features to the unconstrained features model's optimum
neural_collapse  NC1-NC4 of a network on its unmixed training data
heldout        calibration and mixed test pairs (Figure 4)
trajectory     features through the network's layers (Figure 3)
"""
