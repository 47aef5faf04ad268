"""The unconstrained features model for mixup (section 3, Theorem 3.1, Appendix A): solved exactly.

closed_form  Theorem 3.1: K, K_lambda, <w_i, h>, the optimal and amplified features (ETF classifier)
solver       optimal features for any classifier W and soft targets (batched Newton, CPU or CUDA)
loss         eq. 2's loss at the optimum: per lambda, expected over Beta(alpha, alpha), Monte Carlo
joint        eq. 2 over W and the features together; how close W comes to a simplex ETF
figure6      Figure 6's data and panels
summary      every number of ``mixcollapse theory`` at one set of settings, as one dict
roots        vectorised safeguarded Newton for increasing scalar functions (the closed form's K)
checks       the argument checks the modules share
"""

from mixcollapse.theory.closed_form import (
    PairLogits,
    amplification,
    amplified_coefficients,
    amplified_features,
    different_class_logits,
    inner_product_from_K,
    same_class_equation,
    same_class_K,
    theorem_coefficients,
    theorem_features,
)
from mixcollapse.theory.loss import (
    beta_quadrature,
    classifier_decay_term,
    different_class_loss,
    expected_loss,
    monte_carlo_loss,
    same_class_loss,
)
from mixcollapse.theory.solver import feature_gradient, feature_objective, optimal_features

__all__ = [
    "PairLogits",
    "amplification",
    "amplified_coefficients",
    "amplified_features",
    "beta_quadrature",
    "classifier_decay_term",
    "different_class_logits",
    "different_class_loss",
    "expected_loss",
    "feature_gradient",
    "feature_objective",
    "inner_product_from_K",
    "monte_carlo_loss",
    "optimal_features",
    "same_class_K",
    "same_class_equation",
    "same_class_loss",
    "theorem_coefficients",
    "theorem_features",
]
