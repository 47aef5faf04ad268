"""``mixcollapse theory``: the mixup UFM at Figure 6's settings (or any other), figures and numbers.

Defaults are the paper's Figure 6: m = 3, C = 10, d = 100, lambda_H = 1e-6, 5000 lambda ~ Beta(1, 1),
three random classes (drawn with --seed). The classifier weight decay lambda_W only enters the
joint check of eq. 2 (``etf_check``); its default 5e-4 is a typical weight decay.
"""

from __future__ import annotations

import argparse
import json
import sys

PAPER_FIGURE6_LOSS = {"optimal": 0.33457, "amplified": 0.33465}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``theory`` subcommand (sets ``func``)."""
    p = subparsers.add_parser(
        "theory",
        help="optimal mixup features of the unconstrained features model (Theorem 3.1, Figure 6)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--num-classes", type=int, default=10, help="C, number of classes (>= 3 for the figure)")
    p.add_argument("--dim", type=int, default=100, help="d, feature dimension (>= C - 1)")
    p.add_argument("--multiplier", type=float, default=3.0, help="m, the ETF multiplier (eq. 3), non-zero")
    p.add_argument("--weight-decay-h", type=float, default=1e-6, help="lambda_H, feature weight decay (> 0)")
    p.add_argument(
        "--weight-decay-w",
        type=float,
        default=5e-4,
        help="lambda_W, classifier weight decay (> 0), used by the joint ETF check only",
    )
    p.add_argument("--alpha", type=float, default=1.0, help="lambda ~ Beta(alpha, alpha), alpha > 0")
    p.add_argument("--samples", type=int, default=5000, help="number of Monte Carlo lambda samples")
    p.add_argument(
        "--classes",
        type=int,
        nargs=3,
        metavar="K",
        default=None,
        help="the three classes to plot (default: three drawn with --seed)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the classes, the lambdas and the ETF's U")
    p.add_argument(
        "--joint-nodes", type=int, default=16, help="Gauss-Jacobi nodes for lambda in the joint problem (etf_check)"
    )
    p.add_argument("--no-joint", action="store_true", help="skip the joint problem (etf_check is null)")
    p.add_argument("--no-figure", action="store_true", help="compute the numbers only")
    p.add_argument("--out", default="theory_out", help="directory for figure6.png and figure6.pdf")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")

    def one_line_error(message: str) -> None:
        print(f"mixcollapse theory: error: {message}", file=sys.stderr)
        sys.exit(2)

    p.error = one_line_error  # type: ignore[method-assign]
    p.set_defaults(func=run)


def compute(args: argparse.Namespace) -> dict:
    """Every number of the subcommand as one JSON-ready dict (raises ValueError on bad settings)."""
    from mixcollapse.theory.checks import check_classes, check_dim, check_positive, check_ufm
    from mixcollapse.theory.closed_form import same_class_K
    from mixcollapse.theory.figure6 import draw_figure6, figure6_data
    from mixcollapse.theory.loss import expected_loss

    C, m, lam_h = check_ufm(args.num_classes, args.multiplier, args.weight_decay_h)
    if C < 3:
        check_classes(C)
        raise ValueError(f"the theory command projects onto 3 classes, got --num-classes {C}; use at least 3")
    d = check_dim(args.dim, C)
    check_positive("the classifier weight decay lambda_W (--weight-decay-w)", args.weight_decay_w)
    data = figure6_data(C, d, m, lam_h, args.alpha, args.samples, args.classes, args.seed)
    settings = {
        "num_classes": C,
        "dim": d,
        "multiplier": m,
        "weight_decay_h": lam_h,
        "weight_decay_w": args.weight_decay_w,
        "alpha": args.alpha,
        "samples": args.samples,
        "classes": data["classes"],
        "seed": args.seed,
        "joint_nodes": args.joint_nodes,
    }
    quad = expected_loss(C, m, lam_h, args.alpha, data["classes"])
    result = {
        "settings": settings,
        "same_class_K": same_class_K(C, m, lam_h),
        "expected_loss": quad["loss"],
        "expected_loss_parts": quad,
        "mc_loss": data["optimal_loss"]["loss"],
        "mc_stderr": data["optimal_loss"]["stderr"],
        "amplified_mc_loss": data["amplified_loss"]["loss"],
        "mc_parts": {"optimal": data["optimal_loss"], "amplified": data["amplified_loss"]},
        # lambda_W/2 ||W||_F^2 of the ETF classifier (rows of norm m); not part of the losses above
        "classifier_term": 0.5 * args.weight_decay_w * C * m**2,
        "paper_figure6_loss": PAPER_FIGURE6_LOSS,
        "etf_check": None,
        "figures": [],
    }
    if not args.no_joint:
        from mixcollapse.theory.joint import solve_joint

        joint = solve_joint(C, d, lam_h, args.weight_decay_w, args.alpha, args.joint_nodes, args.seed)
        joint.pop("W")
        geometry = joint.pop("geometry")
        result["etf_check"] = {**geometry, **joint}
    if not args.no_figure:
        result["figures"] = [str(path) for path in draw_figure6(data, args.out)]
    return result


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mixcollapse theory``: exit code 0, or 2 with one line on stderr for bad input."""
    try:
        result = compute(args)
    except ValueError as err:
        print(f"mixcollapse theory: error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, allow_nan=True))
        return 0
    s = result["settings"]
    print(
        f"UFM for mixup: C={s['num_classes']} d={s['dim']} m={s['multiplier']} lambda_H={s['weight_decay_h']} "
        f"alpha={s['alpha']} classes={s['classes']}"
    )
    print(f"same-class K = {result['same_class_K']:.10g}")
    print(f"expected loss (quadrature, chosen classes) = {result['expected_loss']:.6f}")
    print(
        f"Monte Carlo loss ({s['samples']} lambdas): optimal {result['mc_loss']:.5f} "
        f"(+- {result['mc_stderr']:.5f}), amplified {result['amplified_mc_loss']:.5f}; "
        f"paper: {PAPER_FIGURE6_LOSS['optimal']} and {PAPER_FIGURE6_LOSS['amplified']}"
    )
    if result["etf_check"]:
        e = result["etf_check"]
        print(
            f"joint problem (lambda_W={s['weight_decay_w']}): norm CV {e['norm_cv']:.2e}, cosines "
            f"{e['cos_mean']:.6f} +- {e['cos_std']:.2e} (ETF {e['etf_cos']:.6f}), ETF distance {e['etf_distance']:.2e}"
        )
    for path in result["figures"]:
        print(f"wrote {path}")
    return 0
