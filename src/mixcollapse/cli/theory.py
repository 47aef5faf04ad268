"""``mixcollapse theory``: the mixup UFM at Figure 6's settings (or any other), figures and numbers.

Defaults are the paper's Figure 6: m = 3, C = 10, d = 100, lambda_H = 1e-6, 5000 lambda ~ Beta(1, 1),
three random classes (drawn with --seed). The classifier weight decay lambda_W only enters the
joint check of eq. 2 (``etf_check``); its default 5e-4 is a typical weight decay.
"""

from __future__ import annotations

import argparse
import json
import logging

from mixcollapse.cli.run import PDF_HELP


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults only: no "(default: None)" on an option whose help says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``theory`` subcommand (sets ``func``)."""
    p = subparsers.add_parser(
        "theory",
        help="optimal mixup features of the unconstrained features model (Theorem 3.1, Figure 6)",
        description=__doc__,
        formatter_class=_Defaults,
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
    p.add_argument("--out", default="theory_out", help="directory for figure6.png (and figure6.pdf with --pdf)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    p.add_argument("--pdf", action="store_true", help=PDF_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``mixcollapse theory``: the numbers as a summary (or one JSON object with --json) and the figure."""
    from mixcollapse.theory.summary import PAPER_FIGURE6_LOSS, ufm_summary

    if args.json:  # standard output holds the JSON object alone
        logging.getLogger("mixcollapse").setLevel(logging.WARNING)
    result = ufm_summary(
        args.num_classes,
        args.dim,
        args.multiplier,
        args.weight_decay_h,
        args.weight_decay_w,
        args.alpha,
        args.samples,
        args.classes,
        args.seed,
        args.joint_nodes,
        joint=not args.no_joint,
        figure_dir=None if args.no_figure else args.out,
    )
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
